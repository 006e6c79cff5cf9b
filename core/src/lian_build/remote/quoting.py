"""Turning argv lists into strings a POSIX shell reads back unchanged.

Every string that reaches a runner's shell goes through here: builders return argv
lists and the SSH layer joins them with ``join`` or ``with_env``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence

from lian_build.errors import InvalidInput

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

REDACTED = "***"


def join(argv: Sequence[str]) -> str:
    """One shell word per argv element, so the remote shell reproduces argv exactly."""
    if isinstance(argv, str):
        # A bare string would be quoted character by character: always a caller bug.
        raise TypeError("join() takes a sequence of arguments, not a string")
    return " ".join(shlex.quote(arg) for arg in argv)


def with_env(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """``env K=V ... argv`` with every word quoted; names must be valid variable names."""
    if not env:
        return join(argv)
    assignments = []
    for name, value in env.items():
        if not _ENV_NAME.fullmatch(name):
            raise InvalidInput(
                f"environment variable name {name!r} must match [A-Za-z_][A-Za-z0-9_]*",
                field="env",
            )
        assignments.append(f"{name}={value}")
    # `--` first: env must not read a value or argv[0] starting with "-" as an option.
    return join(["env", "--", *assignments, *argv])
