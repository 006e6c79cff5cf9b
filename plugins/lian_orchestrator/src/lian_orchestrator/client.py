"""HTTP client of the orchestrator protocol (httpx, imported here only).

Every failure becomes one ``ProvisionError`` with a stable code (``protocol.CLIENT_*``):
unreachable, timed out, refused the token, answered an error, or answered something that
is not the protocol. Messages name the URL and the token's reference, never the token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from lian_build import api
from lian_build.errors import ProvisionError
from lian_orchestrator import protocol
from lian_orchestrator.protocol import (
    CLIENT_BAD_RESPONSE,
    CLIENT_ERROR,
    CLIENT_TIMEOUT,
    CLIENT_UNAUTHORIZED,
    CLIENT_UNREACHABLE,
)

log = logging.getLogger("lian.compute.orchestrator")


class OrchestratorClient:
    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        token_source: str = "no token",  # noqa: S107 - a description
        timeout_s: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self.token_source = token_source  # a reference, for messages
        self.timeout_s = timeout_s
        self._client: httpx.Client | None = None

    def __repr__(self) -> str:
        return f"OrchestratorClient({self.url!r}, token from {self.token_source})"

    # ------------------------------------------------------------------ transport

    def _http(self) -> httpx.Client:
        # One connection pool per client: a new httpx.Client builds a TLS context each
        # time (tens of ms), and a build makes a dozen requests.
        if self._client is None:
            self._client = httpx.Client()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Any = None,
        timeout_s: float | None = None,
        ok: tuple[int, ...] = (200, 201, 202, 204),
    ) -> Any:
        """One request; the decoded JSON body (None for 204). Raises ProvisionError."""
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        timeout = self.timeout_s if timeout_s is None else timeout_s
        where = f"{method} {self.url}{path}"
        try:
            response = self._http().request(
                method,
                self.url + path,
                json=body,
                params=params,
                headers=headers,
                timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            )
        except httpx.TimeoutException as exc:
            raise ProvisionError(
                f"the orchestrator did not answer {where} within {timeout:.0f}s",
                code=CLIENT_TIMEOUT,
                details={"url": self.url},
            ) from exc
        except httpx.HTTPError as exc:
            raise ProvisionError(
                f"cannot reach the orchestrator at {self.url} ({type(exc).__name__}: {exc}); "
                "is `lian orchestrator serve` running there?",
                code=CLIENT_UNREACHABLE,
                details={"url": self.url},
            ) from exc
        if response.status_code in ok:
            if response.status_code == 204 or not response.content:
                return None
            return self._json(response, where)
        self._raise_for(response, where)

    def _json(self, response: httpx.Response, where: str) -> Any:
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            raise ProvisionError(
                f"the orchestrator answered {where} with something that is not JSON "
                f"(HTTP {response.status_code}, {len(response.content)} bytes)",
                code=CLIENT_BAD_RESPONSE,
                details={"url": self.url, "status": response.status_code},
            ) from None

    def _raise_for(self, response: httpx.Response, where: str) -> None:
        status = response.status_code
        remote_code, remote_message = None, ""
        try:
            error = response.json().get("error")
            remote_code = str(error.get("code")) if error.get("code") else None
            remote_message = str(error.get("message") or "")[:500]
        except Exception:  # not the protocol's envelope: report the status alone
            error = None
        details: dict[str, Any] = {"url": self.url, "status": status}
        if remote_code:
            details["code"] = remote_code.lower()
        if status in (401, 403):
            raise ProvisionError(
                f"the orchestrator at {self.url} refused the token ({self.token_source}): "
                f"HTTP {status}{': ' + remote_message if remote_message else ''}",
                code=CLIENT_UNAUTHORIZED,
                details=details,
            )
        said = remote_message or (response.text[:200] if error is None else "")
        raise ProvisionError(
            f"the orchestrator failed {where}: HTTP {status}"
            + (f" {remote_code}" if remote_code else "")
            + (f": {said}" if said else ""),
            code=CLIENT_ERROR,
            details=details,
        )

    def _shape(self, what: str, parse: Any, value: Any) -> Any:
        try:
            return parse(value)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise ProvisionError(
                f"the orchestrator at {self.url} answered {what} in an unknown shape: {exc}",
                code=CLIENT_BAD_RESPONSE,
                details={"url": self.url},
            ) from None

    # ------------------------------------------------------------------ operations

    def spawn(self, request: api.SpawnRequest, *, timeout_s: float) -> api.Runner:
        body = self.request(
            "POST", protocol.RUNNERS, body=protocol.spawn_to_json(request), timeout_s=timeout_s
        )
        return self._shape(  # type: ignore[no-any-return]
            "the spawn", lambda b: protocol.runner_from_json(b["runner"]), body
        )

    def destroy(self, runner_id: str) -> None:
        self.request("DELETE", protocol.runner_path(quote(runner_id, safe="")))

    def inspect(self, runner_id: str) -> api.RunnerState:
        body = self.request("GET", protocol.runner_path(quote(runner_id, safe="")))
        return self._shape(  # type: ignore[no-any-return]
            "the runner state", lambda b: protocol.state_from_json(b["state"]), body
        )

    def list_runners(self, labels: Mapping[str, str]) -> list[api.RunnerInfo]:
        params = [("label", f"{key}={value}") for key, value in labels.items()]
        body = self.request("GET", protocol.RUNNERS, params=params)
        return self._shape(  # type: ignore[no-any-return]
            "the runner list",
            lambda b: [protocol.info_from_json(item) for item in b["runners"]],
            body,
        )

    def p95(self, workspace: str) -> tuple[api.RunnerSize | None, int]:
        """The size the orchestrator's history gives ``workspace``, and its sample count."""
        body = self.request("GET", protocol.p95_path(quote(workspace, safe="")))
        return self._shape(  # type: ignore[no-any-return]
            "the P95",
            lambda b: (protocol.size_from_json(b["size"], "orchestrator"), int(b["samples"])),
            body,
        )

    def record(self, metrics: api.BuildMetrics) -> None:
        self.request("POST", protocol.METRICS, body=protocol.metrics_to_json(metrics))
