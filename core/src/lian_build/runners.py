"""``lian runners``: every live runner lian started, on the providers asked about.

Runners are found as ``lian reap`` finds them, by the ``lian.managed=true`` label, and
shown with what their labels say: workspace, session, tier, expiry. Nothing is
destroyed here; ``lian reap`` does that.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from lian_build import api
from lian_build.errors import LianError
from lian_build.reap import MANAGED

log = logging.getLogger("lian.runners")


def describe(provider: str, info: api.RunnerInfo, now: dt.datetime) -> dict[str, Any]:
    """One runner as the command prints it (JSON-ready)."""
    labels = info.labels
    expires_at: dt.datetime | None = None
    raw = labels.get("lian.expires-at")
    if raw is not None and raw.isdigit():
        expires_at = dt.datetime.fromtimestamp(int(raw), dt.UTC)
    created = info.created_at
    price = info.hourly_price  # set by a provider that knows prices
    return {
        "id": info.id,
        "provider": provider,
        "workspace": labels.get("lian.workspace"),
        "session": labels.get("lian.session"),
        "tier": labels.get("lian.tier"),
        "created_at": created.isoformat() if created else None,
        "age_s": round((now - created).total_seconds()) if created else None,
        "expires_at": expires_at.isoformat() if expires_at else None,
        "expired": expires_at is not None and expires_at <= now,
        "hourly_price": price,
    }


def list_all(
    providers: Mapping[str, api.ComputeProvider | LianError],
    *,
    workspace: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Runners per provider; a provider that cannot be configured or asked is reported
    under ``unavailable`` with its reason, and the others are still listed."""
    now = now or dt.datetime.now(dt.UTC)
    selector = dict(MANAGED)
    if workspace:
        selector["lian.workspace"] = workspace[:63]
    runners: list[dict[str, Any]] = []
    unavailable: list[dict[str, str]] = []
    for name, provider in providers.items():
        if isinstance(provider, LianError):
            unavailable.append(
                {"provider": name, "code": provider.code, "reason": provider.message}
            )
            continue
        try:
            found = provider.list_runners(selector)
        except LianError as exc:
            unavailable.append({"provider": name, "code": exc.code, "reason": exc.message})
            continue
        runners.extend(describe(name, info, now) for info in found)
    runners.sort(key=lambda r: (r["provider"], r["created_at"] or "", r["id"]))
    return {"runners": runners, "providers": sorted(providers), "unavailable": unavailable}


def table(result: Mapping[str, Any]) -> Sequence[str]:
    """The human-readable listing (``lian runners`` without ``--json``)."""
    lines = [
        f"{'PROVIDER':<13} {'ID':<14} {'WORKSPACE':<16} {'SESSION':<15} {'TIER':<9} "
        f"{'AGE':>7}  {'EXPIRES':<20} {'PRICE/H':>7}"
    ]
    for r in result["runners"]:
        age = _age(r["age_s"])
        expires = (r["expires_at"] or "-")[:19] + (" (expired)" if r["expired"] else "")
        price = f"{r['hourly_price']:.4f}" if r["hourly_price"] is not None else "-"
        lines.append(
            f"{r['provider']:<13} {r['id'][:14]:<14} {r['workspace'] or '-':<16} "
            f"{r['session'] or '-':<15} {r['tier'] or '-':<9} {age:>7}  {expires:<20} {price:>7}"
        )
    for u in result["unavailable"]:
        lines.append(f"# {u['provider']}: not listed: {u['reason']}")
    return lines


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"
