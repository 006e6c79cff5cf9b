"""One resolved build intent from flags, environment fallbacks or a directives file.

Precedence (seed README): a directives file wins over flat fields, except ``--ssh-key``,
which directives don't carry. Flags fall back to environment variables (declared on the
CLI options). Everything is validated here, before anything touches the network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from lian_build import api, validate
from lian_build.errors import ContractViolation, InvalidInput

DEFAULT_COMPUTE = "docker-local"
DEFAULT_REGISTRY = "zot"
DEFAULT_BUILDER = "auto"


@attrs.frozen
class ProviderChoice:
    provider: str
    settings: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class RunnerOverride:
    cpu: int | None = None
    memory_gb: int | None = None
    time_budget_min: int | None = None
    tier: str | None = None
    image: str | None = None


@attrs.frozen
class CacheChoice:
    mode: str = "ci"  # "ci" | "session"
    actor: str | None = None
    do_import: bool = True
    do_export: bool = True
    extra_imports: tuple[str, ...] = ()  # --cache-from
    extra_exports: tuple[str, ...] = ()  # --cache-to
    # Session builds: "ephemeral" removes the session's dev/ cache after the build,
    # "keep" keeps it. Flags cannot say it, so flag builds keep (nothing is deleted
    # that the user did not ask to delete); directives default to the contract's value.
    disposition: str = "keep"


@attrs.frozen
class BuildIntent:
    """Everything a build needs, validated. Secrets are references, never values."""

    workspace: str
    context: Path
    dockerfile: str
    image: validate.ImageRef
    tags: tuple[str, ...]  # fully-qualified; tags[0] == str(image)
    compute: ProviderChoice
    registry: ProviderChoice
    ssh_key: Path | None
    builder: str = DEFAULT_BUILDER
    target: str | None = None
    language: str | None = None
    platforms: tuple[str, ...] = ()
    build_args: Mapping[str, str] = attrs.field(factory=dict)
    secrets: tuple[tuple[str, str], ...] = ()  # (id, reference)
    runner: RunnerOverride = RunnerOverride()
    cache: CacheChoice = CacheChoice()
    events: api.EventSettings = attrs.field(factory=api.EventSettings)
    nkey_seed_ref: str | None = None
    source: str = "flags"


@attrs.frozen
class FlatArgs:
    """The CLI's flat arguments after environment fallbacks (None = not given)."""

    workspace: str | None = None
    context: str | None = None
    image: str | None = None
    ssh_key: str | None = None
    directives: str | None = None
    dockerfile: str | None = None
    target: str | None = None
    cache_from: Sequence[str] = ()
    cache_to: Sequence[str] = ()
    language: str | None = None
    platforms: str | None = None
    runner_image: str | None = None
    provider: str | None = None
    registry: str | None = None
    builder: str | None = None
    compute_opts: Sequence[str] = ()
    registry_opts: Sequence[str] = ()
    build_args: Sequence[str] = ()
    tags: Sequence[str] = ()
    secrets: Sequence[str] = ()
    mode: str | None = None
    actor: str | None = None
    tier: str | None = None
    nats_url: str | None = None
    nats_nkey_seed: str | None = attrs.field(default=None, repr=False)
    nats_subject_prefix: str | None = None


def key_values(items: Sequence[str], flag: str, field: str) -> dict[str, str]:
    """``--flag KEY=VALUE`` items; an error names the flag and the intent field."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--{flag} expects KEY=VALUE, got {item!r}", field=field)
        out[key] = value
    return out


def opt_value(raw: str) -> Any:
    """``--compute-opt cpus=2`` -> int; true/false -> bool; otherwise the string."""
    lowered = raw.lower()
    if lowered in {"true", "false"}:
        return lowered == "true"
    try:
        return int(raw)
    except ValueError:
        return raw


def _full_tags(image: validate.ImageRef, extra: Sequence[str]) -> tuple[str, ...]:
    tags = [str(image)]
    for tag in extra:
        ref = tag if "/" in tag else f"{image.name}:{validate.tag(tag)}"
        full = str(validate.image_reference(ref, field="tags"))
        if full not in tags:
            tags.append(full)
    return tuple(tags)


def _registry_settings(
    choice: ProviderChoice, image: validate.ImageRef, registry_classes: Mapping[str, Any]
) -> ProviderChoice:
    cls = registry_classes.get(choice.provider)
    if cls is None:
        return choice
    merged = {**cls.defaults_for_image(image.registry), **choice.settings}
    return ProviderChoice(choice.provider, merged)


def _common_checks(intent: BuildIntent, *, require_ssh_key: bool) -> BuildIntent:
    validate.path_component(intent.workspace, field="workspace")
    validate.context_dir(intent.context)
    validate.dockerfile_in_context(intent.context, intent.dockerfile)
    for key, value in intent.build_args.items():
        validate.build_arg(key, value)
    if intent.cache.mode not in {"ci", "session"}:
        raise InvalidInput(
            f"cache mode must be 'ci' or 'session', got {intent.cache.mode!r}", field="mode"
        )
    if intent.cache.mode == "session":
        if not intent.cache.actor:
            raise InvalidInput("session builds need an actor (--actor)", field="actor")
        validate.path_component(intent.cache.actor, field="actor")
    for ref in (*intent.cache.extra_imports, *intent.cache.extra_exports):
        validate.image_reference(ref, field="cache")
    if intent.ssh_key is None:
        if not require_ssh_key:  # `lian plan` never connects: a key is checked only if given
            return intent
        raise InvalidInput(
            "an SSH private key is required (--ssh-key or BUILDKIT_SSH_KEY)", field="ssh_key"
        )
    from lian_build.remote.ssh import read_private_key

    read_private_key(intent.ssh_key)
    return intent


def from_flags(
    args: FlatArgs, registry_classes: Mapping[str, Any], *, require_ssh_key: bool = True
) -> BuildIntent:
    """Resolve a build from flat arguments (and a directives file when given)."""
    if args.directives:
        return from_directives(
            Path(args.directives), args, registry_classes, require_ssh_key=require_ssh_key
        )
    missing = [name for name in ("workspace", "context", "image") if not getattr(args, name)]
    if missing:
        raise InvalidInput(
            f"missing required argument(s): {', '.join('--' + m for m in missing)} "
            "(or pass --directives FILE)",
            field=missing[0],
        )
    assert args.workspace and args.context and args.image
    image = validate.image_reference(args.image, field="image")
    registry = _registry_settings(
        ProviderChoice(
            args.registry or DEFAULT_REGISTRY,
            {
                k: opt_value(v)
                for k, v in key_values(args.registry_opts, "registry-opt", "registry").items()
            },
        ),
        image,
        registry_classes,
    )
    compute_settings: dict[str, Any] = {
        k: opt_value(v) for k, v in key_values(args.compute_opts, "compute-opt", "compute").items()
    }
    secrets = tuple(key_values(args.secrets, "secret", "secrets").items())
    intent = BuildIntent(
        workspace=args.workspace,
        context=Path(args.context).resolve(),
        dockerfile=args.dockerfile or "Dockerfile",
        image=image,
        tags=_full_tags(image, args.tags),
        compute=ProviderChoice(args.provider or DEFAULT_COMPUTE, compute_settings),
        registry=registry,
        ssh_key=Path(args.ssh_key).expanduser() if args.ssh_key else None,
        builder=args.builder or DEFAULT_BUILDER,
        target=args.target,
        language=args.language,
        platforms=validate.platforms(args.platforms) if args.platforms else (),
        build_args=key_values(args.build_args, "build-arg", "build_args"),
        secrets=secrets,
        runner=RunnerOverride(tier=args.tier, image=args.runner_image),
        cache=CacheChoice(
            mode=args.mode or "ci",
            actor=args.actor,
            extra_imports=tuple(args.cache_from),
            extra_exports=tuple(args.cache_to),
        ),
        events=api.EventSettings(
            nats_url=args.nats_url,
            subject_prefix=args.nats_subject_prefix or "lian",
            nkey_seed=args.nats_nkey_seed,
        ),
    )
    return _common_checks(intent, require_ssh_key=require_ssh_key)


def from_directives(
    path: Path,
    args: FlatArgs,
    registry_classes: Mapping[str, Any],
    *,
    require_ssh_key: bool = True,
) -> BuildIntent:
    """A directives file: its fields win; --ssh-key (and NATS flags if unset) come from flags."""
    from lian_build import ncl

    if not path.expanduser().is_file():
        raise InvalidInput(f"directives file {path} does not exist", field="directives")
    try:
        d = ncl.load_directives(path)
    except ContractViolation as exc:
        # A syntax error, a loop or a memory blow-up blames no field: the file is at fault.
        exc.field = exc.field or "directives"
        raise
    image = validate.image_reference(d.artifact.image, field="artifact.image")
    runner = d.runner
    cache = d.cache
    events = d.events
    mode = getattr(getattr(cache, "mode", None), "value", getattr(cache, "mode", "ci"))
    actor = getattr(getattr(cache, "actor", None), "id", None)
    do_import = getattr(cache, "import_", getattr(cache, "do_import", True))
    do_export = getattr(cache, "export", getattr(cache, "do_export", True))
    registry = _registry_settings(
        ProviderChoice(d.registry.provider, dict(d.registry.settings)), image, registry_classes
    )
    intent = BuildIntent(
        workspace=d.workspace,
        context=Path(d.context),
        dockerfile=d.dockerfile,
        image=image,
        tags=_full_tags(image, list(d.artifact.tags)),
        compute=ProviderChoice(d.compute.provider, dict(d.compute.settings)),
        registry=registry,
        ssh_key=Path(args.ssh_key).expanduser() if args.ssh_key else None,
        builder=d.builder,
        target=d.target,
        language=d.language,
        platforms=validate.platforms(list(d.platforms)) if d.platforms else (),
        build_args=dict(d.build_args),
        secrets=tuple((s.id, s.ref) for s in d.secrets),
        runner=RunnerOverride(
            cpu=getattr(runner, "cpu", None),
            memory_gb=getattr(runner, "memory_gb", None),
            time_budget_min=getattr(runner, "time_budget_min", None),
            tier=getattr(runner, "tier", None) or args.tier,
            image=getattr(runner, "image", None) or args.runner_image,
        ),
        cache=CacheChoice(
            mode=str(mode),
            actor=actor,
            do_import=bool(do_import),
            do_export=bool(do_export),
            extra_imports=tuple(args.cache_from),
            extra_exports=tuple(args.cache_to),
            disposition=str(
                getattr(getattr(cache, "disposition", None), "value", None) or "ephemeral"
            ),
        ),
        events=api.EventSettings(
            nats_url=getattr(events, "url", None) or args.nats_url,
            subject_prefix=getattr(events, "subject_prefix", None)
            or args.nats_subject_prefix
            or "lian",
            nkey_seed=args.nats_nkey_seed,
        ),
        nkey_seed_ref=getattr(events, "nkey_seed_ref", None),
        source=f"directives:{path}",
    )
    return _common_checks(intent, require_ssh_key=require_ssh_key)
