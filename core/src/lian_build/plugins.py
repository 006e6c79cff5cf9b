"""The plugin host: builds a pluggy manager, owns the entry-point loop, and gives the rest
of the core a typed facade (the pipeline never touches ``pm.hook`` directly).

Built-in plugins go through the same manager as third-party ones. A plugin that fails to
import, declares an unknown hook or raises while registering is recorded and skipped;
it never breaks unrelated commands. ``LIAN_DISABLE_PLUGINS=a,b`` blocks plugins by
entry-point or distribution name; ``LIAN_TRACE_HOOKS=1`` traces every hook call to
stderr.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from lian_build import api, hookspecs
from lian_build.errors import InvalidInput, LianError, PluginError

if TYPE_CHECKING:
    import typer

    from lian_build import model

log = logging.getLogger("lian.plugins")

ENTRY_POINT_GROUP = "lian_build"
DISABLE_ENV = "LIAN_DISABLE_PLUGINS"
TRACE_ENV = "LIAN_TRACE_HOOKS"

# Modules (or modules exposing PLUGINS = [objects]) registered before any entry point.
BUILTIN_MODULES: tuple[str, ...] = (
    "lian_build.builtin.sizing",
    "lian_build.builtin.history",
    "lian_build.builtin.builders",
    "lian_build.builtin.secrets",
    "lian_build.builtin.nats",
    "lian_build.builtin.runners",
    "lian_build.builtin.cache",
)

# What each registration hook registers, the attribute that names an item, and the
# base class every registered item must subclass (checked at load time).
KINDS: dict[str, tuple[str, str]] = {
    "compute": ("lian_register_compute_providers", "name"),
    "registry": ("lian_register_registries", "name"),
    "builder": ("lian_register_builders", "name"),
    "secret": ("lian_register_secret_resolvers", "scheme"),
}
BASES: dict[str, type[Any]] = {
    "compute": api.ComputeProvider,
    "registry": api.RegistryProvider,
    "builder": api.Builder,
    "secret": api.SecretResolver,
}


@attrs.define
class PluginRecord:
    """One plugin as ``lian plugins`` reports it."""

    name: str
    distribution: str
    version: str
    builtin: bool
    hooks: list[str] = attrs.field(factory=list)
    provides: dict[str, list[str]] = attrs.field(factory=dict)
    status: str = "loaded"  # loaded | disabled | error
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        from lian_build import model

        return model.unstructure(self.outcome())

    def outcome(self) -> model.PluginReport:
        from lian_build import model

        return model.PluginReport(
            name=self.name,
            distribution=self.distribution,
            version=self.version,
            builtin=self.builtin,
            hooks=tuple(self.hooks),
            provides={kind: tuple(keys) for kind, keys in self.provides.items()},
            status=self.status,
            error=self.error,
        )


@attrs.define
class _Registration:
    item: Any
    plugin: PluginRecord


def _identity(obj: object) -> object:
    return obj


def _disabled_names() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def _hook_names(plugin: object) -> list[str]:
    """Names of the attributes marked with ``@lian_build.hookimpl``."""
    return sorted(
        name
        for name in dir(plugin)
        if name.startswith("lian_") and hasattr(getattr(plugin, name, None), "lian_build_impl")
    )


class PluginHost:
    """Everything the core needs from plugins, behind typed methods."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("lian_build")
        self.pm.add_hookspecs(hookspecs)
        self.records: list[PluginRecord] = []
        self._registry: dict[str, dict[str, _Registration]] = {kind: {} for kind in KINDS}
        self._conflicts: dict[tuple[str, str], list[str]] = {}
        self._record_of: dict[int, PluginRecord] = {}
        if os.environ.get(TRACE_ENV):
            self.pm.trace.root.setwriter(sys.stderr.write)
            self.pm.enable_tracing()

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(
        cls,
        *,
        entry_points: bool = True,
        extra: Iterable[tuple[str, object]] = (),
        disabled: set[str] | None = None,
    ) -> PluginHost:
        """Built-ins, then installed entry points, then ``extra`` (name, plugin) pairs."""
        host = cls()
        blocked = _disabled_names() if disabled is None else disabled
        version = importlib.metadata.version("lian-build")
        for module_name in BUILTIN_MODULES:
            short = "builtin-" + module_name.rsplit(".", 1)[1]
            record = PluginRecord(short, "lian-build", version, builtin=True)
            if short in blocked:
                host._add_disabled(record)
                continue
            host._load_module(record, functools.partial(importlib.import_module, module_name))
        if entry_points:
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                dist = ep.dist.name if ep.dist else "unknown"
                ver = ep.dist.version if ep.dist else "unknown"
                record = PluginRecord(ep.name, dist, ver, builtin=False)
                if ep.name in blocked or dist in blocked:
                    host._add_disabled(record)
                    continue
                host._load_module(record, ep.load)
        for name, plugin in extra:
            record = PluginRecord(name, "(in-process)", "-", builtin=False)
            host._load_module(record, functools.partial(_identity, plugin))
        host._collect_registrations()
        return host

    def _add_disabled(self, record: PluginRecord) -> None:
        record.status = "disabled"
        self.records.append(record)

    def _fail(self, record: PluginRecord, what: str, exc: BaseException) -> None:
        record.status = "error"
        record.error = f"{what}: {type(exc).__name__}: {exc}"
        log.warning("plugin %s (%s) skipped: %s", record.name, record.distribution, record.error)
        log.debug("%s", "".join(traceback.format_exception(exc)))

    def _load_module(self, record: PluginRecord, loader: Callable[[], object]) -> None:
        self.records.append(record)
        try:
            loaded = loader()
        except Exception as exc:  # a broken plugin must not break unrelated commands
            self._fail(record, "import failed", exc)
            return
        objects = list(getattr(loaded, "PLUGINS", None) or [loaded])
        registered: list[object] = []
        try:
            for index, obj in enumerate(objects):
                unknown = [h for h in _hook_names(obj) if not hasattr(self.pm.hook, h)]
                if unknown:
                    raise pluggy.PluginValidationError(
                        obj, f"unknown hook(s) {', '.join(unknown)} (misspelt?)"
                    )
                name = record.name if len(objects) == 1 else f"{record.name}#{index}"
                self.pm.register(obj, name=name)
                registered.append(obj)
                self._record_of[id(obj)] = record
                record.hooks.extend(h for h in _hook_names(obj) if h not in record.hooks)
        except Exception as exc:
            for obj in registered:
                self.pm.unregister(obj)
            self._fail(record, "invalid hook implementation", exc)

    def _each_plugin(self, hook_name: str) -> list[tuple[PluginRecord | None, str, Any]]:
        """One hook caller per plugin implementing ``hook_name``.

        Every call still goes through the plugin manager (``LIAN_TRACE_HOOKS`` traces it,
        hookwrappers wrap it), but one plugin at a time, so a plugin that raises is
        isolated: the others still run. Wrappers stay in every subset.
        """
        hook = getattr(self.pm.hook, hook_name)
        impls = hook.get_hookimpls()
        wrappers = {id(i.plugin) for i in impls if i.hookwrapper or i.wrapper}
        callers = []
        for impl in impls:
            if id(impl.plugin) in wrappers:
                continue
            others = [
                i.plugin
                for i in impls
                if i.plugin is not impl.plugin and id(i.plugin) not in wrappers
            ]
            caller = self.pm.subset_hook_caller(hook_name, remove_plugins=others)
            callers.append((self._record_of.get(id(impl.plugin)), impl.plugin_name, caller))
        return callers

    def _collect_registrations(self) -> None:
        for kind, (hook_name, _attr) in KINDS.items():
            for record, _name, caller in self._each_plugin(hook_name):
                if record is None or record.status != "loaded":
                    continue
                items: list[Any] = []
                try:
                    caller(register=items.append)
                except Exception as exc:
                    self._fail(record, f"{hook_name} raised", exc)
                    continue
                for item in items:
                    self._add(kind, item, record)

    def _add(self, kind: str, item: Any, record: PluginRecord) -> None:
        attr = KINDS[kind][1]
        base = BASES[kind]
        hook_name = KINDS[kind][0]
        if not (isinstance(item, type) and issubclass(item, base)):
            what = item.__name__ if isinstance(item, type) else repr(item)
            self._fail(
                record,
                f"{hook_name} registered {what}, which is not a {base.__name__} subclass",
                TypeError(f"expected a subclass of lian_build.api.{base.__name__}"),
            )
            return
        if inspect.isabstract(item):
            missing = ", ".join(sorted(getattr(item, "__abstractmethods__", ())))
            self._fail(
                record,
                f"{hook_name} registered {item.__name__}, which does not implement {missing}",
                TypeError("abstract class"),
            )
            return
        key = getattr(item, attr, None)
        if not isinstance(key, str) or not key:
            self._fail(record, f"registered a {kind} without a {attr}", ValueError(repr(item)))
            return
        record.provides.setdefault(kind, []).append(key)
        table = self._registry[kind]
        if key in table:
            first = table[key].plugin
            owners = self._conflicts.setdefault((kind, key), [first.distribution])
            owners.append(record.distribution)
            log.warning(
                "%s %r is registered by both %s and %s",
                kind,
                key,
                first.distribution,
                record.distribution,
            )
            return
        table[key] = _Registration(item, record)

    # ------------------------------------------------------------------ lookup

    def names(self, kind: str) -> list[str]:
        return sorted(self._registry[kind])

    def _lookup(self, kind: str, key: str, field: str) -> Any:
        if (kind, key) in self._conflicts:
            owners = " and ".join(self._conflicts[(kind, key)])
            raise PluginError(
                f"{kind} {key!r} is registered by more than one plugin ({owners}); "
                f"uninstall one or block it with {DISABLE_ENV}",
                field=field,
                details={"distributions": self._conflicts[(kind, key)]},
                code="PLUGIN_CONFLICT",
            )
        entry = self._registry[kind].get(key)
        if entry is None:
            broken = [r.name for r in self.records if r.status == "error"]
            hint = f"; plugins that failed to load: {', '.join(broken)}" if broken else ""
            known = ", ".join(self.names(kind)) or "none"
            raise PluginError(
                f"no {kind} plugin named {key!r} (installed: {known}){hint}",
                field=field,
                code="PLUGIN_NOT_FOUND",
            )
        return entry.item

    def provider_class(self, kind: str, name: str, field: str) -> Any:
        return self._lookup(kind, name, field)

    def settings_class(self, kind: str, name: str) -> Any:
        """A provider's ``Settings`` attrs class, or None (unknown provider, no settings)."""
        entry = self._registry[kind].get(name)
        return getattr(entry.item, "Settings", None) if entry else None

    def registry_defaults(self, name: str, host: str) -> Mapping[str, Any]:
        """A registry plugin's settings defaults for an image's registry host."""
        entry = self._registry["registry"].get(name)
        if entry is None:
            return {}
        return dict(entry.item.defaults_for_image(host))

    def compute_provider(
        self, name: str, settings: Mapping[str, Any], secrets: api.SecretLookup
    ) -> api.ComputeProvider:
        cls = self._lookup("compute", name, "compute.provider")
        return cls(structure_settings(cls, settings, "compute"), secrets)  # type: ignore[no-any-return]

    def registry(
        self, name: str, settings: Mapping[str, Any], secrets: api.SecretLookup
    ) -> api.RegistryProvider:
        cls = self._lookup("registry", name, "registry.provider")
        return cls(structure_settings(cls, settings, "registry"), secrets)  # type: ignore[no-any-return]

    def builders(self) -> dict[str, api.Builder]:
        return {key: reg.item() for key, reg in self._registry["builder"].items()}

    def secret_resolvers(self) -> dict[str, api.SecretResolver]:
        return {key: reg.item() for key, reg in self._registry["secret"].items()}

    # ------------------------------------------------------------------ hook facade

    def size(self, request: api.SizingRequest) -> api.RunnerSize:
        # firstresult: one pluggy call; a source that raises is a plugin error, named.
        try:
            size = self.pm.hook.lian_size_runner(request=request)
        except LianError:
            raise
        except Exception as exc:
            raise PluginError(
                f"a sizing source failed: {type(exc).__name__}: {exc}", code="SIZING_FAILED"
            ) from exc
        if size is None:
            raise PluginError("no sizing source answered", code="SIZING_UNANSWERED")
        return size  # type: ignore[no-any-return]

    def event_sinks(self, settings: api.EventSettings) -> list[api.EventSink]:
        sinks: list[api.EventSink] = []
        for record, name, caller in self._each_plugin("lian_register_event_sinks"):
            try:
                caller(register=sinks.append, settings=settings)
            except Exception as exc:  # events are best effort: a broken sink never fails a build
                log.warning(
                    "plugin %s could not register its event sink: %s",
                    record.name if record else name,
                    exc,
                )
        return sinks

    def record_metrics(self, metrics: api.BuildMetrics) -> None:
        # Each plugin on its own: one that raises cannot stop the built-in history.
        for record, name, caller in self._each_plugin("lian_record_metrics"):
            try:
                caller(metrics=metrics)
            except Exception as exc:  # recording is best effort: the build already finished
                log.warning(
                    "plugin %s failed to record build metrics: %s",
                    record.name if record else name,
                    exc,
                )

    def register_commands(self, cli: typer.Typer) -> None:
        for record, _name, caller in self._each_plugin("lian_register_commands"):
            try:
                caller(cli=cli)
            except Exception as exc:
                if record is not None:
                    self._fail(record, "lian_register_commands raised", exc)

    def report(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.records]

    def conflicts(self) -> dict[str, list[str]]:
        return {f"{kind}:{key}": owners for (kind, key), owners in self._conflicts.items()}

    def outcome(self) -> model.PluginsOutcome:
        """What ``lian plugins --json`` prints (NCL ``PluginsOutcome``)."""
        from lian_build import model

        return model.PluginsOutcome(
            plugins=tuple(r.outcome() for r in self.records),
            conflicts={key: tuple(owners) for key, owners in self.conflicts().items()},
        )


def structure_settings(cls: Any, settings: Mapping[str, Any], prefix: str) -> Any:
    """Build a provider's ``Settings`` attrs instance with the strict converter (the one
    directives go through): unknown fields and wrong types are errors naming the field
    (``registry.tls_verify: expected a boolean, got str``), never coerced."""
    settings_cls = getattr(cls, "Settings", None)
    if settings_cls is None:
        if settings:
            raise InvalidInput(
                f"{prefix} provider {cls.name!r} takes no settings, got {sorted(settings)}",
                field=prefix,
            )
        return None
    from lian_build import model

    return model.structure(
        dict(settings), settings_cls, what=f"{prefix} settings for {cls.name!r}", path=prefix
    )
