"""Parameter schemas for the PVE 8 API calls the imitation serves, written for these
tests from PVE's published API description (the API viewer's JSON schema for
``/cluster/nextid``, ``/cluster/resources``, ``/nodes/{node}/qemu/{vmid}/clone``,
``.../config``, ``.../status/{start,stop,current}``, ``/nodes/{node}/status``, ``DELETE .../{vmid}``,
``.../agent/{exec,exec-status,file-write,network-get-interfaces}`` and
``/nodes/{node}/tasks/{upid}/status``).

Only what PVE itself checks before running a call is modelled: types, required
parameters, enums, ranges, lengths and the formats that matter here. Like PVE, an
unknown parameter fails with "property is not defined in schema and the schema does
not allow additional properties", and every failure is HTTP 400 "Parameter
verification failed." with ``errors`` naming each parameter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

_DNS_NAME = re.compile(
    r"^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*$"
)
_TAG = re.compile(r"^[a-z0-9_][a-z0-9_+.-]*$", re.IGNORECASE)
_STORAGE_ID = re.compile(r"^[a-z][a-z0-9\-_.]*[a-z0-9]$", re.IGNORECASE)
# PVE's "urlencoded" format: only characters encodeURIComponent leaves alone, and %XX.
_URLENCODED = re.compile(r"^(?:[-a-zA-Z0-9_.!~*'()]|%[0-9a-fA-F]{2})*$")
_IPCONFIG_KEYS = {"ip", "gw", "ip6", "gw6"}
_BOOL = {"0", "1", "true", "false", "yes", "no", "on", "off"}
_NOT_IN_SCHEMA = (
    "property is not defined in schema and the schema does not allow additional properties"
)


@attrs.frozen
class P:
    """One parameter: PVE type (integer, boolean, string, array), checks, whether required."""

    type: str = "string"
    required: bool = False
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None
    enum: tuple[str, ...] = ()
    format: str | None = None  # dns-name, pve-tag-list, urlencoded, pve-storage-id, ...


VMID = P("integer", required=True, minimum=100, maximum=999_999_999)
NODE = P(required=True, format="pve-node")

SCHEMAS: dict[tuple[str, str], dict[str, P]] = {
    ("GET", "/cluster/nextid"): {"vmid": P("integer", minimum=100, maximum=999_999_999)},
    ("GET", "/cluster/resources"): {"type": P(enum=("vm", "storage", "node", "sdn"))},
    ("GET", "/nodes/{node}/tasks/{upid}/status"): {"node": NODE, "upid": P(required=True)},
    ("GET", "/nodes/{node}/status"): {"node": NODE},
    ("POST", "/nodes/{node}/qemu/{vmid}/clone"): {
        "node": NODE,
        "vmid": VMID,
        "newid": VMID,
        "name": P(format="dns-name"),
        "description": P(max_length=8192),
        "full": P("boolean"),
        "storage": P(format="pve-storage-id"),
        "target": P(format="pve-node"),
        "pool": P(),
        "snapname": P(),
        "format": P(enum=("raw", "qcow2", "vmdk")),
        "bwlimit": P("integer", minimum=0),
    },
    ("GET", "/nodes/{node}/qemu/{vmid}/config"): {
        "node": NODE,
        "vmid": VMID,
        "current": P("boolean"),
        "snapshot": P(),
    },
    ("PUT", "/nodes/{node}/qemu/{vmid}/config"): {
        "node": NODE,
        "vmid": VMID,
        "cores": P("integer", minimum=1, maximum=8192),
        "sockets": P("integer", minimum=1, maximum=16),
        "memory": P("integer", minimum=16),  # PVE 8.1: "[current=]<integer>"; integer accepted
        "agent": P(format="pve-qm-agent"),
        "ciuser": P(),
        "cipassword": P(),
        "ciupgrade": P("boolean"),  # PVE 8.1 and later; default 1
        "citype": P(enum=("configdrive2", "nocloud", "opennebula")),
        "sshkeys": P(format="urlencoded"),
        "ipconfig0": P(format="pve-qm-ipconfig"),
        "nameserver": P(),
        "searchdomain": P(),
        "tags": P(format="pve-tag-list"),
        "description": P(max_length=8192),
        "name": P(format="dns-name"),
        "net0": P(),
        "onboot": P("boolean"),
        "delete": P(),
        "digest": P(max_length=64),
        "skiplock": P("boolean"),
    },
    ("GET", "/nodes/{node}/qemu/{vmid}/status/current"): {"node": NODE, "vmid": VMID},
    ("POST", "/nodes/{node}/qemu/{vmid}/status/start"): {
        "node": NODE,
        "vmid": VMID,
        "skiplock": P("boolean"),
        "timeout": P("integer", minimum=0, maximum=86400),
        "machine": P(),
    },
    ("POST", "/nodes/{node}/qemu/{vmid}/status/stop"): {
        "node": NODE,
        "vmid": VMID,
        "skiplock": P("boolean"),
        "timeout": P("integer", minimum=0),
        "keepActive": P("boolean"),
        "overrule-shutdown": P("boolean"),
    },
    ("DELETE", "/nodes/{node}/qemu/{vmid}"): {
        "node": NODE,
        "vmid": VMID,
        "purge": P("boolean"),
        "destroy-unreferenced-disks": P("boolean"),
        "skiplock": P("boolean"),
    },
    ("GET", "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces"): {
        "node": NODE,
        "vmid": VMID,
    },
    ("POST", "/nodes/{node}/qemu/{vmid}/agent/exec"): {
        "node": NODE,
        "vmid": VMID,
        "command": P("array", required=True),
        "input-data": P(max_length=65536),
    },
    ("GET", "/nodes/{node}/qemu/{vmid}/agent/exec-status"): {
        "node": NODE,
        "vmid": VMID,
        "pid": P("integer", required=True),
    },
    ("POST", "/nodes/{node}/qemu/{vmid}/agent/file-write"): {
        "node": NODE,
        "vmid": VMID,
        "file": P(required=True),
        "content": P(required=True, max_length=61440),
        "encode": P("boolean"),
    },
}


def validate(method: str, template: str, params: Mapping[str, list[str]]) -> dict[str, str]:
    """Errors per parameter (empty when the call is valid), as PVE words them."""
    schema = SCHEMAS[(method, template)]
    errors: dict[str, str] = {}
    for name, values in params.items():
        spec = schema.get(name)
        if spec is None:
            errors[name] = _NOT_IN_SCHEMA
            continue
        if spec.type != "array" and len(values) > 1:
            errors[name] = "property is not an array"  # repeated key for a scalar
            continue
        for value in values:
            problem = _check(spec, value)
            if problem:
                errors[name] = problem
                break
    for name, spec in schema.items():
        if spec.required and name not in params:
            errors[name] = "property is missing and it is not optional"
    return errors


def _check(spec: P, value: str) -> str | None:
    if spec.type == "integer":
        if not re.fullmatch(r"-?\d+", value):
            return f"type check ('integer') failed - got '{value}'"
        number = int(value)
        if spec.minimum is not None and number < spec.minimum:
            return f"value must have a minimum value of {spec.minimum}"
        if spec.maximum is not None and number > spec.maximum:
            return f"value must have a maximum value of {spec.maximum}"
    elif spec.type == "boolean" and value.lower() not in _BOOL:
        return f"type check ('boolean') failed - got '{value}'"
    if spec.enum and value not in spec.enum:
        return f"value '{value}' does not have a value in the enumeration '{', '.join(spec.enum)}'"
    if spec.max_length is not None and len(value) > spec.max_length:
        return f"value may only be {spec.max_length} characters long"
    return _format(spec.format, value) if spec.format else None


def _format(name: str, value: str) -> str | None:
    ok: bool
    if name == "dns-name":
        ok = bool(_DNS_NAME.match(value))
        return None if ok else "value does not look like a valid DNS name"
    if name == "pve-tag-list":
        ok = all(_TAG.match(t) for t in re.split(r"[;, ]+", value) if t)
    elif name == "urlencoded":
        ok = bool(_URLENCODED.match(value))
        return None if ok else f"invalid urlencoded string: {value[:40]}"
    elif name in ("pve-storage-id", "pve-node"):
        ok = bool(_STORAGE_ID.match(value)) or (name == "pve-node" and _DNS_NAME.match(value))
    elif name == "pve-qm-agent":
        first = value.split(",")[0].removeprefix("enabled=")
        ok = first.lower() in _BOOL
    elif name == "pve-qm-ipconfig":
        pairs = [p.split("=", 1) for p in value.split(",")]
        ok = all(len(p) == 2 and p[0] in _IPCONFIG_KEYS for p in pairs)
    else:
        raise AssertionError(f"unknown format {name}")
    return None if ok else f"invalid format - value does not match format {name}"


def route(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """Match a concrete path against the schema templates: (template, path parameters)."""
    parts = path.strip("/").split("/")
    for m, template in SCHEMAS:
        if m != method:
            continue
        names = template.strip("/").split("/")
        if len(names) != len(parts):
            continue
        found: dict[str, Any] = {}
        for name, part in zip(names, parts, strict=True):
            if name.startswith("{"):
                found[name[1:-1]] = part
            elif name != part:
                break
        else:
            return template, found
    return None
