"""The build context, checked before a runner is paid for.

Everything .dockerignore lets through must be readable: an unreadable directory or file
would otherwise fail the sync (or the ignore scan) once a runner exists. The error names
the paths, relative to the context.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from lian_build.errors import InvalidInput
from lian_build.remote import dockerignore

SHOWN = 5  # paths named in the message; details.unreadable lists up to LISTED
LISTED = 100


def unreadable_paths(context: Path, dockerfile: str = "Dockerfile") -> list[str]:
    """Paths to be sent that this process cannot read (directories end with ``/``).

    An unreadable directory stops the scan and raises ``InvalidInput`` itself.
    """
    scan = dockerignore.scan(context, dockerignore.load(context, dockerfile))
    bad: list[str] = []
    for rel in scan.included:
        try:
            info = os.lstat(context / rel)
        except OSError:
            bad.append(rel)  # vanished or unreachable between the scan and now
            continue
        if stat.S_ISREG(info.st_mode) and not os.access(context / rel, os.R_OK):
            bad.append(rel)
        elif stat.S_ISDIR(info.st_mode) and not os.access(context / rel, os.R_OK | os.X_OK):
            bad.append(rel + "/")
    return bad


def check_context(context: Path, dockerfile: str = "Dockerfile") -> None:
    """Raise ``INVALID_INPUT`` naming what in the context cannot be read."""
    if not os.access(context, os.R_OK | os.X_OK):
        raise InvalidInput(f"context: {context} is not readable", field="context")
    bad = unreadable_paths(context, dockerfile)
    if not bad:
        return
    shown = ", ".join(bad[:SHOWN]) + (f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else "")
    raise InvalidInput(
        f"context: {len(bad)} path(s) cannot be read: {shown}; fix their permissions or "
        "exclude them in .dockerignore",
        field="context",
        details={"unreadable": bad[:LISTED]},
    )
