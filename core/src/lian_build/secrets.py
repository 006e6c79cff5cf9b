"""Secrets by reference: ``env:NAME``, ``file:/path`` (built in), ``vault:...`` (plugins).

Every value resolved through a ``SecretStore`` is remembered so that anything leaving the
process (envelope, log line, event, error message) can be scrubbed with ``redact``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator, Mapping

from lian_build import api
from lian_build.errors import SecretError

REDACTED = "***"
MIN_SECRET_LEN = 4  # shorter values would redact innocent text; we never log them anyway
MIN_FRAGMENT_LEN = 8  # one line of a multi-line secret, one encoded form of a secret
BASE64_WRAPS = (76, 64)
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
        self._pattern: re.Pattern[str] | None = None

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
        if len(value) >= MIN_SECRET_LEN and value not in self._values:
            self._values.add(value)
            self._pattern = None

    def redact(self, text: str) -> str:
        if not self._values or not text:
            return text
        if self._pattern is None:
            forms = {form for value in self._values for form in secret_forms(value)}
            # Longest first: a whole value wins over one of its lines.
            ordered = sorted(forms, key=lambda f: (-len(f), f))
            self._pattern = re.compile("|".join(re.escape(f) for f in ordered))
        return self._pattern.sub(REDACTED, text)

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


def secret_forms(value: str) -> Iterator[str]:
    """Every form in which ``value`` may reach an output: whole, each non-trivial line
    (the live log is scrubbed one line at a time), JSON-escaped and base64-encoded."""
    yield value
    stripped = value.strip()
    if len(stripped) >= MIN_SECRET_LEN:
        yield stripped
    if "\n" in stripped or "\r" in stripped:
        for line in stripped.splitlines():
            line = line.strip()
            if len(line) >= MIN_FRAGMENT_LEN:
                yield line
    escaped = json.dumps(value)[1:-1]
    if escaped != value:
        yield escaped
        ascii_escaped = json.dumps(value, ensure_ascii=False)[1:-1]
        if ascii_escaped != escaped:
            yield ascii_escaped
    for candidate in {value, stripped}:
        yield from _base64_forms(candidate.encode())


def _base64_forms(data: bytes) -> Iterator[str]:
    """The base64 text of ``data`` at each of the three alignments it can have inside a
    longer encoded string (e.g. ``user:password`` in a Docker config's ``auth``)."""
    if len(data) < MIN_SECRET_LEN:
        return
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode()
        # Characters that depend only on ``data``: skip the ones shared with the
        # prefix, stop before the ones shared with whatever follows.
        start = -(-offset * 8 // 6)
        end = (offset + len(data)) * 8 // 6
        core = encoded[start:end]
        if len(core) >= MIN_FRAGMENT_LEN:
            yield core
            urlsafe = core.replace("+", "-").replace("/", "_")
            if urlsafe != core:
                yield urlsafe
        if offset == 0:
            yield encoded  # the whole encoding, padding included
            # `base64` (76) and PEM/openssl (64) wrap long encodings; the live log
            # shows one wrapped line at a time.
            for width in BASE64_WRAPS:
                for at in range(0, len(encoded), width):
                    piece = encoded[at : at + width]
                    if len(piece) >= MIN_FRAGMENT_LEN and len(encoded) > width:
                        yield piece
