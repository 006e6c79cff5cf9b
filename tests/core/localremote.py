"""Test support: ``LocalRemote`` implements ``lian_build.api.Remote`` on this machine.

It runs argv with subprocess (no shell), so builders can be exercised for real
without an SSH runner. Both output streams are handed to ``on_output`` line by line
as they arrive, like the SSH remote does.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import attrs

from lian_build.api import CommandResult
from lian_build.errors import RemoteError


@attrs.define
class LocalRemote:
    """A "runner" that is this machine. ``extra_path`` is prepended to PATH;
    ``search_path`` replaces PATH altogether (a runner that lacks a tool).

    ``through_shell=True`` runs each command as ``sh -c <quoted line>`` built by the
    core's quoting, the way a command reaches a runner over SSH.
    """

    extra_path: Sequence[str] = ()
    through_shell: bool = False
    search_path: str | None = None
    calls: list[tuple[list[str], dict[str, str]]] = attrs.field(factory=list)

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        on_output: Callable[[str], None] | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        argv = list(argv)
        self.calls.append((argv, dict(env or {})))
        full_env = dict(os.environ)
        if self.search_path is not None:
            full_env["PATH"] = self.search_path
        if self.extra_path:
            full_env["PATH"] = os.pathsep.join([*self.extra_path, full_env.get("PATH", "")])
        command = argv
        if self.through_shell:
            from lian_build.remote.quoting import with_env

            command = ["sh", "-c", with_env(argv, env or {})]
        else:
            full_env.update(env or {})
        try:
            proc = subprocess.Popen(
                command,
                env=full_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                errors="replace",
            )
        except FileNotFoundError:
            # What a shell on a runner answers for a missing command.
            return CommandResult(127, "", f"sh: 1: {argv[0]}: not found\n")
        lock = threading.Lock()
        captured: dict[str, list[str]] = {"stdout": [], "stderr": []}

        def pump(stream: IO[str], key: str) -> None:
            for line in stream:
                captured[key].append(line)
                if on_output is not None:
                    with lock:
                        on_output(line.rstrip("\n"))

        assert proc.stdout is not None and proc.stderr is not None
        pumps = [
            threading.Thread(target=pump, args=(proc.stdout, "stdout")),
            threading.Thread(target=pump, args=(proc.stderr, "stderr")),
        ]
        for thread in pumps:
            thread.start()
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.wait()
            raise RemoteError(f"{argv[0]} did not finish within {timeout}s") from exc
        finally:
            for thread in pumps:
                thread.join()
        return CommandResult(code, "".join(captured["stdout"]), "".join(captured["stderr"]))

    def read_file(self, path: str) -> bytes:
        return Path(path).read_bytes()

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(mode)
