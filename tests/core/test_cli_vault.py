"""``vault:`` references through the CLI: ``plan`` checks schemes without resolving,
``integrate`` resolves them, and no resolved value reaches any output, event or file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fixtures.cli import lian_envelope
from fixtures.vault import FakeVault
from lian_build.errors import EXIT_INVALID_INPUT, EXIT_NOT_READY

NPM_MARKER = "npm-marker-5e0d13b9c2"


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    return ctx


def _plan(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> Any:
    return lian_envelope(
        [
            "plan",
            "--workspace",
            "web",
            "--context",
            str(_context(tmp_path)),
            "--image",
            "127.0.0.1:5999/apps/web:1",
            "--registry",
            "zot",
            "--registry-opt",
            "url=http://127.0.0.1:5999",
            *extra,
        ],
        tmp_path / "state",
        env=env,
    )


def test_plan_checks_vault_references_without_resolving(fake_vault: FakeVault, tmp_path):
    run = _plan(
        tmp_path,
        "--secret",
        "npm=vault:ci/npm#token",
        "--registry-opt",
        "username=ci",
        "--registry-opt",
        "password_ref=vault:kv/data/ci/registry#password",
        env={"VAULT_ADDR": fake_vault.url, "VAULT_TOKEN": fake_vault.token("*")},
    )
    assert run.exit_code == 0, run.stderr
    assert run.envelope["result"]["secrets"] == [{"id": "npm", "ref": "vault:ci/npm#token"}]
    assert fake_vault.requests == []  # planning resolved nothing


def test_plan_without_the_vault_plugin_names_the_field(tmp_path):
    run = _plan(
        tmp_path, "--secret", "npm=vault:ci/npm#token", env={"LIAN_DISABLE_PLUGINS": "vault"}
    )
    assert run.exit_code == EXIT_INVALID_INPUT
    assert run.error["code"] == "SECRET_SCHEME_UNKNOWN"
    assert run.error["field"] == "secrets.npm"
    assert "installed: env, file" in run.error["message"]


def test_plan_flags_an_unknown_scheme_in_provider_settings(tmp_path):
    run = _plan(
        tmp_path,
        "--registry-opt",
        "username=ci",
        "--registry-opt",
        "password_ref=sops:ci/registry",
    )
    assert run.exit_code == EXIT_INVALID_INPUT
    assert (run.error["code"], run.error["field"]) == (
        "SECRET_SCHEME_UNKNOWN",
        "registry.password_ref",
    )


def _integrate(state: Path, context: dict[str, Any], env: dict[str, str], *args: str) -> Any:
    return lian_envelope(["-vv", "integrate", *args], state, env=env, stdin=json.dumps(context))


def _grep_tree(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_integrate_resolves_vault_references_and_leaks_nothing(
    fake_vault: FakeVault, oci_registry_auth: Any, nats_server: Any, nats_collector: Any, tmp_path
):
    fake_vault.put("ci/npm", {"token": NPM_MARKER})
    fake_vault.put("ci/registry", {"password": oci_registry_auth.password}, mount="kv")
    fake_vault.kv.setdefault(("", "kv"), {})
    role_id, secret_id = fake_vault.approle("secret/ci/*", "kv/ci/*")
    collector = nats_collector(nats_server.url, "lian.>")
    state = tmp_path / "state"
    context = {
        "workspace": "web",
        "request_id": "r-7",
        "secrets": [{"id": "npm", "ref": "vault:ci/npm#token"}],
        "registry": {
            "provider": "zot",
            "url": f"http://{oci_registry_auth.host}",
            "username": oci_registry_auth.username,
            "password_ref": "vault:kv/data/ci/registry#password",
        },
    }
    env = {"VAULT_ADDR": fake_vault.url, "VAULT_ROLE_ID": role_id, "VAULT_SECRET_ID": secret_id}
    run = _integrate(state, context, env, "--nats-url", nats_server.url)
    assert run.exit_code == 0, run.stderr
    checks = {c["name"]: c for c in run.envelope["result"]["checks"]}
    assert checks["secret:npm"]["ok"] and checks["registry"]["ok"], checks
    messages = collector.wait_for(1)
    assert messages and messages[0][0] == "lian.web.integrate.completed"
    token = next(iter(fake_vault.approles.values()))
    for value in (NPM_MARKER, oci_registry_auth.password, secret_id, token):
        assert value not in run.stdout and value not in run.stderr
        assert all(value.encode() not in data for _subject, data in messages)
        assert _grep_tree(state, value) == []


def test_integrate_with_a_missing_vault_path_is_not_ready(fake_vault: FakeVault, tmp_path):
    context = {"workspace": "web", "secrets": [{"id": "npm", "ref": "vault:ci/gone#token"}]}
    env = {"VAULT_ADDR": fake_vault.url, "VAULT_TOKEN": fake_vault.token("*")}
    run = _integrate(tmp_path / "state", context, env)
    assert run.exit_code == EXIT_NOT_READY
    assert run.error["code"] == "NOT_READY"
    checks = {c["name"]: c for c in run.envelope["result"]["checks"]}
    assert checks["secret:npm"]["ok"] is False
    assert "no secret at secret/ci/gone" in checks["secret:npm"]["message"]
