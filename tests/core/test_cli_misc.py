"""The CLI's odds and ends: help without arguments, `lian plugins`, and secrets given
by reference never showing up in `lian plan`.

`lian` without arguments prints the help on stdout and exits 0, exactly like
`lian --help` (no envelope: it is a request for help, not a failed command).
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
from pathlib import Path

import pytest

from lian_build.testing.cli import lian_process

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
COMMANDS = ("build", "plan", "integrate", "plugins", "reap")
PROVIDER_PLUGINS = {
    "docker-local": "compute",
    "hcloud": "compute",
    "proxmox": "compute",
    "zot": "registry",
    "harbor": "registry",
    "ghcr": "registry",
}
BUILTINS = {
    "builtin-sizing",
    "builtin-history",
    "builtin-builders",
    "builtin-secrets",
    "builtin-nats",
    "builtin-runners",
}


def run_cli(
    args: list[str], state: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return lian_process(args, state, env=env)


@pytest.mark.parametrize("args", [[], ["--help"]], ids=["no-args", "--help"])
def test_no_arguments_shows_the_help_like_help(tmp_path: Path, args: list[str]) -> None:
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Usage: lian" in proc.stdout
    for command in COMMANDS:
        assert command in proc.stdout
    assert not proc.stdout.lstrip().startswith("{")  # text, not an envelope
    assert "error" not in proc.stderr


def test_plugin_group_without_command_shows_its_help(tmp_path: Path) -> None:
    proc = run_cli(["runner-image"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Usage: lian runner-image" in proc.stdout
    assert "error" not in proc.stderr


def test_plugins_json_lists_providers_and_builtins(tmp_path: Path) -> None:
    proc = run_cli(["plugins", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    envelope = json.loads(proc.stdout)
    assert (envelope["command"], envelope["status"]) == ("plugins", "ok")
    plugins = {p["name"]: p for p in envelope["result"]["plugins"]}
    assert envelope["result"]["conflicts"] == {}
    assert set(PROVIDER_PLUGINS) | BUILTINS <= set(plugins)
    for name, kind in PROVIDER_PLUGINS.items():
        record = plugins[name]
        distribution = f"lian-build-{name}"
        assert record["distribution"] == distribution
        assert record["version"] == importlib.metadata.version(distribution)
        assert record["builtin"] is False
        assert record["status"] == "loaded" and "error" not in record
        assert record["provides"] == {kind: [name]}
        assert record["hooks"] and all(h.startswith("lian_") for h in record["hooks"])
    for name in BUILTINS:
        record = plugins[name]
        assert record["builtin"] is True
        assert record["distribution"] == "lian-build"
        assert record["version"] == importlib.metadata.version("lian-build")
        assert record["hooks"]
    assert plugins["builtin-builders"]["provides"] == {"builder": ["buildkit", "buildah"]}
    assert {"env", "file"} <= set(plugins["builtin-secrets"]["provides"]["secret"])


def test_plugins_text_table_is_not_an_envelope(tmp_path: Path) -> None:
    proc = run_cli(["plugins"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.splitlines()
    for name in PROVIDER_PLUGINS:
        assert any(row.startswith(name + " ") and "[loaded]" in row for row in rows), rows
    assert "CONFLICT" not in proc.stdout


SECRETS = {
    "HCLOUD_TOKEN": "hcloud-token-9c1e55aa",
    "GHCR_TOKEN": "ghcr-token-3b7f0d21",
    "LIAN_TEST_NPM_TOKEN": "npm-token-61d0c2e8",
    "LIAN_TEST_REGISTRY_PASSWORD": "registry-pass-0a9be4",
    "NATS_NKEY_SEED": "SUAGIEYODKBBTUMOB6HZSHUSTAXXMFL3K5B5ALYAYTN5CITQUYDCXWXPBI",
}


def test_secrets_by_reference_never_appear_in_plan(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    flat = run_cli(
        [
            "-vv", "plan", "--workspace", "web", "--context", str(context),
            "--image", "127.0.0.1:5000/web:1",
            "--registry-opt", "url=http://127.0.0.1:5000",
            "--registry-opt", "username=ci",
            "--registry-opt", "password_ref=env:LIAN_TEST_REGISTRY_PASSWORD",
            "--secret", "npm=env:LIAN_TEST_NPM_TOKEN",
            "--secret", "unset=env:LIAN_TEST_NEVER_SET",  # plan resolves nothing
            "--nats-url", "nats://127.0.0.1:4222",
        ],
        tmp_path,
        env=SECRETS,
    )  # fmt: skip
    assert flat.returncode == 0, flat.stderr
    plan = json.loads(flat.stdout)["result"]
    assert plan["secrets"] == [
        {"id": "npm", "ref": "env:LIAN_TEST_NPM_TOKEN"},
        {"id": "unset", "ref": "env:LIAN_TEST_NEVER_SET"},
    ]
    hcloud = run_cli(
        ["-vv", "plan", "--directives", str(EXAMPLES / "hcloud.ncl")], tmp_path, env=SECRETS
    )
    assert hcloud.returncode == 0, hcloud.stderr
    assert json.loads(hcloud.stdout)["result"]["compute"]["settings"]["token_ref"] == (
        "env:HCLOUD_TOKEN"
    )
    for proc in (flat, hcloud):
        for name, value in SECRETS.items():
            assert value not in proc.stdout, name
            assert value not in proc.stderr, name


@pytest.mark.parametrize(
    ("args", "field"),
    [(["--workspace", "Not Valid"], "workspace"), (["--compute-opt", "no-equals"], "compute")],
)
def test_reap_rejects_bad_input_before_touching_a_provider(
    tmp_path: Path, args: list[str], field: str
) -> None:
    # An unreachable engine: reaching it would fail differently (PROVISION_FAILED).
    proc = run_cli(["reap", "--compute-opt", "docker_host=tcp://127.0.0.1:9", *args], tmp_path)
    assert proc.returncode == 2, proc.stderr
    error = json.loads(proc.stdout)["error"]
    assert (error["code"], error["field"]) == ("INVALID_INPUT", field)
    assert "lian reap: error [INVALID_INPUT]: " in proc.stderr
