"""The documentation keeps up with the code.

Every hook (with its exact argument names and call mode), API type and base-class member
is in docs/plugins.md; every command, flag, environment variable, exit code and error
code (with its exit code) is in docs/cli.md; relative links resolve; and the example
plugin in docs/plugins.md installs, plans and passes its own tests.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from fixtures.fake_dists import install_fake_plugin, run_lian
from lian_build import api, errors, hookspecs
from lian_build.cli import build_app
from lian_build.plugins import ENTRY_POINT_GROUP, PluginHost
from lian_build.remote.ssh import generate_host_key

ROOT = Path(__file__).resolve().parents[2]
PLUGINS_MD = ROOT / "docs" / "plugins.md"
CLI_MD = ROOT / "docs" / "cli.md"
OWNED_DOCS = [
    ROOT / "README.md",
    CLI_MD,
    PLUGINS_MD,
    ROOT / "docs" / "providers.md",
    ROOT / "docs" / "contracts.md",
]
SOURCE_ROOTS = [ROOT / "core" / "src", *sorted((ROOT / "plugins").glob("*/src"))]
ERROR_CODE = re.compile(r"^[A-Z][A-Z0-9_]+$")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- hooks


def _hookspecs() -> dict[str, Any]:
    return {
        name: fn
        for name, fn in vars(hookspecs).items()
        if name.startswith("lian_") and hasattr(fn, "lian_build_spec")
    }


def _hook_sections() -> dict[str, str]:
    """``### lian_x(args)`` heading -> the section's text, from docs/plugins.md."""
    sections: dict[str, str] = {}
    for chunk in re.split(r"^### ", _text(PLUGINS_MD), flags=re.MULTILINE)[1:]:
        heading, _, body = chunk.partition("\n")
        sections[heading.strip()] = body.split("\n## ", 1)[0]
    return sections


def test_hookspecs_are_found() -> None:
    assert len(_hookspecs()) >= 8


@pytest.mark.parametrize("name", sorted(_hookspecs()))
def test_hook_documented_with_exact_arguments_and_call_mode(name: str) -> None:
    spec = _hookspecs()[name]
    arguments = ", ".join(inspect.signature(spec).parameters)
    heading = f"{name}({arguments})"
    sections = _hook_sections()
    assert heading in sections, (
        f"docs/plugins.md needs a '### {heading}' section (the hook's exact arguments)"
    )
    mode = "firstresult" if spec.lian_build_spec["firstresult"] else "broadcast"
    assert f"**Call mode:** {mode}" in sections[heading], f"{name} is {mode}: say so"


def test_no_documented_hook_is_stale() -> None:
    documented = {heading.split("(", 1)[0] for heading in _hook_sections()}
    hooks = {h for h in documented if h.startswith("lian_")}
    assert hooks == set(_hookspecs()), "docs/plugins.md documents hooks that do not exist"


# --------------------------------------------------------------------------- API types


def _api_classes() -> dict[str, type]:
    return {
        name: obj
        for name, obj in vars(api).items()
        if inspect.isclass(obj) and obj.__module__ == api.__name__ and not name.startswith("_")
    }


@pytest.mark.parametrize("name", sorted(_api_classes()))
def test_api_type_documented(name: str) -> None:
    assert f"`{name}`" in _text(PLUGINS_MD)


@pytest.mark.parametrize(
    "base",
    [api.ComputeProvider, api.RegistryProvider, api.Builder, api.SecretResolver, api.EventSink],
    ids=lambda cls: cls.__name__,
)
def test_base_class_members_documented(base: type) -> None:
    doc = _text(PLUGINS_MD)
    members = [
        name
        for name, value in vars(base).items()
        if not name.startswith("_")
        and (callable(getattr(value, "__func__", value)) or isinstance(value, property))
    ]
    assert members, base
    missing = [m for m in members if not re.search(rf"`{m}[`(]", doc)]
    assert not missing, f"{base.__name__} members not in docs/plugins.md: {missing}"


# --------------------------------------------------------------------------- CLI surface


def _commands() -> Iterator[tuple[str, Any]]:
    """(``lian build``, click command) for the root and every (nested) subcommand.

    typer vendors click privately, so groups and options are recognised by shape.
    """
    root = typer.main.get_command(build_app(PluginHost.load()))
    yield "lian", root

    def walk(prefix: str, group: Any) -> Iterator[tuple[str, Any]]:
        for name, command in sorted(group.commands.items()):
            path = f"{prefix} {name}"
            yield path, command
            if hasattr(command, "commands"):
                yield from walk(path, command)

    assert hasattr(root, "commands")
    yield from walk("lian", root)


def _options(command: Any) -> list[Any]:
    return [p for p in command.params if getattr(p, "param_type_name", "") == "option"]


def test_core_subcommands_are_found() -> None:
    paths = {path for path, _ in _commands()}
    assert {"lian build", "lian plan", "lian integrate", "lian plugins", "lian reap"} <= paths


@pytest.mark.parametrize("path", [path for path, _ in _commands() if path != "lian"])
def test_subcommand_documented(path: str) -> None:
    assert f"`{path}" in _text(CLI_MD), f"docs/cli.md does not document `{path}`"


def test_every_flag_documented() -> None:
    doc = _text(CLI_MD)
    missing = [
        f"{path} {opt}"
        for path, command in _commands()
        for param in _options(command)
        for opt in [*param.opts, *param.secondary_opts]
        if opt.startswith("--") and opt != "--help" and f"`{opt}" not in doc
    ]
    assert not missing, f"flags missing from docs/cli.md: {missing}"


def _environment_variables() -> set[str]:
    """Declared on CLI options, plus every LIAN_/BUILDKIT_/NATS_ name the core reads."""
    names = {
        str(param.envvar)
        for _path, command in _commands()
        for param in command.params
        if param.envvar
    }
    pattern = re.compile(r"[\"']((?:LIAN|BUILDKIT|NATS)_[A-Z0-9_]+)[\"']")
    for source in (ROOT / "core" / "src" / "lian_build").rglob("*.py"):
        names.update(pattern.findall(_text(source)))
    return names


def test_every_environment_variable_documented() -> None:
    names = _environment_variables()
    assert {"BUILDKIT_SSH_KEY", "LIAN_DISABLE_PLUGINS", "LIAN_STATE_DIR"} <= names
    doc = _text(CLI_MD)
    missing = sorted(n for n in names if f"| `{n}` |" not in doc)
    assert not missing, f"environment variables missing from docs/cli.md's table: {missing}"


# --------------------------------------------------------------------------- exit and error codes


def test_exit_code_table_matches_errors_module() -> None:
    documented = {
        constant: int(code)
        for code, constant in re.findall(r"^\| (\d+) \| `(EXIT_[A-Z_]+)` \|", _text(CLI_MD), re.M)
    }
    actual = {name: value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    assert documented == actual


def _module_name(path: Path) -> str:
    src = next(root for root in SOURCE_ROOTS if root in path.parents)
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _string_constants(tree: ast.Module) -> dict[str, str]:
    constants: dict[str, str] = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        value = getattr(node, "value", None)
        if (
            isinstance(target, ast.Name)
            and isinstance(value, ast.Constant)
            and isinstance(value.value, str)
        ):
            constants[target.id] = value.value
    return constants


def _error_class(name: str, module: str, imports: dict[str, str]) -> type[errors.LianError] | None:
    for candidate_module in (imports.get(name), module, errors.__name__):
        if candidate_module is None:
            continue
        found = getattr(importlib.import_module(candidate_module), name, None)
        if inspect.isclass(found) and issubclass(found, errors.LianError):
            return found
    return None


def _codes_in_source() -> dict[str, set[int | None]]:
    """Every stable error code the core and plugins can raise -> the exit codes it maps to
    (None where the raising class cannot be told from the source)."""
    parsed = {}
    for root in SOURCE_ROOTS:
        for path in root.rglob("*.py"):
            parsed[_module_name(path)] = ast.parse(_text(path), str(path))
    constants = {module: _string_constants(tree) for module, tree in parsed.items()}
    found: dict[str, set[int | None]] = {}

    for module, tree in parsed.items():
        imports = {
            alias.asname or alias.name: node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
            for alias in node.names
        }

        def resolve(
            value: ast.expr, module: str = module, imports: dict[str, str] = imports
        ) -> list[str]:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                return [value.value]
            if isinstance(value, ast.Attribute) and value.attr == "code":
                return []  # code=exc.code forwards a code raised elsewhere
            if isinstance(value, ast.IfExp):  # code=A if ... else B
                return resolve(value.body) + resolve(value.orelse)
            if isinstance(value, ast.Name):
                source = constants.get(imports.get(value.id, ""), {})
                if value.id in constants[module]:
                    return [constants[module][value.id]]
                if value.id in source:
                    return [source[value.id]]
            raise AssertionError(f"{module}: cannot resolve error code {ast.unparse(value)}")

        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg != "code":
                        continue
                    func = node.func
                    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                    cls = _error_class(name, module, imports)
                    for code in resolve(keyword.value):
                        found.setdefault(code, set()).add(cls.exit_code if cls else None)
            elif isinstance(node, ast.ClassDef):
                for statement in node.body:
                    target = (
                        statement.targets[0]
                        if isinstance(statement, ast.Assign)
                        else getattr(statement, "target", None)
                    )
                    value = getattr(statement, "value", None)
                    if isinstance(value, ast.Constant) and value.value is None:
                        continue  # a result record's optional "code" field, not an error class
                    if isinstance(target, ast.Name) and target.id == "code" and value is not None:
                        cls = _error_class(node.name, module, imports)
                        for code in resolve(value):
                            found.setdefault(code, set()).add(cls.exit_code if cls else None)
    return {code: exits for code, exits in found.items() if ERROR_CODE.match(code)}


def _documented_codes() -> dict[str, int]:
    rows = re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \| (\d+) \|", _text(CLI_MD), re.M)
    return {code: int(exit_code) for code, exit_code in rows}


def test_error_code_scan_finds_the_known_codes() -> None:
    codes = _codes_in_source()
    assert {"INVALID_INPUT", "PLUGIN_CONFLICT", "REGISTRY_UNAUTHORIZED", "SSH_TIMEOUT"} <= set(
        codes
    )
    assert codes["REGISTRY_UNAUTHORIZED"] == {errors.EXIT_REGISTRY}


def test_every_error_code_documented_with_its_exit_code() -> None:
    documented = _documented_codes()
    problems = []
    for code, exits in sorted(_codes_in_source().items()):
        if code not in documented:
            problems.append(f"{code}: not in docs/cli.md's error code table")
        for exit_code in exits - {None}:
            if documented.get(code) not in (None, exit_code):
                problems.append(
                    f"{code}: raised with exit {exit_code}, documented {documented[code]}"
                )
    assert not problems, "\n".join(problems)


def test_no_documented_error_code_is_stale() -> None:
    stale = set(_documented_codes()) - set(_codes_in_source())
    assert not stale, f"docs/cli.md documents codes nothing raises: {sorted(stale)}"


# --------------------------------------------------------------------------- links


@pytest.mark.parametrize("doc", OWNED_DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", _text(doc)):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{doc.name}: broken links {broken}"


# --------------------------------------------------------------------------- the example plugin


def _example(label: str) -> str:
    match = re.search(
        rf"<!-- example: {re.escape(label)} -->\n```\w+\n(.*?)```", _text(PLUGINS_MD), re.S
    )
    assert match, f"docs/plugins.md lacks the example block {label!r}"
    return match.group(1)


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documented plugin, installed the way pip lays out a distribution."""
    meta = tomllib.loads(_example("pyproject.toml"))
    [(ep_name, module)] = meta["project"]["entry-points"][ENTRY_POINT_GROUP].items()
    site = tmp_path_factory.mktemp("site")
    install_fake_plugin(
        site, meta["project"]["name"], ep_name, module, _example("src/lian_tinycloud/__init__.py")
    )
    return site


def test_example_plugin_is_listed(example_site: Path) -> None:
    proc = run_lian(["plugins", "--json"], site=example_site)
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)["result"]["plugins"]}
    record = plugins["tinycloud"]
    assert record["status"] == "loaded", record["error"]
    assert record["distribution"] == "lian-build-tinycloud"
    assert record["provides"] == {"compute": ["tinycloud"]}


def _plan_with_tinycloud(site: Path, tmp_path: Path, *settings: str) -> Any:
    key = tmp_path / "id_ed25519"
    key.write_text(generate_host_key().private_openssh)
    key.chmod(0o600)
    argv = ["plan", "--workspace", "web", "--context", str(ROOT / "examples" / "app")]
    argv += ["--image", "127.0.0.1:5000/web:1", "--ssh-key", str(key), "--provider", "tinycloud"]
    for setting in settings:
        argv += ["--compute-opt", setting]
    return run_lian(argv, site=site)


def test_example_plugin_plans_without_its_sdk(example_site: Path, tmp_path: Path) -> None:
    proc = _plan_with_tinycloud(example_site, tmp_path, "region=eu-1")
    envelope = json.loads(proc.stdout)
    assert proc.returncode == 0, envelope
    result = envelope["result"]
    assert result["compute"]["provider"] == "tinycloud"
    assert result["compute"]["region"] == "eu-1"
    # examples/app asks for 2 cpu / 4 GB: the smallest tier, then one retry tier.
    assert result["attempts"] == ["small", "medium"]


def test_example_plugin_refuses_bad_settings(example_site: Path, tmp_path: Path) -> None:
    proc = _plan_with_tinycloud(example_site, tmp_path, "region=eu-1", "api_url=http://plain")
    assert proc.returncode == errors.EXIT_INVALID_INPUT
    error = json.loads(proc.stdout)["error"]
    assert (error["code"], error["field"]) == ("INVALID_INPUT", "compute.api_url")


def test_example_plugin_tests_pass(example_site: Path, tmp_path: Path) -> None:
    (tmp_path / "test_tinycloud.py").write_text(_example("tests/test_tinycloud.py"))
    # A clean pytest run, as the plugin's author would have: none of this suite's settings.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_tinycloud.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(example_site)},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout
