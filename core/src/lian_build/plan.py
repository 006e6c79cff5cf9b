"""Everything ``build`` would do, resolved without touching the network.

``lian plan`` prints it; ``lian build`` runs it. Secrets appear only as references.
"""

from __future__ import annotations

import secrets as _random
from collections.abc import Sequence
from typing import Any

import attrs

from lian_build import api, cache, oom, sizing
from lian_build.errors import InvalidInput
from lian_build.intent import BuildIntent
from lian_build.plugins import PluginHost

REMOTE_ROOT = "/tmp"


def new_session_id() -> str:
    """Short, DNS- and label-safe, unique enough for concurrent builds."""
    return "s" + _random.token_hex(6)


@attrs.frozen
class RemotePaths:
    work_dir: str
    context_dir: str
    secrets_dir: str

    @classmethod
    def for_session(cls, session_id: str) -> RemotePaths:
        work = f"{REMOTE_ROOT}/lian-{session_id}"
        return cls(work_dir=work, context_dir=f"{work}/context", secrets_dir=f"{work}/secrets")


@attrs.frozen
class Plan:
    intent: BuildIntent
    session_id: str
    compute: api.ComputeProvider
    registry: api.RegistryProvider
    size: api.RunnerSize
    ladder: tuple[api.Tier, ...]
    attempts: tuple[api.Tier, ...]
    cache_refs: cache.CacheRefs
    paths: RemotePaths
    builders: dict[str, api.Builder]

    def job(self, *, docker_config_dir: str | None) -> api.BuildJob:
        intent = self.intent
        insecure = frozenset({self.registry.host} if self.registry.insecure else set())
        return api.BuildJob(
            context_dir=self.paths.context_dir,
            dockerfile=intent.dockerfile,
            tags=intent.tags,
            platforms=intent.platforms,
            target=intent.target,
            build_args=dict(intent.build_args),
            cache_imports=self.cache_refs.imports,
            cache_exports=self.cache_refs.exports,
            insecure_registries=insecure,
            secrets=tuple(
                api.BuildSecret(id=sid, path=f"{self.paths.secrets_dir}/{sid}")
                for sid, _ref in intent.secrets
            ),
            docker_config_dir=docker_config_dir,
            work_dir=self.paths.work_dir,
        )

    def candidate_builders(self) -> list[str]:
        if self.intent.builder != "auto":
            return [self.intent.builder]
        order = [n for n in ("buildkit", "buildah") if n in self.builders]
        return order + sorted(n for n in self.builders if n not in order)

    def to_dict(self) -> dict[str, Any]:
        from lian_build.multiplatform import plan_section

        intent = self.intent
        job = self.job(docker_config_dir=f"{self.paths.work_dir}/docker-config")
        commands = {
            name: self.builders[name].commands(job)
            for name in self.candidate_builders()
            if name in self.builders
        }
        return {
            "session_id": self.session_id,
            "source": intent.source,
            "workspace": intent.workspace,
            "context": str(intent.context),
            "dockerfile": intent.dockerfile,
            "image": str(intent.image),
            "tags": list(intent.tags),
            "platforms": list(intent.platforms),
            "build_args": dict(intent.build_args),
            "secrets": [{"id": sid, "ref": ref} for sid, ref in intent.secrets],
            "compute": {
                "provider": self.compute.name,
                "settings": _public_settings(self.compute.settings),
                **self.compute.plan(),
            },
            "registry": {
                "provider": self.registry.name,
                "host": self.registry.host,
                "insecure": self.registry.insecure,
                **self.registry.plan(),
            },
            "size": attrs.asdict(self.size),
            "ladder": [attrs.asdict(t) for t in self.ladder],
            "attempts": [t.name for t in self.attempts],
            "max_oom_retries": oom.MAX_OOM_RETRIES,
            "cache": {
                "mode": intent.cache.mode,
                "actor": intent.cache.actor,
                "imports": list(self.cache_refs.imports),
                "exports": list(self.cache_refs.exports),
            },
            "builder": intent.builder,
            "commands": commands,
            "events": {
                "nats_url": intent.events.nats_url,
                "subject_prefix": intent.events.subject_prefix,
            },
            **plan_section(self),
        }


def _public_settings(settings: Any) -> dict[str, Any]:
    """Settings for display: references are shown, fields named like secrets are masked."""
    if settings is None:
        return {}
    try:
        data = attrs.asdict(settings)
    except attrs.exceptions.NotAnAttrsClassError:
        return {}
    masked = {"password", "token", "secret", "private_key"}
    return {k: ("***" if k in masked and v else v) for k, v in data.items()}


def _image_name(intent: BuildIntent) -> str:
    return intent.image.repository.rsplit("/", 1)[-1]


def make_plan(
    intent: BuildIntent,
    host: PluginHost,
    secret_lookup: api.SecretLookup,
    *,
    session_id: str | None = None,
) -> Plan:
    compute = host.compute_provider(intent.compute.provider, intent.compute.settings, secret_lookup)
    registry = host.registry(intent.registry.provider, intent.registry.settings, secret_lookup)
    if intent.image.registry != registry.host:
        raise InvalidInput(
            f"image {intent.image} is not in registry {registry.host} "
            f"(registry provider {registry.name!r}); push target and credentials must agree",
            field="image",
        )
    size = host.size(
        api.SizingRequest(
            workspace=intent.workspace, language=intent.language, context_dir=intent.context
        )
    )
    over = intent.runner
    if over.cpu or over.memory_gb or over.time_budget_min:
        size = sizing.apply_override(
            size, cpu=over.cpu, memory_gb=over.memory_gb, time_budget_min=over.time_budget_min
        )
    ladder = tuple(compute.tiers())
    attempts = tuple(oom.attempt_plan(ladder, size, start=over.tier))
    refs = cache.cache_refs(
        mode=intent.cache.mode,
        workspace=intent.workspace,
        actor=intent.cache.actor,
        image_name=_image_name(intent),
        repository_for=registry.cache_repository,
        do_import=intent.cache.do_import,
        do_export=intent.cache.do_export,
    )
    refs = cache.CacheRefs(
        imports=_dedup((*refs.imports, *intent.cache.extra_imports)),
        exports=_dedup((*refs.exports, *intent.cache.extra_exports)),
    )
    cache.assert_invariants(intent.cache.mode, refs, intent.workspace, intent.cache.actor)
    builders = host.builders()
    if intent.builder != "auto" and intent.builder not in builders:
        raise InvalidInput(
            f"unknown builder {intent.builder!r} (installed: {', '.join(sorted(builders))}, auto)",
            field="builder",
        )
    sid = session_id or new_session_id()
    return Plan(
        intent=intent,
        session_id=sid,
        compute=compute,
        registry=registry,
        size=size,
        ladder=ladder,
        attempts=attempts,
        cache_refs=refs,
        paths=RemotePaths.for_session(sid),
        builders=builders,
    )


def _dedup(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
