"""The conformance kit itself: the built-in builders and secret resolvers pass it, a
provider on real sshd passes the SSH tests, and deliberately broken plugins fail
exactly the tests that describe their defects (run through ``pytester``)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.sshd import SshdKeys, SshdServer, start_sshd, stop_sshd
from lian_build import api
from lian_build.builders.buildah import BuildahBuilder
from lian_build.builders.buildkit import BuildKitBuilder
from lian_build.builtin.secrets import EnvSecretResolver, FileSecretResolver
from lian_build.testing.conformance import (
    BuilderConformance,
    ComputeProviderConformance,
    SecretResolverConformance,
    make_spawn_request,
    missing_tag_of,
)

pytest_plugins = ["pytester"]

# --------------------------------------------------------------------------- built-ins


class TestBuildKitConformance(BuilderConformance):
    @pytest.fixture
    def builder(self) -> api.Builder:
        return BuildKitBuilder()


class TestBuildKitWithAddressConformance(BuilderConformance):
    @pytest.fixture
    def builder(self) -> api.Builder:
        return BuildKitBuilder(addr="tcp://127.0.0.1:1234")


class TestBuildahConformance(BuilderConformance):
    @pytest.fixture
    def builder(self) -> api.Builder:
        return BuildahBuilder()


class TestEnvSecretConformance(SecretResolverConformance):
    @pytest.fixture
    def resolver(self) -> api.SecretResolver:
        return EnvSecretResolver()

    @pytest.fixture
    def secret_reference(self, monkeypatch: pytest.MonkeyPatch, secret_value: str) -> str:
        monkeypatch.setenv("LIAN_CONFORMANCE_TOKEN", secret_value)
        return "LIAN_CONFORMANCE_TOKEN"

    @pytest.fixture
    def secret_value(self) -> str:
        return "tok-3f9a 'quoted' $x"

    @pytest.fixture
    def missing_secret_reference(self, monkeypatch: pytest.MonkeyPatch) -> str:
        monkeypatch.delenv("LIAN_CONFORMANCE_UNSET", raising=False)
        return "LIAN_CONFORMANCE_UNSET"


class TestFileSecretConformance(SecretResolverConformance):
    @pytest.fixture
    def resolver(self) -> api.SecretResolver:
        return FileSecretResolver()

    @pytest.fixture
    def secret_reference(self, tmp_path: Path, secret_value: str) -> str:
        path = tmp_path / "token"
        path.write_text(secret_value + "\n")
        return str(path)

    @pytest.fixture
    def secret_value(self) -> str:
        return "file-secret-81c2"

    @pytest.fixture
    def missing_secret_reference(self, tmp_path: Path) -> str:
        return str(tmp_path / "absent")


# --------------------------------------------------------------------------- real sshd


class SshdProvider(api.ComputeProvider):
    """Each runner is an sshd on 127.0.0.1 with the request's host and client keys."""

    name = "sshd-conformance"
    Settings = type(None)

    def __init__(self, workdir: Path) -> None:
        super().__init__(None, _no_secrets)
        self.workdir = workdir
        self.servers: dict[str, tuple[SshdServer, dict[str, str]]] = {}

    def tiers(self) -> list[api.Tier]:
        return [api.Tier("1c-1g", 1, 1.0), api.Tier("2c-2g", 2, 2.0)]

    def plan(self) -> dict[str, Any]:
        return {"listen": "127.0.0.1"}

    def spawn(self, request: api.SpawnRequest) -> api.Runner:
        workdir = self.workdir / request.session_id
        workdir.mkdir()
        (workdir / "authorized_keys").write_text(request.authorized_key + "\n")
        server = start_sshd(workdir, SshdKeys(request.host_key, client_key=workdir / "unused"))
        runner_id = f"sshd-{server.port}"
        self.servers[runner_id] = (server, dict(request.labels))
        return api.Runner(
            id=runner_id,
            provider=self.name,
            host=server.host,
            port=server.port,
            user=server.user,
            host_public_key=request.host_key.public_openssh,
            tier=request.tier,
            labels=dict(request.labels),
        )

    def destroy(self, runner_id: str) -> None:
        server, _labels = self.servers.pop(runner_id, (None, None))
        if server is not None:
            stop_sshd(server)

    def list_runners(self, labels: Any) -> list[api.RunnerInfo]:
        return [
            api.RunnerInfo(id=runner_id, labels=own)
            for runner_id, (_server, own) in self.servers.items()
            if all(own.get(key) == value for key, value in labels.items())
        ]


def _no_secrets(reference: str) -> str:
    raise AssertionError(f"no secret expected ({reference})")


class TestSshdProviderConformance(ComputeProviderConformance):
    ssh_wait_timeout_s = 20.0

    @pytest.fixture
    def provider(self, tmp_path: Path) -> Iterator[SshdProvider]:
        provider = SshdProvider(tmp_path / "runners")
        provider.workdir.mkdir()
        yield provider
        for runner_id in list(provider.servers):
            provider.destroy(runner_id)

    @pytest.fixture
    def reachable_over_ssh(self) -> bool:
        return True


# --------------------------------------------------------------------------- helpers


def test_make_spawn_request_carries_keys_and_standard_labels() -> None:
    tier = api.Tier("2c-4g", 2, 4)
    request = make_spawn_request(tier, session_id="s0123", extra_labels={"team": "web"})

    assert request.tier == tier and request.session_id == "s0123"
    assert request.labels == {
        "lian.managed": "true",
        "lian.session": "s0123",
        "lian.workspace": "lian-conformance",
        "lian.expires-at": str(int(request.expires_at.timestamp())),
        "team": "web",
    }
    assert request.host_key.public_openssh.startswith("ssh-ed25519 ")
    assert request.authorized_key.startswith("ssh-ed25519 ")
    assert request.authorized_key != request.host_key.public_openssh
    assert request.host_key.private_openssh not in repr(request)
    assert make_spawn_request(tier).session_id != make_spawn_request(tier).session_id
    assert make_spawn_request(tier, runner_image="img:1").runner_image == "img:1"


@pytest.mark.parametrize(
    ("reference", "kept"),
    [
        ("127.0.0.1:5000/a/b:1", "127.0.0.1:5000/a/b:"),
        ("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b:"),
        ("ghcr.io/o/b@sha256:" + "0" * 64, "ghcr.io/o/b:"),
    ],
)
def test_missing_tag_of_keeps_the_repository(reference: str, kept: str) -> None:
    missing = missing_tag_of(reference)
    assert missing.startswith(kept + "lian-missing-")
    assert missing != missing_tag_of(reference)


# --------------------------------------------------------------------------- broken plugins


def _outcomes(pytester: pytest.Pytester, source: str) -> dict[str, set[str]]:
    pytester.makepyfile(test_broken=textwrap.dedent(source))
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    passed, skipped, failed = reprec.listoutcomes()

    def names(reports: Any) -> set[str]:
        return {report.nodeid.rsplit("::", 1)[1] for report in reports}

    return {"passed": names(passed), "skipped": names(skipped), "failed": names(failed)}


BROKEN_PROVIDER = """
    import contextlib, socket
    import pytest
    from lian_build import api
    from lian_build.testing.conformance import ComputeProviderConformance

    class Broken(api.ComputeProvider):
        name = "broken"
        Settings = None

        def __init__(self):
            super().__init__(None, lambda ref: "the-api-token")
            self.runners = {}

        def tiers(self):  # largest first, and a name twice
            return [api.Tier("big", 4, 8), api.Tier("small", 2, 4), api.Tier("small", 1, 2)]

        def plan(self):  # phones home and shows the token
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", 9), timeout=0.2).close()
            return {"token": self.secrets("env:TOKEN")}

        def spawn(self, request):  # loses a label
            labels = {k: v for k, v in request.labels.items() if k != "lian.workspace"}
            runner_id = str(len(self.runners) + 1)
            self.runners[runner_id] = labels
            return api.Runner(runner_id, "broken", "127.0.0.1", 22, "root",
                              request.host_key.public_openssh, request.tier, labels)

        def destroy(self, runner_id):  # not idempotent
            del self.runners[runner_id]

        def list_runners(self, labels):  # ignores the labels it is asked for
            return [api.RunnerInfo(i, l) for i, l in self.runners.items()]

    class TestBroken(ComputeProviderConformance):
        @pytest.fixture
        def provider(self):
            return Broken()
"""


def test_broken_compute_provider_fails_the_tests_naming_its_defects(
    pytester: pytest.Pytester,
) -> None:
    outcomes = _outcomes(pytester, BROKEN_PROVIDER)

    assert outcomes["failed"] == {
        "test_tiers_ascend_by_memory_then_cpu",
        "test_tier_names_are_unique",
        "test_plan_is_json_and_needs_no_network_or_secret",
        "test_plan_holds_no_secret",
        "test_spawn_returns_runner_with_request_labels_and_host_key",
        "test_list_runners_ignores_other_sessions",
        "test_destroy_is_idempotent_and_forgets_the_runner",
    }
    assert outcomes["passed"] == {
        "test_tiers_are_not_empty",
        "test_tiers_need_no_network",
        "test_list_runners_finds_runner_by_session_label",
    }
    assert outcomes["skipped"] == {
        "test_runner_answers_ssh_with_pinned_host_key",
        "test_wrong_pinned_host_key_is_refused",
    }


BROKEN_REGISTRY = """
    import pytest
    from lian_build import api
    from lian_build.testing.conformance import RegistryProviderConformance

    class Broken(api.RegistryProvider):
        name = "broken"
        Settings = None

        @property
        def host(self):  # a URL, not host[:port]
            return "http://registry.example"

        def cache_repository(self, namespace):  # drops the namespace
            return "registry.example/cache"

        def auth(self):
            return api.RegistryAuth(self.host, "ci", self.secrets("env:PASSWORD"))

        def plan(self):  # resolves and shows the password
            return {"password": self.secrets("env:PASSWORD")}

        def check(self):
            pass

        def manifest_digest(self, reference):  # answers for anything, not a digest
            return "sha256:abc"

    class TestBroken(RegistryProviderConformance):
        @pytest.fixture
        def registry(self):
            return Broken(None, lambda ref: "hunter2-registry")

        @pytest.fixture
        def pushed_reference(self):
            return "registry.example/app:1"
"""


def test_broken_registry_fails_the_tests_naming_its_defects(pytester: pytest.Pytester) -> None:
    outcomes = _outcomes(pytester, BROKEN_REGISTRY)

    assert outcomes["failed"] == {
        "test_host_has_no_scheme",
        "test_cache_repository_starts_with_host_and_ends_with_namespace",
        "test_plan_is_json_and_needs_no_network_or_secret",
        "test_manifest_digest_of_pushed_reference",
        "test_manifest_digest_of_missing_tag_is_none",
        "test_auth_keeps_the_password_out_of_repr",
    }
    assert outcomes["passed"] == {"test_check_passes"}


BROKEN_BUILDER = """
    import shlex
    import pytest
    from lian_build import api
    from lian_build.testing.conformance import BuilderConformance

    class ShellStringBuilder(api.Builder):
        name = "shell-string"

        def available(self, remote):
            return True

        def commands(self, job):  # one pre-quoted shell string instead of argv
            args = " ".join(f"--build-arg {shlex.quote(f'{k}={v}')}"
                            for k, v in job.build_args.items())
            secrets = " ".join(f"--secret src={shlex.quote(s.path)}" for s in job.secrets)
            return [[f"buildah build {args} {secrets} -t {job.tags[0]} "
                     f"{shlex.quote(job.context_dir)}"]]

        def build(self, job, remote, log):
            raise NotImplementedError

    class TestBroken(BuilderConformance):
        @pytest.fixture
        def builder(self):
            return ShellStringBuilder()
"""


def test_broken_builder_fails_the_tests_naming_its_defects(pytester: pytest.Pytester) -> None:
    outcomes = _outcomes(pytester, BROKEN_BUILDER)

    assert outcomes["failed"] == {
        "test_program_is_a_single_word",
        "test_values_stay_single_unquoted_elements[build-arg]",
        "test_values_stay_single_unquoted_elements[context-dir]",
        "test_values_stay_single_unquoted_elements[secret-path]",
    }
    assert "test_values_stay_single_unquoted_elements[primary-tag]" in outcomes["passed"]
