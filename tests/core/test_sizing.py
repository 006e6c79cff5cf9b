"""Three-tier sizing: explicit spec, history P95, language defaults; and the hook chain."""

from __future__ import annotations

import datetime as dt
import itertools
from fractions import Fraction
from pathlib import Path

import pluggy
import pytest

from lian_build import hookimpl, hookspecs, sizing
from lian_build.api import BuildMetrics, RunnerSize, SizingRequest
from lian_build.builtin import sizing as builtin_sizing
from lian_build.errors import ContractViolation, InvalidInput
from lian_build.history import HistoryStore, open_history_store

GIB = 1024**3


_SESSIONS = (f"s{i}" for i in itertools.count())


def metrics(
    *,
    workspace: str = "app",
    cpu: int = 4,
    cpu_seconds: float | None = 100.0,
    duration_s: float = 100.0,
    peak_gib: float | None = 1.0,
    succeeded: bool = True,
    oom: bool = False,
) -> BuildMetrics:
    return BuildMetrics(
        workspace=workspace,
        session_id=next(_SESSIONS),  # distinct: stores keep one record per attempt
        provider="docker-local",
        tier="t",
        cpu=cpu,
        memory_gb=8,
        peak_memory_bytes=None if peak_gib is None else int(peak_gib * GIB),
        cpu_seconds=cpu_seconds,
        duration_s=duration_s,
        succeeded=succeeded,
        oom=oom,
        finished_at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
    )


# ----------------------------------------------------------------- language defaults


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("rust", (4, 8, 60)),
        ("RUST", (4, 8, 60)),
        ("Go", (2, 4, 30)),
        ("java", (4, 8, 45)),
        ("Kotlin", (4, 8, 45)),
        ("scala", (4, 8, 45)),
        ("python", (2, 4, 30)),
        (None, (2, 4, 30)),
        ("", (2, 4, 30)),
    ],
)
def test_language_defaults(language, expected):
    size = sizing.language_default(language)
    assert (size.cpu, size.memory_gb, size.time_budget_min) == expected
    assert size.source == "language"
    assert size.reason


# ----------------------------------------------------------------- P95 and history


def test_p95_is_nearest_rank():
    values = [Fraction(v) for v in range(1, 101)]  # 1..100
    assert sizing.p95(values) == 95
    assert sizing.p95([Fraction(v) for v in range(1, 21)]) == 19
    assert sizing.p95([Fraction(3), Fraction(1), Fraction(2)]) == 3  # few samples: the max
    with pytest.raises(ValueError):
        sizing.p95([])


def test_history_needs_three_successful_samples():
    two = [metrics(), metrics()]
    assert sizing.from_history(two) is None
    failed_or_oom = [metrics(succeeded=False), metrics(oom=True), metrics(peak_gib=None)]
    assert sizing.from_history(two + failed_or_oom) is None
    assert sizing.from_history([*two, metrics()]) is not None


def test_history_p95_times_headroom_rounded_up():
    # 20 builds; cores used 1..20, peak 1..20 GiB, duration 1..20 minutes.
    samples = [
        metrics(cpu_seconds=60.0 * i * i, duration_s=60.0 * i, peak_gib=float(i))
        for i in range(1, 21)
    ]
    # cores = cpu_seconds / duration = i: P95 (rank 19) = 19 -> 19 x 1.2 = 22.8 -> 23
    # memory P95 = 19 GiB -> 22.8 -> 23; duration P95 = 19 min -> x 1.5 = 28.5 -> 29
    size = sizing.from_history(samples)
    assert size == RunnerSize(23, 23, 29, source="history", reason=size.reason)
    assert "20 successful builds" in size.reason


def test_history_headroom_is_exact_not_float():
    # 2.5 cores x 1.2 is exactly 3 (a float product would be 3.0000000000000004 -> 4).
    samples = [metrics(cpu_seconds=250.0, duration_s=100.0, peak_gib=5.0)] * 3
    size = sizing.from_history(samples)
    assert size is not None
    assert size.cpu == 3
    assert size.memory_gb == 6  # 5 GiB x 1.2


def test_history_floors_and_time_clamp():
    tiny = [metrics(cpu_seconds=1.0, duration_s=10.0, peak_gib=0.1)] * 3
    size = sizing.from_history(tiny)
    assert size is not None
    assert (size.cpu, size.memory_gb, size.time_budget_min) == (2, 4, 10)
    huge = [metrics(cpu_seconds=100.0, duration_s=2000 * 60.0, peak_gib=1.0)] * 3
    size = sizing.from_history(huge)
    assert size is not None
    assert size.time_budget_min == 1440


def test_history_without_cpu_measurement_assumes_allocated_cores():
    samples = [metrics(cpu=6, cpu_seconds=None)] * 3
    size = sizing.from_history(samples)
    assert size is not None
    assert size.cpu == 8  # 6 x 1.2 = 7.2 -> 8


# ----------------------------------------------------------------- explicit spec


def write_spec(context: Path, body: str) -> None:
    (context / sizing.BUILD_SPEC_FILE).write_text(body)


def test_explicit_absent_returns_none(tmp_path):
    assert sizing.explicit(tmp_path) is None


def test_explicit_uses_the_real_nickel_contract(tmp_path):
    """Real lian_build.ncl + schemas/build_spec.ncl (no stub)."""
    write_spec(tmp_path, '{ cpu = 6, memory_gb = 12, time_budget_min = 25, language = "rust" }')
    size = sizing.explicit(tmp_path)
    assert size == RunnerSize(6, 12, 25, source="explicit", reason=size.reason)
    assert ".build-spec.ncl" in size.reason


def test_explicit_contract_violation_names_the_field(tmp_path):
    """Real lian_build.ncl: the BuildSpec contract bounds cpu to 1..256."""
    write_spec(tmp_path, "{ cpu = 600, memory_gb = 12, time_budget_min = 25 }")
    with pytest.raises(ContractViolation) as err:
        sizing.explicit(tmp_path)
    assert "cpu" in err.value.message


# ----------------------------------------------------------------- override


def test_override_wins_field_by_field():
    base = sizing.language_default("rust")
    assert sizing.apply_override(base) is base
    size = sizing.apply_override(base, memory_gb=32)
    assert (size.cpu, size.memory_gb, size.time_budget_min) == (4, 32, 60)
    assert size.source == "override"
    assert "memory_gb" in size.reason
    assert "language" in size.reason
    size = sizing.apply_override(base, cpu=16, time_budget_min=120)
    assert (size.cpu, size.memory_gb, size.time_budget_min) == (16, 8, 120)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cpu": 0}, "runner.cpu"),
        ({"cpu": 257}, "runner.cpu"),
        ({"memory_gb": -1}, "runner.memory_gb"),
        ({"time_budget_min": 1441}, "runner.time_budget_min"),
        ({"cpu": True}, "runner.cpu"),
    ],
)
def test_override_rejects_bad_values(kwargs, field):
    with pytest.raises(InvalidInput) as err:
        sizing.apply_override(sizing.language_default(None), **kwargs)
    assert err.value.field == field


# ----------------------------------------------------------------- the hook chain


@pytest.fixture
def store(tmp_path) -> HistoryStore:
    return open_history_store(None, tmp_path / "state")


def manager(store: HistoryStore) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("lian_build")
    pm.add_hookspecs(hookspecs)
    # Registered as the plugin host does: each object of PLUGINS, history with our store.
    for plugin in builtin_sizing.PLUGINS:
        if isinstance(plugin, builtin_sizing.HistorySizing):
            plugin = builtin_sizing.HistorySizing(store)
        pm.register(plugin)
    pm.check_pending()
    return pm


def size(pm: pluggy.PluginManager, context: Path, language: str | None = "rust") -> RunnerSize:
    request = SizingRequest(workspace="app", language=language, context_dir=context)
    result = pm.hook.lian_size_runner(request=request)
    assert isinstance(result, RunnerSize)
    return result


def test_builtin_plugins_list_three_sources():
    kinds = [type(p) for p in builtin_sizing.PLUGINS]
    assert kinds == [
        builtin_sizing.ExplicitSpecSizing,
        builtin_sizing.HistorySizing,
        builtin_sizing.LanguageDefaultSizing,
    ]


def test_chain_falls_through_to_language(tmp_path, store):
    assert size(manager(store), tmp_path).source == "language"


def test_chain_history_beats_language(tmp_path, store):
    for _ in range(3):
        store.append(metrics(peak_gib=10.0))
    store.append(metrics(workspace="other", peak_gib=100.0))
    result = size(manager(store), tmp_path)
    assert result.source == "history"
    assert result.memory_gb == 12  # 10 GiB x 1.2; the other workspace is ignored


def test_chain_explicit_beats_history(tmp_path, store):
    for _ in range(3):
        store.append(metrics())
    write_spec(tmp_path, "{ cpu = 3, memory_gb = 5, time_budget_min = 15 }")
    assert size(manager(store), tmp_path).source == "explicit"


def test_history_plugin_reads_the_default_store(tmp_path, monkeypatch):
    monkeypatch.setenv("LIAN_STATE_DIR", str(tmp_path / "state"))
    default = open_history_store(None, tmp_path / "state")
    for _ in range(3):
        default.append(metrics(peak_gib=20.0))
    request = SizingRequest(workspace="app", language=None, context_dir=tmp_path)
    result = builtin_sizing.HistorySizing().lian_size_runner(request)
    assert result is not None
    assert result.memory_gb == 24


class TeamSizing:
    """A third-party source: answers only for one workspace."""

    @hookimpl
    def lian_size_runner(self, request: SizingRequest) -> RunnerSize | None:
        if request.workspace != "app":
            return None
        return RunnerSize(7, 7, 7, source="team", reason="team table")


def test_third_party_source_slots_in_before_history(tmp_path, store):
    for _ in range(3):
        store.append(metrics())
    pm = manager(store)
    pm.register(TeamSizing())
    assert size(pm, tmp_path).source == "team"
    write_spec(tmp_path, "{ cpu = 3, memory_gb = 5, time_budget_min = 15 }")
    assert size(pm, tmp_path).source == "explicit"  # explicit still wins


def test_language_defaults_answer_last_even_after_a_later_trylast_source(tmp_path, store):
    # pluggy calls trylast impls registered later after earlier ones, and the language
    # defaults always answer: a third-party trylast source never gets asked.
    asked: list[str] = []

    class Fallback:
        @hookimpl(trylast=True)
        def lian_size_runner(self, request: SizingRequest) -> RunnerSize | None:
            asked.append(request.workspace)
            return RunnerSize(1, 1, 1, source="fallback", reason="fallback")

    pm = manager(store)
    pm.register(Fallback())
    assert size(pm, tmp_path).source == "language"
    assert asked == []
