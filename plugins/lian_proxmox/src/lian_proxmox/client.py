"""A thin layer over proxmoxer: one authenticated session, error translation, waits.

proxmoxer and requests are imported inside functions so importing this module stays
cheap. Every proxmoxer or requests failure becomes an ``ApiFailure`` (a
``ProvisionError``) whose message names the call and the server's reason, never the
token.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from lian_build.errors import ProvisionError

log = logging.getLogger("lian.compute.proxmox")

# Per HTTP request; long operations are tasks we poll, so a request itself is quick.
HTTP_TIMEOUT_S = 30

# proxmoxer resources are dynamic attribute chains without type information.
Resource = Any


class ApiFailure(ProvisionError):
    """A Proxmox API call failed. ``status`` is the HTTP status (0: no response)."""

    def __init__(self, message: str, *, status: int, reason: str) -> None:
        super().__init__(message, details={"status": status} if status else None)
        self.status = status
        self.reason = reason

    @property
    def missing(self) -> bool:
        """Proxmox answers 500 "Configuration file ... does not exist" for an unknown VM."""
        return self.status == 404 or (self.status == 500 and "does not exist" in self.reason)


class TaskFailed(ProvisionError):
    """A Proxmox task stopped with an exit status other than OK or ``WARNINGS: n``."""

    def __init__(self, message: str, *, upid: str, exitstatus: str) -> None:
        super().__init__(message, details={"upid": upid})
        self.exitstatus = exitstatus


def task_succeeded(exit_status: str) -> bool:
    """PVE ends a task that logged warnings with ``WARNINGS: n``: that is a success."""
    return exit_status == "OK" or exit_status.startswith("WARNINGS: ")


class Deadline:
    """A monotonic deadline plus the interval to sleep between polls."""

    def __init__(self, seconds: float, interval: float) -> None:
        self.seconds = seconds
        self.interval = interval
        self._end = time.monotonic() + seconds

    def expired(self) -> bool:
        return time.monotonic() >= self._end

    def sleep(self) -> None:
        time.sleep(max(0.0, min(self.interval, self._end - time.monotonic())))


def poll(
    check: Callable[[], Any | None],
    *,
    deadline: Deadline,
    what: str,
    last_answer: Callable[[], str] | None = None,
) -> Any:
    """Call ``check`` until it returns something other than None; raise at the deadline."""
    while True:
        result = check()
        if result is not None:
            return result
        if deadline.expired():
            hint = last_answer() if last_answer else ""
            raise ProvisionError(
                f"gave up after {deadline.seconds:g} s waiting for {what}"
                + (f" (last answer: {hint})" if hint else "")
            )
        deadline.sleep()


class Session:
    """One API client for one node, with the token kept out of every message."""

    def __init__(
        self,
        *,
        host: str,
        node: str,
        token_id: str,
        token: str,
        verify_ssl: bool | str,
        wait_timeout_s: float,
        poll_interval: float,
    ) -> None:
        from proxmoxer import ProxmoxAPI

        self.host = host
        self.node_name = node
        self._token = token
        self._wait = (wait_timeout_s, poll_interval)
        user, token_name = token_id.split("!", 1)
        # No request yet: token auth only adds a header to each request.
        self.api = ProxmoxAPI(
            host,
            user=user,
            token_name=token_name,
            token_value=token,
            verify_ssl=verify_ssl,
            timeout=HTTP_TIMEOUT_S,
        )
        self.node = self.api.nodes(node)

    def __repr__(self) -> str:
        return f"Session(host={self.host!r}, node={self.node_name!r})"

    def deadline(self) -> Deadline:
        """A fresh deadline: each wait (a task, the agent) gets ``wait_timeout_s``."""
        return Deadline(*self._wait)

    @contextlib.contextmanager
    def call(self, what: str) -> Iterator[None]:
        """Turn proxmoxer and requests failures inside the block into ``ApiFailure``."""
        import requests
        from proxmoxer import ResourceException

        try:
            yield
        except ResourceException as exc:
            reason = str(exc.content or "").strip()
            detail = f" ({exc.errors})" if exc.errors else ""
            raise ApiFailure(
                self._scrub(f"Proxmox API {what} failed: HTTP {exc.status_code} {reason}{detail}"),
                status=int(exc.status_code),
                reason=self._scrub(reason),
            ) from None
        except requests.exceptions.SSLError as exc:
            raise ApiFailure(
                self._scrub(
                    f"Proxmox API {what} failed: the TLS certificate of https://{self.host} "
                    f"could not be verified ({exc}); set compute.ca_file to the node's CA "
                    "certificate (/etc/pve/pve-root-ca.pem on the node), or verify_ssl = false "
                    "only for a host reached over a trusted network"
                ),
                status=0,
                reason="tls",
            ) from None
        except requests.exceptions.RequestException as exc:
            raise ApiFailure(
                self._scrub(
                    f"Proxmox API {what} failed: could not reach https://{self.host}: {exc}"
                ),
                status=0,
                reason="unreachable",
            ) from None

    def wait_task(self, upid: str) -> None:
        """Poll a task until it stops; raise ``TaskFailed`` unless it succeeded.

        ``WARNINGS: n`` counts as success: ``qmstart`` warns e.g. "no efidisk configured".
        """
        parts = upid.split(":")
        task_type = parts[5] if len(parts) > 6 else "task"
        # A task's status is served by the node that runs it, which the UPID names.
        node = self.api.nodes(parts[1]) if len(parts) > 6 and parts[1] else self.node

        def stopped() -> dict[str, Any] | None:
            with self.call(f"GET task status ({task_type})"):
                data: dict[str, Any] = node.tasks(upid).status.get()
            return data if data.get("status") == "stopped" else None

        final = poll(stopped, deadline=self.deadline(), what=f"Proxmox task {task_type} to finish")
        exit_status = str(final.get("exitstatus", ""))
        if not task_succeeded(exit_status):
            raise TaskFailed(
                f"Proxmox task {task_type} failed: {exit_status or 'no exit status'}",
                upid=upid,
                exitstatus=exit_status,
            )
        log.debug("task %s finished: %s", upid, exit_status)

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text
