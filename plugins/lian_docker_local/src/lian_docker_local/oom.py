"""Reading the runner's memory cgroup from the engine side (inspect after a failure)."""

from __future__ import annotations

import logging
import re
from typing import Any

from lian_docker_local.container import CGROUP_LINK

log = logging.getLogger("lian.compute.docker_local")

# cgroup v1 keeps the counter in memory.oom_control, v2 in memory.events.
_COUNTER_FILES = (f"{CGROUP_LINK}/memory.oom_control", f"{CGROUP_LINK}/memory.events")
_OOM_KILL = re.compile(rb"^oom_kill (\d+)$", re.MULTILINE)


def parse_oom_kills(text: bytes) -> int:
    """The largest ``oom_kill N`` in cgroup counter files (0 when there is none)."""
    return max((int(n) for n in _OOM_KILL.findall(text)), default=0)


def read_oom_kills(container: Any) -> int:
    """How many processes the kernel OOM-killed in a running container's cgroup."""
    import docker

    try:
        # cat prints the file that exists and complains about the other: both fine.
        result = container.exec_run(["cat", *_COUNTER_FILES], stdout=True, stderr=False)
    except docker.errors.APIError as exc:
        log.debug("could not read the runner's OOM counter: %s", exc)
        return 0
    return parse_oom_kills(result.output or b"")
