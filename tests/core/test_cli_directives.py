"""`lian plan --directives`: a full plan for every shipped example without network or
secrets, one clean error envelope for every kind of broken Nickel file, and the
precedence rule (directives win over flat fields, except --ssh-key)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lian_build.remote.ssh import generate_host_key
from lian_build.testing.cli import lian_envelope

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Ask every library that honours these for colour: the envelope and stderr must stay plain.
COLOUR_ON = {"FORCE_COLOR": "1", "CLICOLOR_FORCE": "1", "TERM": "xterm-256color"}


def _isolated_network() -> list[str]:
    """A prefix that runs the CLI without any network (root + unshare), else nothing."""
    unshare = shutil.which("unshare")
    if unshare and os.geteuid() == 0:
        probe = subprocess.run([unshare, "-n", "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [unshare, "-n"]
    return []


NO_NETWORK = _isolated_network()


def run_cli(
    args: list[str], state: Path, *, env: dict[str, str] | None = None, offline: bool = False
) -> tuple[int, dict[str, Any], str, str]:
    """(exit code, the one envelope, stdout, stderr) of a ``lian`` child process."""
    run = lian_envelope(
        args, state, env={**COLOUR_ON, **(env or {})}, prefix=NO_NETWORK if offline else ()
    )
    return run.exit_code, run.envelope, run.stdout, run.stderr


@pytest.fixture
def ssh_key(tmp_path: Path) -> Path:
    pair = generate_host_key()
    key = tmp_path / "id_ed25519"
    key.write_text(pair.private_openssh)
    key.chmod(0o600)
    (tmp_path / "id_ed25519.pub").write_text(pair.public_openssh + "\n")
    return key


# ------------------------------------------------------------------ the shipped examples

EXPECTED: dict[str, dict[str, Any]] = {
    "docker-local": {
        "registry": ("zot", "127.0.0.1:5000"),
        "mode": "session",
        "export_prefix": "127.0.0.1:5000/dev/alice-example-app/",
        "builders": ["buildah"],
        "first_attempt": "2c-4g",
        "token_ref": None,
    },
    "hcloud": {
        "registry": ("ghcr", "ghcr.io"),
        "mode": "ci",
        "export_prefix": "ghcr.io/example-org/ci/example-app/",
        "builders": ["buildkit", "buildah"],
        "first_attempt": "cx23",
        "token_ref": "env:HCLOUD_TOKEN",
    },
    "proxmox": {
        "registry": ("harbor", "harbor.example.internal"),
        "mode": "ci",
        "export_prefix": "harbor.example.internal/builds/ci/example-app/",
        "builders": ["buildkit", "buildah"],
        "first_attempt": "4c-8g",  # runner.tier in the file
        "token_ref": "env:PROXMOX_TOKEN",
    },
}


@pytest.mark.parametrize("provider", sorted(EXPECTED))
def test_example_plans_fully_offline_without_secrets(tmp_path: Path, provider: str) -> None:
    want = EXPECTED[provider]
    code, envelope, stdout, stderr = run_cli(
        ["plan", "--directives", str(EXAMPLES / f"{provider}.ncl")], tmp_path, offline=True
    )
    assert code == 0, stderr
    assert envelope["status"] == "ok" and envelope["command"] == "plan"
    plan = envelope["result"]
    assert plan["workspace"] == "example-app"
    assert plan["context"] == str(EXAMPLES / "app")
    # Size from examples/app/.build-spec.ncl; a ladder and at most one OOM retry.
    assert plan["size"] == {
        "cpu": 2,
        "memory_gb": 4,
        "time_budget_min": 20,
        "source": "explicit",
        "reason": "explicit size from .build-spec.ncl",
    }
    ladder = [tier["name"] for tier in plan["ladder"]]
    assert len(ladder) >= 2
    assert plan["attempts"][0] == want["first_attempt"]
    assert len(plan["attempts"]) == 1 + plan["max_oom_retries"]
    assert plan["attempts"] == ladder[ladder.index(want["first_attempt"]) :][:2]
    # Provider and registry sections.
    assert plan["compute"]["provider"] == provider
    assert (plan["registry"]["provider"], plan["registry"]["host"]) == want["registry"]
    assert plan["image"].startswith(plan["registry"]["host"] + "/")
    # Credentials are shown as the references they are, never resolved.
    assert plan["compute"]["settings"].get("token_ref") == want["token_ref"]
    # Cache namespacing.
    assert plan["cache"]["mode"] == want["mode"]
    assert plan["cache"]["exports"]
    assert all(ref.startswith(want["export_prefix"]) for ref in plan["cache"]["exports"])
    assert plan["cache"]["imports"]
    # Builder commands: argv lists that push the image and use the cache refs.
    assert list(plan["commands"]) == want["builders"]
    for argvs in plan["commands"].values():
        flat = " ".join(arg for argv in argvs for arg in argv)
        assert plan["image"] in flat
        assert plan["cache"]["exports"][0].rsplit(":", 1)[0] in flat
    assert "\x1b[" not in stdout + stderr


def test_examples_plan_without_the_network_namespace_too(tmp_path: Path) -> None:
    """The offline proof above needs root; this one always runs (same result shape)."""
    code, envelope, _out, stderr = run_cli(
        ["plan", "--directives", str(EXAMPLES / "hcloud.ncl")], tmp_path
    )
    assert code == 0, stderr
    assert envelope["result"]["compute"]["server_types"] == ["cx23", "cx33", "cx43", "cx53"]


# ------------------------------------------------------------------ broken directives

DIRECTIVES = """\
let D = import "build_directives.ncl" in
{{
  workspace = "web",
  context = "{context}",
  artifact = {{ image = "127.0.0.1:5000/web:1" }},
  compute = {{ provider = "docker-local" }},
  registry = {{ provider = "zot", url = "http://127.0.0.1:5000" }},
{extra}}} | D.BuildDirectives
"""


def _context(root: Path, name: str, build_spec: str | None = None) -> Path:
    context = root / name
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    if build_spec is not None:
        (context / ".build-spec.ncl").write_text(build_spec)
    return context


def _assert_ncl_error(
    tmp_path: Path, path: Path, *, code: str, field: str, line: int | None
) -> dict[str, Any]:
    exit_code, envelope, stdout, stderr = run_cli(["plan", "--directives", str(path)], tmp_path)
    error = envelope["error"]
    assert exit_code == 2, stderr
    assert (envelope["status"], error["code"], error.get("field")) == ("error", code, field), error
    assert f"lian plan: error [{code}]: " in stderr
    assert str(path) in error["message"]
    if line is not None:
        assert error["details"]["file"] == str(path)
        assert error["details"]["line"] == line
        assert f"{path}:{line}:" in error["message"]
    assert "\x1b[" not in stdout + stderr
    return dict(error)


def test_build_spec_out_of_bounds_in_the_context(tmp_path: Path) -> None:
    context = _context(tmp_path, "ctx", "{ cpu = 300, memory_gb = 4, time_budget_min = 10 }\n")
    path = tmp_path / "web.ncl"
    path.write_text(DIRECTIVES.format(context=context, extra=""))
    # The spec is evaluated while sizing, after the directives themselves passed.
    exit_code, envelope, stdout, stderr = run_cli(["plan", "--directives", str(path)], tmp_path)
    spec = context / ".build-spec.ncl"
    assert exit_code == 2
    assert envelope["error"]["code"] == "CONTRACT_VIOLATION"
    assert envelope["error"]["field"] == "cpu"
    assert envelope["error"]["details"]["file"] == str(spec)
    assert f"{spec}:1:" in envelope["error"]["message"]
    assert "between 1 and 256" in envelope["error"]["message"]
    assert "\x1b[" not in stdout + stderr


BROKEN: dict[str, tuple[str, str, str, int | None]] = {
    # name: (extra lines inside the record, code, field, line of the fault)
    "wrong-type": ("  builder = 42,\n", "CONTRACT_VIOLATION", "builder", 8),
    "bad-value": ('  platforms = ["linux"],\n', "CONTRACT_VIOLATION", "platforms", 8),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_contract_breaks_name_field_and_line(tmp_path: Path, name: str) -> None:
    extra, code, field, line = BROKEN[name]
    context = _context(tmp_path, "ctx")
    path = tmp_path / f"{name}.ncl"
    path.write_text(DIRECTIVES.format(context=context, extra=extra))
    _assert_ncl_error(tmp_path, path, code=code, field=field, line=line)


def test_missing_field_is_named(tmp_path: Path) -> None:
    context = _context(tmp_path, "ctx")
    text = DIRECTIVES.format(context=context, extra="").replace(
        '  artifact = { image = "127.0.0.1:5000/web:1" },\n', ""
    )
    path = tmp_path / "missing.ncl"
    path.write_text(text)
    _assert_ncl_error(tmp_path, path, code="CONTRACT_VIOLATION", field="artifact", line=2)


def test_syntax_error_points_at_the_token(tmp_path: Path) -> None:
    path = tmp_path / "syntax.ncl"
    path.write_text('{\n  workspace = "web",\n  context = ,\n}\n')
    error = _assert_ncl_error(tmp_path, path, code="CONTRACT_VIOLATION", field="directives", line=3)
    assert "unexpected token" in error["message"]


def test_self_importing_file_is_infinite_recursion(tmp_path: Path) -> None:
    path = tmp_path / "loop.ncl"
    path.write_text('let again = import "loop.ncl" in again\n')
    error = _assert_ncl_error(tmp_path, path, code="CONTRACT_VIOLATION", field="directives", line=1)
    assert "infinite recursion" in error["message"]


def test_runaway_evaluation_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "runaway.ncl"
    path.write_text("let rec spin = fun n => spin (n + 1) in spin 0\n")
    exit_code, envelope, stdout, stderr = run_cli(["plan", "--directives", str(path)], tmp_path)
    error = envelope["error"]
    assert exit_code == 2
    assert error["code"] in {"NCL_MEMORY", "NCL_TIMEOUT"}
    assert error["field"] == "directives"
    assert str(path) in error["message"]
    assert "\x1b[" not in stdout + stderr


def test_missing_directives_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.ncl"
    exit_code, envelope, _out, _err = run_cli(["plan", "--directives", str(path)], tmp_path)
    assert exit_code == 2
    assert envelope["error"]["code"] == "INVALID_INPUT"
    assert envelope["error"]["field"] == "directives"


# ------------------------------------------------------------------ precedence


def test_directives_win_over_flat_fields_except_ssh_key(tmp_path: Path, ssh_key: Path) -> None:
    flat = [
        "--workspace", "flatws", "--image", "ghcr.io/flat/app:9", "--provider", "hcloud",
        "--registry", "ghcr", "--builder", "buildkit", "--mode", "ci",
        "--context", str(tmp_path), "--dockerfile", "Other.Dockerfile",
    ]  # fmt: skip
    example = str(EXAMPLES / "docker-local.ncl")
    code, envelope, _out, stderr = run_cli(
        ["plan", "--directives", example, *flat, "--ssh-key", str(ssh_key)], tmp_path
    )
    assert code == 0, stderr
    plan = envelope["result"]
    assert plan["source"] == f"directives:{example}"
    assert plan["workspace"] == "example-app"
    assert plan["image"] == "127.0.0.1:5000/example-app:dev"
    assert plan["compute"]["provider"] == "docker-local"
    assert plan["registry"]["provider"] == "zot"
    assert plan["builder"] == "buildah"
    assert plan["cache"]["mode"] == "session"
    assert plan["context"] == str(EXAMPLES / "app")
    assert plan["dockerfile"] == "Dockerfile"
    # --ssh-key is the one flag directives cannot override: a bad one is still refused.
    public = str(ssh_key) + ".pub"
    code, envelope, _out, _err = run_cli(
        ["plan", "--directives", example, "--ssh-key", public], tmp_path
    )
    assert code == 2
    assert envelope["error"]["field"] == "ssh_key"
    assert public in envelope["error"]["message"]
