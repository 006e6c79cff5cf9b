"""ProxmoxProvider against the imitation whose VMs are real runner containers: the
real API's failure modes, each ending in a usable runner or one clear error, and never
a VM left behind or someone else's VM touched (the ``pve`` fixture checks the
inventory after every test)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import attrs
import pytest
from pve_machine import Pve

from fixtures.keys import new_authorized_key, new_host_key
from lian_build import api
from lian_build.errors import ProvisionError
from lian_build.remote.ssh import SSHRemote
from lian_build.testing.conformance import generate_client_key, write_client_key

TIER = api.Tier("2c-1g", cpu=2, memory_gb=1)


def _request(session_id: str = "S1a2b") -> api.SpawnRequest:
    return api.SpawnRequest(
        session_id=session_id,
        workspace="app",
        tier=TIER,
        labels={"lian.managed": "true", "lian.session": session_id, "lian.workspace": "app"},
        authorized_key=new_authorized_key("lian client"),
        host_key=new_host_key("runner host key"),
        runner_image=None,
        expires_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
    )


def _spawn_and_run(pve: Pve, **overrides: Any) -> tuple[api.Runner, str]:
    """Spawn, run ``id -un`` over SSH with the pinned host key, destroy."""
    provider = pve.provider(**overrides)
    pair = generate_client_key()
    client = write_client_key(pair, pve.ca_file.parent)
    request = attrs.evolve(_request(), authorized_key=pair.public_openssh)
    runner = provider.spawn(request)
    try:
        remote = SSHRemote.connect(runner, client, wait_timeout_s=30, log=lambda _: None)
        try:
            result = remote.run(["id", "-un"])
        finally:
            remote.close()
    finally:
        provider.destroy(runner.id)
    assert result.exit_code == 0, result.stderr
    return runner, result.stdout.strip()


def test_a_task_ending_with_warnings_is_a_success(pve: Pve) -> None:
    pve.fake.task_errors["qmstart"] = "WARNINGS: 1"
    _, user = _spawn_and_run(pve)
    assert user == "root"
    [start] = [t for t in pve.fake.tasks.values() if t.kind == "qmstart"]
    assert start.exitstatus == "WARNINGS: 1"


def test_the_clone_task_upid_names_the_template_and_the_runner_id_is_the_new_vm(
    pve: Pve,
) -> None:
    runner, _ = _spawn_and_run(pve)
    [clone] = [t for t in pve.fake.tasks.values() if t.kind == "qmclone"]
    assert f":qmclone:{pve.fake.template_id}:" in clone.upid
    assert runner.id != str(pve.fake.template_id)
    [post] = pve.fake.calls("POST", r"/clone$")
    assert post.one("newid") == runner.id
    # The clone itself carries the description that marks the VM as lian's.
    assert '"lian.session": "S1a2b"' in (post.one("description") or "")


def test_a_concurrent_clone_to_the_same_id_is_retried_and_the_other_vm_kept(pve: Pve) -> None:
    pve.fake.clone_races = 1
    runner, _ = _spawn_and_run(pve)
    [(other_id, other)] = [(i, vm) for i, vm in pve.fake.guests().items() if vm.foreign]
    assert other.name == "someone-elses-vm"  # neither destroyed nor changed
    assert runner.id != str(other_id)
    assert not pve.fake.calls("DELETE", rf"/qemu/{other_id}$")
    assert len(pve.fake.calls("POST", r"/clone$")) == 2


def test_an_id_taken_between_nextid_and_clone_is_retried(pve: Pve) -> None:
    pve.fake.stale_nextid = 1
    runner, _ = _spawn_and_run(pve)
    [other_id] = [i for i, vm in pve.fake.guests().items() if vm.foreign]
    assert runner.id != str(other_id)
    assert not pve.fake.calls("DELETE", rf"/qemu/{other_id}$")
    assert not pve.fake.calls("POST", rf"/qemu/{other_id}/status/stop$")


def test_collisions_on_every_attempt_fail_clearly_without_touching_other_vms(pve: Pve) -> None:
    pve.fake.clone_races = 99
    with pytest.raises(ProvisionError, match="config file already exists"):
        pve.provider().spawn(_request())
    foreign = [vm for vm in pve.fake.guests().values() if vm.foreign]
    assert len(foreign) == 5
    assert not pve.fake.calls("DELETE", r"/qemu/\d+$")


def test_runners_boot_without_a_package_upgrade(pve: Pve) -> None:
    _spawn_and_run(pve)
    [config] = pve.fake.calls("PUT", r"/config$")
    assert config.one("ciupgrade") == "0"


def test_without_ciupgrade_0_the_first_boot_fails_and_the_vm_is_destroyed(pve: Pve) -> None:
    # PVE's default (ciupgrade=1) upgrades every package from a mirror at first boot;
    # the imitation has none, like an isolated build network.
    with pytest.raises(ProvisionError, match="cloud-init failed") as info:
        pve.provider(ciupgrade=None).spawn(_request())
    assert info.value.code == "RUNNER_NOT_READY"
    assert pve.fake.calls("DELETE", r"/qemu/\d+$")


def test_a_degraded_cloud_init_boot_is_usable(pve: Pve, caplog: pytest.LogCaptureFixture) -> None:
    pve.fake.boot_status = 2
    with caplog.at_level(logging.WARNING, logger="lian.compute.proxmox"):
        _, user = _spawn_and_run(pve)
    assert user == "root"
    assert "recoverable errors" in caplog.text


def test_a_slow_first_boot_is_waited_for(pve: Pve) -> None:
    pve.fake.boot_delay_s = 3.0
    pve.fake.agent_boot_polls = 10
    _, user = _spawn_and_run(pve)
    assert user == "root"


def test_ciuser_gets_the_url_encoded_key(pve: Pve) -> None:
    _, user = _spawn_and_run(pve, ssh_user="builder")
    assert user == "builder"


def test_tls_without_the_ca_fails_clearly_and_creates_nothing(pve: Pve) -> None:
    with pytest.raises(ProvisionError, match="ca_file") as info:
        pve.provider(ca_file=None, verify_ssl=True).spawn(_request())
    assert pve.fake.token not in info.value.message
    assert not pve.fake.guests()


def test_the_imitation_rejects_what_pve_schema_rejects(pve: Pve) -> None:
    with pytest.raises(ProvisionError, match="ipconfig0") as info:
        pve.provider(ipconfig0="dhcp").spawn(_request())
    assert "Parameter verification failed" in info.value.message
