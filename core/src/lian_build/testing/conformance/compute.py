"""The conformance suite every ComputeProvider should pass."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

from lian_build import api
from lian_build.testing.conformance._support import (
    no_network,
    optional_fixture,
    recording_secrets,
    secret_values,
)
from lian_build.testing.conformance.spawn import (
    Spawner,
    generate_client_key,
    make_spawn_request,
    new_session_id,
    write_client_key,
)

log = logging.getLogger("lian.testing")


class ComputeProviderConformance:
    """Subclass as ``class TestMyProvider(ComputeProviderConformance)`` and supply:

    - ``provider`` (required): a configured ComputeProvider instance, function-scoped.
      Its ``secrets`` lookup must answer the provider's ``*_ref`` settings.
    - ``reachable_over_ssh`` (optional, default False): True when ``spawn`` makes real
      machines this test process can SSH into (a local engine, a lab). The two SSH
      tests are skipped otherwise (an API imitation hands out addresses nobody answers).

    Runners are spawned on the smallest tier and destroyed when each test ends.
    ``ssh_wait_timeout_s`` bounds how long the SSH tests wait for sshd.
    """

    ssh_wait_timeout_s: ClassVar[float] = 120.0

    # ------------------------------------------------------------------ fixtures

    @pytest.fixture
    def lian_spawner(self, provider: api.ComputeProvider) -> Iterator[Spawner]:
        spawner = Spawner(provider)
        try:
            yield spawner
        finally:
            spawner.cleanup()

    @pytest.fixture
    def lian_ssh_reachable(self, request: pytest.FixtureRequest) -> bool:
        return bool(optional_fixture(request, "reachable_over_ssh", False))

    # ------------------------------------------------------------------ tiers

    def test_tiers_are_not_empty(self, provider: api.ComputeProvider) -> None:
        tiers = list(provider.tiers())
        assert tiers, "tiers() returned no tier"
        assert all(isinstance(tier, api.Tier) for tier in tiers), tiers

    def test_tiers_need_no_network(self, provider: api.ComputeProvider) -> None:
        with no_network("tiers() (lian plan calls it)"):
            provider.tiers()

    def test_tiers_ascend_by_memory_then_cpu(self, provider: api.ComputeProvider) -> None:
        shapes = [(tier.memory_gb, tier.cpu) for tier in provider.tiers()]
        assert shapes == sorted(shapes), f"tiers are not smallest first: {shapes}"

    def test_tier_names_are_unique(self, provider: api.ComputeProvider) -> None:
        names = [tier.name for tier in provider.tiers()]
        assert len(names) == len(set(names)), f"duplicate tier names: {names}"

    # ------------------------------------------------------------------ plan

    def test_plan_is_json_and_needs_no_network_or_secret(
        self, provider: api.ComputeProvider
    ) -> None:
        with recording_secrets(provider) as recorder, no_network("plan()"):
            facts = provider.plan()
        assert isinstance(facts, dict), f"plan() returned {type(facts).__name__}, not a dict"
        json.dumps(facts)
        assert recorder.asked == [], f"plan() resolved secrets: {recorder.asked}"

    def test_plan_holds_no_secret(self, provider: api.ComputeProvider) -> None:
        with recording_secrets(provider) as recorder:
            rendered = json.dumps(provider.plan())
        known = [*secret_values(provider), *recorder.answers]
        assert not [value for value in known if value in rendered], "plan() shows a secret"

    # ------------------------------------------------------------------ lifecycle

    def _spawn(
        self, provider: api.ComputeProvider, spawner: Spawner, **overrides: Any
    ) -> tuple[api.SpawnRequest, api.Runner]:
        request = make_spawn_request(provider.tiers()[0], **overrides)
        return request, spawner.spawn(request)

    def test_spawn_returns_runner_with_request_labels_and_host_key(
        self, provider: api.ComputeProvider, lian_spawner: Spawner
    ) -> None:
        request, runner = self._spawn(provider, lian_spawner)
        assert isinstance(runner, api.Runner)
        missing = {k: v for k, v in request.labels.items() if runner.labels.get(k) != v}
        assert not missing, f"runner.labels lack the request's labels {missing}"
        assert runner.host_public_key == request.host_key.public_openssh
        assert runner.provider == provider.name
        assert runner.tier == request.tier

    def test_list_runners_finds_runner_by_session_label(
        self, provider: api.ComputeProvider, lian_spawner: Spawner
    ) -> None:
        request, runner = self._spawn(provider, lian_spawner)
        by_session = provider.list_runners({"lian.session": request.session_id})
        assert [info.id for info in by_session] == [runner.id]
        managed = {"lian.managed": "true", "lian.session": request.session_id}
        assert [info.id for info in provider.list_runners(managed)] == [runner.id]
        assert by_session[0].labels.get("lian.session") == request.session_id

    def test_list_runners_ignores_other_sessions(
        self, provider: api.ComputeProvider, lian_spawner: Spawner
    ) -> None:
        _request, runner = self._spawn(provider, lian_spawner)
        others = provider.list_runners({"lian.session": new_session_id()})
        assert runner.id not in [info.id for info in others], (
            "list_runners returned a runner of another session: it must match every label"
        )

    def test_destroy_is_idempotent_and_forgets_the_runner(
        self, provider: api.ComputeProvider, lian_spawner: Spawner
    ) -> None:
        request, runner = self._spawn(provider, lian_spawner)
        provider.destroy(runner.id)
        lian_spawner.destroyed(runner)
        try:
            provider.destroy(runner.id)
        except Exception as exc:
            pytest.fail(f"destroying a destroyed runner raised {exc!r}; destroy is idempotent")
        assert provider.list_runners({"lian.session": request.session_id}) == []

    # ------------------------------------------------------------------ SSH

    def _connect(self, runner: api.Runner, client: api.HostKey, tmp_path: Path) -> Any:
        from lian_build.remote.ssh import SSHRemote

        return SSHRemote.connect(
            runner,
            write_client_key(client, tmp_path),
            wait_timeout_s=self.ssh_wait_timeout_s,
            log=log.info,
        )

    def test_runner_answers_ssh_with_pinned_host_key(
        self,
        provider: api.ComputeProvider,
        lian_spawner: Spawner,
        lian_ssh_reachable: bool,
        tmp_path: Path,
    ) -> None:
        if not lian_ssh_reachable:
            pytest.skip("runners are not reachable over SSH here (reachable_over_ssh)")
        client = generate_client_key()
        _request, runner = self._spawn(provider, lian_spawner, client_key=client)
        with self._connect(runner, client, tmp_path) as remote:
            result = remote.run(["true"], timeout=60)
        assert result.exit_code == 0, result.stderr

    def test_wrong_pinned_host_key_is_refused(
        self,
        provider: api.ComputeProvider,
        lian_spawner: Spawner,
        lian_ssh_reachable: bool,
        tmp_path: Path,
    ) -> None:
        from lian_build.errors import RemoteError

        if not lian_ssh_reachable:
            pytest.skip("runners are not reachable over SSH here (reachable_over_ssh)")
        client = generate_client_key()
        _request, runner = self._spawn(provider, lian_spawner, client_key=client)
        impostor = attrs.evolve(runner, host_public_key=generate_client_key().public_openssh)
        with pytest.raises(RemoteError) as refused:
            self._connect(impostor, client, tmp_path).close()
        assert refused.value.code == "HOST_KEY_MISMATCH"
