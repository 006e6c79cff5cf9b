"""The core works with no provider plugin present (nox -s core_alone installs it alone;
in the full environment the first-party plugins are blocked instead)."""

from __future__ import annotations

import json

from fixtures.fake_dists import run_lian
from fixtures.keys import write_private_key

FIRST_PARTY = "hcloud,proxmox,docker-local,zot,harbor,ghcr,orchestrator,vault"


def test_help_and_plugins_without_providers():
    env = {"LIAN_DISABLE_PLUGINS": FIRST_PARTY}
    assert run_lian(["--help"], env=env).returncode == 0
    proc = run_lian(["plugins", "--json"], env=env)
    assert proc.returncode == 0
    plugins = json.loads(proc.stdout)["result"]["plugins"]
    loaded = {p["name"] for p in plugins if p["status"] == "loaded"}
    assert loaded == {
        "builtin-sizing",
        "builtin-history",
        "builtin-builders",
        "builtin-secrets",
        "builtin-nats",
        "builtin-runners",
        "builtin-cache",
    }


def test_build_without_provider_is_a_clear_plugin_error(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    key = write_private_key(tmp_path / "id")
    proc = run_lian(
        [
            "plan",
            "--workspace",
            "w",
            "--context",
            str(tmp_path),
            "--image",
            "127.0.0.1:5000/a:1",
            "--ssh-key",
            str(key),
        ],
        env={"LIAN_DISABLE_PLUGINS": FIRST_PARTY},
    )
    assert proc.returncode == 3, proc.stderr
    envelope = json.loads(proc.stdout)
    assert envelope["status"] == "error"
    assert envelope["error"]["code"] == "PLUGIN_NOT_FOUND"
    assert "Traceback" not in proc.stderr
