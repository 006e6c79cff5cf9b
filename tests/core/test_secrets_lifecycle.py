"""Secret references, redaction, and signal handling during cleanup."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from lian_build.builtin.secrets import EnvSecretResolver, FileSecretResolver
from lian_build.errors import BuildFailed, Cancelled, SecretError, TimeBudgetExceeded
from lian_build.lifecycle import Lifecycle
from lian_build.pipeline import parse_cgroup_report
from lian_build.secrets import SecretStore


def _store():
    return SecretStore({"env": EnvSecretResolver(), "file": FileSecretResolver()})


def test_env_and_file_references(tmp_path, monkeypatch):
    monkeypatch.setenv("LIAN_T_TOKEN", "tok-123456")
    (tmp_path / "pw").write_text("file-secret\n")
    store = _store()
    assert store("env:LIAN_T_TOKEN") == "tok-123456"
    assert store(f"file:{tmp_path / 'pw'}") == "file-secret"
    assert store.redact("a tok-123456 b file-secret") == "a *** b ***"


@pytest.mark.parametrize(
    "ref,code",
    [
        ("nocolon", "SECRET_REF_INVALID"),
        ("vault:kv/x", "SECRET_SCHEME_UNKNOWN"),
        ("env:LIAN_UNSET_X", "SECRET_UNRESOLVED"),
    ],
)
def test_bad_references(ref, code):
    with pytest.raises(SecretError) as err:
        _store()(ref)
    assert err.value.code == code


def test_signal_raises_cancelled():
    life = Lifecycle()
    life.install()
    try:
        with pytest.raises(Cancelled) as err:
            os.kill(os.getpid(), signal.SIGTERM)
        assert err.value.details["signal"] == "SIGTERM"
    finally:
        life.uninstall()


def test_signal_during_cleanup_waits_for_cleanup():
    life = Lifecycle()
    life.install()
    done = []
    try:
        with pytest.raises(Cancelled), life.shielded():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("cleanup finished")
        assert done == ["cleanup finished"]
    finally:
        life.uninstall()


def test_time_budget_alarm():
    life = Lifecycle()
    life.install(time_budget_s=0.05)
    try:
        with pytest.raises(TimeBudgetExceeded):
            signal.pause() if hasattr(signal, "pause") else None
    finally:
        life.uninstall()


def test_cgroup_report_parsing():
    v1 = "oom_control 2\npeak 314572800\ncpu_ns 1500000000\n"
    r = parse_cgroup_report(v1)
    assert (r.oom_kills, r.peak_bytes, r.cpu_seconds) == (2, 314572800, 1.5)
    v2 = "oom_events 1\npeak 1024\ncpu_us 2500000\n"
    r = parse_cgroup_report(v2)
    assert (r.oom_kills, r.peak_bytes, r.cpu_seconds) == (1, 1024, 2.5)
    assert parse_cgroup_report("").oom_kills is None


@pytest.mark.parametrize("build_fails", [False, True])
def test_secrets_and_credentials_leave_the_runner_when_the_build_step_ends(tmp_path, build_fails):
    from core.localremote import LocalRemote

    from lian_build.api import RegistryAuth
    from lian_build.pipeline import runner_credentials
    from lian_build.plan import RemotePaths

    work = tmp_path / "lian-s1"
    paths = RemotePaths(
        work_dir=str(work), context_dir=str(work / "context"), secrets_dir=str(work / "secrets")
    )
    for folder in (work, work / "context", work / "secrets"):
        folder.mkdir()
    (work / "context" / "Dockerfile").write_text("FROM scratch\n")
    remote = LocalRemote()
    auth = RegistryAuth(registry="127.0.0.1:5000", username="u", password="registry-pw-7e1")
    seen = []

    def build_step():
        with runner_credentials(remote, paths, auth, {"npm": "npm-token-9c2"}) as config:
            seen.append((work / "secrets" / "npm").read_text())
            seen.append((Path(config) / "config.json").read_text())
            if build_fails:
                raise BuildFailed("exit 1")

    if build_fails:
        with pytest.raises(BuildFailed):
            build_step()
    else:
        build_step()
    assert seen[0] == "npm-token-9c2" and "auths" in seen[1]  # present during the build
    leftovers = [p for p in work.rglob("*") if p.is_file()]
    assert leftovers == [work / "context" / "Dockerfile"]  # the context stays until teardown
    for path in work.rglob("*"):
        if path.is_file():
            assert b"npm-token-9c2" not in path.read_bytes()
