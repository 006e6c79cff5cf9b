"""docker-local pieces that need no engine: settings, tiers, scripts, archives."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import io
import subprocess
import sys
import tarfile

import pytest

from lian_build import api
from lian_build.errors import InvalidInput
from lian_docker_local import container, oom, plugin, provider


def _provider(**settings: object) -> provider.DockerLocalProvider:
    return provider.DockerLocalProvider(provider.DockerLocalSettings(**settings), lambda ref: "")


def test_default_ladder_is_smallest_first():
    tiers = _provider().tiers()

    assert [t.name for t in tiers] == ["2c-4g", "4c-8g", "8c-16g", "16c-32g"]
    assert tiers[0].fits(api.RunnerSize(2, 4, 30, "language"))
    assert not tiers[0].fits(api.RunnerSize(2, 5, 30, "language"))


def test_custom_tiers_replace_the_ladder_sorted_by_memory():
    custom = [
        provider.TierSettings(name="big", cpu=2, memory_gb=2.0),
        provider.TierSettings(name="tiny", cpu=1, memory_gb=0.25),
    ]

    tiers = _provider(tiers=custom).tiers()

    assert tiers == [api.Tier("tiny", 1, 0.25), api.Tier("big", 2, 2.0)]


@pytest.mark.parametrize(("cpu", "memory_gb", "field"), [(0, 1.0, "cpu"), (1, 0.0, "memory_gb")])
def test_tier_settings_reject_non_positive_values(cpu, memory_gb, field):
    with pytest.raises(InvalidInput) as caught:
        provider.TierSettings(name="x", cpu=cpu, memory_gb=memory_gb)
    assert caught.value.field == f"compute.tiers.{field}"


def test_empty_custom_ladder_is_invalid():
    with pytest.raises(InvalidInput, match="at least one tier"):
        _provider(tiers=[]).tiers()


def test_plan_needs_no_engine(monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert _provider().plan()["engine"] == "default socket"
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    assert _provider(image="x:y").plan() == {
        "engine": "tcp://127.0.0.1:1",
        "image": "x:y",
        "network": "host",
        "bind_host": "127.0.0.1",
        # Emulated runners are opt-in: none without emulated_runners=true.
        "architectures": {"native": [provider.host_architecture()], "emulated": []},
    }


def test_start_script_quotes_the_listen_address():
    script = container.start_script(2222, "127.0.0.1; touch /pwned")

    assert "'ListenAddress=127.0.0.1; touch /pwned'" in script
    assert script.splitlines()[-1].startswith("exec /usr/sbin/sshd -D -e -p 2222 ")


def test_ssh_files_archive_modes_and_content():
    archive = container.ssh_files_archive("PRIVATE", "ssh-ed25519 AAAA client")

    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["etc/lian"].isdir()
        assert members["etc/lian/ssh_host_ed25519_key"].mode == 0o600
        assert members["etc/lian/authorized_keys"].mode == 0o644
        key = tar.extractfile("etc/lian/authorized_keys")
        assert key is not None and key.read() == b"ssh-ed25519 AAAA client\n"


def test_parse_oom_kills_reads_v1_and_v2_counters():
    v1 = b"oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"
    v2 = b"low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\n"

    assert oom.parse_oom_kills(v1) == 3
    assert oom.parse_oom_kills(v2) == 2
    assert oom.parse_oom_kills(b"oom_kill_disable 1\n") == 0


def test_parse_created_keeps_microseconds_in_utc():
    parsed = provider._parse_created("2025-11-27T05:49:12.123456789Z")

    assert parsed == dt.datetime(2025, 11, 27, 5, 49, 12, 123456, tzinfo=dt.UTC)
    assert provider._parse_created(None) is None


def test_container_names_are_valid_and_unique():
    first = provider._container_name("ci/my workspace:1")
    second = provider._container_name("ci/my workspace:1")

    assert first.startswith("lian-ci-my-workspace-1-") and first != second


def test_entry_point_registers_the_provider():
    (entry,) = [
        e for e in importlib.metadata.entry_points(group="lian_build") if e.name == "docker-local"
    ]
    registered: list[object] = []

    entry.load().lian_register_compute_providers(registered.append)

    assert entry.value == plugin.__name__
    assert registered == [provider.DockerLocalProvider]
    assert provider.DockerLocalProvider.name == "docker-local"


def test_plugin_import_does_not_load_the_docker_sdk():
    code = (
        "import sys, lian_docker_local.plugin;"
        "from lian_docker_local import provider, cli;"
        "assert 'docker' not in sys.modules, 'docker imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
