"""Nickel evaluation in a bounded child process, against the real contracts."""

from __future__ import annotations

from pathlib import Path

import pytest

from lian_build import model, ncl
from lian_build.errors import ContractViolation, InvalidInput

PROVIDERS = """
  artifact = { image = "127.0.0.1:5000/app:1" },
  compute = { provider = "docker-local", image = "lian-runner:debian" },
  registry = { provider = "zot", url = "http://127.0.0.1:5000" },
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def spec_file(tmp_path: Path, cpu: str = "2", time_budget: str = "30") -> Path:
    return write(
        tmp_path,
        ".build-spec.ncl",
        f"{{\n  cpu = {cpu},\n  memory_gb = 4,\n  time_budget_min = {time_budget},\n}}\n",
    )


def directives_file(tmp_path: Path, extra: str = "", name: str = "lian.ncl") -> Path:
    return write(tmp_path, name, '{\n  workspace = "app",\n' + extra + PROVIDERS + "}\n")


def violation(path: Path, contract: str) -> ContractViolation:
    with pytest.raises(ContractViolation) as caught:
        ncl.evaluate(file=path, contract=contract)
    return caught.value


def test_schemas_dir_holds_the_contracts() -> None:
    names = {p.name for p in ncl.schemas_dir().glob("*.ncl")}
    assert {
        "build_directives.ncl",
        "build_spec.ncl",
        "cache_policy.ncl",
        "build_result.ncl",
        "vault_refs.ncl",
    } <= names
    assert (ncl.schemas_dir() / "defaults" / "build_directives.ncl").is_file()


def test_valid_build_spec_loads(tmp_path: Path) -> None:
    spec = ncl.load_build_spec(spec_file(tmp_path))
    assert spec == model.BuildSpec(cpu=2, memory_gb=4, time_budget_min=30)


def test_cpu_out_of_range_names_the_rule_and_the_line(tmp_path: Path) -> None:
    path = spec_file(tmp_path, cpu="300")
    err = violation(path, "BuildSpec")
    summary = err.message.splitlines()[0]
    assert err.code == "CONTRACT_VIOLATION"
    assert err.field == "cpu"
    assert summary.startswith("build spec ")
    assert "breaks a contract" in summary
    assert "cpu must be an integer between 1 and 256" in summary
    assert f"{path.name}:2:" in summary  # the line of `cpu = 300`
    assert err.details["line"] == 2
    assert "\x1b" not in err.message


def test_time_budget_over_a_day_is_refused(tmp_path: Path) -> None:
    err = violation(spec_file(tmp_path, time_budget="2000"), "BuildSpec")
    assert err.field == "time_budget_min"
    assert "time_budget_min must be an integer between 1 and 1440" in err.message


@pytest.mark.parametrize("value", ['"2"', "2.5", "0"])
def test_cpu_must_be_a_whole_number_in_range(tmp_path: Path, value: str) -> None:
    err = violation(spec_file(tmp_path, cpu=value), "BuildSpec")
    assert err.field == "cpu"


def test_wrong_type_is_reported_at_the_value(tmp_path: Path) -> None:
    path = directives_file(tmp_path, '  platforms = "linux/amd64",\n')
    err = violation(path, "BuildDirectives")
    assert err.field == "platforms"
    assert "expected an array" in err.message
    assert f"{path.name}:3:" in err.message.splitlines()[0]


def test_missing_field_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "lian.ncl", '{ workspace = "app", artifact.image = "ghcr.io/o/a:1" }')
    err = violation(path, "BuildDirectives")
    assert err.field == "compute"
    assert "missing definition for `compute`" in err.message


def test_unknown_field_is_refused(tmp_path: Path) -> None:
    err = violation(directives_file(tmp_path, "  workspce = 1,\n"), "BuildDirectives")
    assert err.field == "workspce"
    assert "extra field" in err.message


def test_session_mode_without_actor_is_refused(tmp_path: Path) -> None:
    err = violation(
        directives_file(tmp_path, "  cache = { mode = 'session },\n"), "BuildDirectives"
    )
    assert err.field == "cache"
    assert "'session requires an actor" in err.message


@pytest.mark.parametrize(
    ("extra", "rule"),
    [
        ('  workspace = "My App",\n', "workspace must be a registry path component"),
        ('  secrets = [{ id = "npm", ref = "NPM_TOKEN" }],\n', "secret reference is scheme:rest"),
        ('  platforms = ["amd64"],\n', "platform is os/arch"),
        ("  runner = { cpu = 512 },\n", "runner.cpu must be an integer between 1 and 256"),
    ],
)
def test_value_rules_say_what_is_allowed(tmp_path: Path, extra: str, rule: str) -> None:
    # A duplicate `workspace` would merge-conflict, so write that case by hand.
    if extra.startswith("  workspace"):
        path = write(tmp_path, "lian.ncl", "{\n" + extra + PROVIDERS + "}\n")
    else:
        path = directives_file(tmp_path, extra)
    assert rule in violation(path, "BuildDirectives").message


def test_image_must_name_its_registry(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "lian.ncl",
        PROVIDERS.replace("127.0.0.1:5000/app:1", "app:1").join(['{ workspace = "a",', "}"]),
    )
    assert "fully-qualified image reference" in violation(path, "BuildDirectives").message


def test_syntax_error_reports_evaluation_failure_with_location(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.ncl", "{\n  cpu = ,\n}\n")
    err = violation(path, "BuildSpec")
    assert "failed to evaluate" in err.message.splitlines()[0]
    assert f"{path.name}:2:" in err.message.splitlines()[0]


def test_endless_recursion_times_out(tmp_path: Path) -> None:
    path = write(tmp_path, "loop.ncl", "let rec f = fun x => f x in f 1\n")
    # Nickel recursion is not constant-space (it grows a few hundred MB/s here), so
    # give memory room enough that the wall clock is what stops it.
    with pytest.raises(ContractViolation) as caught:
        ncl.evaluate(file=path, timeout_s=2, memory_mb=8192)
    assert caught.value.code == "NCL_TIMEOUT"
    assert caught.value.message.startswith(f"NCL file {path} did not finish")


def test_looping_build_spec_is_stopped(tmp_path: Path) -> None:
    # Under a contract the same loop also grows memory: whichever bound hits first.
    path = write(tmp_path, ".build-spec.ncl", "let rec f = fun x => f x in f 1\n")
    with pytest.raises(ContractViolation) as caught:
        ncl.load_build_spec(path, timeout_s=2)
    assert caught.value.code in {"NCL_TIMEOUT", "NCL_MEMORY"}
    assert caught.value.message.startswith(f"build spec {path}")


def test_memory_explosion_is_stopped_by_the_limit() -> None:
    doubling = (
        'std.string.length (std.array.fold_left (fun acc _x => acc ++ acc) "abcdefgh"'
        " (std.array.range 0 40))"
    )
    with pytest.raises(ContractViolation) as caught:
        ncl.evaluate(doubling, memory_mb=256, timeout_s=30)
    assert caught.value.code == "NCL_MEMORY"
    assert "256 MB" in caught.value.message


def test_missing_file_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as caught:
        ncl.load_build_spec(tmp_path / "nope.ncl")
    assert "does not exist" in caught.value.message
    with pytest.raises(InvalidInput):
        ncl.evaluate(file=tmp_path)  # a directory is not a file


def test_source_with_contract_and_defaults() -> None:
    data = ncl.evaluate(
        '{ mode = \'session, actor.id = "bob" } # trailing comment', contract="CachePolicy"
    )
    assert data == {
        "mode": "session",
        "actor": {"id": "bob"},
        "disposition": "keep",
        "export": True,
        "import": True,
    }


def test_unknown_contract_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown contract"):
        ncl.evaluate("{}", contract="Nope")


def test_load_directives_resolves_context_and_sibling_imports(tmp_path: Path) -> None:
    write(tmp_path, "common.ncl", '{ workspace = "shared-ws" }')
    path = write(
        tmp_path,
        "lian.ncl",
        'let D = import "defaults/build_directives.ncl" in\n'
        '(import "common.ncl") & {\n  context = "src",\n' + PROVIDERS + "} |> D.make_directives\n",
    )
    directives = ncl.load_directives(path)
    assert directives.workspace == "shared-ws"
    assert directives.context == str(tmp_path.resolve() / "src")
    assert directives.registry.settings == {"url": "http://127.0.0.1:5000"}


def test_nickel_defaults_agree_with_the_python_mirror(tmp_path: Path) -> None:
    # The same minimal file through the contract and through the attrs defaults.
    data = ncl.evaluate(file=directives_file(tmp_path), contract="BuildDirectives")
    from_nickel = model.structure_directives(data)
    from_python = model.structure_directives(
        {key: data[key] for key in ("workspace", "artifact", "compute", "registry")}
    )
    assert from_nickel == from_python


def test_defaults_helpers_build_cache_policies() -> None:
    data = ncl.evaluate(
        'let D = import "defaults/build_directives.ncl" in '
        '{ ci = D.ci_cache_policy, dev = D.session_cache_policy "alice" }'
    )
    assert model.structure(data["ci"], model.CachePolicy).mode is model.BuildMode.CI
    dev = model.structure(data["dev"], model.CachePolicy)
    assert dev.actor == model.SessionActor(id="alice")


def test_build_result_contract_accepts_an_envelope() -> None:
    data = ncl.evaluate(
        '{ lian = "1", command = "build", status = "error", error = { code = "X", message = "m" } }',
        contract="BuildResult",
    )
    result = model.structure(data, model.BuildResult)
    assert result.lian == "1"
    assert result.status is model.BuildStatus.ERROR


def test_paths_with_quotes_and_unicode_are_imported_literally(tmp_path: Path) -> None:
    folder = tmp_path / 'we"ird é\\dir'
    folder.mkdir()
    spec = ncl.load_build_spec(spec_file(folder, cpu="3"))
    assert spec.cpu == 3
