"""Input that used to be accepted wrongly: each gets a clear envelope or the right value."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from lian_build.errors import EXIT_INVALID_INPUT, EXIT_NOT_READY
from lian_build.intent import BUILD_FLAGS, provider_settings
from lian_build.testing.cli import CliRun, lian_envelope

IMAGE = "127.0.0.1:5999/web:1"


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    folder = tmp_path / "ctx"
    folder.mkdir()
    (folder / "Dockerfile").write_text("FROM scratch AS base\nFROM base AS final\n")
    return folder


def plan(ctx: Path, *extra: str, env: dict[str, str] | None = None) -> CliRun:
    flags = ["--workspace", "web", "--context", str(ctx), "--image", IMAGE]
    return lian_envelope(["plan", *flags, *extra], ctx.parent / "state", env=env)


def _directives(folder: Path, registry: str = "", extra: str = "") -> Path:
    path = folder / "build.ncl"
    path.write_text(
        "{\n"
        '  workspace = "web", context = "ctx", target = "final",\n'
        f'  artifact = {{ image = "{IMAGE}" }},\n'
        '  compute = { provider = "docker-local" },\n'
        f'  registry = {{ provider = "zot"{registry} }},\n'
        f"{extra}"
        "}\n"
    )
    return path


def test_the_build_flags_are_declared_once() -> None:
    # The seed's 26 build flags plus --orchestrator-url; every name once.
    assert len(BUILD_FLAGS) == 27
    assert len({flag.name for flag in BUILD_FLAGS}) == len(BUILD_FLAGS)


def test_actor_dashes_are_kept_in_the_dev_namespace(ctx: Path) -> None:
    run = plan(ctx, "--mode", "session", "--actor", "bob-smith")
    assert run.exit_code == 0, run.stderr
    exports = run.envelope["result"]["cache"]["exports"]
    assert exports == ["127.0.0.1:5999/dev/bob-smith-web/web:buildcache"]
    assert run.envelope["result"]["cache"]["actor"] == "bob-smith"


def test_list_settings_take_a_comma_list_or_repeated_flags(ctx: Path) -> None:
    run = plan(
        ctx,
        "--provider",
        "hcloud",
        "--compute-opt",
        "server_types=cx23,cx33",
        "--compute-opt",
        "server_types=cx43",
    )
    assert run.exit_code == 0, run.stderr
    result = run.envelope["result"]
    assert result["compute"]["settings"]["server_types"] == ["cx23", "cx33", "cx43"]
    assert [t["name"] for t in result["ladder"]] == ["cx23", "cx33", "cx43"]


def test_flag_values_are_typed_by_the_settings_field() -> None:
    from lian_hcloud.provider import HcloudSettings

    typed = provider_settings(
        HcloudSettings,
        ["poll_interval=2", "packages=buildah, rsync", "location=nbg1"],
        "compute-opt",
        "compute",
    )
    assert typed == {"poll_interval": 2.0, "packages": ["buildah", "rsync"], "location": "nbg1"}


def test_a_wrongly_typed_flag_setting_names_the_field(ctx: Path) -> None:
    run = plan(ctx, "--registry", "harbor", "--registry-opt", "project=ci", "--registry-opt",
               "url=http://127.0.0.1:5999", "--registry-opt", "tls_verify=nope")  # fmt: skip
    assert run.exit_code == EXIT_INVALID_INPUT
    assert run.error["field"] == "registry.tls_verify"


def test_provider_settings_from_a_file_are_strict(ctx: Path) -> None:
    path = _directives(
        ctx.parent,
        registry=', url = "http://127.0.0.1:5999", tls_verify = "false"',
    )
    path.write_text(path.read_text().replace('"zot"', '"harbor", project = "ci"'))
    run = lian_envelope(["plan", "--directives", str(path)], ctx.parent / "state")
    assert run.exit_code == EXIT_INVALID_INPUT, run.envelope
    assert run.error["code"] == "INVALID_INPUT"
    assert run.error["field"] == "registry.tls_verify"
    assert "expected a boolean" in run.error["message"]


@pytest.mark.parametrize("language", ["rust; rm -rf /", "cobol"])
def test_an_unknown_language_lists_the_known_ones(ctx: Path, language: str) -> None:
    run = plan(ctx, "--language", language)
    assert run.exit_code == EXIT_INVALID_INPUT
    assert run.error["field"] == "language"
    for known in ("go", "java", "rust"):
        assert known in run.error["details"]["known"]
        assert known in run.error["message"]


def test_a_known_language_is_case_insensitive(ctx: Path) -> None:
    run = plan(ctx, "--language", "Rust")
    assert run.exit_code == 0, run.stderr
    assert run.envelope["result"]["size"]["cpu"] == 4


def test_flags_a_directives_file_overrides_are_named_once(ctx: Path) -> None:
    path = _directives(ctx.parent, registry=', url = "http://127.0.0.1:5999"')
    args = ["plan", "--directives", str(path), "--workspace", "other", "--target", "base"]
    run = lian_envelope([*args, "--runner-image", "img:2"], ctx.parent / "state")
    assert run.exit_code == 0, run.stderr
    warnings = [line for line in run.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, run.stderr
    assert "--workspace" in warnings[0] and "--target" in warnings[0]
    assert "--runner-image" not in warnings[0]  # the file sets no runner image
    result = run.envelope["result"]
    assert (result["workspace"], result["target"]) == ("web", "final")
    assert result["runner"]["image"] == "img:2"


def test_plan_shows_the_runner_image_actually_used(ctx: Path) -> None:
    runs = {}
    with ThreadPoolExecutor(3) as pool:
        futures = {
            "flag": pool.submit(plan, ctx, "--runner-image", "lian-runner:custom"),
            "env": pool.submit(plan, ctx, env={"BUILDKIT_RUNNER_IMAGE": "lian-runner:env"}),
            "default": pool.submit(plan, ctx),
        }
        runs = {name: future.result() for name, future in futures.items()}
    assert runs["flag"].envelope["result"]["runner"]["image"] == "lian-runner:custom"
    assert runs["env"].envelope["result"]["runner"]["image"] == "lian-runner:env"
    # Without an override: the provider's own default image.
    assert runs["default"].envelope["result"]["runner"]["image"] == "lian-runner:debian"


def _integrate(stdin: str, state: Path, env: dict[str, str] | None = None) -> CliRun:
    return lian_envelope(["integrate"], state, stdin=stdin, env=env)


@pytest.mark.parametrize(
    ("stdin", "field"),
    [
        ('{"workspace": "web", "secret": []}', "secret"),  # misspelt "secrets"
        ('{"workspace": "web", "request_id": "r", "extra": {"a": 1}}', "extra"),
        ("[" * 200_000 + "]" * 200_000, "context"),
        ('{"workspace": ' + "[" * 200_000, "context"),
    ],
)
def test_integrate_refuses_unknown_keys_and_deep_json(
    tmp_path: Path, stdin: str, field: str
) -> None:
    run = _integrate(stdin, tmp_path)
    assert run.exit_code == EXIT_INVALID_INPUT, run.stderr
    assert run.error["code"] == "INVALID_INPUT"
    assert run.error["field"] == field


def test_integrate_checks_compute_credentials(tmp_path: Path) -> None:
    context: dict[str, Any] = {
        "workspace": "web",
        "compute": {"provider": "hcloud", "token_ref": "env:LIAN_T_HCLOUD_TOKEN_UNSET"},
    }
    run = _integrate(json.dumps(context), tmp_path)
    assert run.exit_code == EXIT_NOT_READY, run.stderr
    checks = {c["name"]: c for c in run.envelope["result"]["checks"]}
    assert checks["compute"]["ok"] is False
    assert checks["compute"]["code"] == "SECRET_UNRESOLVED"
    good = _integrate(json.dumps(context), tmp_path, env={"LIAN_T_HCLOUD_TOKEN_UNSET": "t0k3n"})
    assert good.exit_code == 0, good.stderr
    assert "token_ref" in good.envelope["result"]["checks"][-1]["message"]
    assert "t0k3n" not in good.stdout + good.stderr


def test_integrate_names_an_unknown_provider_setting(tmp_path: Path) -> None:
    context = {"workspace": "web", "compute": {"provider": "docker-local", "imag": "x"}}
    run = _integrate(json.dumps(context), tmp_path)
    assert run.exit_code == EXIT_NOT_READY, run.stderr
    compute = next(c for c in run.envelope["result"]["checks"] if c["name"] == "compute")
    assert compute["code"] == "INVALID_INPUT" and "compute.imag" in compute["message"]
