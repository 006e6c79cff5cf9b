"""The ``orchestrator`` compute provider: runners come from a central orchestrator.

The CI machine holds only the orchestrator's URL and a token; the orchestrator holds the
cloud credentials and runs the real provider. The same provider instance also answers
the sizing hook (the orchestrator's history P95) and the metrics hook (records go to the
orchestrator; a record that cannot be sent is spooled locally and sent later).
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs

from lian_build import api
from lian_build.errors import InvalidInput, LianError
from lian_orchestrator import protocol
from lian_orchestrator.spool import Spool

if TYPE_CHECKING:
    from lian_orchestrator.client import OrchestratorClient

log = logging.getLogger("lian.compute.orchestrator")


def _url(_instance: Any, _attribute: Any, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(
            f"compute.url must be an http:// or https:// URL of the orchestrator, got {value!r}",
            field="compute.url",
        )
    if parts.username or parts.password:
        raise InvalidInput(
            "compute.url must not carry credentials; give the token as token_ref",
            field="compute.url",
        )


def _positive(field: str) -> Any:
    def check(_instance: Any, _attribute: Any, value: float) -> None:
        if value <= 0:
            raise InvalidInput(f"{field} must be positive, got {value}", field=field)

    return check


@attrs.frozen(kw_only=True)
class TierSettings:
    """One rung of the ladder the client asks for: ``{ name = "big", cpu = 8, memory_gb = 16 }``."""

    name: str
    cpu: int = attrs.field(validator=_positive("compute.tiers.cpu"))
    memory_gb: float = attrs.field(validator=_positive("compute.tiers.memory_gb"))


@attrs.frozen(kw_only=True)
class OrchestratorSettings:
    """``compute = { provider = "orchestrator", ... }`` fields."""

    url: str = attrs.field(default=protocol.DEFAULT_URL, validator=_url)
    # None: env:LIAN_ORCHESTRATOR_TOKEN when that variable is set, else no token.
    token_ref: str | None = None
    timeout_s: float = attrs.field(default=30.0, validator=_positive("compute.timeout_s"))
    # A spawn waits for the backend to create the machine (minutes on a cloud).
    spawn_timeout_s: float = attrs.field(
        default=900.0, validator=_positive("compute.spawn_timeout_s")
    )
    tiers: list[TierSettings] | None = None


# The sizes the client asks for; the server maps each to the backend's smallest tier that
# fits (or the tier of the same name).
DEFAULT_TIERS: tuple[api.Tier, ...] = (
    api.Tier("2c-4g", 2, 4),
    api.Tier("4c-8g", 4, 8),
    api.Tier("8c-16g", 8, 16),
    api.Tier("16c-32g", 16, 32),
)

# The provider instance of this invocation: the sizing and metrics hooks receive no
# settings, so they ask the live instance. A weak reference: once the plan is gone, so
# is the orchestrator's part in sizing (tests build many hosts in one process).
_ACTIVE: weakref.ref[OrchestratorProvider] | None = None


def active_provider() -> OrchestratorProvider | None:
    return _ACTIVE() if _ACTIVE is not None else None


class OrchestratorProvider(api.ComputeProvider):
    name = "orchestrator"
    description = "Runners, sizing and metrics through a central orchestrator (HTTP + token)."
    Settings = OrchestratorSettings

    def __init__(self, settings: OrchestratorSettings, secrets: api.SecretLookup) -> None:
        global _ACTIVE
        super().__init__(settings, secrets)
        self.settings: OrchestratorSettings = settings
        self._client: OrchestratorClient | None = None
        _ACTIVE = weakref.ref(self)

    # ------------------------------------------------------------------ no network

    def tiers(self) -> Sequence[api.Tier]:
        if self.settings.tiers is None:
            return DEFAULT_TIERS
        custom = [api.Tier(t.name, t.cpu, t.memory_gb) for t in self.settings.tiers]
        if not custom:
            raise InvalidInput("compute.tiers must list at least one tier", field="compute.tiers")
        return sorted(custom, key=lambda t: (t.memory_gb, t.cpu))

    def _token_reference(self) -> str | None:
        if self.settings.token_ref:
            return self.settings.token_ref
        if os.environ.get(protocol.TOKEN_ENV):
            return f"env:{protocol.TOKEN_ENV}"
        return None

    def plan(self) -> dict[str, Any]:
        return {"url": self.settings.url, "token_ref": self._token_reference()}

    # ------------------------------------------------------------------ network

    def client(self) -> OrchestratorClient:
        if self._client is None:
            from lian_orchestrator.client import OrchestratorClient

            reference = self._token_reference()
            token = self.secrets(reference) if reference else None  # scrubbed from output
            self._client = OrchestratorClient(
                self.settings.url,
                token,
                token_source=reference or "no token",
                timeout_s=self.settings.timeout_s,
            )
        return self._client

    def spawn(self, request: api.SpawnRequest) -> api.Runner:
        runner = self.client().spawn(request, timeout_s=self.settings.spawn_timeout_s)
        # The core destroys and inspects it through this provider, whatever made it.
        return attrs.evolve(runner, provider=self.name)

    def destroy(self, runner_id: str) -> None:
        self.client().destroy(runner_id)

    def list_runners(self, labels: Mapping[str, str]) -> list[api.RunnerInfo]:
        return self.client().list_runners(labels)

    def inspect(self, runner_id: str) -> api.RunnerState:
        return self.client().inspect(runner_id)

    # ------------------------------------------------------------------ sizing, metrics

    def _spool(self) -> Spool:
        return Spool.default(self.settings.url)

    def size_for(self, workspace: str) -> api.RunnerSize | None:
        """The orchestrator history's size, or None (too few builds, or unreachable)."""
        try:
            self._flush()
            size, samples = self.client().p95(workspace)
        except LianError as exc:
            log.warning(
                "orchestrator: no P95 for %s (%s); sizing falls back to local sources",
                workspace,
                exc.message,
            )
            return None
        if size is None:
            log.info("orchestrator: %d build(s) of %s are too few for a P95", samples, workspace)
            return None
        reason = f"orchestrator {self.settings.url}: {size.reason}".rstrip(": ")
        return attrs.evolve(size, reason=reason)

    def record(self, metrics: api.BuildMetrics) -> None:
        """Send a record; when that fails keep it in the local spool (never raises)."""
        try:
            self._flush()
            self.client().record(metrics)
        except LianError as exc:
            self._spool().add(metrics)
            log.warning(
                "orchestrator: could not record the build (%s); kept in %s to send later",
                exc.message,
                self._spool().path,
            )

    def _flush(self) -> None:
        spool = self._spool()
        sent = spool.drain(self.client().record)
        if sent:
            log.info("orchestrator: sent %d spooled build record(s)", sent)
