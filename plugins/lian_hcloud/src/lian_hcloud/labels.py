"""Hetzner Cloud label rules, server names and label selectors."""

from __future__ import annotations

import re
from collections.abc import Mapping

from lian_build.errors import InvalidInput

_NAME_PART = r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?"
_KEY = re.compile(rf"^([a-z0-9]([a-z0-9.-]{{0,251}}[a-z0-9])?/)?{_NAME_PART}$")
_VALUE = re.compile(rf"^({_NAME_PART})?$")
_RESERVED_PREFIX = "hetzner.cloud/"
_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Labels as the API accepts them, or InvalidInput naming the first broken one.

    Keys: an optional DNS prefix and ``/``, then at most 63 characters that start and
    end alphanumeric with ``-_.`` inside. Values: empty or the same shape.
    """
    checked: dict[str, str] = {}
    for key, value in labels.items():
        if not _KEY.match(key) or key.startswith(_RESERVED_PREFIX):
            raise InvalidInput(
                f"label key {key!r} breaks Hetzner's rules (at most 63 characters, "
                "alphanumeric at both ends, '-_.' inside; 'hetzner.cloud/' is reserved)",
                field="labels",
            )
        if not _VALUE.match(value):
            raise InvalidInput(
                f"label {key}={value!r}: values are empty or at most 63 characters, "
                "alphanumeric at both ends, '-_.' inside",
                field="labels",
            )
        checked[key] = value
    return checked


def label_selector(labels: Mapping[str, str]) -> str | None:
    """``k=v,k2=v2`` (comma means AND) for exact matches on every label."""
    checked = check_labels(labels)
    return ",".join(f"{k}={v}" for k, v in sorted(checked.items())) or None


def server_name(session_id: str) -> str:
    """``lian-<session_id>`` as a valid hostname (RFC 1123 label, at most 63 characters)."""
    name = "lian-" + re.sub(r"[^a-z0-9-]+", "-", session_id.lower())
    name = name[:63].rstrip("-")
    if not _HOSTNAME.match(name) or name == "lian":
        raise InvalidInput(
            f"session id {session_id!r} does not make a valid server name", field="session_id"
        )
    return name
