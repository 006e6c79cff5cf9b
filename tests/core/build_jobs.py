"""Test support: a ``BuildJob`` with the defaults the builder command-line tests share."""

from __future__ import annotations

from lian_build import api

REG = "127.0.0.1:5000"


def job(**overrides: object) -> api.BuildJob:
    """A job building ``Dockerfile`` in /tmp/lian/ctx as ``REG/app:1``; fields overridable."""
    fields: dict[str, object] = {
        "context_dir": "/tmp/lian/ctx",
        "dockerfile": "Dockerfile",
        "tags": (f"{REG}/app:1",),
        "work_dir": "/tmp/lian/work",
    }
    fields.update(overrides)
    return api.BuildJob(**fields)  # type: ignore[arg-type]
