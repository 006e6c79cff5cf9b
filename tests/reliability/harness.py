"""The reliability matrix's machinery: hostile secrets, a registry that can be cut at
a chosen request, builds driven to a phase, and the checks every case ends with.

A compute provider is a parameter (``Provider``): docker-local now; a provider that can
create real runners here joins the matrix by adding one entry to ``PROVIDERS``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import attrs

from fixtures.ports import free_port

# ----------------------------------------------------------------- secrets


@attrs.frozen
class Markers:
    """A single-line and a multi-line (PEM-like) secret, unique to one test run."""

    single: str
    multi: str

    @classmethod
    def new(cls) -> Markers:
        tag = uuid.uuid4().hex
        lines = [f"LianMarkerLine{i}x{tag}" for i in range(4)]
        multi = (
            "-----BEGIN LIAN TEST KEY-----\n" + "\n".join(lines) + "\n-----END LIAN TEST KEY-----\n"
        )
        return cls(single=f"LianMarkerSingle{tag}", multi=multi)

    def forms(self) -> list[str]:
        """What must never appear anywhere: each value, each line of the multi-line
        one, their JSON-escaped and base64 forms (whole and as `base64` wraps lines)."""
        out = {self.single}
        out.update(line for line in self.multi.splitlines() if "LianMarker" in line)
        for value in (self.single, self.multi):
            out.add(json.dumps(value)[1:-1])
            encoded = base64.b64encode(value.encode()).decode()
            out.add(encoded)
            out.update(encoded[i : i + 76] for i in range(0, len(encoded), 76))
        return sorted(f for f in out if len(f) >= 12)

    def leaks(self, blob: bytes | str) -> list[str]:
        data = blob.encode("utf-8", "replace") if isinstance(blob, str) else blob
        return [f for f in self.forms() if f.encode() in data]


def leaks_in_tree(markers: Markers, root: Path) -> list[str]:
    found: list[str] = []
    for path in root.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                found += [f"{path}: {m[:24]}" for m in markers.leaks(path.read_bytes())]
        except OSError:
            continue
    return found


# ----------------------------------------------------------------- a registry to cut


class DockerApiHook:
    """A proxy for the Docker engine's socket that calls ``before_remove(container_id)``
    ahead of every container removal: a look at the runner's disk after the build,
    just before it is destroyed, without a hook in lian."""

    def __init__(self, upstream: str, socket_path: Path, before_remove: Callable[[str], None]):
        self.upstream = upstream
        self.socket_path = socket_path
        self.before_remove = before_remove
        self.removed: list[str] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(socket_path))
        self._listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.upstream)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        pair = {client: upstream, upstream: client}
        try:
            while True:
                ready, _, _ = select.select(list(pair), [], [], 1)
                for sock in ready:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    if sock is client and chunk.startswith(b"DELETE "):
                        path = chunk.split(b" ", 2)[1].decode("latin-1").split("?")[0]
                        if "/containers/" in path:
                            container = path.rsplit("/", 1)[1]
                            self.removed.append(container)
                            self.before_remove(container)
                    pair[sock].sendall(chunk)
        except OSError:
            return
        finally:
            for sock in pair:
                sock.close()

    def close(self) -> None:
        self._listener.close()


class RegistryCut:
    """A TCP proxy in front of a registry that can go down at a chosen request.

    ``when(method, path)`` is called for every HTTP request that passes; when it returns
    True the proxy closes every connection and its listener (connection refused from
    then on). ``on_request`` sees every request too (to send a signal at the push, say).
    """

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.port = free_port()
        self.requests: list[tuple[str, str]] = []
        self.when: Callable[[str, str], bool] = lambda _m, _p: False
        # (method, path, request head): may block to hold the request back
        self.on_request: Callable[[str, str, str], None] = lambda _m, _p, _h: None
        self.down = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cut(self) -> None:
        self.down.set()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        while not self.down.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down.is_set():
                client.close()
                return
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _sniff(self, chunk: bytes) -> bool:
        first = chunk.split(b"\r\n", 1)[0].decode("latin-1", "replace").split(" ")
        if len(first) < 3 or not first[2].startswith("HTTP/"):
            return False
        method, path = first[0], first[1]
        self.requests.append((method, path))
        self.on_request(method, path, chunk.split(b"\r\n\r\n", 1)[0].decode("latin-1"))
        return self.when(method, path)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        pair = {client: upstream, upstream: client}
        try:
            while not self.down.is_set():
                ready, _, _ = select.select(list(pair), [], [], 0.5)
                for sock in ready:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    if sock is client and self._sniff(chunk):
                        self.cut()
                        return
                    pair[sock].sendall(chunk)
        except OSError:
            return
        finally:
            for sock in pair:
                sock.close()


class BlackHole:
    """A TCP listener that accepts and never answers (a NATS server gone silent)."""

    def __init__(self) -> None:
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._held.append(conn)

    def close(self) -> None:
        self._listener.close()
        for conn in self._held:
            conn.close()


# ----------------------------------------------------------------- providers


# A case of the matrix: a test function's name and the parameters it must have.
CaseSpec = tuple[str, Mapping[str, Any]]


@attrs.frozen
class Provider:
    """How the matrix drives one compute provider.

    A provider behind an imitated cloud API has ``serve``: it serves the imitation for
    one test and yields a Provider bound to it (flags, environment and inventory of
    that imitation). ``cases`` limits a provider to a reduced set of the matrix (None:
    every case).
    """

    name: str
    flags: Callable[[Any], list[str]]  # extra `lian build` flags, given the E2E env
    runners: Callable[[Any, str], list[str]]  # what a workspace still has on the provider
    kill_runner: Callable[[Any, str], None]  # the machine dies (docker kill, power off)
    kill_sshd: Callable[[Any, str], None]  # sshd dies inside a running machine
    remove: Callable[[Any, str], None]  # test cleanup of what a failed case left
    dead_engine: Callable[[Path], list[str]]  # flags naming an unreachable engine/API
    # Runs a build with ``look(container_id)`` called before each runner container is
    # removed; yields the extra `lian build` flags that route removals through it.
    watch_removal: Callable[[Any, Path, Callable[[str], None]], AbstractContextManager[list[str]]]
    # What else a workspace's runners leave on the provider (key objects, machines).
    residue: Callable[[Any, str], list[str]] = lambda _env, _workspace: []
    environ: Mapping[str, str] = attrs.field(factory=dict)  # for lian (API tokens)
    compute_opts: tuple[str, ...] = ()  # flags every lian command needs (reap too)
    cases: tuple[CaseSpec, ...] | None = None
    serve: Callable[[Any, Path], AbstractContextManager[Provider]] | None = None

    def runs(self, function: str, params: Mapping[str, Any]) -> bool:
        if self.cases is None:
            return True
        return any(
            name == function and all(params.get(k) == v for k, v in want.items())
            for name, want in self.cases
        )


def _docker_runners(env: Any, workspace: str) -> list[str]:
    return [c.id for c in env.runners(workspace=workspace)]


def _docker_kill(env: Any, runner_id: str) -> None:
    env.docker.containers.get(runner_id).kill()


def _docker_kill_sshd(env: Any, runner_id: str) -> None:
    env.docker.containers.get(runner_id).exec_run(["pkill", "-KILL", "sshd"])


@contextlib.contextmanager
def _docker_watch_removal(env: Any, tmp: Path, look: Callable[[str], None]) -> Iterator[list[str]]:
    engine = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")
    hook = DockerApiHook(engine, tmp / "docker.sock", look)
    try:
        yield ["--compute-opt", f"docker_host={hook.url}"]
    finally:
        hook.close()


DOCKER_LOCAL = Provider(
    name="docker-local",
    flags=lambda env: ["--provider", "docker-local", "--runner-image", env.runner_image],
    runners=_docker_runners,
    kill_runner=_docker_kill,
    kill_sshd=_docker_kill_sshd,
    remove=lambda env, runner_id: env.docker.containers.get(runner_id).remove(force=True),
    dead_engine=lambda tmp: ["--compute-opt", f"docker_host=unix://{tmp}/no-engine.sock"],
    watch_removal=_docker_watch_removal,
)


# The cloud imitations run a reduced set (CI time): an interrupt and a kill while the
# build runs, the machine killed mid-build, and the secrets case.
CLOUD_CASES: tuple[CaseSpec, ...] = (
    ("test_signal_at_phase", {"phase": "build", "signum": signal.SIGINT}),
    ("test_signal_at_phase", {"phase": "build", "signum": signal.SIGKILL}),
    ("test_a_lost_runner_is_not_out_of_memory", {"fault": "runner-killed"}),
    ("test_no_secret_anywhere", {}),
)


HCLOUD_MP_CASES: tuple[CaseSpec, ...] = (
    ("test_mp_signal_while_both_build", {"signum": signal.SIGINT}),
    ("test_mp_sigkill_then_reap_finds_both_runners", {}),
)


def _kill_container(env: Any, container_id: str | None) -> None:
    assert container_id is not None, "no machine behind this runner"
    env.docker.containers.get(container_id).kill()


def _kill_sshd_in(env: Any, container_id: str | None) -> None:
    assert container_id is not None, "no machine behind this runner"
    env.docker.containers.get(container_id).exec_run(["pkill", "-KILL", "sshd"])


@contextlib.contextmanager
def _watch_pool(pool: Any, look: Callable[[str], None]) -> Iterator[list[str]]:
    """The imitation removes a machine's container when its server/VM is deleted: look
    at it just before."""
    remove = pool.remove

    def watched(machine: Any) -> None:
        look(machine.container_id)
        remove(machine)

    pool.remove = watched
    try:
        yield []
    finally:
        pool.remove = remove


def _pool_left(pool: Any) -> list[str]:
    return [f"container {c.name}" for c in pool.running()]


def _unavailable_api(name: str) -> Callable[[Path], list[str]]:
    def flags(_tmp: Path) -> list[str]:
        raise AssertionError(f"not in the reduced matrix of {name}")

    return flags


@contextlib.contextmanager
def _serve_hcloud(env: Any, _tmp: Path) -> Iterator[Provider]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "hcloud"))
    from fake_hcloud import FakeHcloud

    from fixtures.machines import MachinePool

    pool = MachinePool(env.docker)
    fake = FakeHcloud(machines=pool).start()
    opts = ["--compute-opt", f"api_endpoint={fake.url}", "--compute-opt", "poll_interval=1"]
    if pool.port != 22:
        opts += ["--compute-opt", f"ssh_port={pool.port}"]

    def left(_env: Any, _workspace: str) -> list[str]:
        fake.settle()  # a delete lian started completes anyway
        # One imitation per test: every server, key object and container is ours.
        return [f"server {i}" for i in fake.inventory()["servers"]]

    def residue(_env: Any, _workspace: str) -> list[str]:
        keys = [f"ssh-key {name}" for name in fake.inventory()["ssh_keys"]]
        return keys + _pool_left(pool)

    def machine(server_id: str) -> str | None:
        found = fake.machine_of.get(int(server_id.removeprefix("server ")))
        return None if found is None else found.container_id

    try:
        yield attrs.evolve(
            HCLOUD,
            flags=lambda _env: ["--provider", "hcloud", *opts],
            runners=left,
            residue=residue,
            kill_runner=lambda e, r: _kill_container(e, machine(r)),
            kill_sshd=lambda e, r: _kill_sshd_in(e, machine(r)),
            watch_removal=lambda _e, _t, look: _watch_pool(pool, look),
            environ={"HCLOUD_TOKEN": fake.token},
            compute_opts=tuple(opts),
            serve=None,
        )
    finally:
        fake.stop()
        pool.cleanup()


@contextlib.contextmanager
def _serve_proxmox(env: Any, tmp: Path) -> Iterator[Provider]:
    from e2e.pve import served_pve

    cert_dir = tmp / "pve"
    cert_dir.mkdir()
    with served_pve(env.docker, env.runner_image, cert_dir) as pve:
        opts = pve.compute_opts()

        def left(_env: Any, _workspace: str) -> list[str]:
            # One imitation per test: every VM lian made and every container is ours.
            return [f"vm {i}" for i in pve.fake.leftovers()]

        def machine(vm_ref: str) -> str | None:
            vm = pve.fake.guests().get(int(vm_ref.removeprefix("vm ")))
            return None if vm is None or vm.machine is None else vm.machine.container_id

        yield attrs.evolve(
            PROXMOX,
            flags=lambda _env: ["--provider", "proxmox", *opts],
            runners=left,
            residue=lambda _e, _w: _pool_left(pve.pool),
            kill_runner=lambda e, r: _kill_container(e, machine(r)),
            kill_sshd=lambda e, r: _kill_sshd_in(e, machine(r)),
            watch_removal=lambda _e, _t, look: _watch_pool(pve.pool, look),
            environ=dict(pve.env),
            compute_opts=tuple(opts),
            serve=None,
        )


def _unbound(_env: Any, *_args: Any) -> Any:
    raise AssertionError("a cloud provider is used through its served imitation")


HCLOUD = Provider(
    name="hcloud",
    flags=_unbound,
    runners=_unbound,
    kill_runner=_unbound,
    kill_sshd=_unbound,
    remove=lambda _env, _id: None,  # the imitation's teardown removes everything
    dead_engine=_unavailable_api("hcloud"),
    watch_removal=_unbound,
    # Plus two two-platform cases: an x86 and an arm server.
    cases=CLOUD_CASES + HCLOUD_MP_CASES,
    serve=_serve_hcloud,
)

PROXMOX = attrs.evolve(
    HCLOUD,
    name="proxmox",
    dead_engine=_unavailable_api("proxmox"),
    serve=_serve_proxmox,
    cases=CLOUD_CASES,  # its two-platform build has its own e2e test
)

PROVIDERS = (DOCKER_LOCAL, HCLOUD, PROXMOX)


# ----------------------------------------------------------------- a build in the background


# The RUN step prints every secret: raw, base64 (wrapped at 76 columns) and
# JSON-escaped (a literal backslash-n per line, as a JSON log would carry it).
APP_DOCKERFILE = r"""FROM {base}
COPY hello.txt /hello.txt
RUN --mount=type=secret,id=pem --mount=type=secret,id=tok \
    cat /run/secrets/pem; cat /run/secrets/tok; echo; \
    base64 /run/secrets/pem; base64 /run/secrets/tok; \
    sed 's/$/\\n/' /run/secrets/pem | tr -d '\n'; echo; sleep {sleep}
RUN head -c 2000000 /dev/urandom > /blob
"""


def app_context(tmp: Path, base: str, *, sleep: int = 2) -> Path:
    ctx = tmp / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(APP_DOCKERFILE.format(base=base, sleep=sleep))
    (ctx / "hello.txt").write_text("hello\n")
    return ctx


@attrs.define
class Case:
    """One `lian build` of the matrix, its outputs and what it left behind."""

    env: Any
    provider: Provider
    workspace: str
    tmp: Path
    markers: Markers
    registry_host: str
    extra: list[str] = attrs.field(factory=list)
    context: Path | None = None
    proc: subprocess.Popen[str] | None = None
    lines: list[str] = attrs.field(factory=list)
    stdout: str = ""
    returncode: int | None = None
    shared_state: Path | None = None  # several builds writing one history
    tag: str = "1"
    _reader: threading.Thread | None = None
    _seen: threading.Condition = attrs.field(factory=threading.Condition)

    @property
    def state_dir(self) -> Path:
        return self.shared_state or self.tmp / "state"

    @property
    def tmpdir(self) -> Path:
        return self.tmp / "tmpdir"

    @property
    def image(self) -> str:
        return f"{self.registry_host}/apps/{self.workspace}:{self.tag}"

    def argv(self) -> list[str]:
        assert self.context is not None
        (self.tmp / "pem").write_text(self.markers.multi)
        return [
            "build",
            "--workspace", self.workspace,
            "--context", str(self.context),
            "--image", self.image,
            "--ssh-key", str(self.env.ssh_key),
            *self.provider.flags(self.env),
            "--registry", "zot",
            "--registry-opt", f"url=http://{self.registry_host}",
            "--builder", "buildah",
            "--secret", f"pem=file:{self.tmp / 'pem'}",
            "--secret", "tok=env:LIAN_REL_TOKEN",
            *self.extra,
        ]  # fmt: skip

    def environ(self) -> dict[str, str]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.tmpdir.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LIAN_", "BUILDKIT_"))}
        env.update(
            LIAN_STATE_DIR=str(self.state_dir),
            TMPDIR=str(self.tmpdir),
            LIAN_REL_TOKEN=self.markers.single,
        )
        env.update(self.provider.environ)
        return env

    def start(self, prefix: list[str] | None = None) -> Case:
        if self.context is None:
            self.context = app_context(self.tmp, self.env.base_image)
        self.proc = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "lian_build.cli", *self.argv()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.environ(),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()
        with self._seen:
            self.lines.append("")  # end of stream
            self._seen.notify_all()

    def wait_for(self, marker: str, timeout: float = 300) -> bool:
        """Block until a stderr line holds ``marker``; False when lian ended first."""
        deadline = time.monotonic() + timeout
        with self._seen:
            while True:
                if any(marker in line for line in self.lines):
                    return True
                if self.lines and self.lines[-1] == "":
                    return False
                left = deadline - time.monotonic()
                assert left > 0, f"no {marker!r} on stderr in {timeout}s:\n{self.stderr}"
                self._seen.wait(left)

    def phase(self, name: str, timeout: float = 300) -> bool:
        return self.wait_for(f"] {name}:", timeout)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 300) -> Case:
        assert self.proc is not None and self.proc.stdout is not None
        self.stdout = self.proc.stdout.read()
        self.returncode = self.proc.wait(timeout)
        assert self._reader is not None
        self._reader.join(timeout)
        return self

    def run(self) -> Case:
        return self.start().finish()

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    @property
    def envelope(self) -> dict[str, Any]:
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one envelope, got {self.stdout!r}\n{self.stderr}"
        return dict(json.loads(lines[0]))

    @property
    def code(self) -> str | None:
        error = self.envelope.get("error")
        return None if error is None else str(error["code"])

    # ------------------------------------------------------------- what every case checks

    def sweep(self) -> dict[str, Any]:
        """The design's own sweep: `lian reap` for this workspace, never --all."""
        reap = subprocess.run(
            [
                sys.executable, "-m", "lian_build.cli", "reap",
                "--provider", self.provider.name, "--workspace", self.workspace,
                *self.provider.compute_opts,
            ],
            capture_output=True, text=True, env=self.environ(), timeout=120, check=False,
        )  # fmt: skip
        assert reap.returncode == 0, reap.stderr
        return dict(json.loads(reap.stdout))

    def runners_left(self) -> list[str]:
        """The workspace's runners, and whatever else they left on the provider."""
        return self.runners() + self.provider.residue(self.env, self.workspace)

    def runners(self) -> list[str]:
        return self.provider.runners(self.env, self.workspace)

    def leaked(self) -> list[str]:
        found = [f"stdout: {m[:24]}" for m in self.markers.leaks(self.stdout)]
        found += [f"stderr: {m[:24]}" for m in self.markers.leaks(self.stderr)]
        found += leaks_in_tree(self.markers, self.state_dir)
        found += leaks_in_tree(self.markers, self.tmpdir)
        return found

    def key_copies(self) -> list[str]:
        """Files in $TMPDIR holding the client's private key."""
        key = Path(self.env.ssh_key).read_bytes().strip()
        return [str(p) for p in self.tmpdir.rglob("*") if p.is_file() and key in p.read_bytes()]

    def orphans(self) -> list[str]:
        """rsync/ssh processes still holding this case's context path."""
        assert self.context is not None
        for _ in range(40):
            found = subprocess.run(
                ["pgrep", "-af", str(self.context)], capture_output=True, text=True, check=False
            ).stdout.split("\n")
            found = [line for line in found if line.strip() and "pgrep" not in line]
            if not found:
                return []
            time.sleep(0.25)
        return found

    def history(self) -> list[dict[str, Any]]:
        """The records of the state directory's history store (SQLite, oldest first)."""
        path = self.state_dir / "history.sqlite3"
        if not path.exists():
            return []
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
            rows = conn.execute("SELECT record FROM builds ORDER BY id").fetchall()
        return [json.loads(row[0]) for row in rows]


def all_cases(tmp: Path, count: int) -> Iterator[Path]:
    for index in range(count):
        path = tmp / f"case{index}"
        path.mkdir()
        yield path


# ----------------------------------------------------------------- multi-platform builds


PLATFORMS = ("linux/amd64", "linux/arm64")


def _tar_gz(name: str, data: bytes) -> tuple[bytes, str]:
    """A one-file layer: the gzipped tar and its diff_id (digest of the plain tar)."""
    import gzip
    import hashlib
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    plain = raw.getvalue()
    return gzip.compress(plain, mtime=0), "sha256:" + hashlib.sha256(plain).hexdigest()


@attrs.define
class PlatformGate:
    """A two-platform base image, and a gate that holds each runner's pull of it.

    The base is pushed straight through the registry's API (a one-file layer per
    architecture, no build), so the app's Dockerfile needs no RUN step. A runner's
    builder pulls its platform's manifest (by digest) at the start of its build phase;
    the gate, installed as the registry proxy's ``on_request``, marks that platform
    as arrived and, for the platforms in ``hold``, keeps the request until
    ``release``: a platform held there is provably building, and stays so. Requests of
    lian itself (python-httpx) pass.
    """

    repository: str
    digests: dict[str, str]  # architecture -> its manifest's digest
    hold: set[str] = attrs.field(factory=set)
    arrived: dict[str, threading.Event] = attrs.field(factory=dict)
    release: threading.Event = attrs.field(factory=threading.Event)

    @classmethod
    def push(cls, registry_url: str, repository: str) -> PlatformGate:
        import hashlib

        import httpx

        def blob(data: bytes) -> str:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            start = httpx.post(f"{registry_url}/v2/{repository}/blobs/uploads/", timeout=30)
            start.raise_for_status()
            location = start.headers["Location"]
            if location.startswith("/"):
                location = registry_url + location
            sep = "&" if "?" in location else "?"
            done = httpx.put(f"{location}{sep}digest={digest}", content=data, timeout=30)
            done.raise_for_status()
            return digest

        def manifest(ref: str, media_type: str, body: bytes) -> None:
            url = f"{registry_url}/v2/{repository}/manifests/{ref}"
            put = httpx.put(url, content=body, headers={"Content-Type": media_type}, timeout=30)
            put.raise_for_status()

        entries, digests = [], {}
        for platform in PLATFORMS:
            arch = platform.split("/")[1]
            layer, diff_id = _tar_gz("base-arch.txt", f"{arch}\n".encode())
            config = json.dumps(
                {
                    "architecture": arch,
                    "os": "linux",
                    "config": {},
                    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                }
            ).encode()
            body = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {
                        "mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": blob(config),
                        "size": len(config),
                    },
                    "layers": [
                        {
                            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": blob(layer),
                            "size": len(layer),
                        }
                    ],
                }
            ).encode()
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            manifest(digest, "application/vnd.oci.image.manifest.v1+json", body)
            digests[arch] = digest
            entries.append(
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest,
                    "size": len(body),
                    "platform": {"architecture": arch, "os": "linux"},
                }
            )
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": entries,
            }
        ).encode()
        manifest("1", "application/vnd.oci.image.index.v1+json", index)
        return cls(
            repository=repository,
            digests=digests,
            arrived={arch: threading.Event() for arch in digests},
        )

    def reference(self, host: str) -> str:
        return f"{host}/{self.repository}:1"

    def on_request(self, method: str, path: str, head: str) -> None:
        if method not in ("GET", "HEAD") or "python-httpx" in head.lower():
            return
        for arch, digest in self.digests.items():
            if path == f"/v2/{self.repository}/manifests/{digest}":
                self.arrived[arch].set()
                if arch in self.hold:
                    self.release.wait(300)

    def wait_arrived(self, case: Case, *archs: str, timeout: float = 180) -> None:
        """Until each platform is held in its build; fails at once when lian ended."""
        deadline = time.monotonic() + timeout
        while not all(self.arrived[arch].is_set() for arch in archs):
            assert case.proc is not None
            alive = case.proc.poll() is None
            if not alive:
                case.finish()  # its envelope and last stderr lines say why
            assert alive and time.monotonic() < deadline, (
                f"{[a for a in archs if not self.arrived[a].is_set()]} never started its "
                f"build (lian {'running' if alive else 'ended'}):\n{case.stdout}\n{case.stderr}"
            )
            time.sleep(0.1)


def platform_context(tmp: Path, base: str) -> Path:
    """COPY only (no RUN: the arm64 runner is emulated)."""
    ctx = tmp / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base}\nCOPY hello.txt /hello.txt\n")
    (ctx / "hello.txt").write_text("hello\n")
    return ctx
