"""`lian runners`: what it shows for each runner a provider lists, and its errors."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fixtures.cli import lian_envelope, lian_process
from lian_build import api
from lian_build.errors import InvalidInput, ProvisionError
from lian_build.runners import describe, list_all, table

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


class Listing(api.ComputeProvider):
    name = "listing"
    Settings = dict

    def __init__(self, infos: Sequence[api.RunnerInfo], fail: bool = False) -> None:
        super().__init__({}, lambda ref: "")
        self.infos, self.fail, self.asked = infos, fail, []  # type: ignore[var-annotated]

    def tiers(self) -> Sequence[api.Tier]:
        return [api.Tier("t", 1, 1)]

    def spawn(self, request: api.SpawnRequest) -> api.Runner:
        raise AssertionError("not used")

    def destroy(self, runner_id: str) -> None:
        raise AssertionError("runners must not destroy anything")

    def list_runners(self, labels: Mapping[str, str]) -> list[api.RunnerInfo]:
        self.asked.append(dict(labels))
        if self.fail:
            raise ProvisionError("API unreachable")
        return [i for i in self.infos if all(i.labels.get(k) == v for k, v in labels.items())]


def _info(rid: str, workspace: str, expires: dt.datetime, **extra: str) -> api.RunnerInfo:
    labels = {
        "lian.managed": "true",
        "lian.session": "s" + rid,
        "lian.workspace": workspace,
        "lian.expires-at": str(int(expires.timestamp())),
        **extra,
    }
    return api.RunnerInfo(rid, labels, NOW - dt.timedelta(minutes=5))


def test_describe_reads_the_labels_and_computes_age_and_expiry() -> None:
    info = _info("1", "web", NOW - dt.timedelta(seconds=1), **{"lian.tier": "2c-4g"})
    shown = describe("p", info, NOW)
    assert shown == {
        "id": "1",
        "provider": "p",
        "workspace": "web",
        "session": "s1",
        "tier": "2c-4g",
        "created_at": "2026-12-04T11:55:00+00:00",
        "age_s": 300,
        "expires_at": "2026-12-04T11:59:59+00:00",
        "expired": True,
        "hourly_price": None,
    }


def test_list_all_filters_by_workspace_and_reports_unavailable_providers() -> None:
    later = NOW + dt.timedelta(hours=1)
    ok = Listing([_info("a", "web", later), _info("b", "api", later)])
    broken = Listing([], fail=True)
    result = list_all(
        {"ok": ok, "broken": broken, "unset": InvalidInput("compute.host is required")},
        workspace="web",
        now=NOW,
    )
    assert [r["id"] for r in result["runners"]] == ["a"]
    assert result["runners"][0]["expired"] is False
    assert ok.asked == [{"lian.managed": "true", "lian.workspace": "web"}]
    assert result["unavailable"] == [
        {"provider": "broken", "code": "PROVISION_FAILED", "reason": "API unreachable"},
        {"provider": "unset", "code": "INVALID_INPUT", "reason": "compute.host is required"},
    ]
    lines = table(result)
    assert lines[0].startswith("PROVIDER") and " web " in lines[1]
    assert lines[-1] == "# unset: not listed: compute.host is required"


def test_compute_opt_needs_exactly_one_provider(tmp_path: Path) -> None:
    run = lian_envelope(["runners", "--json", "--compute-opt", "host=x"], tmp_path)
    assert run.exit_code == 2
    assert run.error["code"] == "INVALID_INPUT"
    assert "exactly one --provider" in run.error["message"]


def test_a_provider_named_explicitly_must_be_configurable(tmp_path: Path) -> None:
    proc = lian_process(["runners", "--provider", "proxmox"], tmp_path)
    assert proc.returncode == 2
    assert '"code": "INVALID_INPUT"' in proc.stdout
    assert "compute.host" in proc.stderr


def test_an_unreachable_provider_is_listed_as_unavailable(tmp_path: Path) -> None:
    run = lian_envelope(
        ["runners", "--json", "--provider", "docker-local", "--workspace", "no-such-ws-x"],
        tmp_path,
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    )
    assert run.exit_code == 0, run.stderr
    result: dict[str, Any] = run.envelope["result"]
    assert result["runners"] == []
    [unavailable] = result["unavailable"]
    assert unavailable["provider"] == "docker-local"
