"""The attrs mirror of the NCL contracts: JSON <-> attrs round trips and error paths."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lian_build import model
from lian_build.errors import InvalidInput

component = st.from_regex(r"[a-z0-9]{1,8}((\.|_|__|-{1,2})[a-z0-9]{1,8}){0,2}", fullmatch=True)
text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0-9_./:", min_size=1, max_size=20)
json_scalar = st.one_of(st.booleans(), st.integers(-(10**6), 10**6), text)


def optional_keys(required: dict[str, Any], optional: dict[str, Any]) -> Any:
    return st.fixed_dictionaries(required, optional=optional)


cache_policies = st.one_of(
    optional_keys(
        {"mode": st.just("ci")},
        {"disposition": st.sampled_from(["ephemeral", "keep"])},
    ),
    optional_keys(
        {"mode": st.just("session"), "actor": st.fixed_dictionaries({"id": component})}, {}
    ),
).flatmap(
    lambda policy: st.fixed_dictionaries(
        {
            **{key: st.just(value) for key, value in policy.items()},
            "disposition": st.just(policy.get("disposition", "keep")),
            "export": st.booleans(),
            "import": st.booleans(),
        }
    )
)
provider_refs = st.builds(
    lambda name, settings: {"provider": name, **settings},
    component,
    st.dictionaries(
        st.sampled_from(["url", "token_ref", "template_id", "verify_ssl"]), json_scalar
    ),
)
bounded = st.integers(1, 256)

# What Nickel exports for a BuildDirectives value: defaults filled, absent optionals absent.
directives_json = optional_keys(
    {
        "workspace": component,
        "context": text,
        "dockerfile": text,
        "platforms": st.lists(st.sampled_from(["linux/amd64", "linux/arm64/v8"]), max_size=2),
        "build_args": st.dictionaries(st.from_regex(r"[A-Z_]{1,6}", fullmatch=True), text),
        "secrets": st.lists(st.fixed_dictionaries({"id": component, "ref": text}), max_size=2),
        "artifact": st.fixed_dictionaries({"image": text, "tags": st.lists(component, max_size=3)}),
        "compute": provider_refs,
        "registry": provider_refs,
        "builder": st.sampled_from(["auto", "buildkit", "buildah"]),
        "cache": cache_policies,
    },
    {
        "target": component,
        "language": st.sampled_from(["rust", "go", "python"]),
        "runner": optional_keys(
            {},
            {
                "cpu": bounded,
                "memory_gb": bounded,
                "time_budget_min": bounded,
                "tier": component,
                "image": text,
            },
        ),
        "events": optional_keys(
            {"url": text, "subject_prefix": component}, {"nkey_seed_ref": text}
        ),
    },
)


@given(directives_json)
def test_directives_round_trip_json_attrs_json(data: dict[str, Any]) -> None:
    directives = model.structure_directives(data)
    assert model.unstructure(directives) == data
    # The unstructured form is plain JSON (enums as strings, tuples as lists).
    assert json.loads(json.dumps(model.unstructure(directives))) == data


@given(st.builds(dict, cpu=bounded, memory_gb=bounded, time_budget_min=bounded))
def test_build_spec_round_trip(data: dict[str, Any]) -> None:
    spec = model.structure_build_spec(data)
    assert (spec.cpu, spec.memory_gb, spec.time_budget_min) == (
        data["cpu"],
        data["memory_gb"],
        data["time_budget_min"],
    )
    assert model.unstructure(spec) == data


def test_enums_structure_to_members_and_unstructure_to_strings() -> None:
    policy = model.structure({"mode": "session", "actor": {"id": "alice"}}, model.CachePolicy)
    assert policy.mode is model.BuildMode.SESSION
    assert policy.disposition is model.SessionCacheDisposition.KEEP  # the default
    out = model.unstructure(policy)
    assert type(out["mode"]) is str
    assert out == {
        "mode": "session",
        "actor": {"id": "alice"},
        "disposition": "keep",
        "export": True,
        "import": True,
    }


def test_provider_settings_sit_beside_provider() -> None:
    data = {"provider": "proxmox", "node": "pve1", "template_id": 9000, "verify_ssl": False}
    ref = model.structure(data, model.ComputeProviderRef)
    assert ref.provider == "proxmox"
    assert ref.settings == {"node": "pve1", "template_id": 9000, "verify_ssl": False}
    assert model.unstructure(ref) == data


def test_provider_settings_stay_out_of_repr() -> None:
    ref = model.RegistryProviderRef(provider="zot", settings={"password": "hunter2"})
    assert "hunter2" not in repr(ref)


def minimal_directives(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "workspace": "app",
        "artifact": {"image": "ghcr.io/o/app:1"},
        "compute": {"provider": "docker-local"},
        "registry": {"provider": "zot"},
    }
    data.update(changes)
    return data


def error_for(data: Any, cls: type[Any] = model.BuildDirectives) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        model.structure(data, cls)
    return caught.value


def test_python_defaults_fill_what_the_contract_defaults() -> None:
    directives = model.structure_directives(minimal_directives())
    assert directives.context == "."
    assert directives.dockerfile == "Dockerfile"
    assert directives.builder == "auto"
    assert directives.cache == model.CachePolicy(mode=model.BuildMode.CI)
    assert directives.platforms == ()
    assert directives.runner is None


def test_missing_nested_provider_names_the_path() -> None:
    err = error_for(minimal_directives(compute={"location": "fsn1"}))
    assert "compute.provider: missing" in err.message
    assert err.field == "compute.provider"


def test_missing_required_field_names_it() -> None:
    data = minimal_directives()
    del data["artifact"]
    err = error_for(data)
    assert "artifact: missing" in err.message
    assert err.code == "INVALID_INPUT"


def test_unknown_keys_are_refused_in_closed_records() -> None:
    err = error_for(minimal_directives(artifact={"image": "ghcr.io/o/a:1", "tag": "x"}))
    assert "artifact.tag: unknown field" in err.message


def test_no_silent_type_coercion() -> None:
    err = error_for(minimal_directives(build_args={"VERSION": 1}, platforms=["linux/amd64", 5]))
    assert "build_args['VERSION']: expected a string, got int" in err.message
    assert "platforms[1]: expected a string, got int" in err.message
    assert (
        "cpu: expected an integer, got str"
        in error_for({"cpu": "2", "memory_gb": 4, "time_budget_min": 10}, model.BuildSpec).message
    )
    assert (
        "export: expected a boolean, got int"
        in error_for({"mode": "ci", "export": 1}, model.CachePolicy).message
    )


def test_session_cache_without_actor_is_refused() -> None:
    err = error_for(minimal_directives(cache={"mode": "session"}))
    assert "cache.actor: required when cache mode is 'session'" in err.message


def test_unknown_enum_value_is_refused() -> None:
    err = error_for(minimal_directives(cache={"mode": "nightly"}))
    assert err.field == "cache.mode"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"cpu": 300, "memory_gb": 4, "time_budget_min": 10}, "cpu"),
        ({"cpu": 2, "memory_gb": 0, "time_budget_min": 10}, "memory_gb"),
        ({"cpu": 2, "memory_gb": 4, "time_budget_min": 2000}, "time_budget_min"),
    ],
)
def test_build_spec_bounds_match_the_contract(spec: dict[str, int], field: str) -> None:
    err = error_for(spec, model.BuildSpec)
    assert err.field == field
    assert "must be an integer between 1 and" in err.message


def test_runner_override_bounds_name_the_nested_path() -> None:
    err = error_for(minimal_directives(runner={"cpu": 0}))
    assert err.field == "runner.cpu"


def test_workspace_must_be_a_path_component() -> None:
    err = error_for(minimal_directives(workspace="My App"))
    assert err.field == "workspace"


def test_build_result_round_trip() -> None:
    outcome = {
        "image": "127.0.0.1:5000/app:1",
        "digest": "sha256:" + "a" * 64,
        "tags": ["127.0.0.1:5000/app:latest"],
        "provider": "docker-local",
        "registry": "zot",
        "builder": "buildah",
        "size": {
            "cpu": 2,
            "memory_gb": 4,
            "time_budget_min": 30,
            "source": "language",
            "reason": "language default for go",
        },
        "tier": "2c-4g",
        "tiers_tried": ["2c-4g"],
        "retries": 0,
        "cache": {
            "mode": "ci",
            "imports": ["127.0.0.1:5000/ci/app/cache"],
            "exports": [],
            "cached_steps": 1,
            "total_steps": 3,
        },
        "sync": {
            "method": "rsync",
            "files": 2,
            "bytes_sent": 100,
            "total_bytes": 90,
            "seconds": 0.5,
            "files_total": 2,
        },
        "peak_memory_bytes": 1024,
        "duration_s": 14.5,
        "phases": {"spawn": 1.5, "build": 12.25},
        "session_id": "s-1",
        "workspace": "app",
    }
    parsed = model.structure(outcome, model.BuildOutcome)
    assert parsed.size.source == "language"
    assert model.unstructure(parsed) == outcome
    absent = {k: v for k, v in outcome.items() if k != "peak_memory_bytes"}
    assert model.unstructure(model.structure(absent, model.BuildOutcome)) == absent
    envelope = {"lian": "1", "command": "build", "status": "ok", "result": outcome}
    result = model.structure(envelope, model.BuildResult)
    assert result.status is model.BuildStatus.OK
    assert model.unstructure(result) == envelope
    failure = {
        "lian": "1",
        "command": "build",
        "status": "error",
        "error": {"code": "BUILD_FAILED", "message": "exit 1", "details": {"exit_code": 1}},
    }
    assert model.unstructure(model.structure(failure, model.BuildResult)) == failure


def test_vault_refs_defaults() -> None:
    cred = model.structure({"path": "ci/npm"}, model.VaultCredRef)
    assert (cred.field, cred.mount) == ("password", "secret")
    assert model.unstructure(model.structure({"path": "ci/x", "key": "k"}, model.VaultKeyRef)) == {
        "path": "ci/x",
        "key": "k",
    }
