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

    def __init__(self, addr: str | None = None) -> None:
        # None: buildctl's own default (unix:///run/buildkit/buildkitd.sock or $BUILDKIT_HOST).
        self.addr = addr

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
        argv += [f"--progress={job.progress}", "--metadata-file", self.metadata_path(job)]
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
        workers = remote.run([*self._buildctl(), "debug", "workers"], timeout=PROBE_TIMEOUT_S)
        return workers.exit_code == 0

    def build(
        self, job: api.BuildJob, remote: api.Remote, log: Callable[[str], None]
    ) -> api.BuildOutcome:
        (argv,) = self.commands(job)
        # --metadata-file is written at the end: a missing directory would fail a good build.
        remote.run(["mkdir", "-p", job.work_dir])
        counter, tail = BuildKitStepCounter(), OutputTail()
        result = run_streaming(
            remote, argv, env=self.environment(job) or None, sinks=[log, counter.feed, tail.add]
        )
        cached, total = counter.result()
        digest = self._read_digest(job, remote) if result.exit_code == 0 else None
        return api.BuildOutcome(
            exit_code=result.exit_code,
            digest=digest,
            stderr_tail=tail.text(),
            cached_steps=cached,
            total_steps=total,
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
