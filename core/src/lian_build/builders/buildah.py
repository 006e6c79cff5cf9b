"""buildah: the builder for runners without buildkitd (daemonless, vfs, chroot).

``--isolation chroot`` and the vfs storage driver work inside an unprivileged-ish
runner container where overlayfs and user namespaces may not; ``--layers`` with
``--cache-from``/``--cache-to`` keeps a layer cache in a registry.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Callable

from lian_build import api
from lian_build.builders import reference_host, repository_of
from lian_build.builders.progress import (
    BuildahStepCounter,
    OutputTail,
    parse_digest_file,
    run_streaming,
)
from lian_build.errors import LianError

logger = logging.getLogger("lian.builders.buildah")

PROBE_TIMEOUT_S = 30.0

_LIMITS = {"Max open files": "nofile", "Max processes": "nproc"}
# A fixed script: buildah's version, then the runner's own resource limits.
_PROBE_SCRIPT = "buildah --version; cat /proc/self/limits"
_VERSION = re.compile(r"buildah version (\d+)\.(\d+)")


def raises_limits(probe: str) -> bool:
    """Whether this buildah raises RUN steps' limits (1.29+), so it needs ``--ulimit``.

    buildah 1.28 leaves them alone, and there ``--ulimit nproc`` above its own chroot
    default (32768) is what fails: it gets no ``--ulimit`` at all.
    """
    match = _VERSION.search(probe)
    return match is not None and (int(match.group(1)), int(match.group(2))) >= (1, 29)


def parse_limits(text: str) -> dict[str, str] | None:
    """``{"nofile": "S:H", "nproc": "S:H"}`` from the runner's ``/proc/self/limits``
    (read rather than ``ulimit``: dash, Debian's sh, has no ``ulimit -u``), or None.

    buildah >= 1.29 raises RLIMIT_NOFILE/NPROC for each RUN step to its own defaults,
    which a container whose hard limit is lower refuses ("operation not permitted"):
    passing the limits the runner already has makes every RUN step work there.
    """
    found: dict[str, str] = {}
    for line in text.splitlines():
        for label, name in _LIMITS.items():
            if line.startswith(label):
                fields = line[len(label) :].split()
                if len(fields) < 2:
                    return None
                values = ["-1" if v == "unlimited" else v for v in fields[:2]]
                if not all(v == "-1" or v.isdigit() for v in values):
                    return None
                found[name] = f"{values[0]}:{values[1]}"
    return found if len(found) == len(_LIMITS) else None


class BuildahBuilder(api.Builder):
    """Builds with ``buildah build`` then pushes each tag with ``buildah push``."""

    name = "buildah"
    description = "buildah (daemonless; vfs storage, chroot isolation)"
    requirement = "the buildah binary"

    def __init__(self, storage_root: str | None = None) -> None:
        # A private --root/--runroot isolates one build's image store from any other.
        self.storage_root = storage_root

    def _buildah(self) -> list[str]:
        argv = ["buildah"]
        if self.storage_root:
            argv += [
                "--root", posixpath.join(self.storage_root, "root"),
                "--runroot", posixpath.join(self.storage_root, "runroot"),
            ]  # fmt: skip
        return [*argv, "--storage-driver", "vfs"]

    def environment(self, job: api.BuildJob) -> dict[str, str]:
        # containers/image reads the same {"auths": {...}} file docker does.
        if job.docker_config_dir:
            return {"REGISTRY_AUTH_FILE": posixpath.join(job.docker_config_dir, "config.json")}
        return {}

    def digest_path(self, job: api.BuildJob, index: int) -> str:
        return posixpath.join(job.work_dir, f"digest-{index}")

    def commands(self, job: api.BuildJob, limits: dict[str, str] | None = None) -> list[list[str]]:
        """The build and push commands. ``limits`` (read from the runner at build time,
        see ``parse_limits``) become ``--ulimit`` flags."""
        return [self._build_command(job, limits), *self._push_commands(job)]

    def _build_command(self, job: api.BuildJob, limits: dict[str, str] | None) -> list[str]:
        argv = [
            *self._buildah(),
            "build",
            "--isolation", "chroot",
            "--layers",
            # OCI manifests: zot rejects Docker v2 schema 2.
            "--format", "oci",
            "-f", posixpath.join(job.context_dir, job.dockerfile),
        ]  # fmt: skip
        for name, value in (limits or {}).items():
            argv += ["--ulimit", f"{name}={value}"]
        if job.target:
            argv += ["--target", job.target]
        if job.platforms:
            argv += ["--platform", ",".join(job.platforms)]
        for key, value in job.build_args.items():
            argv += ["--build-arg", f"{key}={value}"]
        for secret in job.secrets:
            argv += ["--secret", f"id={secret.id},src={secret.path}"]
        # buildah keeps a layer cache as one tag per cache key inside a REPOSITORY and
        # rejects a reference that carries a tag, so "repo:tag" becomes "repo".
        # Own dev/ layer first, then ci/: buildah >= 1.29 tries each in order (1.28, in
        # Debian 12, keeps only the last one).
        for ref in job.cache_imports:
            argv += ["--cache-from", repository_of(ref)]
        if job.cache_exports:
            # One cache destination: buildah 1.28 takes a single --cache-to.
            argv += ["--cache-to", repository_of(job.cache_exports[0])]
        # One switch for every registry the build touches, base images included, so any
        # plain-HTTP registry in the job turns it off.
        if job.insecure_registries:
            argv.append("--tls-verify=false")
        if self._multi_platform(job):
            # Each platform's image joins a manifest list named after the primary tag.
            argv += ["--manifest", job.tags[0]]
        else:
            for tag in job.tags:
                argv += ["-t", tag]
        argv.append(job.context_dir)
        return argv

    def _push_commands(self, job: api.BuildJob) -> list[list[str]]:
        if not job.push:
            return []
        commands = []
        for index, tag in enumerate(job.tags):
            if self._multi_platform(job):
                argv = [*self._buildah(), "manifest", "push", "--all", "--format", "oci"]
                source = job.tags[0]
            else:
                argv = [*self._buildah(), "push", "--format", "oci"]
                source = tag
            if reference_host(tag) in job.insecure_registries:
                argv.append("--tls-verify=false")
            argv += ["--digestfile", self.digest_path(job, index), source, f"docker://{tag}"]
            commands.append(argv)
        return commands

    @staticmethod
    def _multi_platform(job: api.BuildJob) -> bool:
        return len(job.platforms) > 1

    def available(self, remote: api.Remote) -> bool:
        return remote.run(["buildah", "--version"], timeout=PROBE_TIMEOUT_S).exit_code == 0

    def build(
        self, job: api.BuildJob, remote: api.Remote, log: Callable[[str], None]
    ) -> api.BuildOutcome:
        probe = remote.run(["sh", "-c", _PROBE_SCRIPT], timeout=PROBE_TIMEOUT_S).stdout
        limits = parse_limits(probe) if raises_limits(probe) else None
        build_argv, *push_argvs = self.commands(job, limits)
        env = self.environment(job) or None
        remote.run(["mkdir", "-p", job.work_dir])
        counter, tail = BuildahStepCounter(), OutputTail()
        result = run_streaming(remote, build_argv, env=env, sinks=[log, counter.feed, tail.add])
        cached, total = counter.result()
        for argv in push_argvs:
            if result.exit_code != 0:
                break
            result = run_streaming(remote, argv, env=env, sinks=[log, tail.add])
        digest = None
        if result.exit_code == 0 and push_argvs:
            digest = self._read_digest(job, remote)
        return api.BuildOutcome(
            exit_code=result.exit_code,
            digest=digest,
            stderr_tail=tail.text(),
            cached_steps=cached,
            total_steps=total,
            cache_sources=_sources(job, counter.pulled_from, cached),
        )

    def _read_digest(self, job: api.BuildJob, remote: api.Remote) -> str | None:
        path = self.digest_path(job, 0)
        try:
            return parse_digest_file(remote.read_file(path))
        except (OSError, LianError) as exc:
            logger.warning("could not read %s: %s", path, exc)
            return None


def _sources(job: api.BuildJob, pulled: list[str], cached: int) -> tuple[str, ...] | None:
    """The cache refs whose repositories buildah pulled cached layers from.

    buildah names the repository on every remote pull; a hit without any pull came
    from the runner's own storage (a reused runner), which no cache ref served.
    """
    if cached == 0:
        return ()
    return tuple(ref for ref in job.cache_imports if repository_of(ref) in pulled)


__all__ = ["BuildahBuilder", "parse_limits"]
