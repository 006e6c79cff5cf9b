"""Every flat-argument rule, through the real CLI: one error envelope naming the field,
one readable line on stderr, no traceback, the documented exit code."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attrs
import pytest

from lian_build.errors import EXIT_INVALID_INPUT, EXIT_PLUGIN
from lian_build.remote.ssh import generate_host_key
from lian_build.testing.cli import CliRun, lian_envelope

IMAGE = "127.0.0.1:5000/web:1"


def run_cli(args: list[str], state: Path, env: dict[str, str] | None = None) -> CliRun:
    """Run ``lian`` in a child process; exactly one envelope line, never a traceback."""
    return lian_envelope(args, state, env=env)


def assert_rejected(
    run: CliRun, *, field: str, code: str = "INVALID_INPUT", exit_code: int = EXIT_INVALID_INPUT
) -> None:
    assert run.envelope["status"] == "error", run.envelope
    assert run.error["code"] == code, run.error
    assert run.error.get("field") == field, run.error
    assert run.exit_code == exit_code, run.stderr
    command = run.envelope["command"]
    prefix = "lian" if command == "lian" else f"lian {command}"
    assert f"{prefix}: error [{code}]: " in run.stderr, run.stderr


def run_many(calls: list[list[str]], state: Path) -> list[CliRun]:
    """Independent CLI runs side by side: start-up time dominates each of them."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return list(pool.map(lambda args: run_cli(args, state), calls))


@attrs.frozen
class Setup:
    root: Path
    context: Path
    key: Path

    def flags(self, command: str = "plan", **over: str | None) -> list[str]:
        """The flat flags of a valid plan; ``over`` replaces (None drops) one of them."""
        values: dict[str, str | None] = {
            "workspace": "web",
            "context": str(self.context),
            "image": IMAGE,
            "ssh-key": str(self.key),
            "registry-opt": "url=http://127.0.0.1:5000",
        }
        values.update({k.replace("_", "-"): v for k, v in over.items()})
        args = [command]
        for name, value in values.items():
            if value is not None:
                args += [f"--{name}", value]
        return args


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "Dockerfile").write_text("FROM scratch\n")
    (context / "escape.Dockerfile").symlink_to(outside / "Dockerfile")
    pair = generate_host_key()
    key = tmp_path / "id_ed25519"
    key.write_text(pair.private_openssh)
    key.chmod(0o600)
    (tmp_path / "id_ed25519.pub").write_text(pair.public_openssh + "\n")
    (tmp_path / "not-a-key").write_text("hello\n")
    return Setup(tmp_path, context, key)


def test_valid_flags_plan_ok(setup: Setup) -> None:
    run = run_cli(setup.flags(), setup.root / "state")
    assert run.exit_code == 0, run.stderr
    assert run.envelope["status"] == "ok"
    assert run.envelope["result"]["image"] == IMAGE


# (flag overrides, the directives field the error must name): one line per rule.
FLAT_RULES: list[tuple[dict[str, str | None], str]] = [
    ({"image": "web:1"}, "artifact.image"),  # no registry host
    ({"image": "127.0.0.1:5000/Web:1"}, "artifact.image"),  # uppercase repository
    ({"image": "127.0.0.1:5000/web:-bad"}, "artifact.image"),  # tag may not start with '-'
    ({"image": "ghcr.io/org/web:1"}, "image"),  # not the registry the credentials are for
    ({"workspace": "a/b"}, "workspace"),
    ({"mode": "session", "actor": "Alice Smith"}, "cache.actor.id"),
    ({"mode": "session"}, "cache.actor"),  # a session needs an actor
    ({"mode": "nightly"}, "cache.mode"),
    ({"platforms": "linux"}, "platforms"),
    ({"dockerfile": "../outside/Dockerfile"}, "dockerfile"),
    ({"dockerfile": "escape.Dockerfile"}, "dockerfile"),  # a symlink out of the context
    ({"dockerfile": "/etc/hostname"}, "dockerfile"),
    ({"build-arg": "NO_EQUALS_SIGN"}, "build_args"),
    ({"build-arg": "1BAD=x"}, "build_args"),
    ({"compute-opt": "cpus"}, "compute"),
    ({"compute-opt": "no_such_setting=1"}, "compute.no_such_setting"),
    ({"registry-opt": "=http://x"}, "registry"),
    ({"secret": "npm"}, "secrets"),
    ({"tag": "x;rm -rf /"}, "artifact.tags"),
    ({"cache-from": "not a ref"}, "cache"),
    ({"builder": "kaniko"}, "builder"),
]


@pytest.mark.parametrize(
    ("command", "rules"),
    [("plan", FLAT_RULES), ("build", FLAT_RULES[::4])],  # build shares the code path
    ids=["plan", "build"],
)
def test_each_flat_rule_is_rejected_with_its_field(
    setup: Setup, command: str, rules: list[tuple[dict[str, str | None], str]]
) -> None:
    runs = run_many([setup.flags(command, **over) for over, _ in rules], setup.root / "state")
    wrong = []
    for (over, field), run in zip(rules, runs, strict=True):
        try:
            assert_rejected(run, field=field)
            # Refused before any progress line: nothing was provisioned or contacted.
            assert "[lian " not in run.stderr
        except AssertionError as exc:
            wrong.append(f"{over}: {exc}")
    assert not wrong, "\n".join(wrong)


def test_registry_setting_unknown_key_is_named(setup: Setup) -> None:
    run = run_cli([*setup.flags(), "--registry-opt", "bogus_key=1"], setup.root / "state")
    assert_rejected(run, field="registry.bogus_key")
    assert "bogus_key" in run.error["message"]


def test_bad_ssh_keys_rejected(setup: Setup) -> None:
    names = ["missing", "not-a-key", "id_ed25519.pub"]
    runs = run_many([setup.flags(ssh_key=str(setup.root / n)) for n in names], setup.root / "state")
    for name, run in zip(names, runs, strict=True):
        assert_rejected(run, field="ssh_key")
        assert name in run.error["message"]
    assert "public key" in runs[-1].error["message"]  # and says to pass the private half


def test_build_requires_an_ssh_key_plan_does_not(setup: Setup) -> None:
    build = run_cli(setup.flags("build", ssh_key=None), setup.root / "state")
    assert_rejected(build, field="ssh_key")
    assert "--ssh-key or BUILDKIT_SSH_KEY" in build.error["message"]
    plan = run_cli(setup.flags("plan", ssh_key=None), setup.root / "state")
    assert plan.exit_code == 0, plan.stderr


def test_bad_context_rejected(setup: Setup) -> None:
    paths = [setup.root / "does-not-exist", setup.key]  # the key: a file, not a directory
    runs = run_many([setup.flags(context=str(p)) for p in paths], setup.root / "state")
    for path, run in zip(paths, runs, strict=True):
        assert_rejected(run, field="context")
        assert str(path) in run.error["message"]


def test_unknown_plugin_is_a_plugin_error(setup: Setup) -> None:
    cases = [("provider", "nimbus", "compute.provider"), ("registry", "quay", "registry.provider")]
    runs = run_many(
        [setup.flags(**{flag: value}) for flag, value, _ in cases], setup.root / "state"
    )
    for (_flag, value, field), run in zip(cases, runs, strict=True):
        assert_rejected(run, field=field, code="PLUGIN_NOT_FOUND", exit_code=EXIT_PLUGIN)
        assert value in run.error["message"]


def test_session_may_not_export_into_ci(setup: Setup) -> None:
    ci_ref = "127.0.0.1:5000/ci/web/web:buildcache"
    run = run_cli(setup.flags(mode="session", actor="alice", cache_to=ci_ref), setup.root / "state")
    assert_rejected(run, field="cache", code="CACHE_NAMESPACE_VIOLATION")
    assert ci_ref in run.error["message"]


@pytest.mark.parametrize("command", ["plan", "build"])
def test_missing_required_arguments_are_listed(setup: Setup, command: str) -> None:
    run = run_cli([command, "--ssh-key", str(setup.key)], setup.root / "state")
    assert_rejected(run, field="workspace")
    for flag in ("--workspace", "--context", "--image"):
        assert flag in run.error["message"]
    only_image = run_cli(setup.flags(command, image=None), setup.root / "state")
    assert_rejected(only_image, field="image")


def test_unknown_option_is_a_usage_envelope(setup: Setup) -> None:
    run = run_cli([*setup.flags(), "--no-such-flag"], setup.root / "state")
    assert_rejected(run, field="--no-such-flag", code="USAGE")
    assert run.envelope["command"] == "plan"
    assert "see `lian plan --help`" in run.stderr


def test_option_without_its_value_is_a_usage_envelope(setup: Setup) -> None:
    run = run_cli(["-v", "plan", "--platforms"], setup.root / "state")
    assert_rejected(run, field="--platforms", code="USAGE")
    assert run.envelope["command"] == "plan"


def test_unknown_command_is_a_usage_envelope(setup: Setup) -> None:
    run = run_cli(["deploy"], setup.root / "state")
    assert_rejected(run, field="command", code="USAGE")
    assert "deploy" in run.error["message"]


def test_workspace_falls_back_to_buildkit_workspace(setup: Setup) -> None:
    state = setup.root / "state"
    run = run_cli(setup.flags(workspace=None), state, env={"BUILDKIT_WORKSPACE": "fromenv"})
    assert run.exit_code == 0, run.stderr
    result = run.envelope["result"]
    assert result["workspace"] == "fromenv"
    assert result["cache"]["exports"] == ["127.0.0.1:5000/ci/fromenv/web:buildcache"]
    flag_wins = run_cli(setup.flags(), state, env={"BUILDKIT_WORKSPACE": "fromenv"})
    assert flag_wins.envelope["result"]["workspace"] == "web"
    bad = run_cli(setup.flags(workspace=None), state, env={"BUILDKIT_WORKSPACE": "Not Valid"})
    assert_rejected(bad, field="workspace")


def test_ssh_key_falls_back_to_buildkit_ssh_key(setup: Setup) -> None:
    state = setup.root / "state"
    public = str(setup.root / "id_ed25519.pub")
    run = run_cli(setup.flags("build", ssh_key=None), state, env={"BUILDKIT_SSH_KEY": public})
    assert_rejected(run, field="ssh_key")
    assert public in run.error["message"]  # the environment's key was the one read
    good = run_cli(setup.flags(ssh_key=None), state, env={"BUILDKIT_SSH_KEY": str(setup.key)})
    assert good.exit_code == 0, good.stderr
