"""An orchestrator that misbehaves (garbage, wrong shapes, 401, 500, a hang, nobody
listening): each gives one clear error with a stable code, and a build through the CLI
prints one error envelope and leaves no runner behind."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from orchestrator_support import client_provider, metrics, spawn_request

from fixtures.cli import lian_envelope
from fixtures.keys import write_private_key
from fixtures.ports import free_port
from lian_build.errors import EXIT_PROVISION, ProvisionError
from lian_orchestrator.spool import Spool

ROOT = Path(__file__).resolve().parents[3]

# path -> (status, content type, body) for every request; "hang" sleeps instead.
Behaviour = tuple[int, str, bytes] | str


class Misbehaving:
    """A tiny HTTP server on 127.0.0.1 that answers every request the same bad way."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.requests.append((self.command, self.path))
                if outer.behaviour == "hang":
                    time.sleep(3)
                    return
                status, kind, body = outer.behaviour  # type: ignore[misc]
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def misbehaving() -> Iterator[Callable[[Behaviour], Misbehaving]]:
    servers: list[Misbehaving] = []

    def make(behaviour: Behaviour) -> Misbehaving:
        servers.append(Misbehaving(behaviour))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


HTML_500 = (500, "text/html", b"<html><body>Internal Server Error</body></html>")
CASES = {
    "garbage": ((200, "text/plain", b"\x00\xffthis is not json"), "ORCHESTRATOR_BAD_RESPONSE"),
    "wrong shape": (
        (201, "application/json", json.dumps({"runner": {"id": 7}}).encode()),
        "ORCHESTRATOR_BAD_RESPONSE",
    ),
    "a list": ((201, "application/json", b"[1, 2]"), "ORCHESTRATOR_BAD_RESPONSE"),
    "401 without body": ((401, "text/plain", b""), "ORCHESTRATOR_UNAUTHORIZED"),
    "403": (
        (403, "application/json", b'{"error": {"code": "FORBIDDEN"}}'),
        "ORCHESTRATOR_UNAUTHORIZED",
    ),
    "500 html": (HTML_500, "ORCHESTRATOR_ERROR"),
    "503 envelope": (
        (503, "application/json", b'{"error": {"code": "MAINTENANCE", "message": "back at 6"}}'),
        "ORCHESTRATOR_ERROR",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_bad_answer_has_its_code(misbehaving, case):
    behaviour, code = CASES[case]
    server = misbehaving(behaviour)
    with pytest.raises(ProvisionError) as err:
        client_provider(server.url).spawn(spawn_request())
    assert err.value.code == code
    assert err.value.exit_code == EXIT_PROVISION
    assert server.url in err.value.message
    assert "token-of-ci-machine" not in err.value.message
    if case == "503 envelope":
        assert err.value.details["code"] == "maintenance"
        assert "back at 6" in err.value.message


def test_a_hang_is_a_timeout(misbehaving):
    server = misbehaving("hang")
    with pytest.raises(ProvisionError) as err:
        client_provider(server.url, spawn_timeout_s=0.5).spawn(spawn_request())
    assert err.value.code == "ORCHESTRATOR_TIMEOUT"
    assert "within 0s" in err.value.message or "within 1s" in err.value.message


def test_nobody_listening_is_unreachable():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ProvisionError) as err:
        client_provider(url).list_runners({"lian.managed": "true"})
    assert err.value.code == "ORCHESTRATOR_UNREACHABLE"
    assert "lian orchestrator serve" in err.value.message


def test_a_broken_orchestrator_loses_no_record(misbehaving, tmp_path, monkeypatch):
    monkeypatch.setenv("LIAN_STATE_DIR", str(tmp_path))
    server = misbehaving(HTML_500)
    provider = client_provider(server.url)
    provider.record(metrics(session="kept"))  # never raises
    assert Spool.default(server.url).pending() == 1
    # A P95 answer in the wrong shape is a warning, not a failure: sizing falls back.
    assert provider.size_for("web") is None


@pytest.mark.parametrize(
    ("behaviour", "code"),
    [
        ((200, "application/json", b'{"runners": "none"}'), "ORCHESTRATOR_BAD_RESPONSE"),
        ((201, "text/html", b"<html>welcome</html>"), "ORCHESTRATOR_BAD_RESPONSE"),
        (
            (401, "application/json", b'{"error": {"code": "UNAUTHORIZED"}}'),
            "ORCHESTRATOR_UNAUTHORIZED",
        ),
        (HTML_500, "ORCHESTRATOR_ERROR"),
    ],
    ids=["bad list", "html", "401", "500"],
)
def test_a_build_through_a_broken_orchestrator_is_one_envelope(
    misbehaving, tmp_path, oci_registry, behaviour, code
):
    server = misbehaving(behaviour)
    key = write_private_key(tmp_path / "id_ed25519")
    token = "token-of-ci-machine-a-0123456789"
    run = lian_envelope(
        [
            "build", "--workspace", "web", "--context", str(ROOT / "examples" / "app"),
            "--image", f"{oci_registry.host}/orch-faults/web:1", "--ssh-key", str(key),
        ],
        tmp_path,
        env={"ORCHESTRATOR_URL": server.url, "LIAN_ORCHESTRATOR_TOKEN": token},
    )  # fmt: skip
    assert run.exit_code == EXIT_PROVISION, run.stderr
    assert run.envelope["status"] == "error"
    assert run.error["code"] == code
    assert run.envelope["result"]["provider"] == "orchestrator"
    assert token not in run.stdout + run.stderr
    assert len([line for line in run.stderr.splitlines() if "error [" in line]) == 1
    # After the failed spawn the client looked for anything of its session to destroy.
    spawned = server.requests.index(("POST", "/v1/runners"))
    assert any(
        method == "GET" and path.startswith("/v1/runners?label=lian.session")
        for method, path in server.requests[spawned:]
    ), server.requests


def test_plan_through_a_broken_orchestrator_still_plans(misbehaving, tmp_path):
    server = misbehaving(HTML_500)
    key = write_private_key(tmp_path / "id_ed25519")
    context = tmp_path / "app"  # no .build-spec.ncl: sizing asks the orchestrator
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    run = lian_envelope(
        [
            "plan", "--workspace", "web", "--context", str(context),
            "--image", "127.0.0.1:5999/web:1", "--ssh-key", str(key),
            "--orchestrator-url", server.url,
        ],
        tmp_path,
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    result = run.envelope["result"]
    assert result["compute"]["provider"] == "orchestrator"
    assert result["compute"]["url"] == server.url
    assert result["size"]["source"] != "orchestrator"
    assert "sizing falls back" in run.stderr
    assert ("GET", "/v1/workspaces/web/p95") in server.requests
