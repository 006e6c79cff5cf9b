"""Everything ``build`` would do, resolved without touching the network.

``lian plan`` prints it; ``lian build`` runs it. Secrets appear only as references.
"""

from __future__ import annotations

import secrets as _random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from lian_build import api, cache, model, oom, sizing, validate
from lian_build.errors import InvalidInput
from lian_build.intent import Request, event_settings
from lian_build.plugins import PluginHost
from lian_build.secrets import check_schemes

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
class CacheView:
    mode: str  # "ci" | "session"
    actor: str | None
    disposition: str  # "ephemeral" | "keep"
    do_import: bool
    do_export: bool
    extra_imports: tuple[str, ...] = ()  # --cache-from
    extra_exports: tuple[str, ...] = ()  # --cache-to


@attrs.frozen
class BuildView:
    """``plan.intent``: the directives with values resolved for the pipeline and the
    builders (a parsed image, full tags, an absolute context). Derived, never input."""

    directives: model.BuildDirectives
    workspace: str
    context: Path
    dockerfile: str
    image: validate.ImageRef
    tags: tuple[str, ...]  # fully-qualified; tags[0] == str(image)
    compute: model.ComputeProviderRef
    registry: model.RegistryProviderRef
    builder: str
    target: str | None
    language: str | None
    platforms: tuple[str, ...]
    build_args: dict[str, str]
    secrets: tuple[tuple[str, str], ...]  # (id, reference)
    runner: model.RunnerOverride
    cache: CacheView
    events: api.EventSettings
    nkey_seed_ref: str | None
    ssh_key: Path | None
    source: str

    @classmethod
    def of(cls, request: Request) -> BuildView:
        d = request.directives
        image = validate.image_reference(d.artifact.image, field="artifact.image")
        return cls(
            directives=d,
            workspace=d.workspace,
            context=Path(d.context),
            dockerfile=d.dockerfile,
            image=image,
            tags=_full_tags(image, d.artifact.tags),
            compute=d.compute,
            registry=d.registry,
            builder=d.builder,
            target=d.target,
            language=d.language,
            platforms=tuple(d.platforms),
            build_args=dict(d.build_args),
            secrets=tuple((s.id, s.ref) for s in d.secrets),
            runner=d.runner or model.RunnerOverride(),
            cache=CacheView(
                mode=d.cache.mode.value,
                actor=d.cache.actor.id if d.cache.actor else None,
                disposition=d.cache.disposition.value,
                do_import=d.cache.import_,
                do_export=d.cache.export,
                extra_imports=request.cache_from,
                extra_exports=request.cache_to,
            ),
            events=event_settings(request),
            nkey_seed_ref=d.events.nkey_seed_ref if d.events else None,
            ssh_key=request.ssh_key,
            source=request.source,
        )


def _full_tags(image: validate.ImageRef, extra: Sequence[str]) -> tuple[str, ...]:
    tags = [str(image)]
    for tag in extra:
        ref = tag if "/" in tag else f"{image.name}:{validate.tag(tag)}"
        full = str(validate.image_reference(ref, field="artifact.tags"))
        if full not in tags:
            tags.append(full)
    return tuple(tags)


@attrs.frozen
class Plan:
    intent: BuildView
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

    def outcome(self) -> model.PlanOutcome:
        """What ``lian plan`` prints (NCL ``PlanOutcome``)."""
        from lian_build.multiplatform import plan_section

        intent = self.intent
        job = self.job(docker_config_dir=f"{self.paths.work_dir}/docker-config")
        commands = {
            name: self.builders[name].commands(job)
            for name in self.candidate_builders()
            if name in self.builders
        }
        size = self.size
        return model.PlanOutcome(
            session_id=self.session_id,
            source=intent.source,
            workspace=intent.workspace,
            context=str(intent.context),
            dockerfile=intent.dockerfile,
            target=intent.target,
            language=intent.language,
            image=str(intent.image),
            tags=intent.tags,
            platforms=intent.platforms,
            build_args=dict(intent.build_args),
            secrets=tuple(model.PlanSecret(id=sid, ref=ref) for sid, ref in intent.secrets),
            runner=model.PlanRunner(image=self.runner_image, tier=intent.runner.tier),
            compute={
                "provider": self.compute.name,
                "settings": _public_settings(self.compute.settings),
                **self.compute.plan(),
            },
            registry={
                "provider": self.registry.name,
                "host": self.registry.host,
                "insecure": self.registry.insecure,
                **self.registry.plan(),
            },
            size=model.RunnerSize(**attrs.asdict(size)),
            ladder=tuple(
                model.PlanTier(name=t.name, cpu=t.cpu, memory_gb=t.memory_gb, disk_gb=t.disk_gb)
                for t in self.ladder
            ),
            attempts=tuple(t.name for t in self.attempts),
            max_oom_retries=oom.MAX_OOM_RETRIES,
            cache=model.PlanCache(
                mode=model.BuildMode(intent.cache.mode),
                actor=intent.cache.actor,
                disposition=model.SessionCacheDisposition(intent.cache.disposition),
                imports=self.cache_refs.imports,
                exports=self.cache_refs.exports,
            ),
            builder=intent.builder,
            commands=commands,
            events=model.PlanEvents(
                nats_url=intent.events.nats_url, subject_prefix=intent.events.subject_prefix
            ),
            # Worst case: the first tier for the whole time budget (no network).
            estimated_cost=(
                self.compute.estimate_cost(self.attempts[0], self.size.time_budget_min * 60)
                if self.attempts
                else None
            ),
            multiplatform=plan_section(self).get("multiplatform"),
        )

    def to_dict(self) -> dict[str, Any]:
        return model.unstructure(self.outcome())

    @property
    def runner_image(self) -> str | None:
        """The runner image the build uses: the intent's, else the provider's default."""
        if self.intent.runner.image:
            return self.intent.runner.image
        default = getattr(self.compute.settings, "image", None)
        return default if isinstance(default, str) else None


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


def _image_name(intent: BuildView) -> str:
    return intent.image.repository.rsplit("/", 1)[-1]


def make_plan(
    request: Request,
    host: PluginHost,
    secret_lookup: api.SecretLookup,
    *,
    session_id: str | None = None,
) -> Plan:
    intent = BuildView.of(request)
    compute = host.compute_provider(intent.compute.provider, intent.compute.settings, secret_lookup)
    registry = host.registry(intent.registry.provider, intent.registry.settings, secret_lookup)
    check_schemes(_references(intent, compute, registry), host.names("secret"))
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


def _references(intent: BuildView, *providers: Any) -> list[tuple[str, str]]:
    """Every secret reference the build would resolve, with the field it came from."""
    found = [(f"secrets.{sid}", ref) for sid, ref in intent.secrets]
    if intent.nkey_seed_ref:
        found.append(("events.nkey_seed_ref", intent.nkey_seed_ref))
    for kind, provider in zip(("compute", "registry"), providers, strict=True):
        settings: Any = getattr(provider, "settings", None)
        values: dict[str, Any] = attrs.asdict(settings) if attrs.has(type(settings)) else {}
        for key, value in values.items():
            if key.endswith("_ref") and isinstance(value, str) and value:
                found.append((f"{kind}.{key}", value))
    return found


def _dedup(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
