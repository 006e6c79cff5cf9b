"""Helpers for the end-to-end tests: run the real CLI, find runners by label."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs


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
    return LianRun(proc.returncode, json.loads(lines[0]), proc.stderr, proc.stdout)


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
