"""Real envelopes against schemas/build_result.ncl, checked by Nickel.

The envelopes come from the real CLI (plan, plugins, integrate, reap, usage and input
errors) and, for every documented error code, from the one function that renders
envelopes (``lian_build.envelope``). tests/conftest.py also checks every envelope any
CLI test saw, at the end of the session.
"""

from __future__ import annotations

import io
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import pytest

from lian_build import model
from lian_build.envelope import Envelope
from lian_build.errors import ContractViolation, LianError
from lian_build.remote.ssh import generate_host_key
from lian_build.testing.cli import lian_envelope, validate_envelopes

CLI_MD = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def _documented_codes() -> list[str]:
    return re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \| \d+ \|", CLI_MD.read_text(), re.M)


def _progress() -> model.BuildProgress:
    return model.BuildProgress(
        session_id="s0123456789ab",
        workspace="web",
        image="127.0.0.1:5000/web:1",
        provider="docker-local",
        registry="zot",
        size=model.RunnerSize(
            cpu=2, memory_gb=4, time_budget_min=30, source="language", reason="default size"
        ),
        tier="2c-4g",
        tiers_tried=("2c-4g",),
        phases={"provision": 1.25, "ssh": 0.5},
    )


def _render(command: str, error: LianError, partial: Any = None) -> dict[str, Any]:
    out = io.StringIO()
    Envelope(command, out=out).error(error, result=partial)
    return dict(json.loads(out.getvalue()))


def test_every_documented_error_code_renders_a_valid_envelope() -> None:
    codes = _documented_codes()
    assert len(codes) > 15  # the table was found
    envelopes = []
    for code in codes:
        error = LianError(f"{code} happened", field="artifact.image", details={"k": 1}, code=code)
        envelopes.append(_render("build", error, partial=_progress()))
        envelopes.append(_render("plan", LianError("no field, no details", code=code)))
    validate_envelopes(envelopes)


def test_a_successful_build_outcome_renders_a_valid_envelope() -> None:
    outcome = model.BuildOutcome(
        **attrs.asdict(_progress(), recurse=False),
        digest="sha256:" + "a" * 64,
        tags=("127.0.0.1:5000/web:1",),
        builder="buildah",
        cache=model.CacheOutcome(mode=model.BuildMode.CI, cached_steps=2, total_steps=3),
        sync=model.SyncOutcome(method="rsync", files=3, bytes_sent=10, total_bytes=9, seconds=0.1),
        duration_s=12.5,
    )
    out = io.StringIO()
    Envelope("build", out=out).ok(outcome)
    envelope = json.loads(out.getvalue())
    assert "peak_memory_bytes" not in envelope["result"]  # absent, never null
    validate_envelopes([envelope])


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda e: e["result"].pop("cache"), "a build result without cache"),
        (lambda e: e["result"].update(peak_memory_bytes=None), "null for an absent value"),
        (lambda e: e.update(status="done"), "an unknown status"),
        (lambda e: e.update(lian="2"), "another envelope version"),
        (lambda e: e["result"]["cache"].pop("mode"), "a cache without its mode"),
        (lambda e: e.update(error={"code": "bad code", "message": "m"}), "an ok with an error"),
    ],
)
def test_the_contract_refuses_what_is_not_printed(change: Any, why: str) -> None:
    outcome = {
        "session_id": "s1",
        "workspace": "web",
        "image": "127.0.0.1:5000/web:1",
        "provider": "docker-local",
        "registry": "zot",
        "size": {"cpu": 2, "memory_gb": 4, "time_budget_min": 30, "source": "x", "reason": ""},
        "tier": "2c-4g",
        "tiers_tried": ["2c-4g"],
        "retries": 0,
        "phases": {},
        "digest": "sha256:" + "a" * 64,
        "tags": [],
        "builder": "buildah",
        "cache": {"mode": "ci", "imports": [], "exports": [], "cached_steps": 0, "total_steps": 0},
        "sync": {
            "method": "tar",
            "files": 1,
            "bytes_sent": 1,
            "total_bytes": 1,
            "seconds": 0.0,
            "files_total": 1,
        },
        "duration_s": 1.0,
    }
    envelope = {"lian": "1", "command": "build", "status": "ok", "result": outcome}
    validate_envelopes([envelope])  # the unchanged one passes
    change(envelope)
    with pytest.raises(ContractViolation):
        validate_envelopes([envelope])
    assert why


@pytest.fixture
def cli_setup(tmp_path: Path) -> dict[str, Path]:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    key = tmp_path / "id_ed25519"
    key.write_text(generate_host_key().private_openssh)
    key.chmod(0o600)
    directives = tmp_path / "broken.ncl"
    directives.write_text('{ workspace = "web", artifact = { image = 5 } }\n')
    return {"context": context, "key": key, "state": tmp_path / "state", "bad": directives}


def test_real_cli_envelopes_pass_the_contract(cli_setup: dict[str, Path]) -> None:
    ctx, state = str(cli_setup["context"]), cli_setup["state"]
    flags = ["--workspace", "web", "--context", ctx, "--image", "127.0.0.1:5999/web:1"]
    calls: list[tuple[list[str], str | None, str]] = [
        (["plan", *flags, "--tag", "latest", "--target", "t"], None, "ok"),
        (["plan", *flags, "--mode", "session", "--actor", "bob-smith"], None, "ok"),
        (["plugins", "--json"], None, "ok"),
        (["plan", *flags, "--language", "cobol"], None, "INVALID_INPUT"),
        (["plan", "--directives", str(cli_setup["bad"])], None, "CONTRACT_VIOLATION"),
        (["plan", *flags, "--provider", "nope"], None, "PLUGIN_NOT_FOUND"),
        (["plan", "--no-such-flag"], None, "USAGE"),
        (["build", *flags], None, "INVALID_INPUT"),  # no --ssh-key
        (["integrate"], '{"workspace": "web", "bogus": 1}', "INVALID_INPUT"),
        (["integrate"], "[" * 200_000, "INVALID_INPUT"),
        (
            ["integrate"],
            '{"workspace": "web", "secrets": [{"id": "x", "ref": "env:LIAN_T_UNSET_1"}]}',
            "NOT_READY",
        ),
        (["integrate"], '{"workspace": "web"}', "ok"),
        (["reap", "--compute-opt", "docker_host=tcp://127.0.0.1:9"], None, "PROVISION_FAILED"),
    ]
    with ThreadPoolExecutor(4) as pool:
        runs = list(
            pool.map(lambda call: lian_envelope(call[0], state, stdin=call[1], timeout=120), calls)
        )
    for (args, _stdin, expected), run in zip(calls, runs, strict=True):
        got = "ok" if run.envelope["status"] == "ok" else run.error.get("code")
        assert got == expected, (args, run.envelope, run.stderr)
    validate_envelopes([run.envelope for run in runs])
