"""Records every finished build attempt in the local history store (feeds sizing)."""

from __future__ import annotations

import logging

from lian_build import hookimpl
from lian_build.api import BuildMetrics
from lian_build.history import default_store

log = logging.getLogger("lian.history")


@hookimpl
def lian_record_metrics(metrics: BuildMetrics) -> None:
    # Losing one record only weakens future sizing: never fail a build over it.
    store = default_store()
    try:
        store.append(metrics)
    except OSError as exc:
        log.warning("history: could not record the build in %s: %s", store.path, exc)
