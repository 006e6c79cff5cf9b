"""Turn hcloud library failures into ProvisionError with a stable ``details.code``.

Messages never include the token: only the reference it was read from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lian_build.errors import ProvisionError

if TYPE_CHECKING:
    from hcloud import APIException

# Locations suggested when one cannot place a server (Hetzner's public locations).
LOCATIONS = ("fsn1", "nbg1", "hel1", "ash", "hil", "sin")


@contextlib.contextmanager
def provision_errors(*, token_ref: str, location: str) -> Iterator[None]:
    """Re-raise hcloud API, action and transport failures as ProvisionError."""
    import requests
    from hcloud import APIException
    from hcloud.actions import ActionFailedException, ActionTimeoutException

    try:
        yield
    except APIException as exc:
        raise from_api_exception(exc, token_ref=token_ref, location=location) from exc
    except ActionFailedException as exc:
        error: dict[str, Any] = dict(exc.action.error or {})
        raise ProvisionError(
            f"Hetzner Cloud action {exc.action.command} failed: "
            f"{error.get('message', 'no message')}",
            details=_details("action_failed", action_error=error.get("code")),
        ) from exc
    except ActionTimeoutException as exc:
        raise ProvisionError(
            f"Hetzner Cloud action {exc.action.command} did not finish in time "
            "(raise create_timeout for slow custom images)",
            details=_details("action_timeout"),
        ) from exc
    except requests.RequestException as exc:
        raise ProvisionError(
            f"Hetzner Cloud API unreachable: {type(exc).__name__}",
            details=_details("unreachable"),
        ) from exc


def from_api_exception(exc: APIException, *, token_ref: str, location: str) -> ProvisionError:
    code = str(exc.code)
    details = _details(code, correlation_id=exc.correlation_id)
    others = ", ".join(loc for loc in LOCATIONS if loc != location)
    if code == "unauthorized":
        return ProvisionError(
            f"Hetzner Cloud rejected the API token read from {token_ref}: "
            "check that it is current and belongs to the intended project",
            field="token_ref",
            details=details,
        )
    if code == "token_readonly":
        return ProvisionError(
            f"the API token read from {token_ref} is read-only: lian-build creates and "
            "deletes servers, SSH keys and snapshots, so it needs a Read & Write token",
            field="token_ref",
            details=details,
        )
    if code == "locked":
        return ProvisionError(
            f"Hetzner Cloud kept the resource locked by another action: {exc.message}",
            details=details,
        )
    if code == "forbidden":
        return ProvisionError(
            f"the API token read from {token_ref} may not do this (a read-only token?)",
            field="token_ref",
            details=details,
        )
    if code == "resource_limit_exceeded":
        limits = _field(exc.details, "limits")
        details["limits"] = limits
        return ProvisionError(
            "the Hetzner Cloud project reached a resource limit "
            f"({_describe_limits(limits)}): delete unused servers or ask Hetzner to raise it",
            details=details,
        )
    if code in ("placement_error", "resource_unavailable"):
        return ProvisionError(
            f"Hetzner Cloud cannot place this server type in {location} right now "
            f"({exc.message}); try another location ({others}) or a different tier",
            field="location",
            details=details,
        )
    if code == "rate_limit_exceeded":
        return ProvisionError(
            "Hetzner Cloud API rate limit still exceeded after retries; wait a minute and retry",
            details=details,
        )
    if code == "invalid_input":
        details["fields"] = _field(exc.details, "fields")
        return ProvisionError(f"Hetzner Cloud refused the request: {exc.message}", details=details)
    return ProvisionError(f"Hetzner Cloud API error {code}: {exc.message}", details=details)


def _details(code: str, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"provider": "hcloud", "code": code}
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


def _field(details: Any, name: str) -> Any:
    return details.get(name) if isinstance(details, dict) else None


def _describe_limits(limits: Any) -> str:
    if not isinstance(limits, list) or not limits:
        return "unknown limit"
    return ", ".join(str(item.get("name", "?")) for item in limits if isinstance(item, dict))
