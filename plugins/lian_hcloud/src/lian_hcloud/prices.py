"""Server type prices: read from the API at spawn, cached for ``lian plan`` (offline).

Hetzner bills a server per started hour (capped at the monthly price), so a build of a
few minutes costs one hour of its type. Prices are net, in the currency the API names.
The plan never calls the API: it uses the last prices a build read (a JSON file in the
state directory) or, before any build, the bundled table below and says which.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger("lian.hcloud")

CACHE_FILE = "hcloud-prices.json"
BUNDLED_DATE = "2025-10-16"
CURRENCY = "EUR"
# Net hourly list prices (EUR) in the EU locations as announced on BUNDLED_DATE, rounded;
# a fallback only: the API's per-location prices replace it after the first build.
BUNDLED_HOURLY: dict[str, float] = {
    "cx23": 0.0048,
    "cx33": 0.0080,
    "cx43": 0.0144,
    "cx53": 0.0272,
    "cax11": 0.0061,
    "cax21": 0.0104,
    "cax31": 0.0200,
    "cax41": 0.0392,
    "ccx13": 0.0200,
    "ccx23": 0.0392,
    "ccx33": 0.0784,
    "ccx43": 0.1568,
    "ccx53": 0.3136,
    "ccx63": 0.4704,
}


def cache_path() -> Path:
    from lian_build.history import state_dir

    return state_dir() / CACHE_FILE


def hourly_from_server_type(server_type: Any, location: str) -> float | None:
    """``prices[].price_hourly.net`` for ``location`` from a (bound) server type."""
    for entry in getattr(server_type, "prices", None) or []:
        if isinstance(entry, dict) and entry.get("location") == location:
            try:
                return float(entry["price_hourly"]["net"])
            except (KeyError, TypeError, ValueError):
                return None
    return None


def remember(type_name: str, location: str, hourly: float, read_at: str) -> None:
    """Add one API price to the cache file (best effort: a plan can do without it)."""
    path = cache_path()
    try:
        data = _load(path)
        data.setdefault("prices", {}).setdefault(location, {})[type_name] = hourly
        data["read_at"] = read_at
        data["currency"] = CURRENCY
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".hcloud-prices.")
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, sort_keys=True)
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("could not cache hcloud prices: %s", exc)


def lookup(type_name: str, location: str) -> tuple[float, str] | None:
    """(net hourly price, source) without network: the cache, else the bundled table."""
    cached = _load(cache_path()).get("prices", {}).get(location, {}).get(type_name)
    if isinstance(cached, int | float):
        read_at = _load(cache_path()).get("read_at", "unknown time")
        return float(cached), f"cache ({read_at})"
    if type_name in BUNDLED_HOURLY:
        return BUNDLED_HOURLY[type_name], f"bundled table ({BUNDLED_DATE})"
    return None


def cost(hourly: float, seconds: float, source: str, location: str) -> dict[str, Any]:
    """What Hetzner bills for ``seconds`` of one server: every started hour."""
    hours = max(1, math.ceil(seconds / 3600))
    return {
        "currency": CURRENCY,
        "hourly_net": hourly,
        "billed_hours": hours,
        "amount_net": round(hourly * hours, 4),
        "location": location,
        "price_source": source,
    }


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
