"""``lian integrate``: the federated probe.

Reads a SecretDeliveryContext JSON object on stdin and answers whether lian-build can
serve it: plugins present and settings valid, every secret reference resolvable (values
are never echoed), the registry reachable with those credentials. One result line on
stdout; a completion event to NATS when a URL is given.

Context shape (all but ``workspace`` optional)::

    {"workspace": "web", "request_id": "r-1",
     "secrets": [{"id": "npm", "ref": "env:NPM_TOKEN"}],
     "compute": {"provider": "docker-local", ...settings},
     "registry": {"provider": "zot", "url": "http://127.0.0.1:5000", ...settings}}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from lian_build import validate
from lian_build.errors import InvalidInput, LianError, ProbeFailed
from lian_build.plugins import PluginHost
from lian_build.secrets import SecretStore


def parse_context(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"stdin is not a JSON object: {exc.msg} at line {exc.lineno} column {exc.colno}",
            field="context",
        ) from None
    if not isinstance(data, dict):
        raise InvalidInput(
            "stdin must hold one JSON object (a SecretDeliveryContext)", field="context"
        )
    if not isinstance(data.get("workspace"), str):
        raise InvalidInput("context.workspace (a string) is required", field="workspace")
    validate.path_component(data["workspace"], field="workspace")
    for key in ("secrets",):
        if key in data and not isinstance(data[key], list):
            raise InvalidInput(f"context.{key} must be a list", field=key)
    for key in ("compute", "registry"):
        if key in data and not (
            isinstance(data[key], dict) and isinstance(data[key].get("provider"), str)
        ):
            raise InvalidInput(f"context.{key} must be an object with a provider name", field=key)
    return data


def _check(checks: list[dict[str, Any]], name: str, fn: Callable[[], str]) -> None:
    try:
        message = fn()
        checks.append({"name": name, "ok": True, "message": message})
    except LianError as exc:
        checks.append({"name": name, "ok": False, "code": exc.code, "message": exc.message})


def probe(context: Mapping[str, Any], host: PluginHost, store: SecretStore) -> dict[str, Any]:
    checks: list[dict[str, Any]] = []
    broken = [r.name for r in host.records if r.status == "error"]
    checks.append(
        {
            "name": "plugins",
            "ok": not broken,
            "message": f"broken: {', '.join(broken)}" if broken else "all plugins loaded",
        }
    )
    for item in context.get("secrets", []):
        sid = str(item.get("id", "?")) if isinstance(item, dict) else "?"
        ref = item.get("ref") if isinstance(item, dict) else None

        def resolve(ref: Any = ref) -> str:
            if not isinstance(ref, str):
                raise InvalidInput("each secret needs a string ref", field="secrets")
            store(ref)
            return "resolvable"

        _check(checks, f"secret:{sid}", resolve)
    if "compute" in context:
        spec = dict(context["compute"])
        name = spec.pop("provider")

        def compute() -> str:
            provider = host.compute_provider(name, spec, store)
            tiers = [t.name for t in provider.tiers()]
            return f"{name}: tiers {', '.join(tiers)}"

        _check(checks, "compute", compute)
    if "registry" in context:
        spec = dict(context["registry"])
        name = spec.pop("provider")

        def registry() -> str:
            provider = host.registry(name, spec, store)
            auth = provider.auth()
            if auth is not None:
                store.remember(auth.password)
            provider.check()
            return f"{name}: {provider.host} reachable"

        _check(checks, "registry", registry)
    ready = all(c["ok"] for c in checks)
    result = {
        "probe": "lian-build",
        "workspace": context["workspace"],
        "request_id": context.get("request_id"),
        "ready": ready,
        "checks": checks,
    }
    if not ready:
        failed = ", ".join(c["name"] for c in checks if not c["ok"])
        raise ProbeFailed(f"not ready: {failed} failed", details=result)
    return result
