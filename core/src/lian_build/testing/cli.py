"""Run the real ``lian`` CLI in a child process, for plugin authors' tests and the core's.

``lian_envelope`` asserts the one-envelope rule (exactly one JSON line on stdout, no
traceback on stderr) and records each envelope in ``RECORDED``, so a test session can
check every envelope it saw against ``schemas/build_result.ncl``
(``validate_envelopes``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

# Variables a developer's shell may hold that would change what the CLI does.
SCRUBBED_PREFIXES = (
    "BUILDKIT_",
    "LIAN_",
    "NATS_",
    "HCLOUD_",
    "PROXMOX_",
    "GHCR_",
    "HARBOR_",
    "VAULT_",
    "ORCHESTRATOR_",
)

# Every envelope ``lian_envelope`` parsed in this process, in order.
RECORDED: list[dict[str, Any]] = []


@attrs.frozen
class CliRun:
    exit_code: int
    envelope: dict[str, Any]
    stdout: str
    stderr: str

    @property
    def error(self) -> dict[str, Any]:
        return dict(self.envelope.get("error") or {})


def lian_process(
    args: Sequence[str],
    state: Path,
    *,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    prefix: Sequence[str] = (),
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``lian ARGS`` with the caller's environment minus lian's own variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
    clean["LIAN_STATE_DIR"] = str(state)  # no build history from the developer's machine
    return subprocess.run(
        [*prefix, sys.executable, "-m", "lian_build.cli", *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


def parse_envelope(proc: subprocess.CompletedProcess[str]) -> CliRun:
    """Exactly one envelope line and no traceback; the envelope is recorded."""
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one envelope line, got {proc.stdout!r}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    envelope = json.loads(lines[0])
    RECORDED.append(json.loads(lines[0]))  # as printed: a test may change its own copy
    return CliRun(proc.returncode, envelope, proc.stdout, proc.stderr)


def lian_envelope(
    args: Sequence[str],
    state: Path,
    *,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    prefix: Sequence[str] = (),
    timeout: float = 60,
) -> CliRun:
    """Like ``lian_process``; asserts exactly one envelope line and no traceback."""
    return parse_envelope(
        lian_process(args, state, env=env, stdin=stdin, prefix=prefix, timeout=timeout)
    )


def validate_envelopes(envelopes: Sequence[dict[str, Any]]) -> None:
    """Check envelopes against the ``BuildResult`` contract with Nickel, in one
    evaluation; raises ``ContractViolation`` naming the first one that breaks it."""
    from lian_build import ncl

    if not envelopes:
        return
    with tempfile.TemporaryDirectory(prefix="lian-envelopes-") as folder:
        path = Path(folder) / "envelopes.json"
        path.write_text(json.dumps(list(envelopes)))
        source = (
            f'std.array.map (fun e => e | (import "build_result.ncl").BuildResult) '
            f"(import {json.dumps(str(path))})"
        )
        ncl.evaluate(source, timeout_s=60)
