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
from collections.abc import Callable
from typing import Any

import attrs

from lian_build import model, validate
from lian_build.errors import InvalidInput, LianError, ProbeFailed
from lian_build.plugins import PluginHost
from lian_build.secrets import SecretStore

# Deeper JSON than this is refused before parsing: Python's parser would otherwise hit
# its recursion limit (a RecursionError, i.e. an internal error) on 200,000 '['.
MAX_JSON_DEPTH = 64


@attrs.frozen(kw_only=True)
class SecretDeliveryContext:
    """The probe's input (closed: unknown keys are an error)."""

    workspace: str = attrs.field(validator=model._path_component)
    request_id: str | None = None
    secrets: tuple[model.BuildSecretRef, ...] = ()
    compute: model.ComputeProviderRef | None = None
    registry: model.RegistryProviderRef | None = None


def _depth_ok(text: str) -> bool:
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return False
        elif char in "]}":
            depth -= 1
    return True


def parse_context(text: str) -> SecretDeliveryContext:
    if not _depth_ok(text):
        raise InvalidInput(f"stdin nests JSON deeper than {MAX_JSON_DEPTH} levels", field="context")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"stdin is not a JSON object: {exc.msg} at line {exc.lineno} column {exc.colno}",
            field="context",
        ) from None
    except RecursionError:  # belt and braces: the depth check should have caught it
        raise InvalidInput("stdin nests JSON too deeply", field="context") from None
    if not isinstance(data, dict):
        raise InvalidInput(
            "stdin must hold one JSON object (a SecretDeliveryContext)", field="context"
        )
    if "workspace" not in data:
        raise InvalidInput("context.workspace (a string) is required", field="workspace")
    return model.structure(data, SecretDeliveryContext, what="the integrate context")


def _check(checks: list[model.ProbeCheck], name: str, fn: Callable[[], str]) -> None:
    try:
        message = fn()
        checks.append(model.ProbeCheck(name=name, ok=True, message=message))
    except LianError as exc:
        checks.append(model.ProbeCheck(name=name, ok=False, code=exc.code, message=exc.message))


def _resolve_refs(settings: Any, store: SecretStore) -> list[str]:
    """Resolve every ``*_ref`` setting (token_ref, password_ref...): credentials exist."""
    if settings is None or not attrs.has(type(settings)):
        return []
    resolved = []
    for field in attrs.fields(type(settings)):
        value = getattr(settings, field.name)
        if field.name.endswith("_ref") and isinstance(value, str):
            store(value)
            resolved.append(field.name)
    return resolved


def probe(
    context: SecretDeliveryContext, host: PluginHost, store: SecretStore
) -> model.IntegrateOutcome:
    checks: list[model.ProbeCheck] = []
    broken = [r.name for r in host.records if r.status == "error"]
    checks.append(
        model.ProbeCheck(
            name="plugins",
            ok=not broken,
            message=f"broken: {', '.join(broken)}" if broken else "all plugins loaded",
        )
    )
    for secret in context.secrets:

        def resolve(ref: str = secret.ref) -> str:
            validate.secret_ref(ref, field="secrets")
            store(ref)
            return "resolvable"

        _check(checks, f"secret:{secret.id}", resolve)
    if context.compute is not None:
        compute_ref = context.compute

        def compute() -> str:
            provider = host.compute_provider(compute_ref.provider, compute_ref.settings, store)
            refs = _resolve_refs(provider.settings, store)
            tiers = [t.name for t in provider.tiers()]
            creds = f"; credentials {', '.join(refs)} resolvable" if refs else ""
            return f"{compute_ref.provider}: tiers {', '.join(tiers)}{creds}"

        _check(checks, "compute", compute)
    if context.registry is not None:
        registry_ref = context.registry

        def registry() -> str:
            provider = host.registry(registry_ref.provider, registry_ref.settings, store)
            auth = provider.auth()
            if auth is not None:
                store.remember(auth.password)
            provider.check()
            return f"{registry_ref.provider}: {provider.host} reachable"

        _check(checks, "registry", registry)
    ready = all(c.ok for c in checks)
    result = model.IntegrateOutcome(
        probe="lian-build",
        workspace=context.workspace,
        request_id=context.request_id,
        ready=ready,
        checks=tuple(checks),
    )
    if not ready:
        failed = ", ".join(c.name for c in checks if not c.ok)
        error = ProbeFailed(f"not ready: {failed} failed", details={"failed": failed.split(", ")})
        error.outcome = result  # type: ignore[attr-defined]
        raise error
    return result
