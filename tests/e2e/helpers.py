"""Helpers for the end-to-end tests: run the real CLI, find runners by label."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs

from lian_build.testing.cli import RECORDED


@attrs.frozen
class LianRun:
    returncode: int
    envelope: dict[str, Any]
    stderr: str
    stdout: str


def lian(args: list[str], *, env: dict[str, str] | None = None, timeout: float = 600) -> LianRun:
    proc = subprocess.run(
        [sys.executable, "-m", "lian_build.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, (
        f"expected exactly one envelope line on stdout, got {proc.stdout!r}\n{proc.stderr}"
    )
    envelope = json.loads(lines[0])
    # As printed (a test may change its own copy); checked against the contract at the
    # end of the session.
    RECORDED.append(json.loads(lines[0]))
    return LianRun(proc.returncode, envelope, proc.stderr, proc.stdout)


@attrs.frozen
class E2E:
    registry: Any
    runner_image: str
    ssh_key: Path
    base_image: str
    docker: Any

    def flags(
        self, workspace: str, context: Path, image: str, *extra: str, builder: str = "buildah"
    ) -> list[str]:
        return [
            "build",
            "--workspace",
            workspace,
            "--context",
            str(context),
            "--image",
            image,
            "--ssh-key",
            str(self.ssh_key),
            "--provider",
            "docker-local",
            "--runner-image",
            self.runner_image,
            "--registry",
            "zot",
            "--registry-opt",
            f"url=http://{self.registry.host}",
            "--builder",
            builder,
            *extra,
        ]

    def runners(self, **labels: str) -> list[Any]:
        filters = {"label": ["lian.managed=true", *(f"lian.{k}={v}" for k, v in labels.items())]}
        return self.docker.containers.list(all=True, filters=filters)


@attrs.define
class BackgroundBuild:
    """``lian build`` running in a child process, its stderr read up to a marker."""

    proc: subprocess.Popen[str]
    seen: list[str] = attrs.field(factory=list)

    @classmethod
    def start(cls, args: list[str]) -> BackgroundBuild:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lian_build.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return cls(proc)

    def read_until(self, marker: str, timeout: float = 240) -> None:
        """Consume stderr lines until one holds ``marker`` (or the stream ends)."""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        for line in self.proc.stderr:
            self.seen.append(line)
            if marker in line or time.monotonic() > deadline:
                return

    def finish(self, timeout: float = 120) -> tuple[str, str]:
        """Wait for exit; (stdout, all stderr read so far and after)."""
        stdout, rest = self.proc.communicate(timeout=timeout)
        return stdout, "".join(self.seen) + rest
