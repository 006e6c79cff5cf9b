"""The docker-local compute provider: each runner is a container on a Docker engine.

Runners use host networking by default, so a runner reaches registries on 127.0.0.1
and its sshd listens on ``bind_host:<free port>``. The docker SDK is imported inside
the methods that talk to the engine.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import re
import secrets as token
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from lian_build import api
from lian_build.errors import InvalidInput, ProvisionError
from lian_docker_local.container import ssh_files_archive, start_script
from lian_docker_local.engine import connect, describe_engine, missing_image_error
from lian_docker_local.oom import read_oom_kills

log = logging.getLogger("lian.compute.docker_local")

# What a nested builder (buildah, buildkitd) needs when --privileged is unavailable.
CAPABILITIES = ("SYS_ADMIN", "MKNOD", "SYS_CHROOT", "SETFCAP")
SECURITY_OPTIONS = ("seccomp=unconfined", "apparmor=unconfined")
PORT_ATTEMPTS = 5
SSHD_START_TIMEOUT_S = 20.0
_PORT_TAKEN_MARKERS = ("address already in use", "cannot bind any address", "already allocated")


def _positive(field: str) -> Any:
    def check(_instance: Any, _attribute: Any, value: float) -> None:
        if value <= 0:
            raise InvalidInput(f"{field} must be positive, got {value}", field=field)

    return check


@attrs.frozen(kw_only=True)
class TierSettings:
    """One rung of a custom ladder: ``{ name = "tiny", cpu = 1, memory_gb = 0.5 }``."""

    name: str
    cpu: int = attrs.field(validator=_positive("compute.tiers.cpu"))
    memory_gb: float = attrs.field(validator=_positive("compute.tiers.memory_gb"))


@attrs.frozen(kw_only=True)
class DockerLocalSettings:
    """``compute = { provider = "docker-local", ... }`` fields."""

    image: str = "lian-runner:debian"
    docker_host: str | None = None  # else DOCKER_HOST, else the default socket
    ssh_user: str = "root"
    bind_host: str = "127.0.0.1"
    tiers: list[TierSettings] | None = None  # replaces the default ladder
    network: str = "host"  # or a Docker network name: sshd is then published on bind_host
    # Runner image per foreign architecture; default "<image>-<arch>" (lian-runner:debian-arm64).
    arch_images: dict[str, str] | None = None
    # Emulated runners for foreign platforms (opt-in): everything in them (sshd, rsync,
    # buildah) runs under qemu-user, where one native runner emulates only RUN steps.
    emulated_runners: bool = False


Settings = DockerLocalSettings

DEFAULT_TIERS: tuple[api.Tier, ...] = (
    api.Tier("2c-4g", 2, 4),
    api.Tier("4c-8g", 4, 8),
    api.Tier("8c-16g", 8, 16),
    api.Tier("16c-32g", 16, 32),
)


# With a bridge network sshd listens on every interface inside the container's own
# network namespace; the engine publishes the port on bind_host only.
_ALL_INTERFACES = "0.0.0.0"  # noqa: S104


class _PortTaken(Exception):
    """The chosen port was taken between picking it and sshd binding it."""


class DockerLocalProvider(api.ComputeProvider):
    name = "docker-local"
    description = "Runners as containers on a Docker engine (host networking by default)."
    Settings = DockerLocalSettings

    def __init__(self, settings: DockerLocalSettings, secrets: api.SecretLookup) -> None:
        super().__init__(settings, secrets)
        self.settings: DockerLocalSettings = settings
        self._client: Any = None
        self._host_cpus: int | None = None

    # ------------------------------------------------------------------ no network

    def tiers(self) -> Sequence[api.Tier]:
        if self.settings.tiers is None:
            return DEFAULT_TIERS
        custom = [api.Tier(t.name, t.cpu, t.memory_gb) for t in self.settings.tiers]
        if not custom:
            raise InvalidInput("compute.tiers must list at least one tier", field="compute.tiers")
        return sorted(custom, key=lambda t: (t.memory_gb, t.cpu))

    def plan(self) -> dict[str, Any]:
        return {
            "engine": describe_engine(self.settings.docker_host),
            "image": self.settings.image,
            "network": self.settings.network,
            "bind_host": self.settings.bind_host,
            "architectures": {
                "native": list(self.architectures()),
                "emulated": list(self.emulated_architectures()),
            },
        }

    # ------------------------------------------------------------------ architectures

    def architectures(self) -> Sequence[str]:
        # Runners share the engine's kernel: only its own architecture runs natively.
        return (host_architecture(),)

    def emulated_architectures(self) -> Sequence[str]:
        """Foreign architectures whose QEMU binfmt_misc handler is enabled on this host
        (only for the local engine: a remote one's kernel is not ours to read)."""
        if not self.settings.emulated_runners:
            return ()
        engine = self.settings.docker_host or os.environ.get("DOCKER_HOST")
        if engine and not engine.startswith("unix://"):
            return ()
        native = host_architecture()
        return tuple(a for a in _QEMU_NAMES if a != native and binfmt_enabled(a))

    def image_for(self, architecture: str | None, override: str | None = None) -> str:
        base = override or self.settings.image
        if architecture is None or architecture == host_architecture():
            return base
        images = self.settings.arch_images or {}
        return images.get(architecture) or f"{base}-{architecture}"

    # ------------------------------------------------------------------ engine

    def _docker(self) -> Any:
        if self._client is None:
            self._client = connect(self.settings.docker_host)
        return self._client

    def spawn(self, request: api.SpawnRequest) -> api.Runner:
        import docker

        client = self._docker()
        image = self.image_for(request.architecture, request.runner_image)
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            raise missing_image_error(image) from None
        ssh_files = ssh_files_archive(request.host_key.private_openssh, request.authorized_key)
        for _attempt in range(PORT_ATTEMPTS):
            port = _free_port(self.settings.bind_host)
            container = self._create(client, request, image, port)
            try:
                if not container.put_archive("/", ssh_files):
                    raise ProvisionError("could not copy the SSH keys into the runner container")
                self._start(container)
                self._wait_for_sshd(container, port)
            except _PortTaken:
                log.info("port %d was taken before sshd bound it; trying another", port)
                self._discard(container.id)
                continue
            except docker.errors.DockerException as exc:
                self._discard(container.id)
                raise ProvisionError(f"the runner container failed to start: {exc}") from exc
            except BaseException:  # including Ctrl-C: never leave a half-made runner
                self._discard(container.id)
                raise
            log.info(
                "runner %s listening on %s:%d", container.short_id, self.settings.bind_host, port
            )
            return api.Runner(
                id=container.id,
                provider=self.name,
                host=self.settings.bind_host,
                port=port,
                user=self.settings.ssh_user,
                host_public_key=request.host_key.public_openssh,
                tier=request.tier,
                labels=dict(request.labels),
            )
        raise ProvisionError(
            f"no free port for sshd on {self.settings.bind_host} after {PORT_ATTEMPTS} tries"
        )

    def _create(self, client: Any, request: api.SpawnRequest, image: str, port: int) -> Any:
        import docker

        memory = int(request.tier.memory_gb * 1024**3)
        host_network = self.settings.network == "host"
        network: dict[str, Any] = (
            {"network_mode": "host"}
            if host_network
            else {
                "network": self.settings.network,
                "ports": {f"{port}/tcp": (self.settings.bind_host, port)},
            }
        )
        try:
            return client.containers.create(
                image,
                entrypoint=["/bin/sh", "-c"],
                command=[
                    start_script(port, self.settings.bind_host if host_network else _ALL_INTERFACES)
                ],
                name=_container_name(request.session_id),
                labels=dict(request.labels),
                mem_limit=memory,
                memswap_limit=memory,  # equal limits: no swap, so OOM shows up as OOM
                nano_cpus=self._nano_cpus(client, request.tier),
                cap_add=list(CAPABILITIES),
                security_opt=list(SECURITY_OPTIONS),
                # buildkitd needs the cgroup tree; it also exposes the runner's own
                # memory cgroup (oom_kill, peak usage) to the build over SSH.
                cgroupns="host",
                volumes={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}},
                **network,
            )
        except docker.errors.ImageNotFound:
            raise missing_image_error(image) from None
        except docker.errors.APIError as exc:
            raise ProvisionError(f"the Docker engine refused to create the runner: {exc}") from exc

    def _start(self, container: Any) -> None:
        import docker

        try:
            container.start()
        except docker.errors.APIError as exc:
            if any(marker in str(exc).lower() for marker in _PORT_TAKEN_MARKERS):
                raise _PortTaken from exc
            raise ProvisionError(f"the Docker engine could not start the runner: {exc}") from exc

    def _nano_cpus(self, client: Any, tier: api.Tier) -> int:
        if self._host_cpus is None:
            host_cpus: int = client.info().get("NCPU") or tier.cpu
            self._host_cpus = host_cpus
        cpus = min(tier.cpu, self._host_cpus)
        if cpus < tier.cpu:
            log.info(
                "tier %s asks for %d CPUs; the engine has %d, using %d",
                tier.name,
                tier.cpu,
                self._host_cpus,
                cpus,
            )
        return cpus * 1_000_000_000

    def _wait_for_sshd(self, container: Any, port: int) -> None:
        """Return once sshd answers with its banner; the container must still be running."""
        deadline = time.monotonic() + SSHD_START_TIMEOUT_S
        while time.monotonic() < deadline:
            container.reload()
            if container.status in {"exited", "dead"}:
                logs = container.logs(tail=20).decode(errors="replace")
                if any(marker in logs.lower() for marker in _PORT_TAKEN_MARKERS):
                    raise _PortTaken
                exit_code = container.attrs["State"].get("ExitCode")
                raise ProvisionError(
                    f"the runner container exited with code {exit_code} before sshd "
                    f"started: {logs.strip()[-500:]}"
                )
            if _ssh_banner(self.settings.bind_host, port):
                container.reload()
                if container.status == "running":
                    return
            time.sleep(0.1)
        raise ProvisionError(
            f"sshd in the runner did not answer on port {port} within {SSHD_START_TIMEOUT_S:.0f}s"
        )

    def destroy(self, runner_id: str) -> None:
        import docker

        try:
            self._docker().api.remove_container(runner_id, force=True, v=True)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if "already in progress" in str(exc):
                return
            raise ProvisionError(
                f"could not remove runner container {runner_id[:12]}: {exc}"
            ) from exc
        log.info("removed runner container %s", runner_id[:12])

    def _discard(self, runner_id: str) -> None:
        """Remove a runner while another error is on its way up; that error wins."""
        try:
            self.destroy(runner_id)
        except ProvisionError as exc:
            log.warning("could not remove runner %s: %s", runner_id[:12], exc.message)

    def list_runners(self, labels: Mapping[str, str]) -> list[api.RunnerInfo]:
        filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
        containers = self._docker().containers.list(all=True, filters=filters, ignore_removed=True)
        return [
            api.RunnerInfo(
                id=c.id, labels=dict(c.labels), created_at=_parse_created(c.attrs.get("Created"))
            )
            for c in containers
        ]

    def inspect(self, runner_id: str) -> api.RunnerState:
        import docker

        try:
            container = self._docker().containers.get(runner_id)
        except docker.errors.NotFound:
            return api.RunnerState(exists=False)
        state = container.attrs["State"]
        running = bool(state.get("Running"))
        # The engine flags OOM only when PID 1 dies; a killed build step leaves the
        # container running, so the runner's memory cgroup counter is asked as well.
        oom_killed = bool(state.get("OOMKilled")) or (running and read_oom_kills(container) > 0)
        return api.RunnerState(
            exists=True,
            running=running,
            exit_code=None if running else state.get("ExitCode"),
            oom_killed=oom_killed,
        )


# OCI architecture -> QEMU's name for it (binfmt_misc handler qemu-<name>).
_QEMU_NAMES = {
    "amd64": "x86_64",
    "arm64": "aarch64",
    "arm": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}
_OCI_NAMES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}
BINFMT_DIR = "/proc/sys/fs/binfmt_misc"


def host_architecture() -> str:
    machine = platform.machine().lower()
    return _OCI_NAMES.get(machine, machine)


def binfmt_enabled(architecture: str) -> bool:
    """Whether the kernel runs this architecture's binaries through QEMU."""
    name = _QEMU_NAMES.get(architecture)
    if name is None:
        return False
    try:
        with open(f"{BINFMT_DIR}/qemu-{name}", encoding="utf-8") as handler:
            return handler.readline().strip() == "enabled"
    except OSError:
        return False


def _free_port(bind_host: str) -> int:
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((bind_host, 0))
        return int(probe.getsockname()[1])


def _ssh_banner(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as conn:
            return conn.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def _container_name(session_id: str) -> str:
    safe = re.sub(r"[^a-zA-Z0-9_.-]", "-", session_id)[:40].strip("-.") or "runner"
    return f"lian-{safe}-{token.token_hex(3)}"


def _parse_created(value: str | None) -> dt.datetime | None:
    """Docker's ``Created`` has nanoseconds; datetime keeps microseconds."""
    if not value:
        return None
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?", value)
    if match is None:
        return None
    fraction = (match.group(2) or "0")[:6].ljust(6, "0")
    return dt.datetime.fromisoformat(f"{match.group(1)}.{fraction}+00:00")
