"""The orchestrator's JSON protocol: paths, bodies and error codes (docs/orchestrator.md).

Shared by the client (``client.py``) and the reference server (``server.py``). Plain
dict <-> ``lian_build.api`` conversions with strict checks: a body of the wrong shape
raises ``ValueError`` naming the field, which the client reports as
``ORCHESTRATOR_BAD_RESPONSE`` and the server answers with 400 ``INVALID_INPUT``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from lian_build import api

PROTOCOL_VERSION = "1"
DEFAULT_URL = "http://localhost:9011"
TOKEN_ENV = "LIAN_ORCHESTRATOR_TOKEN"  # noqa: S105 - a variable name

HEALTH = "/v1/health"
TIERS = "/v1/tiers"
RUNNERS = "/v1/runners"
METRICS = "/v1/metrics"


def runner_path(runner_id: str) -> str:
    return f"{RUNNERS}/{runner_id}"


def p95_path(workspace: str) -> str:
    return f"/v1/workspaces/{workspace}/p95"


# Error codes the server puts in {"error": {"code": ...}} (HTTP status in brackets).
SERVER_CODES = {
    "INVALID_INPUT": 400,  # a body or parameter of the wrong shape
    "UNAUTHORIZED": 401,  # no bearer token, or an unknown one
    "NOT_FOUND": 404,  # no such path or runner (of this caller)
    "PROVISION_FAILED": 502,  # the backend provider failed; details.code has its code
    "HISTORY_UNAVAILABLE": 503,  # the history store cannot be read right now
    "INTERNAL": 500,  # a bug in the server
}

# Stable codes of the client's errors (envelope ``code``; all exit 4, see docs/cli.md).
CLIENT_UNREACHABLE = "ORCHESTRATOR_UNREACHABLE"
CLIENT_TIMEOUT = "ORCHESTRATOR_TIMEOUT"
CLIENT_UNAUTHORIZED = "ORCHESTRATOR_UNAUTHORIZED"
CLIENT_BAD_RESPONSE = "ORCHESTRATOR_BAD_RESPONSE"
CLIENT_ERROR = "ORCHESTRATOR_ERROR"


def error_body(code: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = dict(details)
    return {"error": body}


# --------------------------------------------------------------------------- checks


def _get(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = data.get(name)
    if isinstance(value, bool) and kind is not bool and bool not in _tuple(kind):
        raise ValueError(f"{where}.{name} must be {_kind_name(kind)}")
    if not isinstance(value, kind):
        raise ValueError(f"{where}.{name} must be {_kind_name(kind)}")
    return value


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in _tuple(kind))


def _optional(data: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    return None if data.get(name) is None else _get(data, name, kind, where)


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a JSON object")
    return value


def _labels(value: Any, where: str) -> dict[str, str]:
    labels = _object(value, where)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise ValueError(f"{where} must map strings to strings")
    return dict(labels)


def _time(value: Any, where: str) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError(f"{where} must be an ISO 8601 time")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{where} must be an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


# --------------------------------------------------------------------------- tiers


def tier_to_json(tier: api.Tier) -> dict[str, Any]:
    return {
        "name": tier.name,
        "cpu": tier.cpu,
        "memory_gb": tier.memory_gb,
        "disk_gb": tier.disk_gb,
    }


def tier_from_json(value: Any, where: str = "tier") -> api.Tier:
    data = _object(value, where)
    return api.Tier(
        name=_get(data, "name", str, where),
        cpu=_get(data, "cpu", int, where),
        memory_gb=float(_get(data, "memory_gb", (int, float), where)),
        disk_gb=_optional(data, "disk_gb", int, where),
    )


# --------------------------------------------------------------------------- spawn


def spawn_to_json(request: api.SpawnRequest) -> dict[str, Any]:
    return {
        "session_id": request.session_id,
        "workspace": request.workspace,
        "tier": tier_to_json(request.tier),
        "labels": dict(request.labels),
        "authorized_key": request.authorized_key,
        "host_key": {
            "private_openssh": request.host_key.private_openssh,
            "public_openssh": request.host_key.public_openssh,
        },
        "runner_image": request.runner_image,
        "expires_at": request.expires_at.isoformat(),
    }


def spawn_from_json(value: Any) -> api.SpawnRequest:
    data = _object(value, "body")
    host_key = _object(data.get("host_key"), "host_key")
    return api.SpawnRequest(
        session_id=_get(data, "session_id", str, "body"),
        workspace=_get(data, "workspace", str, "body"),
        tier=tier_from_json(data.get("tier")),
        labels=_labels(data.get("labels"), "labels"),
        authorized_key=_get(data, "authorized_key", str, "body"),
        host_key=api.HostKey(
            private_openssh=_get(host_key, "private_openssh", str, "host_key"),
            public_openssh=_get(host_key, "public_openssh", str, "host_key"),
        ),
        runner_image=_optional(data, "runner_image", str, "body"),
        expires_at=_time(data.get("expires_at"), "expires_at"),
    )


def runner_to_json(runner: api.Runner) -> dict[str, Any]:
    return {
        "id": runner.id,
        "provider": runner.provider,
        "host": runner.host,
        "port": runner.port,
        "user": runner.user,
        "host_public_key": runner.host_public_key,
        "tier": tier_to_json(runner.tier),
        "labels": dict(runner.labels),
        "ready_command": list(runner.ready_command),
    }


def runner_from_json(value: Any) -> api.Runner:
    data = _object(value, "runner")
    ready = data.get("ready_command") or []
    if not isinstance(ready, list) or not all(isinstance(part, str) for part in ready):
        raise ValueError("runner.ready_command must be a list of strings")
    port = _get(data, "port", int, "runner")
    if not 0 < port < 65536:
        raise ValueError("runner.port must be a TCP port")
    return api.Runner(
        id=_get(data, "id", str, "runner"),
        provider=_get(data, "provider", str, "runner"),
        host=_get(data, "host", str, "runner"),
        port=port,
        user=_get(data, "user", str, "runner"),
        host_public_key=_get(data, "host_public_key", str, "runner"),
        tier=tier_from_json(data.get("tier"), "runner.tier"),
        labels=_labels(data.get("labels") or {}, "runner.labels"),
        ready_command=tuple(ready),
    )


def state_to_json(state: api.RunnerState) -> dict[str, Any]:
    return {
        "exists": state.exists,
        "running": state.running,
        "exit_code": state.exit_code,
        "oom_killed": state.oom_killed,
    }


def state_from_json(value: Any) -> api.RunnerState:
    data = _object(value, "state")
    return api.RunnerState(
        exists=_get(data, "exists", bool, "state"),
        running=_get(data, "running", bool, "state"),
        exit_code=_optional(data, "exit_code", int, "state"),
        oom_killed=_get(data, "oom_killed", bool, "state"),
    )


def info_to_json(info: api.RunnerInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "labels": dict(info.labels),
        "created_at": info.created_at.isoformat() if info.created_at else None,
    }


def info_from_json(value: Any) -> api.RunnerInfo:
    data = _object(value, "runners[]")
    created = data.get("created_at")
    return api.RunnerInfo(
        id=_get(data, "id", str, "runners[]"),
        labels=_labels(data.get("labels") or {}, "runners[].labels"),
        created_at=None if created is None else _time(created, "runners[].created_at"),
    )


# --------------------------------------------------------------------------- metrics


def metrics_to_json(metrics: api.BuildMetrics) -> dict[str, Any]:
    return {
        "workspace": metrics.workspace,
        "session_id": metrics.session_id,
        "provider": metrics.provider,
        "tier": metrics.tier,
        "cpu": metrics.cpu,
        "memory_gb": metrics.memory_gb,
        "peak_memory_bytes": metrics.peak_memory_bytes,
        "cpu_seconds": metrics.cpu_seconds,
        "duration_s": metrics.duration_s,
        "succeeded": metrics.succeeded,
        "oom": metrics.oom,
        "finished_at": metrics.finished_at.isoformat(),
    }


def metrics_from_json(value: Any) -> api.BuildMetrics:
    data = _object(value, "body")
    cpu_seconds = _optional(data, "cpu_seconds", (int, float), "body")  # type: ignore[arg-type]
    return api.BuildMetrics(
        workspace=_get(data, "workspace", str, "body"),
        session_id=_get(data, "session_id", str, "body"),
        provider=_get(data, "provider", str, "body"),
        tier=_get(data, "tier", str, "body"),
        cpu=_get(data, "cpu", int, "body"),
        memory_gb=_get(data, "memory_gb", int, "body"),
        peak_memory_bytes=_optional(data, "peak_memory_bytes", int, "body"),
        cpu_seconds=None if cpu_seconds is None else float(cpu_seconds),
        duration_s=float(_get(data, "duration_s", (int, float), "body")),
        succeeded=_get(data, "succeeded", bool, "body"),
        oom=_get(data, "oom", bool, "body"),
        finished_at=_time(data.get("finished_at"), "finished_at"),
    )


def size_to_json(size: api.RunnerSize | None) -> dict[str, Any] | None:
    if size is None:
        return None
    return {
        "cpu": size.cpu,
        "memory_gb": size.memory_gb,
        "time_budget_min": size.time_budget_min,
        "reason": size.reason,
    }


def size_from_json(value: Any, source: str) -> api.RunnerSize | None:
    if value is None:
        return None
    data = _object(value, "size")
    cpu = _get(data, "cpu", int, "size")
    memory = _get(data, "memory_gb", int, "size")
    minutes = _get(data, "time_budget_min", int, "size")
    if min(cpu, memory, minutes) < 1:
        raise ValueError("size fields must be positive")
    return api.RunnerSize(cpu, memory, minutes, source=source, reason=str(data.get("reason") or ""))
