"""`lian integrate`: the federated probe against a real registry and a real nats-server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lian_build.errors import EXIT_INVALID_INPUT, EXIT_NOT_READY
from lian_build.testing.cli import lian_envelope

NPM_TOKEN = "npm-token-value-4f1c9e"


def integrate(
    context: Any,
    state: Path,
    *args: str,
    env: dict[str, str] | None = None,
    debug_logs: bool = False,
) -> tuple[int, dict[str, Any], str, str]:
    """Pipe ``context`` (JSON-encoded unless a str) into ``lian integrate``."""
    stdin = context if isinstance(context, str) else json.dumps(context)
    argv = [*(["-vv"] if debug_logs else []), "integrate", *args]
    run = lian_envelope(argv, state, env=env, stdin=stdin)
    return run.exit_code, run.envelope, run.stdout, run.stderr


def _context(registry_host: str, **extra: Any) -> dict[str, Any]:
    return {
        "workspace": "web",
        "request_id": "r-42",
        "secrets": [{"id": "npm", "ref": "env:LIAN_TEST_NPM_TOKEN"}],
        "compute": {"provider": "docker-local"},
        "registry": {"provider": "zot", "url": f"http://{registry_host}"},
        **extra,
    }


def test_valid_context_is_ready(oci_registry: Any, tmp_path: Path) -> None:
    code, envelope, stdout, stderr = integrate(
        _context(oci_registry.host), tmp_path, env={"LIAN_TEST_NPM_TOKEN": NPM_TOKEN}
    )
    assert code == 0, stderr
    assert (envelope["command"], envelope["status"]) == ("integrate", "ok")
    result = envelope["result"]
    assert result["ready"] is True
    assert (result["workspace"], result["request_id"]) == ("web", "r-42")
    checks = {c["name"]: c for c in result["checks"]}
    assert set(checks) == {"plugins", "secret:npm", "compute", "registry"}
    assert all(c["ok"] for c in checks.values()), checks
    assert oci_registry.host in checks["registry"]["message"]
    assert NPM_TOKEN not in stdout + stderr


def test_missing_secret_is_not_ready_and_leaks_nothing(
    oci_registry_auth: Any, tmp_path: Path
) -> None:
    context = {
        "workspace": "web",
        "secrets": [
            {"id": "npm", "ref": "env:LIAN_TEST_NPM_TOKEN"},
            {"id": "github", "ref": "env:LIAN_TEST_NOT_SET"},
        ],
        "registry": {
            "provider": "zot",
            "url": f"http://{oci_registry_auth.host}",
            "username": oci_registry_auth.username,
            "password_ref": "env:LIAN_TEST_REGISTRY_PASSWORD",
        },
    }
    env = {
        "LIAN_TEST_NPM_TOKEN": NPM_TOKEN,
        "LIAN_TEST_REGISTRY_PASSWORD": oci_registry_auth.password,
    }
    code, envelope, stdout, stderr = integrate(context, tmp_path, env=env, debug_logs=True)
    assert code == EXIT_NOT_READY, stderr
    error = envelope["error"]
    assert error["code"] == "NOT_READY"
    assert "secret:github" in error["message"]
    assert "lian integrate: error [NOT_READY]: " in stderr
    checks = {c["name"]: c for c in envelope["result"]["checks"]}
    assert checks["secret:github"]["ok"] is False
    assert "LIAN_TEST_NOT_SET" in checks["secret:github"]["message"]
    assert checks["secret:npm"]["ok"] is True
    assert checks["registry"]["ok"] is True, checks["registry"]  # the password worked
    for value in (NPM_TOKEN, oci_registry_auth.password):
        assert value not in stdout
        assert value not in stderr


def test_wrong_registry_password_is_not_ready(oci_registry_auth: Any, tmp_path: Path) -> None:
    context = {
        "workspace": "web",
        "registry": {
            "provider": "zot",
            "url": f"http://{oci_registry_auth.host}",
            "username": oci_registry_auth.username,
            "password_ref": "env:LIAN_TEST_REGISTRY_PASSWORD",
        },
    }
    wrong = "wrong-password-7d2a"
    code, envelope, stdout, stderr = integrate(
        context, tmp_path, env={"LIAN_TEST_REGISTRY_PASSWORD": wrong}
    )
    assert code == EXIT_NOT_READY, stderr
    assert "registry" in envelope["error"]["message"]
    assert wrong not in stdout + stderr


@pytest.mark.parametrize(
    ("stdin", "field"),
    [
        ("{not json", "context"),
        ("[1, 2]", "context"),
        ('"web"', "context"),
        ("", "context"),
        ('{"request_id": "r-1"}', "workspace"),
        ('{"workspace": "Not Valid"}', "workspace"),
        ('{"workspace": "web", "secrets": {"id": "x"}}', "secrets"),
        ('{"workspace": "web", "registry": {"url": "http://x"}}', "registry.provider"),
    ],
)
def test_bad_context_is_invalid_input(tmp_path: Path, stdin: str, field: str) -> None:
    code, envelope, _out, stderr = integrate(stdin, tmp_path)
    assert code == EXIT_INVALID_INPUT, stderr
    assert envelope["error"]["code"] == "INVALID_INPUT"
    assert envelope["error"]["field"] == field
    assert "lian integrate: error [INVALID_INPUT]: " in stderr


def test_completion_event_published_to_nats(
    oci_registry: Any, nats_server: Any, nats_collector: Any, tmp_path: Path
) -> None:
    collector = nats_collector(nats_server.url, "acme.>")
    code, envelope, _out, stderr = integrate(
        _context(oci_registry.host),
        tmp_path,
        "--nats-url",
        nats_server.url,
        "--nats-subject-prefix",
        "acme",
        env={"LIAN_TEST_NPM_TOKEN": NPM_TOKEN},
    )
    assert code == 0, stderr
    assert "no --nats-url" not in stderr
    messages = collector.wait_for(1)
    assert [subject for subject, _ in messages] == ["acme.web.integrate.completed"]
    event = json.loads(messages[0][1])
    assert event["kind"] == "integrate.completed"
    assert event["workspace"] == "web"
    assert event["data"] == {"ready": True, "request_id": "r-42"}
    assert envelope["result"]["ready"] is True
    assert NPM_TOKEN not in messages[0][1].decode()


def test_not_ready_is_published_too(nats_server: Any, nats_collector: Any, tmp_path: Path) -> None:
    collector = nats_collector(nats_server.url, "lian.web.>")
    context = {"workspace": "web", "secrets": [{"id": "x", "ref": "env:LIAN_TEST_NOT_SET"}]}
    code, _envelope, _out, stderr = integrate(context, tmp_path, env={"NATS_URL": nats_server.url})
    assert code == EXIT_NOT_READY, stderr
    messages = collector.wait_for(1)
    assert [subject for subject, _ in messages] == ["lian.web.integrate.completed"]
    data = json.loads(messages[0][1])["data"]
    assert (data["ready"], data["code"]) == (False, "NOT_READY")


def test_without_nats_url_warns_and_still_answers(oci_registry: Any, tmp_path: Path) -> None:
    code, envelope, _out, stderr = integrate(
        _context(oci_registry.host), tmp_path, env={"LIAN_TEST_NPM_TOKEN": NPM_TOKEN}
    )
    assert code == 0, stderr
    assert envelope["result"]["ready"] is True
    assert "no --nats-url/NATS_URL: the completion event is not published" in stderr


def test_unreachable_nats_does_not_fail_the_probe(oci_registry: Any, tmp_path: Path) -> None:
    from fixtures.ports import free_port

    dead = f"nats://127.0.0.1:{free_port()}"
    code, envelope, _out, stderr = integrate(
        _context(oci_registry.host),
        tmp_path,
        "--nats-url",
        dead,
        env={"LIAN_TEST_NPM_TOKEN": NPM_TOKEN},
    )
    assert code == 0, stderr
    assert envelope["result"]["ready"] is True
