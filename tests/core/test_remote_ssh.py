"""SSHRemote against a real sshd: pinning, waiting, quoting, streaming, failures."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import attrs
import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from fixtures.ports import free_port
from fixtures.sshd import SshdServer, make_keys, run_sshd, start_sshd, stop_sshd
from lian_build import api
from lian_build.errors import InvalidInput, RemoteError, TimeBudgetExceeded
from lian_build.remote import ssh
from lian_build.remote.ssh import SSHRemote, generate_host_key, read_private_key

NASTY = ["a b", ";", "$(touch /tmp/pwned)", "`id`", "'", '"', "\\", "*", "line\nbreak", "é✓", ""]


@pytest.fixture
def remote(sshd_server: SshdServer) -> Iterator[SSHRemote]:
    key = read_private_key(sshd_server.client_key)
    with SSHRemote.connect(sshd_server.runner(), key, wait_timeout_s=30, log=lambda _: None) as r:
        yield r


def _write_private(
    path: Path,
    key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    fmt: serialization.PrivateFormat = serialization.PrivateFormat.OpenSSH,
    encryption: serialization.KeySerializationEncryption | None = None,
) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, fmt, encryption or serialization.NoEncryption()
        )
    )
    return path


# --------------------------------------------------------------------------- keys


def test_generate_host_key_is_a_matching_ed25519_pair(tmp_path: Path) -> None:
    host_key = generate_host_key()
    assert host_key.private_openssh.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert host_key.public_openssh.startswith("ssh-ed25519 ")
    assert "PRIVATE" not in repr(host_key)
    loaded = paramiko.Ed25519Key.from_private_key_file(
        str(_write_text(tmp_path / "k", host_key.private_openssh))
    )
    assert f"{loaded.get_name()} {loaded.get_base64()}" == host_key.public_openssh
    assert generate_host_key().public_openssh != host_key.public_openssh


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("make", "fmt", "prefix"),
    [
        (ed25519.Ed25519PrivateKey.generate, serialization.PrivateFormat.OpenSSH, "ssh-ed25519 "),
        (
            lambda: ec.generate_private_key(ec.SECP256R1()),
            serialization.PrivateFormat.OpenSSH,
            "ecdsa-sha2-nistp256 ",
        ),
        (
            lambda: rsa.generate_private_key(65537, 2048),
            serialization.PrivateFormat.TraditionalOpenSSL,
            "ssh-rsa ",
        ),
    ],
)
def test_read_private_key_accepts_supported_types(tmp_path: Path, make, fmt, prefix) -> None:  # type: ignore[no-untyped-def]
    key = read_private_key(_write_private(tmp_path / "id", make(), fmt))
    assert key.path == tmp_path / "id"
    assert key.public_openssh.startswith(prefix)


def test_read_private_key_rejects_public_keys(tmp_path: Path) -> None:
    public = generate_host_key().public_openssh
    for path in (tmp_path / "id.pub", tmp_path / "looks_private"):
        path.write_text(public + "\n")
        with pytest.raises(InvalidInput) as caught:
            read_private_key(path)
        assert caught.value.field == "ssh_key"
        assert "public key" in caught.value.message


def test_read_private_key_rejects_encrypted_keys(tmp_path: Path) -> None:
    path = _write_private(
        tmp_path / "id",
        ed25519.Ed25519PrivateKey.generate(),
        encryption=serialization.BestAvailableEncryption(b"passphrase"),
    )
    with pytest.raises(InvalidInput) as caught:
        read_private_key(path)
    assert caught.value.field == "ssh_key"
    assert "passphrase" in caught.value.message


@pytest.mark.parametrize(
    ("content", "rule"),
    [(None, "not found"), (b"not a key at all\n", "not a private key"), ("dir", "directory")],
)
def test_read_private_key_rejects_other_files(tmp_path: Path, content: object, rule: str) -> None:
    path = tmp_path / "id"
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(InvalidInput) as caught:
        read_private_key(path)
    assert caught.value.field == "ssh_key"
    assert rule in caught.value.message


# --------------------------------------------------------------------------- connecting


def test_wrong_pinned_key_fails_at_once(sshd_server: SshdServer) -> None:
    logs: list[str] = []
    other = generate_host_key().public_openssh
    with pytest.raises(RemoteError) as caught:
        SSHRemote.connect(
            sshd_server.runner(host_public_key=other),
            read_private_key(sshd_server.client_key),
            wait_timeout_s=60,
            log=logs.append,
        )
    assert caught.value.code == "HOST_KEY_MISMATCH"
    assert logs == []  # no waiting, no retry


def test_pinned_key_of_another_type_is_a_mismatch_too(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    ecdsa = read_private_key(
        _write_private(tmp_path / "ec", ec.generate_private_key(ec.SECP256R1()))
    ).public_openssh
    with pytest.raises(RemoteError) as caught:
        SSHRemote.connect(
            sshd_server.runner(host_public_key=ecdsa),
            read_private_key(sshd_server.client_key),
            wait_timeout_s=60,
            log=lambda _: None,
        )
    assert caught.value.code == "HOST_KEY_MISMATCH"


def test_waits_for_sshd_to_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssh, "_WAIT_LOG_EVERY_S", 0.3)
    keys = make_keys(tmp_path)
    port = free_port()
    runner = api.Runner(
        id="late",
        provider="sshd-fixture",
        host="127.0.0.1",
        port=port,
        user="root",
        host_public_key=keys.host_key.public_openssh,
        tier=api.Tier("local", 1, 1.0),
    )
    servers: list[SshdServer] = []
    logs: list[str] = []

    def start_after_first_log(line: str) -> None:
        logs.append(line)
        if not servers:
            servers.append(start_sshd(tmp_path, keys, port=port))

    try:
        with SSHRemote.connect(
            runner, read_private_key(keys.client_key), wait_timeout_s=30, log=start_after_first_log
        ) as remote:
            assert remote.run(["echo", "up"]).stdout == "up\n"
    finally:
        for server in servers:
            stop_sshd(server)
    assert servers, "connect returned before sshd was started"
    assert re.fullmatch(
        rf"waiting for SSH on 127\.0\.0\.1:{port} \(runner late\): \d+s of 30s", logs[0]
    )


def test_nothing_listening_times_out(sshd_server: SshdServer) -> None:
    runner = api.Runner(
        id="absent",
        provider="sshd-fixture",
        host="127.0.0.1",
        port=free_port(),
        user="root",
        host_public_key=sshd_server.host_public_key,
        tier=api.Tier("local", 1, 1.0),
    )
    with pytest.raises(RemoteError) as caught:
        SSHRemote.connect(
            runner, read_private_key(sshd_server.client_key), wait_timeout_s=1.5, log=lambda _: None
        )
    assert caught.value.code == "SSH_TIMEOUT"
    assert "runner absent" in caught.value.message


def test_refused_client_key_is_reported_as_such(sshd_server: SshdServer, tmp_path: Path) -> None:
    stranger = read_private_key(
        _write_private(tmp_path / "id", ed25519.Ed25519PrivateKey.generate())
    )
    with pytest.raises(RemoteError) as caught:
        SSHRemote.connect(sshd_server.runner(), stranger, wait_timeout_s=1.5, log=lambda _: None)
    assert caught.value.code == "SSH_AUTH_FAILED"
    assert str(stranger.path) in caught.value.message


def test_known_hosts_line(remote: SSHRemote, sshd_server: SshdServer) -> None:
    assert (
        remote.known_hosts_line() == f"[127.0.0.1]:{sshd_server.port} {sshd_server.host_public_key}"
    )


# --------------------------------------------------------------------------- commands


def test_metacharacters_arrive_literally(remote: SSHRemote) -> None:
    result = remote.run(["printf", "%s\\0", *NASTY])
    assert result.exit_code == 0
    assert result.stdout.split("\0")[:-1] == NASTY
    assert not os.path.exists("/tmp/pwned")


def test_env_values_arrive_literally(remote: SSHRemote) -> None:
    env = {f"V{i}": value for i, value in enumerate(NASTY)}
    script = 'for n in "$@"; do eval "printf \'%s\\0\' \\"\\${$n}\\""; done'
    result = remote.run(["sh", "-c", script, "sh", *env], env=env)
    assert result.stdout.split("\0")[:-1] == NASTY


def test_exit_codes_and_separate_streams(remote: SSHRemote) -> None:
    result = remote.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    killed = remote.run(["sh", "-c", "kill -9 $$"])
    assert killed.exit_code == 137  # a signal death still reports an exit status


def test_output_streams_while_the_command_runs(remote: SSHRemote, tmp_path: Path) -> None:
    # The command waits for a file that only the on_output callback creates: if lines
    # were delivered at the end, this would run into the timeout instead.
    gate = tmp_path / "gate"
    script = 'echo one; echo two >&2; while [ ! -e "$1" ]; do sleep 0.05; done; echo three'
    lines: list[str] = []

    def on_output(line: str) -> None:
        lines.append(line)
        if len(lines) == 2:
            gate.touch()

    result = remote.run(["sh", "-c", script, "sh", str(gate)], on_output=on_output, timeout=20)
    assert result.exit_code == 0
    assert lines == ["one", "two", "three"]
    assert result.stdout == "one\nthree\n" and result.stderr == "two\n"


def test_partial_last_line_is_delivered(remote: SSHRemote) -> None:
    lines: list[str] = []
    remote.run(["printf", "a\\nb"], on_output=lines.append)
    assert lines == ["a", "b"]


def test_timeout_raises_and_the_connection_stays_usable(remote: SSHRemote) -> None:
    with pytest.raises(TimeBudgetExceeded):
        remote.run(["sleep", "30"], timeout=0.5)
    assert remote.run(["echo", "still here"]).stdout == "still here\n"


def _sshd_ancestors(pid: int, listener: int) -> list[int]:
    """The per-connection sshd processes between ``pid`` and the listening daemon."""
    chain: list[int] = []
    while True:
        stat = Path(f"/proc/{pid}/stat").read_text()
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent in (listener, 0, 1):
            return chain
        chain.append(parent)
        pid = parent


def test_connection_lost_mid_command(tmp_path: Path) -> None:
    with run_sshd(tmp_path) as server:
        remote = SSHRemote.connect(
            server.runner(),
            read_private_key(server.client_key),
            wait_timeout_s=30,
            log=lambda _: None,
        )

        def kill_connection(line: str) -> None:
            for pid in _sshd_ancestors(int(line), server.process.pid):
                if "sshd" in Path(f"/proc/{pid}/cmdline").read_text():
                    os.kill(pid, signal.SIGKILL)

        with remote, pytest.raises(RemoteError) as caught:
            remote.run(["sh", "-c", "echo $$; sleep 30"], on_output=kill_connection, timeout=20)
        assert caught.value.code == "CONNECTION_LOST"


# --------------------------------------------------------------------------- files


def test_write_and_read_file_over_sftp(remote: SSHRemote, tmp_path: Path) -> None:
    data = bytes(range(256)) * 100
    target = tmp_path / "dir with space" / "f$(x)"
    target.parent.mkdir()
    remote.write_file(str(target), data)
    assert target.read_bytes() == data
    assert target.stat().st_mode & 0o777 == 0o600
    remote.write_file(str(target), b"short", mode=0o640)
    assert target.read_bytes() == b"short"
    assert target.stat().st_mode & 0o777 == 0o640
    assert remote.read_file(str(target)) == b"short"
    with pytest.raises(RemoteError):
        remote.read_file(str(tmp_path / "missing"))


def test_files_without_sftp_subsystem(tmp_path: Path) -> None:
    with (
        run_sshd(tmp_path / "sshd", sftp=False) as server,
        SSHRemote.connect(
            server.runner(),
            read_private_key(server.client_key),
            wait_timeout_s=30,
            log=lambda _: None,
        ) as remote,
    ):
        target = tmp_path / "no sftp;here"
        data = b"\0\xffbinary\n" * 1000
        remote.write_file(str(target), data, mode=0o604)
        assert target.read_bytes() == data
        assert target.stat().st_mode & 0o777 == 0o604
        assert remote.read_file(str(target)) == data
        assert remote._sftp_missing  # the fallback really ran
        with pytest.raises(RemoteError):
            remote.read_file(str(tmp_path / "missing"))


def test_plugin_helper_connects_with_the_pinned_host_key(sshd_server: SshdServer) -> None:
    # api.connect_ssh: what a provider for long-lived hosts uses to prepare a host.
    runner = sshd_server.runner()
    with api.connect_ssh(runner, Path(sshd_server.client_key), wait_timeout_s=30) as remote:
        assert remote.run(["echo", "prepared"]).stdout == "prepared\n"
    impostor = generate_host_key().public_openssh  # a host presenting another key
    wrong = attrs.evolve(runner, host_public_key=impostor)
    with pytest.raises(RemoteError):
        api.connect_ssh(wrong, Path(sshd_server.client_key), wait_timeout_s=2)
