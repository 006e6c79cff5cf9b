"""Context sync to a real sshd: rsync (incremental, mirrored, filtered) and the tar path."""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.require import require_binary
from fixtures.sshd import SshdServer
from lian_build.errors import InvalidInput
from lian_build.remote.ssh import SSHRemote, read_private_key
from lian_build.remote.sync import human_bytes, sync_context

LOG_LINE = re.compile(
    r"synced [\d,]+ files \([\d.]+ [kMG]?B sent of [\d.]+ [kMG]?B\) via \w+ in \d+\.\ds"
)


@pytest.fixture
def remote(sshd_server: SshdServer) -> Iterator[SSHRemote]:
    require_binary("rsync")
    key = read_private_key(sshd_server.client_key)
    with SSHRemote.connect(sshd_server.runner(), key, wait_timeout_s=30, log=lambda _: None) as r:
        yield r


def make_context(root: Path, files: int = 200) -> None:
    rng = random.Random(7)
    for i in range(files):
        path = root / f"pkg{i % 10}" / f"module {i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(2048))
    (root / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (root / "node_modules" / "dep").mkdir(parents=True)
    (root / "node_modules" / "dep" / "index.js").write_text("big\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "logs").mkdir()
    (root / "logs" / "debug.log").write_text("noise\n")
    (root / "logs" / "keep.log").write_text("wanted\n")
    (root / "empty dir").mkdir()
    (root / "link").symlink_to("Dockerfile")
    (root / "we$(ird) 'name'").write_text("odd\n")
    (root / ".dockerignore").write_text("node_modules/\n.git\nlogs\n!logs/keep.log\n")


def tree(root: Path) -> dict[str, str]:
    """relative path -> what it is (file content, link target, or "dir")."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = path.read_bytes().hex()
    return out


def expected_tree(context: Path) -> dict[str, str]:
    full = tree(context)
    dropped = ("node_modules", ".git", "logs/debug.log")
    return {k: v for k, v in full.items() if not k.startswith(dropped)}


def test_rsync_first_and_incremental_sync(remote: SSHRemote, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    make_context(context)
    target = tmp_path / "remote ctx;$(touch pwned)"
    logs: list[str] = []

    first = sync_context(context, remote, str(target), log=logs.append)
    assert first.method == "rsync"
    assert tree(target) == expected_tree(context)
    assert first.files == first.files_total == 200 + 4  # Dockerfile, .dockerignore, keep.log, odd
    assert first.total_bytes > 200 * 2048
    assert first.bytes_sent > 200 * 2048
    assert not (tmp_path / "pwned").exists()

    (context / "pkg3" / "module 3.py").write_bytes(b"changed")
    second = sync_context(context, remote, str(target), log=logs.append)
    assert second.files == 1
    assert second.bytes_sent < first.bytes_sent / 5
    assert tree(target) == expected_tree(context)
    assert len(logs) == 2 and all(LOG_LINE.fullmatch(line) for line in logs), logs


def test_rsync_works_with_a_group_readable_key(sshd_server: SshdServer, tmp_path: Path) -> None:
    # ssh refuses such a key file, paramiko does not: the sync must not depend on it.
    loose = tmp_path / "loose_key"
    loose.write_bytes(sshd_server.client_key.read_bytes())
    loose.chmod(0o644)
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    runner = sshd_server.runner()
    with SSHRemote.connect(runner, read_private_key(loose), log=lambda _: None) as remote:
        stats = sync_context(context, remote, str(tmp_path / "out"), log=lambda _: None)
    assert stats.method == "rsync"
    assert (tmp_path / "out" / "Dockerfile").exists()


def test_rsync_mirrors_deletions_and_newly_ignored_files(remote: SSHRemote, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    make_context(context, files=20)
    target = tmp_path / "remote"
    sync_context(context, remote, str(target), log=lambda _: None)
    (context / "pkg1" / "module 1.py").unlink()
    (context / ".dockerignore").write_text("node_modules/\n.git\nlogs\npkg2\n")
    (target / "stray.txt").write_text("left over from another build")
    sync_context(context, remote, str(target), log=lambda _: None)
    remote_tree = tree(target)
    assert "pkg1/module 1.py" not in remote_tree
    assert "stray.txt" not in remote_tree
    assert not any(k.startswith(("pkg2", "logs")) for k in remote_tree)
    assert "pkg3/module 3.py" in remote_tree


def test_tar_fallback_gives_the_same_tree(remote: SSHRemote, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    make_context(context, files=30)
    by_rsync, by_tar = tmp_path / "rsync", tmp_path / "tar $x"
    sync_context(context, remote, str(by_rsync), log=lambda _: None, method="rsync")
    (by_tar).mkdir()
    (by_tar / "stale").write_text("removed by the mirror")
    logs: list[str] = []
    stats = sync_context(context, remote, str(by_tar), log=logs.append, method="tar")
    assert stats.method == "tar"
    assert stats.files == stats.files_total == 34
    assert stats.bytes_sent >= stats.total_bytes  # tar headers on top of the data
    assert tree(by_tar) == tree(by_rsync) == expected_tree(context)
    assert "via tar" in logs[0]


def test_auto_uses_tar_without_a_local_rsync(
    remote: SSHRemote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    monkeypatch.setattr("lian_build.remote.sync.shutil.which", lambda name: None)
    stats = sync_context(context, remote, str(tmp_path / "out"), log=lambda _: None)
    assert stats.method == "tar"
    assert (tmp_path / "out" / "Dockerfile").read_text() == "FROM scratch\n"


@pytest.mark.parametrize("remote_dir", ["/", "relative/dir", "//", "/tmp/../"])
def test_remote_dir_must_be_absolute_and_not_root(
    remote: SSHRemote, tmp_path: Path, remote_dir: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        sync_context(tmp_path, remote, remote_dir, log=lambda _: None)
    assert caught.value.field == "remote_dir"


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (5, 1234, 12_300_000, 4_200_000_000)] == [
        "5 B",
        "1.2 kB",
        "12.3 MB",
        "4.2 GB",
    ]
