"""Find runners that escaped cleanup (a killed lian process) by their labels, destroy them."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import attrs

from lian_build import api

log = logging.getLogger("lian.reap")

MANAGED = {"lian.managed": "true"}


@attrs.frozen
class ReapReport:
    found: int
    destroyed: tuple[str, ...]
    kept: tuple[str, ...]  # not expired yet (a build may still be running)
    failed: tuple[str, ...]


def expired(info: api.RunnerInfo, now: dt.datetime) -> bool:
    raw = info.labels.get("lian.expires-at")
    try:
        return raw is not None and int(raw) <= now.timestamp()
    except ValueError:
        return True  # a label we did not write: treat as expired rather than leak


def reap_expired(
    compute: api.ComputeProvider,
    *,
    now: dt.datetime | None = None,
    include_unexpired: bool = False,
    workspace: str | None = None,
    log: Callable[[str], None] = log.info,
) -> ReapReport:
    """Destroy lian runners past their expiry (or all of them with ``include_unexpired``)."""
    now = now or dt.datetime.now(dt.UTC)
    selector = dict(MANAGED)
    if workspace:
        selector["lian.workspace"] = workspace[:63]  # labels hold at most 63 characters
    found = compute.list_runners(selector)
    destroyed: list[str] = []
    kept: list[str] = []
    failed: list[str] = []
    for info in found:
        if not include_unexpired and not expired(info, now):
            kept.append(info.id)
            continue
        try:
            compute.destroy(info.id)
            destroyed.append(info.id)
            log(f"reaped runner {info.id} (session {info.labels.get('lian.session', '?')})")
        except Exception as exc:
            failed.append(info.id)
            log(f"could not reap runner {info.id}: {exc}")
    return ReapReport(len(found), tuple(destroyed), tuple(kept), tuple(failed))
