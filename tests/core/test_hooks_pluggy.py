"""Every hook call goes through pluggy: traced, wrapped, isolated per plugin; typed
registration."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from fixtures.fake_dists import install_fake_plugin, run_lian
from lian_build import api, hookimpl, hookspecs
from lian_build.history import default_store
from lian_build.plugins import TRACE_ENV, PluginHost

ALL_HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("lian_"))


def _metrics(workspace: str) -> api.BuildMetrics:
    return api.BuildMetrics(
        workspace=workspace,
        session_id="s0123456789ab",
        provider="docker-local",
        tier="2c-4g",
        cpu=2,
        memory_gb=4,
        peak_memory_bytes=2_000_000,
        cpu_seconds=1.5,
        duration_s=3.0,
        succeeded=True,
        oom=False,
        finished_at=dt.datetime.now(dt.UTC),
    )


class _Raising:
    @hookimpl
    def lian_record_metrics(self, metrics: api.BuildMetrics) -> None:
        raise RuntimeError("metrics backend down")


class _Wrapper:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl(wrapper=True)
    def lian_record_metrics(self, metrics: api.BuildMetrics) -> Iterator[None]:
        self.seen.append(f"before {metrics.workspace}")
        result = yield
        self.seen.append("after")
        return result

    @hookimpl(wrapper=True)
    def lian_size_runner(self, request: api.SizingRequest) -> Iterator[Any]:
        size = yield
        self.seen.append(f"size {size.source}")
        return size


def test_a_raising_metrics_plugin_cannot_stop_the_builtin_history(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Registered last, so pluggy would call it first: a plain hook call would stop here.
    host = PluginHost.load(entry_points=False, extra=[("raising", _Raising())])
    host.record_metrics(_metrics("isolated"))
    samples = default_store().recent("isolated")
    assert [s.session_id for s in samples] == ["s0123456789ab"]
    assert "raising failed to record build metrics" in caplog.text
    assert "metrics backend down" in caplog.text


def test_hookwrappers_wrap_isolated_calls(tmp_path: Path) -> None:
    wrapper = _Wrapper()
    host = PluginHost.load(entry_points=False, extra=[("wrapper", wrapper)])
    host.record_metrics(_metrics("wrapped"))
    host.size(api.SizingRequest(workspace="wrapped", language="go", context_dir=tmp_path))
    assert wrapper.seen[:2] == ["before wrapped", "after"]
    assert "size language" in wrapper.seen
    assert default_store().recent("wrapped")


def test_trace_hooks_traces_every_hook_call(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(TRACE_ENV, "1")
    host = PluginHost.load(entry_points=False, extra=[("commands", _Commands())])
    host.size(api.SizingRequest(workspace="traced", language=None, context_dir=tmp_path))
    host.event_sinks(api.EventSettings(nats_url=None))
    host.record_metrics(_metrics("traced"))
    host.register_commands(typer.Typer())
    traced = capsys.readouterr().err
    for name in ALL_HOOKS:
        assert name in traced, f"{name} was called but not traced"


class _Commands:
    """Implements the hooks no built-in implements, so every hook is called once."""

    @hookimpl
    def lian_register_compute_providers(self, register: api.Register) -> None:
        return None

    @hookimpl
    def lian_register_registries(self, register: api.Register) -> None:
        return None

    @hookimpl
    def lian_register_commands(self, cli: typer.Typer) -> None:
        cli.command("hello")(lambda: None)


class _NotAProvider:
    name = "imposter"


class _Registrar:
    @hookimpl
    def lian_register_compute_providers(self, register: api.Register) -> None:
        from lian_build.oci import DistributionRegistry

        register(DistributionRegistry)  # a registry class offered as compute


class _Duck:
    @hookimpl
    def lian_register_registries(self, register: api.Register) -> None:
        register(_NotAProvider)


class _Abstract:
    @hookimpl
    def lian_register_builders(self, register: api.Register) -> None:
        register(api.Builder)


@pytest.mark.parametrize(
    ("plugin", "expected"),
    [
        (_Registrar(), "not a ComputeProvider subclass"),
        (_Duck(), "not a RegistryProvider subclass"),
        (_Abstract(), "does not implement"),
    ],
)
def test_a_wrongly_typed_registration_is_a_load_error(plugin: object, expected: str) -> None:
    host = PluginHost.load(entry_points=False, extra=[("typed", plugin)])
    record = next(r for r in host.records if r.name == "typed")
    assert record.status == "error"
    assert record.error is not None and expected in record.error
    assert not record.provides  # nothing it offered was registered
    assert "imposter" not in host.names("registry")


def test_lian_plugins_shows_the_wrong_registration(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_fake_plugin(
        site,
        "lian-build-mistyped",
        "mistyped",
        "lian_mistyped_mod",
        """
        from lian_build import hookimpl
        from lian_build.oci import DistributionRegistry

        @hookimpl
        def lian_register_compute_providers(register):
            register(DistributionRegistry)
        """,
    )
    proc = run_lian(["plugins", "--json"], site=site)
    assert proc.returncode == 0, proc.stderr
    by_name = {p["name"]: p for p in json.loads(proc.stdout)["result"]["plugins"]}
    assert by_name["mistyped"]["status"] == "error"
    assert "not a ComputeProvider subclass" in by_name["mistyped"]["error"]
    table = run_lian(["plugins"], site=site)
    assert "mistyped" in table.stdout and "not a ComputeProvider subclass" in table.stdout
