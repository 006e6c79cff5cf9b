"""attrs mirrors of the NCL contracts in ``schemas/`` and the one cattrs converter.

The Nickel contracts are the source of truth; these classes hold what an evaluated,
contract-checked file exports (JSON). ``converter`` turns that JSON into these classes
and back: closed records refuse unknown keys, optional fields that are absent stay
absent on the way back out, and structuring errors become ``InvalidInput`` naming the
field path (``compute.provider: missing``).
"""

from __future__ import annotations

import enum
import re
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
import cattrs.cols
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from lian_build.errors import InvalidInput, LianError

T = TypeVar("T")

# The same rule as schemas/rules.ncl PathComponent (workspace names, actor ids).
PATH_COMPONENT = re.compile(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*")


class FieldError(ValueError):
    """A value breaks a rule; ``subpath`` names the field so paths read ``runner.cpu``."""

    def __init__(self, subpath: str, message: str) -> None:
        super().__init__(f"{subpath}: {message}")
        self.subpath = subpath
        self.message = message


def _bounded(low: int, high: int) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise FieldError(attribute.name, f"must be an integer between {low} and {high}")

    return check


def _path_component(_instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if not PATH_COMPONENT.fullmatch(value):
        raise FieldError(
            attribute.name,
            "must be a registry path component "
            "(lowercase letters and digits, separated by '.', '_', '__' or '-')",
        )


# --------------------------------------------------------------------------- enums


class BuildMode(enum.StrEnum):
    CI = "ci"
    SESSION = "session"


class SessionCacheDisposition(enum.StrEnum):
    EPHEMERAL = "ephemeral"
    KEEP = "keep"


class BuildStatus(enum.StrEnum):
    OK = "ok"
    ERROR = "error"
    CANCELLED = "cancelled"


# --------------------------------------------------------------------------- cache_policy.ncl


@attrs.frozen(kw_only=True)
class SessionActor:
    id: str = attrs.field(validator=_path_component)


def _session_needs_actor(
    instance: CachePolicy, _attribute: Any, actor: SessionActor | None
) -> None:
    if instance.mode is BuildMode.SESSION and actor is None:
        raise FieldError("actor", "required when cache mode is 'session'")


@attrs.frozen(kw_only=True)
class CachePolicy:
    mode: BuildMode
    actor: SessionActor | None = attrs.field(default=None, validator=_session_needs_actor)
    disposition: SessionCacheDisposition = SessionCacheDisposition.KEEP
    export: bool = True
    import_: bool = True  # "import" in NCL/JSON (a Python keyword)


def _ci_cache_policy() -> CachePolicy:
    return CachePolicy(mode=BuildMode.CI)


# --------------------------------------------------------------------------- build_spec.ncl


@attrs.frozen(kw_only=True)
class BuildSpec:
    cpu: int = attrs.field(validator=_bounded(1, 256))
    memory_gb: int = attrs.field(validator=_bounded(1, 1024))
    time_budget_min: int = attrs.field(validator=_bounded(1, 1440))
    language: str | None = None


# --------------------------------------------------------------------------- build_directives.ncl


@attrs.frozen(kw_only=True)
class BuildArtifact:
    image: str  # fully-qualified reference; the primary tag
    tags: tuple[str, ...] = ()  # extra tags, same repository


@attrs.frozen(kw_only=True)
class ComputeProviderRef:
    """``compute = { provider = "x", ... }``: everything beside ``provider`` is settings."""

    provider: str
    # repr=False: settings hold references, but a careless file may inline a token.
    settings: Mapping[str, Any] = attrs.field(factory=dict, repr=False)


@attrs.frozen(kw_only=True)
class RegistryProviderRef:
    """``registry = { provider = "x", ... }``: everything beside ``provider`` is settings."""

    provider: str
    settings: Mapping[str, Any] = attrs.field(factory=dict, repr=False)


@attrs.frozen(kw_only=True)
class RunnerOverride:
    cpu: int | None = attrs.field(default=None, validator=_bounded(1, 256))
    memory_gb: int | None = attrs.field(default=None, validator=_bounded(1, 1024))
    time_budget_min: int | None = attrs.field(default=None, validator=_bounded(1, 1440))
    tier: str | None = None
    image: str | None = None


@attrs.frozen(kw_only=True)
class NatsEventConfig:
    url: str
    subject_prefix: str = "lian"
    nkey_seed_ref: str | None = None  # a secret reference, never the seed


@attrs.frozen(kw_only=True)
class BuildSecretRef:
    id: str
    ref: str  # "env:NAME", "file:/path", "vault:...": a reference, never the value


@attrs.frozen(kw_only=True)
class BuildDirectives:
    workspace: str = attrs.field(validator=_path_component)
    artifact: BuildArtifact
    compute: ComputeProviderRef
    registry: RegistryProviderRef
    context: str = "."  # relative to the directives file's folder, or absolute
    dockerfile: str = "Dockerfile"  # relative to context
    target: str | None = None
    language: str | None = None
    platforms: tuple[str, ...] = ()  # empty: the runner's own platform
    build_args: Mapping[str, str] = attrs.field(factory=dict)
    secrets: tuple[BuildSecretRef, ...] = ()
    builder: str = "auto"
    runner: RunnerOverride | None = None
    cache: CachePolicy = attrs.field(factory=_ci_cache_policy)
    events: NatsEventConfig | None = None


# --------------------------------------------------------------------------- build_result.ncl
# Adding an optional result field is one line here (``name: type | None = None``) and
# one line in build_result.ncl (``name | Type | optional,``): absent values (None) are
# left out of the envelope, as the contract's ``optional`` expects.


@attrs.frozen(kw_only=True)
class RunnerSize:
    cpu: int
    memory_gb: int
    time_budget_min: int
    source: str
    reason: str = ""


@attrs.frozen(kw_only=True)
class SyncOutcome:
    method: str  # "rsync" | "tar"
    files: int
    bytes_sent: int
    total_bytes: int
    seconds: float
    files_total: int = 0


@attrs.frozen(kw_only=True)
class CacheOutcome:
    mode: BuildMode
    imports: tuple[str, ...] = ()
    exports: tuple[str, ...] = ()
    cached_steps: int = 0
    total_steps: int = 0
    served_by: tuple[str, ...] | None = None  # refs that served the hits, when known
    removed: tuple[str, ...] | None = None  # 'ephemeral: the dev/ cache removed


@attrs.frozen(kw_only=True)
class BuildProgress:
    """How far a build got: the ``result`` of a build error envelope."""

    session_id: str
    workspace: str
    image: str
    provider: str
    registry: str
    size: RunnerSize
    tier: str | None = None
    tiers_tried: tuple[str, ...] = ()
    retries: int = 0
    phases: Mapping[str, float] = attrs.field(factory=dict)  # seconds per phase
    runner_image: str | None = None  # what the last runner booted from, when known
    runner_seconds: float | None = None  # spawn to destroy, summed over attempts
    cost: Mapping[str, Any] | None = None  # NCL Cost: currency, amount_net, price_source, ...
    # Multi-platform builds (one runner per platform): "per-platform" and each platform's
    # state, runner, tier, digest, time (NCL PlatformStatus).
    strategy: str | None = None
    platforms: tuple[Mapping[str, Any], ...] | None = None


@attrs.frozen(kw_only=True)
class BuildOutcome(BuildProgress):
    """The ``result`` of a successful build envelope (NCL ``BuildOutcome``)."""

    digest: str
    tags: tuple[str, ...]
    builder: str
    cache: CacheOutcome
    duration_s: float
    sync: SyncOutcome | None = None  # absent for a multi-platform build: per platform
    peak_memory_bytes: int | None = None
    index_digest: str | None = None  # multi-platform: the pushed OCI image index
    media_type: str | None = None


@attrs.frozen(kw_only=True)
class PlanSecret:
    id: str
    ref: str


@attrs.frozen(kw_only=True)
class PlanRunner:
    image: str | None = None
    tier: str | None = None


@attrs.frozen(kw_only=True)
class PlanTier:
    name: str
    cpu: int
    memory_gb: float
    disk_gb: int | None = None


@attrs.frozen(kw_only=True)
class PlanCache:
    mode: BuildMode
    disposition: SessionCacheDisposition
    imports: tuple[str, ...]
    exports: tuple[str, ...]
    actor: str | None = None


@attrs.frozen(kw_only=True)
class PlanEvents:
    subject_prefix: str
    nats_url: str | None = None


@attrs.frozen(kw_only=True)
class PlanOutcome:
    """The ``result`` of ``lian plan`` (NCL ``PlanOutcome``)."""

    session_id: str
    source: str
    workspace: str
    context: str
    dockerfile: str
    image: str
    tags: tuple[str, ...]
    platforms: tuple[str, ...]
    build_args: Mapping[str, str]
    secrets: tuple[PlanSecret, ...]
    runner: PlanRunner
    compute: Mapping[str, Any]  # provider, settings, and the provider's own plan keys
    registry: Mapping[str, Any]  # provider, host, insecure, and the provider's own keys
    size: RunnerSize
    ladder: tuple[PlanTier, ...]
    attempts: tuple[str, ...]
    max_oom_retries: int
    cache: PlanCache
    builder: str
    commands: Mapping[str, Any]  # builder name -> argv lists
    events: PlanEvents
    target: str | None = None
    language: str | None = None
    estimated_cost: Mapping[str, Any] | None = None  # NCL Cost, when the provider knows prices
    # Several platforms: the strategy, each platform's mode, ladder and cache, the index.
    multiplatform: Mapping[str, Any] | None = None


@attrs.frozen(kw_only=True)
class ProbeCheck:
    name: str
    ok: bool
    message: str
    code: str | None = None


@attrs.frozen(kw_only=True)
class IntegrateOutcome:
    """The ``result`` of ``lian integrate`` (NCL ``IntegrateOutcome``)."""

    probe: str
    workspace: str
    ready: bool
    checks: tuple[ProbeCheck, ...]
    request_id: str | None = None


@attrs.frozen(kw_only=True)
class PluginReport:
    name: str
    distribution: str
    version: str
    builtin: bool
    hooks: tuple[str, ...]
    provides: Mapping[str, tuple[str, ...]]
    status: str  # loaded | disabled | error
    error: str | None = None


@attrs.frozen(kw_only=True)
class PluginsOutcome:
    plugins: tuple[PluginReport, ...]
    conflicts: Mapping[str, tuple[str, ...]]


@attrs.frozen(kw_only=True)
class ReapOutcome:
    provider: str
    found: int
    destroyed: tuple[str, ...]
    kept: tuple[str, ...]
    failed: tuple[str, ...]


@attrs.frozen(kw_only=True)
class BuildError:
    code: str
    message: str
    field: str | None = None
    details: Mapping[str, Any] | None = None


@attrs.frozen(kw_only=True)
class BuildResult:
    """The one JSON envelope per invocation (NCL ``BuildResult``).

    ``result`` is one of the outcome classes above, or a plugin command's own record.
    """

    lian: str = "1"
    command: str
    status: BuildStatus
    result: Any = None
    error: BuildError | None = None


# --------------------------------------------------------------------------- vault_refs.ncl


@attrs.frozen(kw_only=True)
class VaultCredRef:
    path: str
    field: str = "password"
    mount: str = "secret"


@attrs.frozen(kw_only=True)
class VaultKeyRef:
    path: str
    key: str


# --------------------------------------------------------------------------- the converter

converter = cattrs.Converter(forbid_extra_keys=True)

# Python names that differ from the NCL field names.
_RENAMES: dict[type[Any], dict[str, str]] = {CachePolicy: {"import_": "import"}}


def _strict(kind: type[Any], name: str) -> Callable[[Any, type[Any]], Any]:
    """Refuse silent coercion ("2" -> 2, 5 -> "5", 1 -> True): JSON types must match."""

    def structure(value: Any, _type: type[Any]) -> Any:
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if kind is int and isinstance(value, float) and value.is_integer():
            return int(value)  # Nickel numbers may print as 2.0
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
            raise TypeError(f"expected {name}, got {type(value).__name__}")
        return value

    return structure


converter.register_structure_hook(str, _strict(str, "a string"))
converter.register_structure_hook(int, _strict(int, "an integer"))
converter.register_structure_hook(float, _strict(float, "a number"))
converter.register_structure_hook(bool, _strict(bool, "a boolean"))


# StrEnum comes before str in our enums' MRO, so these win over the str hook above.
def _structure_str_enum(value: Any, enum_type: type[enum.StrEnum]) -> enum.StrEnum:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return enum_type(value)


def _unstructure_str_enum(member: enum.StrEnum) -> str:
    return member.value


converter.register_structure_hook(enum.StrEnum, _structure_str_enum)
converter.register_unstructure_hook(enum.StrEnum, _unstructure_str_enum)


def _provider_ref_structure(
    cls: type[ComputeProviderRef | RegistryProviderRef],
) -> Callable[[Any, Any], Any]:
    def structure(data: Any, _type: Any) -> ComputeProviderRef | RegistryProviderRef:
        if not isinstance(data, Mapping):
            raise TypeError(f"expected a record, got {type(data).__name__}")
        if "provider" not in data:
            raise FieldError("provider", "missing")
        provider = data["provider"]
        if not isinstance(provider, str) or not provider:
            raise FieldError("provider", "expected a non-empty string")
        settings = {key: value for key, value in data.items() if key != "provider"}
        return cls(provider=provider, settings=settings)

    return structure


def _provider_ref_unstructure(ref: ComputeProviderRef | RegistryProviderRef) -> dict[str, Any]:
    return {"provider": ref.provider, **converter.unstructure(dict(ref.settings))}


for _ref_cls in (ComputeProviderRef, RegistryProviderRef):
    converter.register_structure_hook(_ref_cls, _provider_ref_structure(_ref_cls))
    converter.register_unstructure_hook(_ref_cls, _provider_ref_unstructure)


def _attrs_structure_factory(cls: type[Any]) -> Callable[[Any, Any], Any]:
    renames = _RENAMES.get(cls, {})
    overrides: dict[str, Any] = {name: override(rename=rename) for name, rename in renames.items()}
    return make_dict_structure_fn(cls, converter, **overrides)


def _attrs_unstructure_factory(cls: type[Any]) -> Callable[[Any], Any]:
    # Absent optional fields (default None) stay absent, as in Nickel's export.
    overrides: dict[str, Any] = {
        field.name: override(omit_if_default=True)
        for field in attrs.fields(cls)
        if field.default is None
    }
    for name, rename in _RENAMES.get(cls, {}).items():
        overrides[name] = override(rename=rename, omit_if_default=name in overrides)
    return make_dict_unstructure_fn(cls, converter, **overrides)


converter.register_structure_hook_factory(attrs.has, _attrs_structure_factory)


def _strict_collection_factory(cls: Any, conv: Any) -> Callable[[Any, Any], Any]:
    """Lists must be JSON arrays and records JSON objects: a string is not a list of
    characters, an object is not a list of its keys."""
    origin = typing.get_origin(cls) or cls
    mapping = isinstance(origin, type) and issubclass(origin, Mapping)
    inner: Callable[..., Any]
    if mapping:
        inner = cattrs.cols.mapping_structure_factory(cls, conv)
    elif origin is tuple:
        inner = cattrs.cols.homogenous_tuple_structure_factory(cls, conv)
    else:
        inner = cattrs.cols.list_structure_factory(cls, conv)

    def structure(value: Any, type_: Any) -> Any:
        if mapping and not isinstance(value, Mapping):
            raise TypeError(f"expected a record, got {type(value).__name__}")
        if not mapping and not isinstance(value, list | tuple):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        return inner(value, type_)

    return structure


def _is_collection(cls: Any) -> bool:
    from cattrs._compat import is_mapping, is_sequence

    if typing.get_origin(cls) is tuple and ... not in typing.get_args(cls):
        return False  # a fixed-length tuple: cattrs' own hook
    return bool(is_sequence(cls) or is_mapping(cls))


converter.register_structure_hook_factory(_is_collection, _strict_collection_factory)
converter.register_unstructure_hook_factory(attrs.has, _attrs_unstructure_factory)


# --------------------------------------------------------------------------- helpers


def _problems(exc: BaseException, path: str) -> Iterator[tuple[str, str]]:
    """Flatten cattrs' exception groups into (field path, message) pairs."""
    if isinstance(exc, ClassValidationError | IterableValidationError):
        with_notes, without_notes = exc.group_exceptions()
        for sub, note in with_notes:
            name = getattr(note, "name", None)
            index = getattr(note, "index", None)
            if name is not None:
                sub_path = f"{path}.{name}" if path else str(name)
            elif index is not None:
                sub_path = f"{path}[{index!r}]"
            else:
                sub_path = path
            yield from _problems(sub, sub_path)
        for sub in without_notes:
            yield from _problems(sub, path)
    elif isinstance(exc, ForbiddenExtraKeysError):
        for key in sorted(exc.extra_fields):
            yield (f"{path}.{key}" if path else key), "unknown field"
    elif isinstance(exc, FieldError):
        yield (f"{path}.{exc.subpath}" if path else exc.subpath), exc.message
    elif isinstance(exc, KeyError):
        yield path, "missing"
    else:
        yield path, str(exc)


def structure(data: Any, cls: type[T], *, what: str = "input", path: str = "") -> T:
    """Structure JSON data into ``cls``; errors name every field at fault.

    ``path`` prefixes field names (``compute`` for a compute provider's settings). An
    attrs validator that raises a ``LianError`` itself keeps its own message and field.
    """
    try:
        return converter.structure(data, cls)
    except (ClassValidationError, IterableValidationError, ValueError, TypeError) as exc:
        own = _first_lian_error(exc)
        if own is not None:
            raise own from None
        problems = list(_problems(exc, path))
        lines = [f"{where or '(top level)'}: {message}" for where, message in problems]
        first_field = problems[0][0] if problems and problems[0][0] else None
        raise InvalidInput(
            f"{what} is not valid: " + "; ".join(lines),
            field=first_field,
            details={"problems": lines},
        ) from None
    except LianError:
        raise


def _first_lian_error(exc: BaseException) -> LianError | None:
    if isinstance(exc, LianError):
        return exc
    for sub in getattr(exc, "exceptions", ()):
        found = _first_lian_error(sub)
        if found is not None:
            return found
    return None


def structure_directives(data: Mapping[str, Any]) -> BuildDirectives:
    return structure(data, BuildDirectives, what="build directives")


def structure_build_spec(data: Mapping[str, Any]) -> BuildSpec:
    return structure(data, BuildSpec, what="build spec")


def unstructure(obj: Any) -> dict[str, Any]:
    """The JSON shape of a model object: the same keys Nickel exports."""
    data = converter.unstructure(obj)
    if not isinstance(data, dict):
        raise TypeError(f"{type(obj).__name__} does not unstructure to a record")
    return data
