"""Evaluate one Nickel program under a memory limit; run by ``lian_build.ncl``.

py-nickel cannot be interrupted in-process, so evaluation runs here, in a child
process the parent can kill. Request (stdin, JSON): ``{"source", "import_paths",
"memory_mb"}``. Reply (stdout, JSON): ``{"ok": true, "json": "<exported text>"}`` or
``{"ok": false, "kind": "nickel" | "memory", "report": "..."}``. A Rust allocation
failure aborts the process instead of replying; the parent reads that from the exit
status and stderr.
"""

from __future__ import annotations

import json
import resource
import sys
from typing import Any


def _limit_memory(memory_mb: int) -> None:
    limit = memory_mb * 1024 * 1024
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def evaluate(request: dict[str, Any]) -> dict[str, Any]:
    _limit_memory(int(request["memory_mb"]))
    import nickel  # after the limit: the library's own allocations count too

    try:
        exported = nickel.run(request["source"], import_paths=list(request["import_paths"]))
    except nickel.NickelException as exc:
        return {"ok": False, "kind": "nickel", "report": str(exc)}
    except MemoryError:
        return {"ok": False, "kind": "memory", "report": "out of memory"}
    return {"ok": True, "json": exported}


def main() -> int:
    request = json.loads(sys.stdin.read())
    reply = evaluate(request)
    sys.stdout.write(json.dumps(reply))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
