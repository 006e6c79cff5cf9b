"""One build intent: ``model.BuildDirectives``, from flags or from a directives file.

The build flags are declared once, in ``BUILD_FLAGS``: that table generates the typer
options of ``lian build``/``lian plan`` and maps each flag onto a directives field.
Flags (after their environment fallbacks) become a directives-shaped dict that goes
through the same strict converter as a directives file (``model.structure``). A
directives file wins over flags for every field it sets (seed README); flags it
overrides are named in one warning. ``--ssh-key``, ``--cache-from``/``--cache-to`` and
``--nats-nkey-seed`` exist only as flags (a file holds references, never keys).

The rules the NCL contract checks are mirrored here once, for flag input the contract
never sees (image references, tags, platforms, secret references, languages).
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from lian_build import api, validate
from lian_build.errors import ContractViolation, InvalidInput

if TYPE_CHECKING:
    from lian_build import model

DEFAULT_COMPUTE = "docker-local"
DEFAULT_REGISTRY = "zot"

BUILD_PANEL = "Build"
PROVIDER_PANEL = "Providers"
EVENTS_PANEL = "Events"


@attrs.frozen
class Flag:
    """One build flag: its option, environment fallback and directives field."""

    name: str  # the option is --name with '_' -> '-'
    help: str
    target: str | None  # a directives path ("artifact.image"); None: flag-only
    panel: str = BUILD_PANEL
    env: str | None = None
    many: bool = False  # repeatable (a list)
    secret: bool = False  # never shown as a default

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


# The flags of `lian build` and `lian plan`, declared once.
BUILD_FLAGS: tuple[Flag, ...] = (
    Flag("workspace", "Workspace name (cache namespace).", "workspace", env="BUILDKIT_WORKSPACE"),
    Flag("context", "Build context directory.", "context"),
    Flag("image", "Fully-qualified image reference to push.", "artifact.image"),
    Flag("ssh_key", "SSH private key for the runner.", None, env="BUILDKIT_SSH_KEY"),
    Flag("directives", "Nickel directives file; wins over flat fields except --ssh-key.", None),
    Flag("dockerfile", "Dockerfile path inside the context.", "dockerfile"),
    Flag("target", "Build stage to stop at.", "target"),
    Flag("tag", "Extra tag (name or full reference); repeatable.", "artifact.tags", many=True),
    Flag("build_arg", "KEY=VALUE; repeatable.", "build_args", many=True),
    Flag(
        "secret", "ID=REF build secret, e.g. npm=env:NPM_TOKEN; repeatable.", "secrets", many=True
    ),
    Flag("cache_from", "Extra cache import ref; repeatable.", None, many=True),
    Flag("cache_to", "Extra cache export ref; repeatable.", None, many=True),
    Flag("mode", "Cache mode: ci (default) or session.", "cache.mode"),
    Flag("actor", "Session actor id (with --mode session).", "cache.actor.id"),
    Flag("language", "rust, go, java, ... (sizing defaults).", "language"),
    Flag("platforms", "Comma list, e.g. linux/amd64,linux/arm64.", "platforms"),
    Flag(
        "provider",
        "Compute provider plugin (default docker-local).",
        "compute.provider",
        panel=PROVIDER_PANEL,
        env="LIAN_COMPUTE_PROVIDER",
    ),
    Flag(
        "compute_opt",
        "KEY=VALUE compute setting; repeatable. List settings take a comma list "
        "(server_types=cx23,cx33) or repeated flags; mapping settings KEY=VALUE pairs "
        "(templates=amd64=9000,arm64=9001).",
        "compute",
        panel=PROVIDER_PANEL,
        many=True,
    ),
    Flag(
        "registry",
        "Registry plugin (default zot).",
        "registry.provider",
        panel=PROVIDER_PANEL,
        env="LIAN_REGISTRY_PROVIDER",
    ),
    Flag(
        "registry_opt",
        "KEY=VALUE registry setting; repeatable (lists as for --compute-opt).",
        "registry",
        panel=PROVIDER_PANEL,
        many=True,
    ),
    Flag("builder", "auto (default), buildkit, buildah, or a plugin's.", "builder", PROVIDER_PANEL),
    Flag(
        "runner_image",
        "Runner image / template.",
        "runner.image",
        panel=PROVIDER_PANEL,
        env="BUILDKIT_RUNNER_IMAGE",
    ),
    Flag("tier", "Start at this tier of the provider's ladder.", "runner.tier", PROVIDER_PANEL),
    # The seed's orchestrator: selects the `orchestrator` compute provider with this URL.
    Flag(
        "orchestrator_url",
        "Orchestrator to provision through (selects --provider orchestrator).",
        None,
        PROVIDER_PANEL,
        env="ORCHESTRATOR_URL",
    ),
    Flag("nats_url", "Publish lifecycle events here.", "events.url", EVENTS_PANEL, env="NATS_URL"),
    Flag(
        "nats_nkey_seed", "NATS nkey seed.", None, EVENTS_PANEL, env="NATS_NKEY_SEED", secret=True
    ),
    Flag(
        "nats_subject_prefix",
        "Subject prefix (default lian).",
        "events.subject_prefix",
        EVENTS_PANEL,
        env="NATS_SUBJECT_PREFIX",
    ),
)
FLAGS_BY_NAME = {flag.name: flag for flag in BUILD_FLAGS}


@attrs.frozen
class Request:
    """A resolved build request: the directives plus what only flags carry."""

    directives: model.BuildDirectives
    ssh_key: Path | None = None
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    nkey_seed: str | None = attrs.field(default=None, repr=False)
    source: str = "flags"


# --------------------------------------------------------------------------- flag values


def key_values(items: Sequence[str], flag: str, field: str) -> dict[str, str]:
    """``--flag KEY=VALUE`` items; an error names the flag and the intent field."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--{flag} expects KEY=VALUE, got {item!r}", field=field)
        if key in out:
            raise InvalidInput(f"--{flag} {key} is given twice", field=f"{field}.{key}")
        out[key] = value
    return out


def _strip_optional(kind: Any) -> Any:
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) in (typing.Union, type(int | None)) and len(args) == 1:
        return args[0]
    return kind


def _scalar(kind: Any, raw: str, field: str) -> Any:
    if kind is bool:
        if raw.lower() not in {"true", "false"}:
            raise InvalidInput(f"{field} must be true or false, got {raw!r}", field=field)
        return raw.lower() == "true"
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise InvalidInput(f"{field} must be {what}, got {raw!r}", field=field) from None
    if attrs.has(kind):
        raise InvalidInput(
            f"{field} holds records: set it in a directives file, not with a flag", field=field
        )
    return raw


def _flag_mapping(kind: Any, values: list[str], field: str) -> dict[str, Any]:
    """A mapping setting from ``KEY=VALUE`` pairs: ``templates=amd64=9000,arm64=9001``, or
    one pair per repeated flag; values typed like scalar settings."""
    element = (typing.get_args(kind) or (str, str))[-1]
    out: dict[str, Any] = {}
    for item in (part.strip() for value in values for part in value.split(",")):
        if not item:
            continue
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InvalidInput(
                f"{field} takes KEY=VALUE pairs (a=1,b=2), got {item!r}", field=field
            )
        if key in out:
            raise InvalidInput(f"{field}.{key} is given twice", field=f"{field}.{key}")
        out[key] = _scalar(element, raw, f"{field}.{key}")
    return out


def _flag_value(kind: Any, values: list[str], field: str) -> Any:
    """Type a flag's text by the settings field it sets (flags carry no JSON types)."""
    kind = _strip_optional(kind)
    origin = typing.get_origin(kind)
    if origin in (list, tuple, Sequence, typing.Sequence, frozenset, set):
        element = (typing.get_args(kind) or (str,))[0]
        items = [part.strip() for value in values for part in value.split(",") if part.strip()]
        return [_scalar(element, item, field) for item in items]
    if origin in (dict, Mapping, typing.Mapping):
        return _flag_mapping(kind, values, field)
    if len(values) > 1:
        raise InvalidInput(f"{field} takes one value, given {len(values)} times", field=field)
    if kind is Any or kind is None:
        return values[0]
    return _scalar(kind, values[0], field)


def provider_settings(
    settings_cls: Any, items: Sequence[str], flag: str, prefix: str
) -> dict[str, Any]:
    """``--compute-opt``/``--registry-opt`` items, typed by the provider's Settings fields.

    A list field takes a comma list or repeated flags; an unknown key is left as text
    for the strict converter to name.
    """
    grouped: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--{flag} expects KEY=VALUE, got {item!r}", field=prefix)
        grouped.setdefault(key, []).append(value)
    hints: dict[str, Any] = {}
    if settings_cls is not None and attrs.has(settings_cls):
        try:
            hints = typing.get_type_hints(settings_cls)
        except Exception:  # an unresolvable annotation: the converter still checks types
            hints = {}
    return {
        key: _flag_value(hints.get(key, Any), values, f"{prefix}.{key}")
        for key, values in grouped.items()
    }


# --------------------------------------------------------------------------- resolving


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[leaf] = value


def _given(value: Any) -> bool:
    return value not in (None, [], ())


def _compute_provider(values: Mapping[str, Any]) -> str:
    """``--orchestrator-url`` / ``ORCHESTRATOR_URL`` select the ``orchestrator`` provider;
    another explicit ``--provider`` is a conflict (a directives file decides for itself)."""
    provider = values.get("provider")
    if not values.get("orchestrator_url"):
        return str(provider or DEFAULT_COMPUTE)
    if provider and provider != "orchestrator" and not values.get("directives"):
        raise InvalidInput(
            "--orchestrator-url (or ORCHESTRATOR_URL) selects the orchestrator provider; "
            f"it cannot be combined with --provider {provider}",
            field="compute.provider",
        )
    return "orchestrator"


def _with_orchestrator_url(data: dict[str, Any], url: str | None) -> dict[str, Any]:
    """The URL fills an orchestrator provider's ``url`` unless a setting names it."""
    compute = data.get("compute")
    if url and isinstance(compute, dict) and compute.get("provider") == "orchestrator":
        compute.setdefault("url", url)
    return data


def flags_to_directives(
    values: Mapping[str, Any], settings_class: Callable[[str, str], Any]
) -> dict[str, Any]:
    """The directives-shaped dict that flags describe (fields not given stay absent)."""
    data: dict[str, Any] = {
        "compute": {"provider": _compute_provider(values)},
        "registry": {"provider": values.get("registry") or DEFAULT_REGISTRY},
    }
    for flag in BUILD_FLAGS:
        value: Any = values.get(flag.name)
        if flag.target is None or not _given(value):
            continue
        if flag.name == "build_arg":
            value = key_values(value, "build-arg", "build_args")
        elif flag.name == "secret":
            value = [{"id": k, "ref": v} for k, v in key_values(value, "secret", "secrets").items()]
        elif flag.name == "platforms":
            value = list(validate.platforms(value))
        elif flag.name in ("compute_opt", "registry_opt"):
            kind = flag.target
            provider = data[kind]["provider"]
            settings = provider_settings(
                settings_class(kind, provider), value, flag.option[2:], kind
            )
            data[kind].update(settings)
            continue
        elif flag.name in ("provider", "registry"):
            continue  # set above
        elif flag.many:
            value = list(value)
        _set(data, flag.target, value)
    return _with_orchestrator_url(data, values.get("orchestrator_url"))


def _present(data: Mapping[str, Any], path: str) -> bool:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def overridden_flags(values: Mapping[str, Any], file_data: Mapping[str, Any]) -> list[str]:
    """Flags given alongside a directives file that sets the same field."""
    names = []
    for flag in BUILD_FLAGS:
        if flag.target is None or not _given(values.get(flag.name)):
            continue
        target = flag.target.split(".")[0] if flag.name.endswith("_opt") else flag.target
        if _present(file_data, target):
            names.append(flag.option)
    return names


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """The file's fields win; ``runner`` and ``events`` merge field by field."""
    out = dict(base)
    for key, value in over.items():
        if key in ("runner", "events") and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def _with_registry_defaults(
    data: dict[str, Any], settings_defaults: Callable[[str, str], Mapping[str, Any]]
) -> dict[str, Any]:
    registry = dict(data.get("registry") or {})
    image = (data.get("artifact") or {}).get("image")
    provider = registry.get("provider")
    if isinstance(image, str) and isinstance(provider, str):
        host = validate.image_reference(image, field="artifact.image").registry
        registry = {**settings_defaults(provider, host), **registry}
    return {**data, "registry": registry}


def check(directives: model.BuildDirectives) -> None:
    """The contract's value rules, for input the NCL contract has not seen (flags)."""
    validate.image_reference(directives.artifact.image, field="artifact.image")
    for tag in directives.artifact.tags:
        if "/" in tag:
            validate.image_reference(tag, field="artifact.tags")
        else:
            validate.tag(tag, field="artifact.tags")
    validate.platforms(list(directives.platforms))
    for key, value in directives.build_args.items():
        validate.build_arg(key, value)
    for secret in directives.secrets:
        validate.secret_ref(secret.ref, field=f"secrets[{secret.id}].ref")
        if not secret.id:
            raise InvalidInput("a secret needs an id", field="secrets")
    validate.plugin_name(directives.compute.provider, field="compute.provider")
    validate.plugin_name(directives.registry.provider, field="registry.provider")
    validate.plugin_name(directives.builder, field="builder")
    if directives.language is not None:
        validate.language(directives.language)
    if directives.events is not None and directives.events.nkey_seed_ref is not None:
        validate.secret_ref(directives.events.nkey_seed_ref, field="events.nkey_seed_ref")


def resolve(
    values: Mapping[str, Any],
    *,
    settings_class: Callable[[str, str], Any],
    registry_defaults: Callable[[str, str], Mapping[str, Any]],
    require_ssh_key: bool = True,
    warn: Callable[[str], None] | None = None,
) -> Request:
    """Flags (and a directives file, when given) -> one validated ``Request``.

    ``settings_class(kind, provider)`` is the provider's Settings class (types flag
    values); ``registry_defaults(provider, host)`` the registry plugin's defaults for
    the image's host.
    """
    from lian_build import model  # cattrs: not on the --help path

    flag_data = flags_to_directives(values, settings_class)
    source = "flags"
    directives_path = values.get("directives")
    if directives_path:
        path = Path(directives_path)
        file_data = _load_file(path)
        ignored = overridden_flags(values, file_data)
        if ignored and warn is not None:
            warn(f"the directives file {path} overrides {', '.join(ignored)}")
        data = _with_orchestrator_url(_merge(flag_data, file_data), values.get("orchestrator_url"))
        source = f"directives:{path}"
    else:
        missing = [n for n in ("workspace", "context", "image") if not values.get(n)]
        if missing:
            raise InvalidInput(
                f"missing required argument(s): {', '.join('--' + m for m in missing)} "
                "(or pass --directives FILE)",
                field=missing[0],
            )
        data = flag_data
        data["context"] = str(Path(values["context"]).resolve())
    data = _with_registry_defaults(data, registry_defaults)
    what = "build directives" if source == "flags" else f"directives file {directives_path}"
    directives = model.structure(data, model.BuildDirectives, what=what)
    check(directives)
    context = Path(directives.context)
    validate.context_dir(context)
    validate.dockerfile_in_context(context, directives.dockerfile)
    cache_from = tuple(values.get("cache_from") or ())
    cache_to = tuple(values.get("cache_to") or ())
    for ref in (*cache_from, *cache_to):
        validate.image_reference(ref, field="cache")
    ssh_key = Path(values["ssh_key"]).expanduser() if values.get("ssh_key") else None
    if ssh_key is None and require_ssh_key:
        raise InvalidInput(
            "an SSH private key is required (--ssh-key or BUILDKIT_SSH_KEY)", field="ssh_key"
        )
    if ssh_key is not None:
        from lian_build.remote.ssh import read_private_key

        read_private_key(ssh_key)
    return Request(
        directives=directives,
        ssh_key=ssh_key,
        cache_from=cache_from,
        cache_to=cache_to,
        nkey_seed=values.get("nats_nkey_seed"),
        source=source,
    )


def _load_file(path: Path) -> dict[str, Any]:
    from lian_build import ncl

    if not path.expanduser().is_file():
        raise InvalidInput(f"directives file {path} does not exist", field="directives")
    try:
        return ncl.evaluate_directives(path)
    except ContractViolation as exc:
        # A syntax error, a loop or a memory blow-up blames no field: the file is at fault.
        exc.field = exc.field or "directives"
        raise


def event_settings(request: Request) -> api.EventSettings:
    events = request.directives.events
    return api.EventSettings(
        nats_url=events.url if events else None,
        subject_prefix=events.subject_prefix if events else "lian",
        nkey_seed=request.nkey_seed,
    )
