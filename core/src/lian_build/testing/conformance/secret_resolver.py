"""The conformance suite every SecretResolver should pass."""

from __future__ import annotations

import re

import pytest

from lian_build import api
from lian_build.errors import SecretError

SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")


class SecretResolverConformance:
    """Subclass as ``class TestMyResolver(SecretResolverConformance)`` and supply:

    - ``resolver`` (required): a SecretResolver instance.
    - ``secret_reference`` (required): a reference without the scheme (``NPM_TOKEN``
      for ``env:NPM_TOKEN``) that the test environment made resolvable.
    - ``secret_value`` (required): what ``secret_reference`` resolves to.
    - ``missing_secret_reference`` (required): a reference that resolves to nothing.
    """

    def test_scheme_is_a_uri_scheme(self, resolver: api.SecretResolver) -> None:
        assert SCHEME.match(resolver.scheme), f"scheme {resolver.scheme!r} is not a URI scheme"

    def test_resolves_the_reference(
        self, resolver: api.SecretResolver, secret_reference: str, secret_value: str
    ) -> None:
        assert resolver.resolve(secret_reference) == secret_value

    def test_missing_reference_raises_secret_error(
        self, resolver: api.SecretResolver, missing_secret_reference: str
    ) -> None:
        with pytest.raises(SecretError) as missing:
            resolver.resolve(missing_secret_reference)
        assert missing.value.message, "SecretError without a message"

    def test_error_for_a_missing_reference_shows_no_other_secret(
        self,
        resolver: api.SecretResolver,
        missing_secret_reference: str,
        secret_reference: str,
        secret_value: str,
    ) -> None:
        resolver.resolve(secret_reference)  # a resolver that caches must not leak it later
        with pytest.raises(SecretError) as missing:
            resolver.resolve(missing_secret_reference)
        assert secret_value not in str(missing.value)
