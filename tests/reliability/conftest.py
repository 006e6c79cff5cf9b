"""The reliability matrix: interrupts, faults, hostile secrets and load against real
runners. Slow: part of the e2e session (`pytest -m e2e tests/reliability`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.conftest import BUSYBOX, ssh_key  # noqa: F401  (the same key fixture)
from e2e.helpers import E2E, lian
from reliability.harness import PROVIDERS, Case, Markers, Provider


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every case is e2e; a provider with a reduced set (the cloud imitations) keeps only
    its cases, the others are deselected (not skipped: they are not part of its matrix)."""
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        if "tests/reliability/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
            params = getattr(item, "callspec", None)
            params = params.params if params is not None else {}
            chosen = params.get("provider")
            if isinstance(chosen, Provider) and not chosen.runs(item.originalname, params):
                dropped.append(item)
                continue
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def e2e(
    oci_registry: Any,
    runner_image: str,
    ssh_key: Path,  # noqa: F811
    docker_client: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> E2E:
    """One busybox base image for the whole matrix, built through lian itself. Unlike a
    sweep of every lian runner, cleanup is per case: the engine is shared."""
    from fixtures.require import require

    require(BUSYBOX.exists(), "/bin/busybox (Debian package busybox-static)")
    ctx = tmp_path_factory.mktemp("base")
    (ctx / "busybox").write_bytes(BUSYBOX.read_bytes())
    (ctx / "busybox").chmod(0o755)
    (ctx / "Dockerfile").write_text(
        'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
    )
    base = f"{oci_registry.host}/base/busybox:1"
    env = E2E(oci_registry, runner_image, ssh_key, base, docker_client)
    workspace = "rel-base-" + uuid.uuid4().hex[:8]
    run = lian(env.flags(workspace, ctx, base))
    assert run.returncode == 0, run.stderr
    assert not env.runners(workspace=workspace)
    return env


@pytest.fixture(params=PROVIDERS, ids=lambda p: p.name)
def provider(request: pytest.FixtureRequest, e2e: E2E, tmp_path: Path) -> Iterator[Provider]:
    """The provider, bound to an imitation served for this test when it is a cloud's."""
    chosen: Provider = request.param
    if chosen.serve is None:
        yield chosen
        return
    with chosen.serve(e2e, tmp_path) as bound:
        yield bound


@pytest.fixture
def new_case(
    e2e: E2E,
    provider: Provider,
    tmp_path: Path,
) -> Iterator[Callable[..., Case]]:
    """Make cases of this test; afterwards no runner of theirs may be left."""
    made: list[Case] = []

    def make(
        registry_host: str | None = None,
        extra: list[str] | None = None,
        workspace: str | None = None,
    ) -> Case:
        tmp = tmp_path / f"case{len(made)}"
        tmp.mkdir()
        case = Case(
            env=e2e,
            provider=provider,
            workspace=workspace or "rel-" + uuid.uuid4().hex[:10],
            tmp=tmp,
            markers=Markers.new(),
            registry_host=registry_host or e2e.registry.host,
            extra=list(extra or []),
        )
        made.append(case)
        return case

    yield make
    for case in made:
        if case.proc is not None and case.proc.poll() is None:
            case.proc.kill()
            case.proc.wait()
    left = {case.workspace: case.runners_left() for case in made}
    cleaned: set[str] = set()
    for case in made:  # clean only what this test made, then fail
        for runner_id in left[case.workspace]:
            if runner_id not in cleaned:
                cleaned.add(runner_id)
                case.provider.remove(e2e, runner_id)
    assert not any(left.values()), f"runners were left: {left}"
