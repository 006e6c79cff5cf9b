"""The conformance suite every RegistryProvider should pass."""

from __future__ import annotations

import json
import re
import secrets

import pytest

from lian_build import api
from lian_build.testing.conformance._support import (
    no_network,
    optional_fixture,
    recording_secrets,
)

SHA256_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
NAMESPACE = "ci/lian-conformance/app"


def missing_tag_of(reference: str) -> str:
    """``reference`` with its tag (or digest) replaced by a tag nobody pushed."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: name.rindex(":")]
    return f"{name}:lian-missing-{secrets.token_hex(6)}"


class RegistryProviderConformance:
    """Subclass as ``class TestMyRegistry(RegistryProviderConformance)`` and supply:

    - ``registry`` (required): a configured RegistryProvider instance whose ``check()``
      can reach a running registry (real or a local imitation). Configure credentials
      when the registry takes them: the ``auth()`` test skips for an open registry.
    - ``pushed_reference`` (required): ``host[:port]/repository:tag`` of an image the
      test environment pushed to that registry beforehand.
    - ``pushed_digest`` (optional): the manifest digest of ``pushed_reference``; when
      given, ``manifest_digest`` must return exactly it.
    """

    def test_host_has_no_scheme(self, registry: api.RegistryProvider) -> None:
        host = registry.host
        assert host, "host is empty"
        assert "://" not in host and "/" not in host, f"host {host!r} is not host[:port]"
        assert host == host.strip(), f"host {host!r} has surrounding whitespace"

    def test_cache_repository_starts_with_host_and_ends_with_namespace(
        self, registry: api.RegistryProvider
    ) -> None:
        repository = registry.cache_repository(NAMESPACE)
        assert repository.startswith(registry.host + "/"), repository
        assert repository.endswith("/" + NAMESPACE), repository

    def test_plan_is_json_and_needs_no_network_or_secret(
        self, registry: api.RegistryProvider
    ) -> None:
        with recording_secrets(registry) as recorder, no_network("plan()"):
            facts = registry.plan()
        assert isinstance(facts, dict), f"plan() returned {type(facts).__name__}, not a dict"
        json.dumps(facts)
        assert recorder.asked == [], f"plan() resolved secrets: {recorder.asked}"

    def test_check_passes(self, registry: api.RegistryProvider) -> None:
        registry.check()

    def test_manifest_digest_of_pushed_reference(
        self,
        registry: api.RegistryProvider,
        pushed_reference: str,
        request: pytest.FixtureRequest,
    ) -> None:
        digest = registry.manifest_digest(pushed_reference)
        assert digest is not None, f"no manifest found for {pushed_reference}"
        assert SHA256_DIGEST.match(digest), f"{digest!r} is not a sha256 digest"
        expected = optional_fixture(request, "pushed_digest", None)
        if expected is not None:
            assert digest == expected

    def test_manifest_digest_of_missing_tag_is_none(
        self, registry: api.RegistryProvider, pushed_reference: str
    ) -> None:
        assert registry.manifest_digest(missing_tag_of(pushed_reference)) is None

    def test_auth_keeps_the_password_out_of_repr(self, registry: api.RegistryProvider) -> None:
        auth = registry.auth()
        if auth is None:
            pytest.skip("the registry is configured without credentials (auth() is None)")
        assert isinstance(auth, api.RegistryAuth)
        assert auth.password, "auth() returned an empty password"
        assert auth.registry == registry.host
        for shown in (repr(auth), str(auth), repr(registry), json.dumps(registry.plan())):
            assert auth.password not in shown, "the registry password is shown"
