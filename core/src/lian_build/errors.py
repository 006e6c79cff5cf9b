"""Errors with stable codes and documented exit codes.

Every failure the user can see is a ``LianError``: the CLI turns it into one JSON
error envelope on stdout and one readable line on stderr. Anything else is a bug and
is reported as ``INTERNAL``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

# Exit codes (documented in docs/cli.md). Stable: CI scripts branch on them.
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_INVALID_INPUT = 2
EXIT_PLUGIN = 3
EXIT_PROVISION = 4
EXIT_BUILD = 5
EXIT_REGISTRY = 6
EXIT_TIMEOUT = 7
EXIT_NOT_READY = 8
EXIT_CANCELLED = 130


class LianError(Exception):
    """A failure with a stable ``code``, a message for humans and an exit code."""

    code: ClassVar[str] = "INTERNAL"
    exit_code: ClassVar[int] = EXIT_INTERNAL

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        details: Mapping[str, Any] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = dict(details or {})
        if code is not None:
            self.code = code  # type: ignore[misc]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.details:
            out["details"] = self.details
        return out


class InvalidInput(LianError):
    """A flag, environment variable or directive value breaks a rule."""

    code = "INVALID_INPUT"
    exit_code = EXIT_INVALID_INPUT


class ContractViolation(LianError):
    """An NCL file failed to evaluate or broke a contract (message keeps file:line)."""

    code = "CONTRACT_VIOLATION"
    exit_code = EXIT_INVALID_INPUT


class PluginError(LianError):
    """A plugin is missing, broken, disabled, or two plugins claim one name."""

    code = "PLUGIN_ERROR"
    exit_code = EXIT_PLUGIN


class ProvisionError(LianError):
    """The compute provider could not create, reach or destroy a runner."""

    code = "PROVISION_FAILED"
    exit_code = EXIT_PROVISION


class RemoteError(LianError):
    """SSH, sync or a remote command failed for a reason other than the build itself."""

    code = "REMOTE_FAILED"
    exit_code = EXIT_PROVISION


class RunnerLost(ProvisionError):
    """The runner went away mid-build (killed, stopped, deleted, sshd gone): not an OOM."""

    code = "RUNNER_LOST"


class BuildFailed(LianError):
    """The builder ran and the build failed."""

    code = "BUILD_FAILED"
    exit_code = EXIT_BUILD


class OutOfMemory(BuildFailed):
    """The build ran out of memory on the largest tier it was allowed to try."""

    code = "OUT_OF_MEMORY"


class RegistryError(LianError):
    """The registry refused a request (auth, missing manifest, unreachable)."""

    code = "REGISTRY_ERROR"
    exit_code = EXIT_REGISTRY


class SecretError(LianError):
    """A secret reference could not be resolved. Never carries the secret."""

    code = "SECRET_UNRESOLVED"
    exit_code = EXIT_INVALID_INPUT


class TimeBudgetExceeded(LianError):
    """The build ran past the time budget from sizing."""

    code = "TIME_BUDGET_EXCEEDED"
    exit_code = EXIT_TIMEOUT


class Cancelled(LianError):
    """SIGINT or SIGTERM arrived; the runner was destroyed."""

    code = "CANCELLED"
    exit_code = EXIT_CANCELLED


class ProbeFailed(LianError):
    """``lian integrate``: one or more readiness checks failed."""

    code = "NOT_READY"
    exit_code = EXIT_NOT_READY


ALL_ERRORS: tuple[type[LianError], ...] = (
    LianError,
    InvalidInput,
    ContractViolation,
    PluginError,
    ProvisionError,
    RemoteError,
    RunnerLost,
    BuildFailed,
    OutOfMemory,
    RegistryError,
    SecretError,
    TimeBudgetExceeded,
    Cancelled,
    ProbeFailed,
)
