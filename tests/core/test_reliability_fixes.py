"""Fixes from the reliability matrix that need no runner: secrets across lines and
encodings, a second Ctrl-C, registry failures told apart, the context checked up
front, owner labels for reaping, key copies kept off disk, the NATS extra named."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest

from fixtures.cli import lian_envelope
from fixtures.keys import write_private_key
from fixtures.require import require
from lian_build import api, contextcheck, oom, reap
from lian_build.builtin.secrets import FileSecretResolver
from lian_build.errors import Cancelled, InvalidInput
from lian_build.progress import Progress
from lian_build.remote import sync
from lian_build.secrets import SecretStore

PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACDk0mXWZrJ3lW2pVr8W4u3M2yqkXr0vR5lYp7b2JmZ9WQAAAJgtMqj6LTKo\n"
    "+gAAAAtzc2gtZWQyNTUxOQAAACDk0mXWZrJ3lW2pVr8W4u3M2yqkXr0vR5lYp7b2JmZ9WQ\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)


def _pem_store(tmp_path: Path) -> tuple[SecretStore, str]:
    (tmp_path / "key.pem").write_text(PEM)
    store = SecretStore({"file": FileSecretResolver()})
    return store, store(f"file:{tmp_path / 'key.pem'}")


def test_a_multi_line_secret_printed_line_by_line_is_scrubbed(tmp_path: Path) -> None:
    store, _value = _pem_store(tmp_path)
    out = io.StringIO()
    progress = Progress(stream=out, live=False, redact=store.redact)
    for line in ("step 3/4: RUN cat /run/secrets/key", *PEM.splitlines(), "done"):
        progress.line(line)  # the live log: one remote line at a time
    shown = out.getvalue()
    assert "step 3/4" in shown
    assert "done" in shown
    for line in PEM.splitlines():
        assert line.strip() not in shown, line


def test_json_escaped_and_base64_forms_are_scrubbed(tmp_path: Path) -> None:
    store, value = _pem_store(tmp_path)
    store.remember("pass-word+with/slashes==")
    assert value not in store.redact(json.dumps({"log": value}))
    assert "b3BlbnNzaC1rZXkt" not in store.redact(json.dumps({"log": value}))
    for prefix in (b"", b"u", b"us", b"user:"):  # every base64 alignment
        for secret in (value.encode(), b"pass-word+with/slashes=="):
            blob = base64.b64encode(prefix + secret + b"!tail").decode()
            redacted = store.redact(f"auth={blob}")
            assert base64.b64encode(secret).decode()[4:-4] not in redacted
            assert redacted != f"auth={blob}"
    # `base64` wraps at 76 columns: each wrapped line is scrubbed on its own
    for wrapped in base64.encodebytes(value.encode()).decode().splitlines():
        assert store.redact(wrapped) == "***", wrapped
    urlsafe = base64.urlsafe_b64encode(b"pass-word+with/slashes==").decode()
    assert urlsafe not in store.redact(urlsafe)
    # ordinary text is untouched
    assert store.redact("nothing to hide here") == "nothing to hide here"


_SECOND_SIGINT = textwrap.dedent(
    """
    import sys, time
    from lian_build.lifecycle import Lifecycle
    from lian_build.errors import Cancelled
    life = Lifecycle()
    life.install()
    try:
        try:
            print("ready", flush=True)
            time.sleep(30)
        finally:
            with life.shielded():
                time.sleep(0.05)  # destroying the runner
    except Cancelled:
        pass
    finally:
        life.uninstall()
    time.sleep(0.6)  # printing the cancelled envelope
    print("exiting", flush=True)
    sys.exit(130)
    """
)


def test_a_second_sigint_150ms_after_the_first_still_exits_130() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _SECOND_SIGINT], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    time.sleep(0.15)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, proc.returncode
    assert "exiting" in out


def test_only_the_first_signal_cancels() -> None:
    from lian_build.lifecycle import Lifecycle

    life = Lifecycle()
    life.install()
    try:
        with pytest.raises(Cancelled):
            os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)  # ignored: already cancelling
    finally:
        life.uninstall()
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.parametrize(
    "tail,found",
    [
        (
            "Error: pushing: trying to reuse blob sha256:ab at destination: pinging container "
            'registry 127.0.0.1:5123: Get "http://127.0.0.1:5123/v2/": dial tcp '
            "127.0.0.1:5123: connect: connection refused",
            True,
        ),
        ("error: failed to push 127.0.0.1:5123/app:1: 503 Service Unavailable", True),
        ("RUN curl http://127.0.0.1:9/ -> connection refused\nexit status 7", False),
        ("error: building at STEP RUN false: exit status 1", False),
    ],
)
def test_registry_failures_are_told_from_build_failures(tail: str, found: bool) -> None:
    line = oom.registry_line(tail, "127.0.0.1:5123")
    assert (line is not None) is found
    if found:
        assert line is not None and "127.0.0.1:5123" in line


def _locked_context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "src" / "private").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (ctx / "src" / "ok.txt").write_text("ok")
    (ctx / "src" / "private" / "x").write_text("x")
    (ctx / "src" / "private").chmod(0)
    return ctx


def _no_dac_override() -> list[str]:
    # Root reads anything; without these capabilities it sees permissions as a user does.
    if os.geteuid() != 0:
        return []
    require(shutil.which("setpriv") is not None, "setpriv (util-linux)")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


def test_an_unreadable_subdirectory_fails_before_provisioning(tmp_path: Path) -> None:
    ctx = _locked_context(tmp_path)
    key = write_private_key(tmp_path / "id_ed25519")
    try:
        run = lian_envelope(
            [
                "build", "--workspace", "rel", "--context", str(ctx),
                "--image", "127.0.0.1:9/app:1", "--ssh-key", str(key),
                "--provider", "docker-local",
                "--compute-opt", f"docker_host=unix://{tmp_path}/no-docker.sock",
                "--registry", "zot", "--registry-opt", "url=http://127.0.0.1:9",
            ],
            tmp_path / "state",
            prefix=_no_dac_override(),
        )  # fmt: skip
    finally:
        (ctx / "src" / "private").chmod(0o755)
    assert run.exit_code == 2, run.stderr
    assert run.error["code"] == "INVALID_INPUT"
    assert run.error["field"] == "context"
    assert "src/private/" in run.error["message"]
    assert "provision" not in run.stderr  # checked before a runner was asked for


def test_unreadable_files_are_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    (ctx / "a.key").write_text("k")
    (ctx / "ignored.key").write_text("k")
    (ctx / ".dockerignore").write_text("ignored.key\n")
    real = os.access
    monkeypatch.setattr(
        contextcheck.os,
        "access",
        lambda p, mode: not str(p).endswith(".key") and real(p, mode),
    )
    with pytest.raises(InvalidInput) as err:
        contextcheck.check_context(ctx)
    assert err.value.details["unreadable"] == ["a.key"]  # the ignored one is not sent
    assert "a.key" in err.value.message


def test_the_dockerignore_scan_names_an_unreadable_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lian_build.remote import dockerignore

    ctx = tmp_path / "ctx"
    (ctx / "deep" / "er").mkdir(parents=True)
    real = os.scandir

    def scandir(path: os.PathLike[str]) -> object:
        if str(path).endswith("deep/er"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(dockerignore.os, "scandir", scandir)
    with pytest.raises(InvalidInput, match="deep/er/ cannot be read"):
        dockerignore.scan(ctx)


# ----------------------------------------------------------------- reaping by owner


class _Compute:
    def __init__(self, runners: list[api.RunnerInfo]) -> None:
        self.runners = runners
        self.destroyed: list[str] = []

    def list_runners(self, labels: dict[str, str]) -> list[api.RunnerInfo]:
        return [r for r in self.runners if all(r.labels.get(k) == v for k, v in labels.items())]

    def destroy(self, runner_id: str) -> None:
        self.destroyed.append(runner_id)


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_runners_of_a_dead_lian_are_reaped_before_expiry() -> None:
    mine = reap.owner_labels()
    assert mine, "owner labels need /proc"
    future = str(int(time.time()) + 3600)
    base = {"lian.managed": "true", "lian.expires-at": future}
    dead = {**mine, reap.OWNER_PID: str(_dead_pid())}
    reused = {**mine, reap.OWNER_START: "1"}  # the pid now belongs to another process
    elsewhere = {**dead, reap.OWNER_HOST: "another-host", reap.OWNER_BOOT: "other-boot"}
    compute = _Compute(
        [
            api.RunnerInfo("alive", {**base, **mine}),
            api.RunnerInfo("dead", {**base, **dead}),
            api.RunnerInfo("reused", {**base, **reused}),
            api.RunnerInfo("elsewhere", {**base, **elsewhere}),
            api.RunnerInfo("unlabelled", dict(base)),
        ]
    )
    report = reap.reap_expired(compute, log=lambda _: None)  # type: ignore[arg-type]
    assert sorted(report.destroyed) == ["dead", "reused"]
    assert sorted(report.kept) == ["alive", "elsewhere", "unlabelled"]


def test_the_pipeline_puts_owner_labels_on_runners() -> None:
    import datetime as dt

    from lian_build.pipeline import runner_labels

    plan = types.SimpleNamespace(session_id="s1", intent=types.SimpleNamespace(workspace="ws"))
    labels = runner_labels(plan, dt.datetime.now(dt.UTC))  # type: ignore[arg-type]
    assert labels[reap.OWNER_PID] == str(os.getpid())
    assert reap.owner_alive(labels) is True


def test_key_copies_live_in_memory_only(tmp_path: Path) -> None:
    secret = b"-----BEGIN KEY-----\nabc\n"
    with sync.private_file("identity", secret) as private:
        assert private.path.startswith(f"/proc/{os.getpid()}/fd/")
        assert Path(private.path).read_bytes() == secret
        assert os.stat(private.path).st_mode & 0o777 == 0o600
        assert not any(tmp_path.iterdir())
    assert not Path(private.path).exists()


def test_rsync_children_die_with_lian() -> None:
    prefix = sync.die_with_parent()
    require(bool(prefix), "setpriv (util-linux)")
    # A parent killed by SIGKILL takes its setpriv-wrapped child with it.
    script = (
        "import subprocess, sys; p = subprocess.Popen(sys.argv[1:]); "
        "print(p.pid, flush=True); p.wait()"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, *prefix, "sleep", "60"], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    # setpriv sets the death signal a moment after it starts (a parent killed within
    # those milliseconds is a window setpriv does not close).
    time.sleep(0.5)
    parent.kill()
    parent.wait()
    for _ in range(200):
        try:
            state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            break  # gone
        if state in ("Z", "X"):
            break  # dead, waiting to be reaped by init
        time.sleep(0.05)
    else:
        pytest.fail(f"child {child} outlived its SIGKILLed parent")


def test_private_dirs_of_dead_lian_processes_are_swept(tmp_path: Path) -> None:
    stale = tmp_path / f"{sync.PRIVATE_PREFIX}{_dead_pid()}-abc"
    live = tmp_path / f"{sync.PRIVATE_PREFIX}{os.getpid()}-def"
    for d in (stale, live):
        d.mkdir()
        (d / "identity").write_text("key")
    removed = sync.sweep_private_dirs(tmp_path)
    assert removed == [str(stale)]
    assert live.exists()
    assert not stale.exists()


# ----------------------------------------------------------------- NATS extra


def test_nats_without_the_extra_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import importlib.util

    from lian_build.builtin import nats as nats_sink

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "nats" else real(name, *a)
    )
    caplog.set_level(logging.WARNING)
    sink = nats_sink.NatsSink(api.EventSettings(nats_url="nats://127.0.0.1:9"))
    import datetime as dt

    sink.emit(api.BuildEvent("started", "w", "s", dt.datetime.now(dt.UTC)))
    sink.close()
    assert "pip install 'lian-build[nats]'" in caplog.text
    assert "ModuleNotFoundError" not in caplog.text


# ----------------------------------------------------------------- pushed, then cancelled


def test_a_cancel_after_the_push_keeps_the_digest() -> None:
    from lian_build.pipeline import AttemptResult, BuildPipeline

    pipeline = BuildPipeline.__new__(BuildPipeline)
    pipeline.plan = types.SimpleNamespace(  # type: ignore[assignment]
        intent=types.SimpleNamespace(tags=("r/app:1",))
    )
    attempt = AttemptResult(tier=api.Tier("t", 1, 1))
    attempt.outcome = api.BuildOutcome(exit_code=0, digest="sha256:" + "a" * 64)
    pipeline.attempts = [attempt]
    error = Cancelled("cancelled by SIGINT")
    pipeline._note_pushed(error)
    assert error.details["pushed"] is True
    assert error.details["digest"] == "sha256:" + "a" * 64
    failed = Cancelled("cancelled by SIGINT")
    attempt.outcome = api.BuildOutcome(exit_code=1)
    pipeline._note_pushed(failed)
    assert "digest" not in failed.details
