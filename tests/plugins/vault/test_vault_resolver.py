"""The ``vault:`` resolver against a local imitation of the Vault KV v2 API."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.vault import FakeVault
from lian_build.errors import SecretError
from lian_build.plugins import PluginHost
from lian_build.secrets import SecretStore
from lian_vault.resolver import VaultRef, VaultSecretResolver, parse, reference

NPM_VALUE = "npm-marker-8c1f2a77"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ci/npm#token", VaultRef("secret", "ci/npm", "token")),
        ("ci/npm", VaultRef("secret", "ci/npm", "password")),
        ("kv/data/ci/npm#token", VaultRef("kv", "ci/npm", "token")),
        ("ci/npm#token?version=2", VaultRef("secret", "ci/npm", "token", 2)),
        ("ci/npm?version=3#token", VaultRef("secret", "ci/npm", "token", 3)),
        ("deploy/ssh?mount=infra/kv#key", VaultRef("infra/kv", "deploy/ssh", "key")),
        ("/ci/npm/#token", VaultRef("secret", "ci/npm", "token")),
    ],
)
def test_reference_syntax(text: str, expected: VaultRef) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("#token", "no secret path"),
        ("ci/npm#", "empty field"),
        ("ci/npm#token?version=0", "positive integer"),
        ("ci/npm#token?version=two", "positive integer"),
        ("ci/npm?colour=red#token", "unknown parameter"),
        ("ci/../root#token", r"\.\."),
    ],
)
def test_bad_references_are_ref_invalid(text: str, why: str) -> None:
    with pytest.raises(SecretError, match=why) as err:
        parse(text)
    assert err.value.code == "SECRET_REF_INVALID"


def test_reference_from_the_contract_types_round_trips() -> None:
    assert parse(reference("ci/npm")[len("vault:") :]) == VaultRef("secret", "ci/npm", "password")
    assert parse(reference("ci/x", "k", "kv")[len("vault:") :]) == VaultRef("kv", "ci/x", "k")


@pytest.fixture
def with_token(fake_vault: FakeVault, monkeypatch: pytest.MonkeyPatch) -> FakeVault:
    fake_vault.put("ci/npm", {"token": NPM_VALUE, "user": "ci"})
    monkeypatch.setenv("VAULT_ADDR", fake_vault.url)
    monkeypatch.setenv("VAULT_TOKEN", fake_vault.token("secret/ci/*"))
    return fake_vault


def resolve(ref: str) -> str:
    return VaultSecretResolver().resolve(ref)


def test_reads_a_field_with_a_token(with_token: FakeVault) -> None:
    assert resolve("ci/npm#token") == NPM_VALUE
    assert resolve("secret/data/ci/npm#user") == "ci"
    seen = with_token.requests[-1]
    assert (seen.method, seen.path) == ("GET", "/v1/secret/data/ci/npm")
    assert seen.token is not None and seen.token.startswith("hvs.")


def test_two_fields_of_one_secret_cost_one_read(with_token: FakeVault) -> None:
    resolver = VaultSecretResolver()
    assert resolver.resolve("ci/npm#token") == NPM_VALUE
    assert resolver.resolve("ci/npm#user") == "ci"
    assert len(with_token.requests) == 1


def test_missing_path_is_vault_not_found(with_token: FakeVault) -> None:
    with pytest.raises(SecretError) as err:
        resolve("ci/nope#token")
    assert err.value.code == "VAULT_NOT_FOUND"
    assert "no secret at secret/ci/nope" in err.value.message


def test_missing_field_names_the_fields_not_the_values(with_token: FakeVault) -> None:
    with pytest.raises(SecretError) as err:
        resolve("ci/npm#password")
    assert err.value.code == "VAULT_FIELD_MISSING"
    assert "fields: token, user" in err.value.message
    assert NPM_VALUE not in err.value.message


def test_forbidden_path_is_vault_denied(with_token: FakeVault) -> None:
    with_token.put("prod/db", {"password": "p"})
    with pytest.raises(SecretError) as err:
        resolve("prod/db")
    assert err.value.code == "VAULT_DENIED"
    assert "permission denied" in err.value.message


def test_sealed_vault_is_vault_unavailable(with_token: FakeVault) -> None:
    with_token.sealed = True
    with pytest.raises(SecretError) as err:
        resolve("ci/npm#token")
    assert err.value.code == "VAULT_UNAVAILABLE"
    assert "HTTP 503: Vault is sealed" in err.value.message


def test_version_pinning_and_deleted_versions(with_token: FakeVault) -> None:
    with_token.put("ci/npm", {"token": "second"})
    with_token.put("ci/npm", {"token": "third"})
    assert resolve("ci/npm#token") == "third"
    assert resolve("ci/npm#token?version=1") == NPM_VALUE
    assert resolve("ci/npm?version=2#token") == "second"
    with pytest.raises(SecretError) as err:
        resolve("ci/npm#token?version=9")
    assert err.value.code == "VAULT_NOT_FOUND" and "version 9" in err.value.message
    with_token.delete_version("ci/npm", 2)
    with pytest.raises(SecretError) as err:
        resolve("ci/npm#token?version=2")
    assert err.value.code == "VAULT_NOT_FOUND" and "deleted" in err.value.message
    with_token.delete_version("ci/npm", 1, destroy=True)
    with pytest.raises(SecretError, match="destroyed"):
        resolve("ci/npm#token?version=1")


def test_approle_login(fake_vault: FakeVault, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_vault.put("ci/npm", {"token": NPM_VALUE})
    role_id, secret_id = fake_vault.approle("secret/ci/npm")
    monkeypatch.setenv("VAULT_ADDR", fake_vault.url)
    monkeypatch.setenv("VAULT_ROLE_ID", role_id)
    monkeypatch.setenv("VAULT_SECRET_ID", secret_id)
    resolver = VaultSecretResolver()
    assert resolver.resolve("ci/npm#token") == NPM_VALUE
    assert resolver.resolve("ci/npm#token") == NPM_VALUE
    assert [(r.method, r.path) for r in fake_vault.requests] == [
        ("POST", "/v1/auth/approle/login"),
        ("GET", "/v1/secret/data/ci/npm"),
    ]
    monkeypatch.setenv("VAULT_SECRET_ID", "wrong-" + secret_id)
    with pytest.raises(SecretError) as err:
        resolve("ci/npm#token")
    assert err.value.code == "VAULT_DENIED"
    assert "invalid role or secret ID" in err.value.message
    assert secret_id not in err.value.message


def test_namespace_header(fake_vault: FakeVault, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_vault.put("ci/npm", {"token": "in-team-a"}, namespace="team-a")
    fake_vault.put("ci/npm", {"token": "at-root"})
    monkeypatch.setenv("VAULT_ADDR", fake_vault.url)
    monkeypatch.setenv("VAULT_TOKEN", fake_vault.token("*", namespace="team-a"))
    monkeypatch.setenv("VAULT_NAMESPACE", "team-a")
    assert resolve("ci/npm#token") == "in-team-a"
    assert fake_vault.requests[-1].namespace == "team-a"
    monkeypatch.delenv("VAULT_NAMESPACE")
    with pytest.raises(SecretError) as err:  # the token belongs to the namespace only
        resolve("ci/npm#token")
    assert err.value.code == "VAULT_DENIED"


def test_tls_with_a_ca_file(
    fake_vault_tls: tuple[FakeVault, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    vault, ca = fake_vault_tls
    vault.put("ci/npm", {"token": NPM_VALUE})
    monkeypatch.setenv("VAULT_ADDR", vault.url)
    monkeypatch.setenv("VAULT_TOKEN", vault.token("*"))
    with pytest.raises(SecretError) as err:  # the test CA is not trusted by default
        resolve("ci/npm#token")
    assert err.value.code == "VAULT_UNAVAILABLE"
    monkeypatch.setenv("VAULT_CACERT", str(ca))
    assert resolve("ci/npm#token") == NPM_VALUE
    monkeypatch.setenv("VAULT_CACERT", str(ca.parent / "missing.pem"))
    with pytest.raises(SecretError) as err:
        resolve("ci/npm#token")
    assert err.value.code == "VAULT_CONFIG"


def test_configuration_errors(
    monkeypatch: pytest.MonkeyPatch, fake_vault: FakeVault, tmp_path: Path
) -> None:
    with pytest.raises(SecretError, match="VAULT_ADDR") as err:
        resolve("ci/npm#token")
    assert err.value.code == "VAULT_CONFIG"
    monkeypatch.setenv("VAULT_ADDR", "vault.example:8200")
    with pytest.raises(SecretError, match="http:// or https://"):
        resolve("ci/npm#token")
    monkeypatch.setenv("VAULT_ADDR", fake_vault.url)
    with pytest.raises(SecretError, match="no credentials") as err:
        resolve("ci/npm#token")
    assert err.value.code == "VAULT_CONFIG"
    # The vault CLI's token file is used when nothing else is set.
    fake_vault.put("ci/npm", {"token": NPM_VALUE})
    home = tmp_path / "home"
    home.mkdir()
    (home / ".vault-token").write_text(fake_vault.token("*") + "\n")
    assert resolve("ci/npm#token") == NPM_VALUE


def test_unreachable_vault(monkeypatch: pytest.MonkeyPatch) -> None:
    from fixtures.ports import free_port

    monkeypatch.setenv("VAULT_ADDR", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("VAULT_TOKEN", "hvs.x")
    with pytest.raises(SecretError) as err:
        resolve("ci/npm#token")
    assert err.value.code == "VAULT_UNAVAILABLE"


def test_registered_through_the_plugin_host(with_token: FakeVault) -> None:
    host = PluginHost.load()
    store = SecretStore(host.secret_resolvers())
    assert store("vault:ci/npm#token") == NPM_VALUE
    assert store.redact(f"echo {NPM_VALUE}") == "echo ***"
    record = next(r for r in host.report() if r["name"] == "vault")
    assert record["distribution"] == "lian-build-vault"
    assert record["provides"] == {"secret": ["vault"]}


def test_plugin_module_does_not_import_httpx() -> None:
    from fixtures.plugin_checks import assert_import_leaves_out

    assert_import_leaves_out("lian_vault.plugin", "httpx")
