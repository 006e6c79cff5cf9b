"""Secrets by reference: ``env:NAME``, ``file:/path`` (built in), ``vault:...`` (plugins).

Every value resolved through a ``SecretStore`` is remembered so that anything leaving the
process (envelope, log line, event, error message) can be scrubbed with ``redact``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from lian_build import api
from lian_build.errors import SecretError

REDACTED = "***"
_REF = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*):(?P<rest>.+)$", re.DOTALL)


def parse_reference(reference: str) -> tuple[str, str]:
    match = _REF.match(reference)
    if not match:
        raise SecretError(
            f"secret reference {reference!r} is not of the form scheme:rest (env:NAME, file:/path)",
            code="SECRET_REF_INVALID",
        )
    return match["scheme"], match["rest"]


class SecretStore:
    """Resolves references through registered resolvers and remembers values to redact."""

    def __init__(self, resolvers: Mapping[str, api.SecretResolver]) -> None:
        self._resolvers = dict(resolvers)
        self._values: set[str] = set()

    def __call__(self, reference: str) -> str:
        scheme, rest = parse_reference(reference)
        resolver = self._resolvers.get(scheme)
        if resolver is None:
            known = ", ".join(sorted(self._resolvers)) or "none"
            raise SecretError(
                f"no secret resolver for scheme {scheme!r} (installed: {known})",
                code="SECRET_SCHEME_UNKNOWN",
            )
        value = resolver.resolve(rest)
        self.remember(value)
        return value

    def remember(self, value: str) -> None:
        # Very short values would redact innocent text; they are still never logged by us.
        if len(value) >= 4:
            self._values.add(value)

    def redact(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            text = text.replace(value, REDACTED)
        return text

    @property
    def values(self) -> frozenset[str]:
        return frozenset(self._values)


def check_schemes(references: Iterable[tuple[str, str]], schemes: Iterable[str]) -> None:
    """Every ``(field, reference)`` names an installed resolver; nothing is resolved.

    ``lian plan`` calls this so a ``vault:`` reference without the Vault plugin fails at
    plan time, not halfway through a build."""
    known = set(schemes)
    for field, reference in references:
        scheme, _ = parse_reference(reference)
        if scheme not in known:
            raise SecretError(
                f"{field}: no secret resolver for scheme {scheme!r} "
                f"(installed: {', '.join(sorted(known)) or 'none'})",
                code="SECRET_SCHEME_UNKNOWN",
                field=field,
            )
