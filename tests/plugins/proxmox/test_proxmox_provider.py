"""ProxmoxProvider against the TLS imitation of the Proxmox VE API (fake_proxmox)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import cattrs
import pytest
from fake_proxmox import HOST_KEY, FakeProxmox

from fixtures.keys import new_authorized_key, new_host_key
from lian_build import api
from lian_build.errors import InvalidInput, ProvisionError
from lian_proxmox import plugin
from lian_proxmox.agent import HOST_KEY_DROP_IN
from lian_proxmox.provider import ProxmoxProvider, ProxmoxSettings, describe

TIER = api.Tier("4c-8g", cpu=4, memory_gb=8)

# verify_ssl = false against the self-signed imitation is the point of most tests here.
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


def _request(session_id: str = "S1a2b", **labels: str) -> api.SpawnRequest:
    return api.SpawnRequest(
        session_id=session_id,
        workspace="app",
        tier=TIER,
        labels=labels or {"lian-workspace": "app", "lian-session": session_id},
        authorized_key=new_authorized_key("lian client+ci@build/01"),
        host_key=new_host_key("runner host key"),
        runner_image=None,
        expires_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
    )


@pytest.fixture
def fake() -> FakeProxmox:
    return FakeProxmox()


@pytest.fixture
def pve_host(fake: FakeProxmox, tmp_path: Path) -> Iterator[str]:
    with fake.serve(tmp_path) as host:
        yield host


def _provider(
    fake: FakeProxmox, host: str, *, token: str | None = None, **overrides: Any
) -> ProxmoxProvider:
    settings: dict[str, Any] = {
        "host": host,
        "node": fake.node,
        "template_id": fake.template_id,
        "token_id": fake.token_id,
        "verify_ssl": False,
        "poll_interval": 0.001,
        "wait_timeout_s": 30,
    }
    secrets = {"env:PROXMOX_TOKEN": token or fake.token}

    def lookup(reference: str) -> str:
        return secrets[reference]

    return ProxmoxProvider(ProxmoxSettings(**(settings | overrides)), lookup)


def _no_secrets(reference: str) -> str:
    raise AssertionError(f"secret {reference} resolved without need")


# --------------------------------------------------------------------------- spawn


def test_spawn_returns_runner_at_agent_address_with_config_applied(
    fake: FakeProxmox, pve_host: str
) -> None:
    request = _request("S1a2b", **{"lian-workspace": "app", "lian-session": "S1a2b"})
    runner = _provider(fake, pve_host).spawn(request)

    [(vmid, vm)] = fake.guests().items()
    assert runner.id == str(vmid)
    assert runner.provider == "proxmox"
    assert (runner.host, runner.port, runner.user) == (vm.ipv4, 22, "root")
    assert runner.host_public_key == request.host_key.public_openssh
    assert runner.tier == TIER and dict(runner.labels) == dict(request.labels)

    assert vm.status == "running" and vm.name == "lian-s1a2b"
    assert (vm.config["cores"], vm.config["memory"]) == ("4", "8192")
    assert (vm.config["ciuser"], vm.config["ipconfig0"]) == ("root", "ip=dhcp")
    # Percent-encoded once more than the form encoding: spaces, "+", "/" and "@" too.
    assert vm.config["sshkeys"] == quote(request.authorized_key, safe="")
    assert unquote(vm.config["sshkeys"]) == request.authorized_key
    assert vm.config["tags"].split(";") == ["lian", "session-s1a2b"]
    described = json.loads(vm.config["description"])["lian"]
    assert described["labels"] == dict(request.labels)
    assert described["expires_at"].startswith("2030-01-01")

    [clone] = fake.calls("POST", r"/qemu/9000/clone$")
    assert (clone.one("newid"), clone.one("full"), clone.one("storage")) == (str(vmid), "0", None)
    # Tasks and the agent were polled past their "running" / "not running" phases.
    assert len(fake.calls("GET", r"/tasks/UPID:.*:qmstart:.*/status$")) == fake.task_polls + 1
    assert len(fake.calls("GET", r"network-get-interfaces$")) == fake.agent_boot_polls + 1


def test_spawn_installs_the_session_host_key_through_the_guest_agent(
    fake: FakeProxmox, pve_host: str
) -> None:
    request = _request()
    _provider(fake, pve_host).spawn(request)

    [vm] = fake.guests().values()
    assert vm.files[HOST_KEY] == request.host_key.private_openssh
    assert vm.files[HOST_KEY + ".pub"].strip() == request.host_key.public_openssh
    assert vm.files[HOST_KEY_DROP_IN] == f"HostKey {HOST_KEY}\n"
    # What sshd presents after the restart: ours, not the one cloud-init regenerated.
    assert vm.sshd_host_key == request.host_key.public_openssh
    commands = [" ".join(e.argv) for e in vm.execs.values()]
    assert "cloud-init status --wait" in commands[0]
    assert "chmod 600" in commands[-1] and "restart" in commands[-1]


def test_spawn_with_full_clone_sends_target_storage(fake: FakeProxmox, pve_host: str) -> None:
    _provider(fake, pve_host, full_clone=True, storage="local-zfs").spawn(_request())
    [clone] = fake.calls("POST", r"/clone$")
    assert (clone.one("full"), clone.one("storage")) == ("1", "local-zfs")


def test_clone_task_failure_raises_and_leaves_nothing(fake: FakeProxmox, pve_host: str) -> None:
    fake.task_errors["qmclone"] = "clone failed: storage 'local-lvm' is full"
    with pytest.raises(ProvisionError, match="storage 'local-lvm' is full"):
        _provider(fake, pve_host).spawn(_request())
    assert fake.guests() == {}
    assert fake.calls("PUT", r"/config$") == []


@pytest.mark.parametrize(
    ("break_it", "expected"),
    [
        (lambda f: f.fail("PUT", r"/config$", 500, "unable to parse value of 'memory'"), "memory"),
        (
            lambda f: f.task_errors.update(qmstart="start failed: QEMU exited with code 1"),
            "QEMU exited",
        ),
        (
            lambda f: f.exec_failures.update(restart=(5, "Failed to restart ssh.service")),
            "exited with 5: Failed to restart ssh.service",
        ),
    ],
    ids=["config", "start-task", "sshd-restart"],
)
def test_failure_after_clone_destroys_the_vm(
    fake: FakeProxmox, pve_host: str, break_it: Any, expected: str
) -> None:
    break_it(fake)
    with pytest.raises(ProvisionError, match=expected):
        _provider(fake, pve_host).spawn(_request())
    assert fake.guests() == {}
    [delete] = fake.calls("DELETE", r"/qemu/\d+$")
    assert (delete.one("purge"), delete.one("destroy-unreferenced-disks")) == ("1", "1")


def test_agent_that_never_answers_fails_spawn_without_trusting_on_first_use(
    fake: FakeProxmox, pve_host: str
) -> None:
    fake.agent_installed = False
    with pytest.raises(ProvisionError, match="QEMU guest agent is not running") as caught:
        _provider(fake, pve_host, wait_timeout_s=0.3).spawn(_request())
    assert "waiting for the QEMU guest agent to report an IPv4 address" in caught.value.message
    assert fake.guests() == {}
    assert fake.calls("POST", r"/status/stop$"), "a running VM is stopped before deletion"


# --------------------------------------------------------------------------- destroy, list, inspect


def test_destroy_stops_then_deletes_and_is_idempotent(fake: FakeProxmox, pve_host: str) -> None:
    provider = _provider(fake, pve_host)
    runner = provider.spawn(_request())
    provider.destroy(runner.id)
    assert fake.guests() == {}
    methods = [
        r.method for r in fake.requests if r.path.endswith(("/status/stop", f"/qemu/{runner.id}"))
    ]
    assert methods == ["POST", "DELETE"]

    provider.destroy(runner.id)  # already gone
    provider.destroy("4242")  # never existed
    assert provider.inspect(runner.id) == api.RunnerState(exists=False)


def test_inspect_reports_a_running_vm(fake: FakeProxmox, pve_host: str) -> None:
    provider = _provider(fake, pve_host)
    runner = provider.spawn(_request())
    assert provider.inspect(runner.id) == api.RunnerState(exists=True, running=True)


def test_list_runners_matches_all_labels(fake: FakeProxmox, pve_host: str) -> None:
    provider = _provider(fake, pve_host)
    a = provider.spawn(_request("sa", **{"lian-workspace": "a", "lian-kind": "ci"}))
    b = provider.spawn(_request("sb", **{"lian-workspace": "b", "lian-kind": "ci"}))
    # Not ours: no lian tag; and a lian-tagged VM whose description is not our JSON.
    fake.add_vm(
        300, {"name": "db", "tags": "prod", "description": json.dumps({"lian": {"labels": {}}})}
    )
    fake.add_vm(301, {"name": "odd", "tags": "lian;manual", "description": "hand-made"})

    found = provider.list_runners({"lian-workspace": "a", "lian-kind": "ci"})
    assert [r.id for r in found] == [a.id]
    assert dict(found[0].labels) == {"lian-workspace": "a", "lian-kind": "ci"}
    assert found[0].created_at is not None and found[0].created_at.tzinfo is not None
    assert sorted(r.id for r in provider.list_runners({"lian-kind": "ci"})) == sorted([a.id, b.id])
    assert provider.list_runners({"lian-workspace": "c"}) == []


# --------------------------------------------------------------------------- readable failures


def test_bad_token_is_a_clear_error_without_the_token(
    fake: FakeProxmox, pve_host: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "00000000-dead-beef-0000-000000000000"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ProvisionError) as caught:
        _provider(fake, pve_host, token=wrong).spawn(_request())
    error = caught.value
    assert (
        error.message == "Proxmox API GET /cluster/nextid failed: HTTP 401 authentication failure"
    )
    rendered = json.dumps(error.to_dict()) + repr(error) + caplog.text
    assert wrong not in rendered and fake.token not in rendered
    assert fake.guests() == {}


def test_verify_ssl_against_a_self_signed_certificate_fails_clearly(
    fake: FakeProxmox, pve_host: str
) -> None:
    with pytest.raises(ProvisionError, match=r"TLS certificate of https://127\.0\.0\.1:") as caught:
        _provider(fake, pve_host, verify_ssl=True).spawn(_request())
    assert "verify_ssl" in caught.value.message
    assert fake.requests == [], "no request may pass an unverified connection"


def test_api_parameter_errors_carry_the_field(fake: FakeProxmox, pve_host: str) -> None:
    fake.fail(
        "GET", r"^/cluster/nextid$", 400, "Parameter verification failed.", errors={"vmid": "bad"}
    )
    with pytest.raises(
        ProvisionError, match=r"HTTP 400 Parameter verification failed\. \(\{'vmid': 'bad'\}\)"
    ):
        _provider(fake, pve_host).spawn(_request())


# --------------------------------------------------------------------------- no network


def test_plan_and_tiers_need_no_network() -> None:
    provider = ProxmoxProvider(
        ProxmoxSettings(
            host="pve.invalid:8006", node="pve1", template_id=9000, token_id="ci@pve!ci"
        ),
        _no_secrets,
    )
    assert provider.plan() == {
        "host": "pve.invalid:8006",
        "node": "pve1",
        "template_id": 9000,
        "kind": "qemu",
        "templates": {"amd64": {"template_id": 9000, "node": "pve1"}},
    }
    assert provider.architectures() == ("amd64",)
    assert [(t.name, t.cpu, t.memory_gb) for t in provider.tiers()] == [
        ("2c-4g", 2, 4), ("4c-8g", 4, 8), ("8c-16g", 8, 16), ("16c-32g", 16, 32),
    ]  # fmt: skip


def test_settings_from_directives_with_tier_override() -> None:
    settings = cattrs.Converter(forbid_extra_keys=True).structure(
        {
            "host": "pve:8006",
            "node": "pve1",
            "template_id": 9000,
            "token_id": "ci@pve!ci",
            "kind": "qemu",
            "tiers": [{"name": "small", "cpu": 1, "memory_gb": 2}],
        },
        ProxmoxSettings,
    )
    assert ProxmoxProvider(settings, _no_secrets).tiers() == (
        api.Tier("small", cpu=1, memory_gb=2),
    )
    assert "PROXMOX_TOKEN" in repr(settings)  # the reference, never a value


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"token_id": "ci@pve"}, "compute.token_id"),
        ({"storage": "local-zfs"}, "compute.storage"),
        ({"wait_timeout_s": 0}, "compute.wait_timeout_s"),
    ],
)
def test_invalid_settings_name_the_field(overrides: dict[str, Any], field: str) -> None:
    base: dict[str, Any] = {
        "host": "pve:8006",
        "node": "pve1",
        "template_id": 9000,
        "token_id": "ci@pve!ci",
    }
    with pytest.raises(InvalidInput) as caught:
        ProxmoxSettings(**(base | overrides))
    assert caught.value.field == field


def test_lxc_spawn_is_refused_before_any_request(fake: FakeProxmox, pve_host: str) -> None:
    with pytest.raises(InvalidInput, match="host key") as caught:
        _provider(fake, pve_host, kind="lxc").spawn(_request())
    assert caught.value.field == "compute.kind"
    assert fake.requests == []


def test_plugin_registers_the_provider_without_importing_proxmoxer() -> None:
    registered: list[Any] = []

    def register(item: Any) -> None:
        registered.append(item)

    plugin.lian_register_compute_providers(register=register)
    assert registered == [ProxmoxProvider]
    probe = (
        "import sys, lian_proxmox.plugin;"
        "print('proxmoxer' in sys.modules, 'requests' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_failed_cleanup_is_logged_and_the_original_error_kept(
    fake: FakeProxmox, pve_host: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake.task_errors["qmstart"] = "start failed: QEMU exited with code 1"
    fake.fail("DELETE", r"/qemu/\d+$", 500, "VM is locked (backup)")
    with pytest.raises(ProvisionError, match="QEMU exited with code 1"):
        _provider(fake, pve_host).spawn(_request())
    [vmid] = fake.guests()
    assert f"could not destroy VM {vmid}" in caplog.text and "VM is locked (backup)" in caplog.text


def test_list_runners_finds_a_vm_killed_between_clone_and_config(
    fake: FakeProxmox, pve_host: str
) -> None:
    # The clone carried name and description; the tags never arrived.
    created = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    description = describe({"lian.managed": "true", "lian.session": "sK"}, created, created)
    fake.add_vm(150, {"name": "lian-sk", "description": description})
    fake.add_vm(151, {"name": "lian-by-hand", "description": "not json"})
    found = _provider(fake, pve_host).list_runners({"lian.managed": "true"})
    assert [(r.id, r.labels["lian.session"], r.created_at) for r in found] == [
        ("150", "sK", created)
    ]


def test_only_a_vm_with_this_spawns_name_and_description_is_destroyed(
    fake: FakeProxmox, pve_host: str
) -> None:
    provider = _provider(fake, pve_host)
    session = provider._session()
    now = dt.datetime.now(dt.UTC)
    ours = describe({"lian.session": "sA"}, now, now)
    fake.add_foreign_vm(160)  # another client's VM at the id we tried
    fake.add_vm(161, {"name": "lian-sa", "description": describe({"lian.session": "sB"}, now, now)})
    fake.add_vm(162, {"name": "lian-sa", "description": ours})
    for vmid in (160, 161, 162):
        provider._destroy_if_ours(session, vmid, "lian-sa", ours)
    assert sorted(fake.guests()) == [160, 161]
    assert [c.path for c in fake.calls("DELETE", r"/qemu/\d+$")] == ["/nodes/pve/qemu/162"]
