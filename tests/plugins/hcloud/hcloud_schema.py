"""Request schemas for the Hetzner Cloud API calls lian-build makes, written by hand from
Hetzner's published OpenAPI description (docs.hetzner.cloud, "Servers", "SSH Keys",
"Server Actions: Create Image", "Images"), not from what the plugin happens to send.

A small subset of JSON Schema (type, required, properties, additionalProperties,
items, enum, maxLength, pattern) and a validator that reports the first problem as the
API does: ``invalid_input`` with ``details.fields[].name``.
"""

from __future__ import annotations

import re
from typing import Any

_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_ID_OR_NAME = {"type": ["string", "integer"]}

CREATE_SERVER: dict[str, Any] = {
    "type": "object",
    "required": ["name", "server_type", "image"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 63},
        "server_type": _ID_OR_NAME,
        "image": _ID_OR_NAME,
        "location": {"type": "string"},
        "datacenter": {"type": "string"},
        "start_after_create": {"type": "boolean"},
        "ssh_keys": {"type": "array", "items": _ID_OR_NAME},
        "volumes": {"type": "array", "items": {"type": "integer"}},
        "networks": {"type": "array", "items": {"type": "integer"}},
        "firewalls": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["firewall"],
                "additionalProperties": False,
                "properties": {"firewall": {"type": "integer"}},
            },
        },
        "user_data": {"type": "string"},
        "labels": _LABELS,
        "automount": {"type": "boolean"},
        "placement_group": {"type": "integer"},
        "public_net": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enable_ipv4": {"type": "boolean"},
                "enable_ipv6": {"type": "boolean"},
                "ipv4": {"type": ["integer", "null"]},
                "ipv6": {"type": ["integer", "null"]},
            },
        },
    },
}

CREATE_SSH_KEY: dict[str, Any] = {
    "type": "object",
    "required": ["name", "public_key"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 128},
        "public_key": {"type": "string"},
        "labels": _LABELS,
    },
}

CREATE_IMAGE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "description": {"type": "string"},
        "type": {"type": "string", "enum": ["snapshot", "backup"]},
        "labels": _LABELS,
    },
}

_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "boolean": bool,
    "null": type(None),
}


def problems(schema: dict[str, Any], value: Any, path: str = "") -> list[tuple[str, str]]:
    """(field, message) for every rule ``value`` breaks; empty when it conforms."""
    found: list[tuple[str, str]] = []
    kinds = schema.get("type")
    if kinds is not None:
        allowed = [kinds] if isinstance(kinds, str) else kinds
        ok = any(
            isinstance(value, _TYPES[k]) and not (k == "integer" and isinstance(value, bool))
            for k in allowed
        )
        if not ok:
            return [(path or "body", f"must be {' or '.join(allowed)}")]
    if "enum" in schema and value not in schema["enum"]:
        found.append((path, f"must be one of {schema['enum']}"))
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            found.append((path, f"is longer than {schema['maxLength']}"))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            found.append((path, "has an invalid format"))
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                found.append((_join(path, key), "is required"))
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                found += problems(properties[key], item, _join(path, key))
            elif extra is False:
                found.append((_join(path, key), "is not a known field"))
            elif isinstance(extra, dict):
                found += problems(extra, item, _join(path, key))
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += problems(schema["items"], item, f"{path}[{index}]")
    return found


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
