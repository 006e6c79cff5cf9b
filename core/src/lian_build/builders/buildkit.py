"""BuildKit through ``buildctl build``: the default builder when buildkitd runs."""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable, Iterable

from lian_build import api
from lian_build.builders import any_insecure, reference_host
from lian_build.builders.progress import (
    BuildKitStepCounter,
    OutputTail,
    RawJsonRenderer,
    count_cache_hits,
    metadata_digest,
    parse_metadata,
    run_streaming,
)
from lian_build.errors import InvalidInput, LianError

logger = logging.getLogger("lian.builders.buildkit")

PROGRESS_MODES = ("plain", "rawjson")
METADATA_FILE = "metadata.json"
PROBE_TIMEOUT_S = 30.0
READY_WAIT_S = 30

# $1: seconds to wait; the rest: the buildctl argv. Retries only while the daemon is
# not there yet (no socket, or nothing listening on it); any other failure is final.
_WAIT_FOR_DAEMON = r"""
limit=$1; shift
end=$(( $(date +%s) + limit ))
while :; do
  out=$("$@" debug workers 2>&1) && exit 0
  case "$out" in
    *"no such file or directory"*|*"connection refused"*) ;;
    *) printf '%s\n' "$out" >&2; exit 1 ;;
  esac
  [ "$(date +%s)" -ge "$end" ] && { printf '%s\n' "$out" >&2; exit 1; }
  sleep 0.2
done
"""

__all__ = ["BuildKitBuilder", "count_cache_hits", "csv_join", "parse_metadata"]


def csv_join(fields: Iterable[str]) -> str:
    """Join ``key=value`` fields the way buildctl reads them (Go's encoding/csv).

    A field holding a comma or quote is wrapped in double quotes, inner quotes
    doubled: ``type=image,"name=a:1,b:1",push=true``.
    """
    out = []
    for field in fields:
        if any(c in field for c in ',"\r\n'):
            field = '"' + field.replace('"', '""') + '"'
        out.append(field)
    return ",".join(out)


class BuildKitBuilder(api.Builder):
    """Builds with ``buildctl`` against a running buildkitd and pushes in the same solve."""

    name = "buildkit"
    description = "BuildKit via buildctl (needs a running buildkitd)"
    requirement = "the buildctl binary and a buildkitd answering `buildctl debug workers`"

    def __init__(self, addr: str | None = None, ready_wait_s: int = READY_WAIT_S) -> None:
        # None: buildctl's own default (unix:///run/buildkit/buildkitd.sock or $BUILDKIT_HOST).
        self.addr = addr
        self.ready_wait_s = ready_wait_s

    def _buildctl(self) -> list[str]:
        return ["buildctl", "--addr", self.addr] if self.addr else ["buildctl"]

    def environment(self, job: api.BuildJob) -> dict[str, str]:
        # buildctl reads registry credentials client-side from $DOCKER_CONFIG/config.json.
        return {"DOCKER_CONFIG": job.docker_config_dir} if job.docker_config_dir else {}

    def metadata_path(self, job: api.BuildJob) -> str:
        return posixpath.join(job.work_dir, METADATA_FILE)

    def commands(self, job: api.BuildJob) -> list[list[str]]:
        if job.progress not in PROGRESS_MODES:
            raise InvalidInput(
                f"progress must be one of {', '.join(PROGRESS_MODES)}, got {job.progress!r}",
                field="progress",
            )
        dockerfile = posixpath.join(job.context_dir, job.dockerfile)
        argv = [
            *self._buildctl(),
            "build",
            "--frontend", "dockerfile.v0",
            "--local", f"context={job.context_dir}",
            "--local", f"dockerfile={posixpath.dirname(dockerfile)}",
            "--opt", f"filename={posixpath.basename(dockerfile)}",
        ]  # fmt: skip
        if job.target:
            argv += ["--opt", f"target={job.target}"]
        if job.platforms:
            argv += ["--opt", "platform=" + ",".join(job.platforms)]
        for key, value in job.build_args.items():
            argv += ["--opt", f"build-arg:{key}={value}"]
        argv += ["--output", self._output(job)]
        for ref in job.cache_imports:
            argv += ["--import-cache", self._cache(job, ref, ["type=registry", f"ref={ref}"])]
        for ref in job.cache_exports:
            fields = [
                "type=registry",
                f"ref={ref}",
                # max: every intermediate layer, far better hit rate; image-manifest: the
                # cache is an OCI image manifest that Harbor/GHCR/zot accept.
                "mode=max",
                "oci-mediatypes=true",
                "image-manifest=true",
                # A registry refusing the cache must not fail an otherwise good build.
                "ignore-error=true",
            ]
            argv += ["--export-cache", self._cache(job, ref, fields)]
        for secret in job.secrets:
            argv += ["--secret", csv_join([f"id={secret.id}", f"src={secret.path}"])]
        # Always rawjson: its per-vertex "cached" flag is what the hit count trusts
        # (plain progress often prints a registry-cache hit as DONE). job.progress says
        # what people see on stderr: "plain" renders it, "rawjson" passes it through.
        argv += ["--progress=rawjson", "--metadata-file", self.metadata_path(job)]
        return [argv]

    def _output(self, job: api.BuildJob) -> str:
        fields = ["type=image", "name=" + ",".join(job.tags)]
        if job.push:
            fields.append("push=true")
        # Without it the manifest is Docker v2 schema 2, which zot rejects.
        fields.append("oci-mediatypes=true")
        if any_insecure(job.tags, job.insecure_registries):
            fields.append("registry.insecure=true")
        return csv_join(fields)

    def _cache(self, job: api.BuildJob, ref: str, fields: list[str]) -> str:
        if reference_host(ref) in job.insecure_registries:
            fields = [*fields, "registry.insecure=true"]
        return csv_join(fields)

    def available(self, remote: api.Remote) -> bool:
        if remote.run([*self._buildctl(), "--version"], timeout=PROBE_TIMEOUT_S).exit_code != 0:
            return False
        # buildkitd may still be starting (its socket not made yet): wait, bounded, in one
        # remote shell rather than one SSH round trip per try.
        workers = remote.run(
            ["sh", "-c", _WAIT_FOR_DAEMON, "sh", str(self.ready_wait_s), *self._buildctl()],
            timeout=self.ready_wait_s + PROBE_TIMEOUT_S,
        )
        return workers.exit_code == 0

    def build(
        self, job: api.BuildJob, remote: api.Remote, log: Callable[[str], None]
    ) -> api.BuildOutcome:
        (argv,) = self.commands(job)
        # --metadata-file is written at the end: a missing directory would fail a good build.
        remote.run(["mkdir", "-p", job.work_dir])
        counter, tail, renderer = BuildKitStepCounter(), OutputTail(), RawJsonRenderer()

        def show(line: str) -> None:
            # The tail holds rendered lines: OOM and failure messages are matched there.
            for text in renderer.render(line):
                tail.add(text)
                if job.progress != "rawjson":
                    log(text)
            if job.progress == "rawjson":
                log(line)

        result = run_streaming(
            remote, argv, env=self.environment(job) or None, sinks=[counter.feed, show]
        )
        cached, total = counter.result()
        digest = self._read_digest(job, remote) if result.exit_code == 0 else None
        return api.BuildOutcome(
            exit_code=result.exit_code,
            digest=digest,
            stderr_tail=tail.text(),
            cached_steps=cached,
            total_steps=total,
            cache_sources=_sources(job, renderer.cache_imports, cached),
        )

    def _read_digest(self, job: api.BuildJob, remote: api.Remote) -> str | None:
        try:
            data = remote.read_file(self.metadata_path(job))
        except (OSError, LianError) as exc:
            logger.warning("could not read %s: %s", self.metadata_path(job), exc)
            return None
        digest = metadata_digest(parse_metadata(data))
        if digest is None and job.push:
            logger.warning("buildctl metadata has no containerimage.digest")
        return digest


def _sources(job: api.BuildJob, imported: list[str], cached: int) -> tuple[str, ...] | None:
    """The cache ref that served the hits, when that is certain: BuildKit does not say
    which of several imported caches a step came from (moby/buildkit#6418), so only a
    build whose hits can have come from one imported ref names it; None is "unknown"."""
    if cached == 0:
        return ()
    loaded = [ref for ref in job.cache_imports if ref in imported]
    return tuple(loaded) if len(loaded) == 1 else None
