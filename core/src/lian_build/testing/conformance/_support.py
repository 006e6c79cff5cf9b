"""Shared pieces of the conformance suites: a network guard, a secret recorder and
optional fixtures."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import attrs
import pytest


class NetworkUsed(AssertionError):
    """Code that must work offline tried to open a socket or resolve a name."""


@attrs.define
class NetworkGuard:
    """What ``no_network`` saw: every refused attempt, for the failure message."""

    attempts: list[str] = attrs.field(factory=list)


@contextlib.contextmanager
def no_network(what: str) -> Iterator[NetworkGuard]:
    """Refuse sockets and name lookups made by this thread; fail if any was tried.

    The attempts are recorded as well as refused, so code that swallows the error
    still fails. Other threads (local servers a test runs) keep their sockets.
    """
    guard = NetworkGuard()
    owner = threading.get_ident()
    originals = {
        name: getattr(socket, name) for name in ("socket", "create_connection", "getaddrinfo")
    }

    def guarded(name: str) -> Any:
        original = originals[name]

        def refuse(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != owner:
                return original(*args, **kwargs)
            guard.attempts.append(f"socket.{name}{args!r}")
            raise NetworkUsed(f"{what} must not use the network (called socket.{name})")

        return refuse

    with pytest.MonkeyPatch.context() as patch:
        for name in originals:
            patch.setattr(socket, name, guarded(name))
        yield guard
    if guard.attempts:
        raise NetworkUsed(f"{what} must not use the network; it tried: {guard.attempts}")


@attrs.define
class SecretRecorder:
    """Stands in for a provider's secret lookup and remembers each reference asked."""

    lookup: Any
    asked: list[str] = attrs.field(factory=list)
    answers: list[str] = attrs.field(factory=list, repr=False)

    def __call__(self, reference: str) -> str:
        self.asked.append(reference)
        answer = str(self.lookup(reference))
        self.answers.append(answer)
        return answer


@contextlib.contextmanager
def recording_secrets(provider: Any) -> Iterator[SecretRecorder]:
    """Swap ``provider.secrets`` for a recorder while the block runs."""
    recorder = SecretRecorder(provider.secrets)
    provider.secrets = recorder
    try:
        yield recorder
    finally:
        provider.secrets = recorder.lookup


def secret_values(provider: Any) -> list[str]:
    """The secrets behind the provider's ``*_ref`` settings (the naming convention for
    secret references), resolved through its own lookup."""
    settings = getattr(provider, "settings", None)
    if settings is None or not attrs.has(type(settings)):
        return []
    values = []
    for field in attrs.fields(type(settings)):
        reference = getattr(settings, field.name)
        if field.name.endswith("_ref") and isinstance(reference, str) and reference:
            values.append(provider.secrets(reference))
    return [value for value in values if value]


def optional_fixture(request: pytest.FixtureRequest, name: str, default: Any) -> Any:
    """The value of fixture ``name`` wherever the test suite defines it, else ``default``."""
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        return default
