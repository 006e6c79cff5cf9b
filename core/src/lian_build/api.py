"""The plugin API: the types and base classes a plugin implements or receives.

Plugins import from ``lian_build`` (``hookimpl``) and from this module only; anything
else in the core is internal and may change. Everything here is importable without a
provider SDK, paramiko or nats, so ``lian --help`` stays fast.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import attrs

# --------------------------------------------------------------------------- sizing


@attrs.frozen
class RunnerSize:
    """What a build needs: resolved by the sizing chain before a tier is chosen."""

    cpu: int
    memory_gb: int
    time_budget_min: int
    source: str  # which sizing source answered: "explicit", "history", "language", ...
    reason: str = ""  # one human sentence: why this size


@attrs.frozen
class Tier:
    """One rung of a compute provider's ladder (a server type, a VM shape, a limit)."""

    name: str  # provider vocabulary: "cx23", "4c-8g", ...
    cpu: int
    memory_gb: float  # float: local tiers may be below 1 GB
    disk_gb: int | None = None

    def fits(self, size: RunnerSize) -> bool:
        return self.cpu >= size.cpu and self.memory_gb >= size.memory_gb


@attrs.frozen
class SizingRequest:
    """What sizing sources see. ``context_dir`` is the local build context."""

    workspace: str
    language: str | None
    context_dir: Path


# --------------------------------------------------------------------------- compute


@attrs.frozen
class HostKey:
    """An SSH host key generated for one session; the client pins the public half."""

    private_openssh: str = attrs.field(repr=False)  # PEM ("-----BEGIN OPENSSH PRIVATE KEY-----")
    public_openssh: str  # "ssh-ed25519 AAAA..."


@attrs.frozen
class SpawnRequest:
    """Everything a compute provider needs to create one runner."""

    session_id: str
    workspace: str
    tier: Tier
    labels: Mapping[str, str]  # must be put on the machine: reaping finds runners by them
    authorized_key: str  # the client's public key, OpenSSH format
    host_key: HostKey  # install as the runner's sshd host key
    runner_image: str | None  # provider vocabulary: image name, template id, snapshot
    expires_at: dt.datetime  # UTC; past it, a reaper may destroy the runner
    # OCI architecture ("amd64", "arm64") the runner must have; None: the provider's own.
    architecture: str | None = None


@attrs.frozen
class Runner:
    """A provisioned machine the core reaches over SSH."""

    id: str
    provider: str
    host: str
    port: int
    user: str
    host_public_key: str  # pinned: no trust on first use
    tier: Tier
    labels: Mapping[str, str] = attrs.field(factory=dict)
    # Run over SSH before the build and waited for, e.g. ("cloud-init", "status", "--wait")
    # on machines that install their tools at first boot.
    ready_command: tuple[str, ...] = ()
    # What the machine booted from (an image name, a snapshot "id (description)"),
    # reported in the result envelope as ``runner_image``.
    image: str | None = None


@attrs.frozen
class RunnerState:
    """What a provider can tell about a runner after a failure (for OOM classification)."""

    exists: bool
    running: bool = False
    exit_code: int | None = None
    oom_killed: bool = False


@attrs.frozen
class RunnerInfo:
    """A runner found by label, for reaping and ``lian runners``."""

    id: str
    labels: Mapping[str, str]
    created_at: dt.datetime | None = None
    hourly_price: float | None = None  # net, where the provider knows prices


class ComputeProvider(abc.ABC):
    """Creates and destroys runners. One instance serves one ``lian`` invocation.

    ``settings`` is an instance of ``Settings`` (an attrs class) built from the
    provider's fields in the directives (``compute = { provider = "x", ... }``).
    Methods that talk to an API import their SDK inside the method.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Settings: ClassVar[type[Any]]

    def __init__(self, settings: Any, secrets: SecretLookup) -> None:
        self.settings = settings
        self.secrets = secrets

    @abc.abstractmethod
    def tiers(self) -> Sequence[Tier]:
        """The ladder, smallest first. Must not touch the network (``lian plan`` calls it)."""

    @abc.abstractmethod
    def spawn(self, request: SpawnRequest) -> Runner:
        """Create a runner and return once SSH can be attempted. Raise ProvisionError."""

    @abc.abstractmethod
    def destroy(self, runner_id: str) -> None:
        """Destroy a runner. Idempotent: a runner that is already gone is not an error."""

    def list_runners(self, labels: Mapping[str, str]) -> list[RunnerInfo]:
        """Runners carrying all of ``labels`` (reaping). Default: provider cannot list."""
        return []

    def inspect(self, runner_id: str) -> RunnerState:
        """Runner state after a failed build (OOM kill, exit code). Default: unknown."""
        return RunnerState(exists=True, running=True)

    def plan(self) -> dict[str, Any]:
        """Provider facts for ``lian plan`` (no network). Default: nothing more."""
        return {}

    def estimate_cost(self, tier: Tier, seconds: float) -> dict[str, Any] | None:
        """What ``seconds`` of a runner of ``tier`` cost, or None when prices are unknown.

        No network (``lian plan`` calls it): prices the provider read earlier in this
        process, a cache, or a bundled table. A dict with at least ``currency``,
        ``amount_net`` and ``price_source``.
        """
        return None

    def build_runner_image(self, options: Mapping[str, str]) -> dict[str, Any]:
        """``lian runner-image build --provider NAME``: make a runner image on this
        provider (a snapshot, a template) and return facts for the envelope. Raise
        ProvisionError. Default: the provider has no runner images of its own."""
        raise NotImplementedError

    def check_runner_image(self, options: Mapping[str, str]) -> dict[str, Any]:
        """``lian runner-image check --provider NAME``: facts about the runner image this
        provider would boot, with ``problems`` (a list, empty when usable)."""
        raise NotImplementedError

    # Multi-platform builds. A provider that declares no architecture gets the one-runner
    # fallback: every platform is built on one runner, the foreign ones emulated.

    def architectures(self) -> Sequence[str]:
        """OCI architectures (``amd64``, ``arm64``) this provider runs natively, each on
        its own runner. No network. Default: none declared."""
        return ()

    def emulated_architectures(self) -> Sequence[str]:
        """Architectures it can run only as emulated runners (QEMU). Default: none."""
        return ()

    def tiers_for(self, architecture: str) -> Sequence[Tier]:
        """The ladder for runners of one architecture. Default: ``tiers()``."""
        return self.tiers()

    def plan_for(self, architecture: str) -> dict[str, Any]:
        """Provider facts for one platform's runner in ``lian plan`` (the template, node
        or image it would use). No network. Default: nothing more."""
        return {}


# --------------------------------------------------------------------------- registry


@attrs.frozen
class RegistryAuth:
    """Credentials for one registry host, written to the runner's DOCKER_CONFIG only."""

    registry: str  # "host[:port]" as it appears in image references
    username: str
    password: str = attrs.field(repr=False)


@attrs.frozen
class CacheArtifact:
    """One manifest in a cache repository (a buildah cache key, a BuildKit cache tag)."""

    digest: str
    tags: tuple[str, ...] = ()
    size_bytes: int | None = None  # config + layers as the manifest lists them
    created_at: dt.datetime | None = None  # push time where the registry knows it


class RegistryProvider(abc.ABC):
    """An OCI registry: where images and build cache go."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Settings: ClassVar[type[Any]]

    def __init__(self, settings: Any, secrets: SecretLookup) -> None:
        self.settings = settings
        self.secrets = secrets

    @classmethod
    def defaults_for_image(cls, registry_host: str) -> dict[str, Any]:
        """Settings implied by an image's registry host, for flat-argument builds
        (``lian build --image 127.0.0.1:5000/app:1`` with no registry settings)."""
        return {}

    @property
    @abc.abstractmethod
    def host(self) -> str:
        """``host[:port]`` of the registry as written in references."""

    @property
    def insecure(self) -> bool:
        """True when the registry speaks plain HTTP (local registries)."""
        return False

    def cache_repository(self, namespace: str) -> str:
        """Full repository for a cache namespace path such as ``ci/<ws>/app``."""
        return f"{self.host}/{namespace}"

    def auth(self) -> RegistryAuth | None:
        """Credentials for pushes and cache, or None for an open registry."""
        return None

    @abc.abstractmethod
    def check(self) -> None:
        """Ping the registry (``/v2/``) with the credentials; raise RegistryError."""

    @abc.abstractmethod
    def manifest_digest(self, reference: str) -> str | None:
        """Digest of the manifest a reference points at, or None when absent."""

    def list_tags(self, repository: str) -> list[str]:
        raise NotImplementedError

    def delete(self, reference: str) -> None:
        """Delete the manifest a ``repo:tag`` or ``repo@digest`` names; RegistryError
        when the registry refuses."""
        raise NotImplementedError

    def list_repositories(self, prefix: str) -> list[str]:
        """Full repository names (``host/...``) under ``prefix`` (a full repository
        name such as ``cache_repository("dev")``), for ``lian cache``."""
        raise NotImplementedError

    def list_artifacts(self, repository: str) -> list[CacheArtifact]:
        """Every manifest in a repository, with its tags, size and push/creation time."""
        raise NotImplementedError

    def get_manifest(self, reference: str) -> tuple[str, bytes]:
        """``(media type, raw bytes)`` of a manifest (multi-platform index assembly)."""
        raise NotImplementedError

    def get_blob(self, reference: str, digest: str) -> bytes:
        """A blob of the repository ``reference`` names (a manifest's config)."""
        raise NotImplementedError

    def put_manifest(self, reference: str, media_type: str, body: bytes) -> str:
        """Push a manifest or index under a tag; returns its digest."""
        raise NotImplementedError

    def plan(self) -> dict[str, Any]:
        return {}


# --------------------------------------------------------------------------- builders


@attrs.frozen
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str


class Remote(Protocol):
    """What the core gives a builder: a connected runner."""

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        on_output: Callable[[str], None] | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run argv (each element shell-quoted by the core) and wait for it."""
        ...

    def read_file(self, path: str) -> bytes: ...

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None: ...


@attrs.frozen
class BuildSecret:
    """A build secret already resolved and written to ``path`` on the runner."""

    id: str
    path: str


@attrs.frozen
class BuildJob:
    """One build, in runner paths. Builders turn it into command lines."""

    context_dir: str
    dockerfile: str  # relative to context_dir
    tags: tuple[str, ...]  # fully-qualified references; the first is the primary
    platforms: tuple[str, ...] = ()
    target: str | None = None
    build_args: Mapping[str, str] = attrs.field(factory=dict)
    cache_imports: tuple[str, ...] = ()
    cache_exports: tuple[str, ...] = ()
    insecure_registries: frozenset[str] = frozenset()  # hosts speaking plain HTTP
    secrets: tuple[BuildSecret, ...] = ()
    docker_config_dir: str | None = None  # DOCKER_CONFIG on the runner (0700)
    work_dir: str = "/tmp/lian"  # scratch on the runner (metadata file, ...)
    progress: str = "plain"
    push: bool = True


@attrs.frozen
class BuildOutcome:
    exit_code: int
    digest: str | None = None  # sha256:... of the pushed manifest (or index)
    stderr_tail: str = ""  # last lines, for OOM classification and error messages
    cached_steps: int = 0
    total_steps: int = 0
    # Cache refs (of BuildJob.cache_imports) that served the hits; () when nothing was
    # cached, None when the builder cannot tell which of several refs it used.
    cache_sources: tuple[str, ...] | None = ()


class Builder(abc.ABC):
    """Turns a BuildJob into commands on the runner (BuildKit, buildah, ...)."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    requirement: ClassVar[str] = ""  # what a runner needs, for "runner lacks X" messages

    @abc.abstractmethod
    def available(self, remote: Remote) -> bool:
        """Whether the runner has what this builder needs (``builder = "auto"``)."""

    @abc.abstractmethod
    def commands(self, job: BuildJob) -> list[list[str]]:
        """The argv lists the build runs, in order. ``lian plan`` prints them."""

    @abc.abstractmethod
    def build(self, job: BuildJob, remote: Remote, log: Callable[[str], None]) -> BuildOutcome:
        """Run the build, streaming progress lines to ``log``."""


# --------------------------------------------------------------------------- secrets


class SecretResolver(abc.ABC):
    """Resolves ``<scheme>:<rest>`` references (``env:NPM_TOKEN``, ``file:/run/x``)."""

    scheme: ClassVar[str]
    description: ClassVar[str] = ""

    @abc.abstractmethod
    def resolve(self, reference: str) -> str:
        """Return the secret for ``reference`` (without the scheme). Raise SecretError."""


class SecretLookup(Protocol):
    """Resolve any ``scheme:rest`` reference through the registered resolvers."""

    def __call__(self, reference: str) -> str: ...


# --------------------------------------------------------------------------- events


@attrs.frozen
class BuildEvent:
    """A lifecycle event: started, attempt, completed, failed, cancelled."""

    kind: str
    workspace: str
    session_id: str
    timestamp: dt.datetime
    data: Mapping[str, Any] = attrs.field(factory=dict)  # never holds a secret


@attrs.frozen
class EventSettings:
    """Event configuration from flags, environment or directives."""

    nats_url: str | None = None
    subject_prefix: str = "lian"
    nkey_seed: str | None = attrs.field(default=None, repr=False)


class EventSink(abc.ABC):
    """Receives every event; failures are logged and never fail a build."""

    name: ClassVar[str]

    @abc.abstractmethod
    def emit(self, event: BuildEvent) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional to override: most sinks hold nothing
        """Flush and release connections at the end of the invocation."""


@attrs.frozen
class BuildMetrics:
    """What a finished build used, for history-based sizing."""

    workspace: str
    session_id: str
    provider: str
    tier: str
    cpu: int
    memory_gb: int
    peak_memory_bytes: int | None
    cpu_seconds: float | None
    duration_s: float
    succeeded: bool
    oom: bool
    finished_at: dt.datetime


# --------------------------------------------------------------------------- registration


class Register(Protocol):
    """The callback registration hooks receive: ``register(SomeProviderClass)``."""

    def __call__(self, item: Any) -> None: ...


# --------------------------------------------------------------------------- helpers
# For plugin authors. Each imports what it needs when called, so importing this module
# stays cheap.


def state_dir() -> Path:
    """Where lian keeps state on this machine (build history, a plugin's own files):
    ``$LIAN_STATE_DIR``, else ``$XDG_STATE_HOME/lian``, else ``~/.local/state/lian``.
    A plugin keeps its files in a subfolder named after itself."""
    from lian_build.history import state_dir as _state_dir

    return _state_dir()


def connect_ssh(
    runner: Runner,
    private_key: Path,
    *,
    wait_timeout_s: float = 180.0,
    log: Callable[[str], None] | None = None,
) -> Any:
    """An SSH ``Remote`` to a runner, for a provider that prepares its host itself
    (install a tool, warm a cache) before the core takes over.

    The host key is pinned: ``runner.host_public_key`` must be the key the host
    presents (no trust on first use). Returns a ``lian_build.remote.ssh.SSHRemote``
    (``run``, ``read_file``, ``write_file``, ``close``; a context manager)."""
    from lian_build.remote.ssh import SSHRemote, read_private_key

    return SSHRemote.connect(
        runner, read_private_key(private_key), wait_timeout_s=wait_timeout_s, log=log or _quiet
    )


def _quiet(_line: str) -> None:
    return None


def run_command(command: str, body: Callable[[], Any]) -> None:
    """Run a plugin's CLI command the way the core runs its own: ``body`` returns the
    result (a mapping or an attrs record); exactly one envelope is printed on stdout,
    a ``LianError`` becomes an error envelope with its documented exit code."""
    from lian_build.envelope import run_enveloped

    run_enveloped(command, lambda _envelope: body())
