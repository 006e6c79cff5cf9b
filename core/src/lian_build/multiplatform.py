"""Multi-platform builds: one runner per platform, in parallel, one OCI image index.

When a build asks for several platforms and the compute provider can run a runner of
each platform's architecture (natively, or emulated where the provider says so), every
platform gets its own single-platform pipeline in its own thread: its own runner, sync,
build, OOM retry on its architecture's ladder, cache refs suffixed with the platform,
and a push under a per-platform staging tag (``<tag>-<arch>``: buildah cannot push by
digest). When every platform succeeded, the image index is assembled here, on the
machine running lian, from the manifests the registry holds, pushed under every
requested tag through the registry plugin and read back.

One platform failing (or a signal, or the time budget) cancels the others: their
runners are destroyed by session label until their threads have finished, so a runner
that was still being created when the cancel came is destroyed too.

Where the provider declares no architecture, or cannot run one of the platforms, the
build falls back to one runner that builds every platform (foreign ones emulated).
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from lian_build import api, cache, model, oci, oom
from lian_build.errors import BuildFailed, Cancelled, LianError, RegistryError, TimeBudgetExceeded
from lian_build.events import EventBus
from lian_build.lifecycle import Lifecycle
from lian_build.pipeline import BuildPipeline, event_settings, run_build
from lian_build.plan import Plan, RemotePaths
from lian_build.plugins import PluginHost
from lian_build.progress import Progress
from lian_build.secrets import SecretStore

if TYPE_CHECKING:
    from lian_build.remote.ssh import ClientKey

log = logging.getLogger("lian.multiplatform")

PER_PLATFORM = "per-platform"
SINGLE_RUNNER = "single-runner"
KILL_POLL_S = 1.0
PLATFORM_MISMATCH = "PLATFORM_MISMATCH"


@attrs.frozen
class PlatformTarget:
    platform: str  # "linux/arm64"
    architecture: str  # "arm64"
    mode: str  # "native" | "emulated"

    @property
    def suffix(self) -> str:
        """``arm64``, ``arm-v7``: for tags, cache names and session ids."""
        return "-".join(self.platform.split("/")[1:])


@attrs.frozen
class Strategy:
    name: str  # PER_PLATFORM | SINGLE_RUNNER
    targets: tuple[PlatformTarget, ...] = ()
    reason: str = ""


def architecture_of(platform: str) -> str:
    parts = platform.split("/")
    return parts[1] if len(parts) > 1 else parts[0]


def choose_strategy(plan: Plan) -> Strategy:
    """Per-platform runners when the provider can run every platform's architecture."""
    platforms = plan.intent.platforms
    compute = plan.compute
    if not platforms:
        return Strategy(SINGLE_RUNNER)
    native = tuple(compute.architectures())
    emulated = tuple(compute.emulated_architectures())
    if len(platforms) == 1:
        # One platform of the provider's own (first) architecture is a plain build; one
        # of another architecture it runs gets a runner of that architecture (an arm64
        # build on Hetzner runs on a cax server rather than emulated on an x86 one).
        arch = architecture_of(platforms[0])
        if not native or arch == native[0] or arch not in (*native, *emulated):
            return Strategy(SINGLE_RUNNER)
    if not native:
        return Strategy(
            SINGLE_RUNNER,
            reason=f"{compute.name} declares no runner architectures: one runner builds "
            "every platform, the foreign ones under emulation",
        )
    targets = []
    for platform in platforms:
        arch = architecture_of(platform)
        if arch in native:
            targets.append(PlatformTarget(platform, arch, "native"))
        elif arch in emulated:
            targets.append(PlatformTarget(platform, arch, "emulated"))
        else:
            offered = ", ".join([*native, *(f"{a} (emulated)" for a in emulated)])
            return Strategy(
                SINGLE_RUNNER,
                reason=f"{compute.name} has no {arch} runners (it offers {offered}): one "
                "runner builds every platform, the foreign ones under emulation",
            )
    return Strategy(PER_PLATFORM, tuple(targets))


# --------------------------------------------------------------------------- planning


def staging_reference(plan: Plan, target: PlatformTarget) -> str:
    """Where one platform's manifest is pushed before the index names it."""
    host, repository, ref = oci.parse_reference(plan.intent.tags[0])
    tag = f"{ref[: 127 - len(target.suffix)]}-{target.suffix}"
    return f"{host}/{repository}:{tag}"


def _suffixed(reference: str, suffix: str) -> str:
    """``host/ci/ws/app:buildcache`` -> ``host/ci/ws/app-arm64:buildcache``."""
    host, repository, ref = oci.parse_reference(reference)
    return f"{host}/{repository}-{suffix}:{ref}"


def platform_cache_refs(plan: Plan, target: PlatformTarget) -> cache.CacheRefs:
    """The namespaced refs with the platform appended to the image name, so an amd64
    build never overwrites (or imports) the arm64 cache."""
    intent = plan.intent
    refs = cache.cache_refs(
        mode=intent.cache.mode,
        workspace=intent.workspace,
        actor=intent.cache.actor,
        image_name=f"{intent.image.repository.rsplit('/', 1)[-1]}-{target.suffix}",
        repository_for=plan.registry.cache_repository,
        do_import=intent.cache.do_import,
        do_export=intent.cache.do_export,
    )
    imports = (*refs.imports, *(_suffixed(r, target.suffix) for r in intent.cache.extra_imports))
    exports = (*refs.exports, *(_suffixed(r, target.suffix) for r in intent.cache.extra_exports))
    refs = cache.CacheRefs(
        imports=tuple(dict.fromkeys(imports)), exports=tuple(dict.fromkeys(exports))
    )
    cache.assert_invariants(intent.cache.mode, refs, intent.workspace, intent.cache.actor)
    return refs


def platform_plan(
    plan: Plan,
    target: PlatformTarget,
    compute: api.ComputeProvider | None = None,
) -> Plan:
    """A single-platform plan: its own session id (runner labels), ladder and cache."""
    compute = compute or plan.compute
    ladder = tuple(compute.tiers_for(target.architecture))
    start = plan.intent.runner.tier
    if start is not None and start not in {t.name for t in ladder}:
        start = None  # a tier named for another architecture's ladder
    attempts = tuple(oom.attempt_plan(ladder, plan.size, start=start))
    session_id = f"{plan.session_id}-{target.suffix}"[:63]
    intent = attrs.evolve(
        plan.intent, platforms=(target.platform,), tags=(staging_reference(plan, target),)
    )
    return attrs.evolve(
        plan,
        intent=intent,
        session_id=session_id,
        compute=compute,
        ladder=ladder,
        attempts=attempts,
        cache_refs=platform_cache_refs(plan, target),
        paths=RemotePaths.for_session(session_id),
    )


def plan_section(plan: Plan) -> dict[str, Any]:
    """What ``lian plan`` shows about platforms: the strategy and each platform's plan."""
    strategy = choose_strategy(plan)
    if not plan.intent.platforms:
        return {}
    section: dict[str, Any] = {"strategy": strategy.name}
    if strategy.reason:
        section["reason"] = strategy.reason
    if strategy.name == PER_PLATFORM:
        entries = []
        for target in strategy.targets:
            sub = platform_plan(plan, target)
            entries.append(
                {
                    "platform": target.platform,
                    "architecture": target.architecture,
                    "mode": target.mode,
                    "session_id": sub.session_id,
                    "push": sub.intent.tags[0],
                    "ladder": [attrs.asdict(t) for t in sub.ladder],
                    "attempts": [t.name for t in sub.attempts],
                    "cache": {
                        "imports": list(sub.cache_refs.imports),
                        "exports": list(sub.cache_refs.exports),
                    },
                }
            )
            runner = sub.compute.plan_for(target.architecture)
            if runner:
                entries[-1]["compute"] = runner
            # Worst case, as the plan's own: the first tier for the whole time budget.
            cost = (
                sub.compute.estimate_cost(sub.attempts[0], sub.size.time_budget_min * 60)
                if sub.attempts
                else None
            )
            if cost:
                entries[-1]["estimated_cost"] = cost
        section["platforms"] = entries
        section["index"] = {"media_type": oci.OCI_INDEX, "tags": list(plan.intent.tags)}
    return {"multiplatform": section}


# --------------------------------------------------------------------------- running


class PlatformEvents(EventBus):
    """One platform's view of the shared bus: every event carries the platform."""

    def __init__(self, shared: EventBus, platform: str, lock: threading.Lock) -> None:
        super().__init__([], workspace=shared.workspace, session_id=shared.session_id)
        self._shared = shared
        self._platform = platform
        self._lock = lock

    def emit(self, kind: str, data: Mapping[str, Any] | None = None) -> None:
        with self._lock:
            self._shared.emit(kind, {**(data or {}), "platform": self._platform})

    def close(self) -> None:
        """The coordinator closes the shared bus."""


class PlatformProgress(Progress):
    """Plain lines prefixed with the platform, written through the parent's stream."""

    def __init__(self, parent: Progress, platform: str, lock: threading.Lock) -> None:
        super().__init__(stream=parent.stream, live=False, redact=parent.redact)
        self.quiet = parent.quiet
        self._parent = parent
        self._prefix = f"[{platform}] "
        self._lock = lock

    def _print(self, text: str) -> None:
        with self._lock:
            self._parent._print(self._prefix + text)


class PlatformLifecycle(Lifecycle):
    """A platform thread's lifecycle (never installed). It keeps every SSH connection's
    cancel flag, so the coordinator can stop the command running there before it
    destroys the runner: the thread then sees ``Cancelled`` (no credential removal over
    a dead connection, no "lost the SSH connection" warning) instead of a lost runner."""

    def __init__(self) -> None:
        super().__init__()
        self.cancels: list[Callable[[], None]] = []

    @contextlib.contextmanager
    def deferred(self, notify: Callable[[], None]) -> Iterator[None]:
        self.cancels.append(notify)  # only sets a flag: safe from another thread
        with super().deferred(notify):
            yield


class PlatformPipeline(BuildPipeline):
    """A single-platform pipeline that stops when the coordinator cancels it."""

    def __init__(
        self, *args: Any, target: PlatformTarget, cancel: threading.Event, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.target = target
        self.architecture = target.architecture
        self.cancel = cancel
        self.cancel_reason = "another platform failed"

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled(
                f"{self.target.platform}: cancelled because {self.cancel_reason}",
                details={"platform": self.target.platform},
            )

    def _attempt(
        self,
        attempt: Any,
        auth: api.RegistryAuth | None,
        build_secrets: Mapping[str, str],
    ) -> None:
        self._check_cancel()
        try:
            super()._attempt(attempt, auth, build_secrets)
        except LianError:
            # A runner destroyed under a cancelled build fails in whatever way it fails.
            self._check_cancel()
            raise
        self._check_cancel()  # no OOM retry for a runner the coordinator destroyed


@attrs.define
class PlatformRun:
    target: PlatformTarget
    plan: Plan
    pipeline: PlatformPipeline
    result: model.BuildOutcome | None = None
    error: BaseException | None = None
    started: float = 0.0
    finished: float = 0.0

    def status(self) -> dict[str, Any]:
        pipeline = self.pipeline
        attempts = pipeline.attempts
        last = attempts[-1] if attempts else None
        state = "succeeded" if self.result is not None else "pending"
        if isinstance(self.error, LianError):
            state = "cancelled" if self.error.code == "CANCELLED" else "failed"
        elif self.error is not None:
            state = "failed"
        out: dict[str, Any] = {
            "platform": self.target.platform,
            "architecture": self.target.architecture,
            "mode": self.target.mode,
            "state": state,
            "session_id": self.plan.session_id,
            "runner_id": last.runner_id if last else None,
            "tier": last.tier.name if last else None,
            "tiers_tried": [a.tier.name for a in attempts],
            "retries": max(0, len(attempts) - 1),
            "duration_s": round(self.finished - self.started, 3) if self.finished else None,
        }
        # What this platform's runners cost, where its provider knows prices.
        out.update(pipeline._runner_usage())
        if self.result is not None:
            out["digest"] = self.result.digest
            out["pushed"] = self.plan.intent.tags[0]
            out["builder"] = self.result.builder
            out["cache"] = model.unstructure(self.result.cache)
            out["peak_memory_bytes"] = self.result.peak_memory_bytes
        if isinstance(self.error, LianError):
            out["error"] = {"code": self.error.code, "message": self.error.message}
        # Absent values are left out of envelopes, never printed as null.
        return {key: value for key, value in out.items() if value is not None}


class MultiPlatformBuild:
    """Runs one PlatformPipeline per target and assembles the image index."""

    def __init__(
        self,
        plan: Plan,
        strategy: Strategy,
        host: PluginHost,
        store: SecretStore,
        progress: Progress,
        lifecycle: Lifecycle,
        *,
        client_key: ClientKey,
    ) -> None:
        self.plan = plan
        self.host = host
        self.store = store
        self.progress = progress
        self.lifecycle = lifecycle
        self.started = time.monotonic()
        self.cancel = threading.Event()
        self.events = EventBus(
            host.event_sinks(event_settings(plan, store)),
            workspace=plan.intent.workspace,
            session_id=plan.session_id,
            redact=store.redact,
        )
        event_lock, print_lock = threading.Lock(), threading.Lock()
        intent = plan.intent
        self.runs: list[PlatformRun] = []
        for target in strategy.targets:
            # Own provider instance per thread: SDK clients are not shared across threads.
            compute = host.compute_provider(intent.compute.provider, intent.compute.settings, store)
            sub = platform_plan(plan, target, compute)
            pipeline = PlatformPipeline(
                sub,
                host,
                store,
                PlatformProgress(progress, target.platform, print_lock),
                PlatformLifecycle(),  # signals reach the coordinator's thread
                client_key=client_key,
                events=PlatformEvents(self.events, target.platform, event_lock),
                target=target,
                cancel=self.cancel,
            )
            self.runs.append(PlatformRun(target, sub, pipeline))

    # ------------------------------------------------------------------ public

    def summary(self) -> dict[str, Any]:
        plan = self.plan
        statuses = [run.status() for run in self.runs]
        first = statuses[0] if statuses else {}
        return {
            "session_id": plan.session_id,
            "workspace": plan.intent.workspace,
            "image": str(plan.intent.image),
            "provider": plan.compute.name,
            "registry": plan.registry.name,
            "size": attrs.asdict(plan.size),
            "strategy": PER_PLATFORM,
            "tier": first.get("tier"),
            "tiers_tried": [f"{s['platform']}:{t}" for s in statuses for t in s["tiers_tried"]],
            "retries": sum(s["retries"] for s in statuses),
            "platforms": statuses,
            "phases": dict(self.progress.phases),
        }

    def progress_outcome(self) -> model.BuildProgress:
        """How far the build got; attached to error envelopes."""
        plan = self.plan
        statuses = [run.status() for run in self.runs]
        size = plan.size
        return model.BuildProgress(
            session_id=plan.session_id,
            workspace=plan.intent.workspace,
            image=str(plan.intent.image),
            provider=plan.compute.name,
            registry=plan.registry.name,
            size=model.RunnerSize(**attrs.asdict(size)),
            tier=statuses[0].get("tier") if statuses else None,
            tiers_tried=tuple(f"{s['platform']}:{t}" for s in statuses for t in s["tiers_tried"]),
            retries=sum(s["retries"] for s in statuses),
            phases=dict(self.progress.phases),
            strategy=PER_PLATFORM,
            platforms=tuple(statuses),
            **_total_usage(statuses),
        )

    def run(self) -> model.BuildOutcome:
        self.events.emit(
            "started",
            {
                "image": str(self.plan.intent.image),
                "provider": self.plan.compute.name,
                "platforms": [r.target.platform for r in self.runs],
                "size": attrs.asdict(self.plan.size),
            },
        )
        try:
            result = self._run()
        except LianError as exc:
            kind = "cancelled" if exc.code == "CANCELLED" else "failed"
            self.events.emit(kind, {"code": exc.code, "message": exc.message, **self.summary()})
            raise
        except BaseException as exc:
            self.events.emit("failed", {"code": "INTERNAL", "message": type(exc).__name__})
            raise
        finally:
            self.events.close()
        self.events.emit("completed", {"digest": result.digest, **self.summary()})
        return result

    # ------------------------------------------------------------------ internals

    def _run(self) -> model.BuildOutcome:
        names = ", ".join(f"{r.target.platform} ({r.target.mode})" for r in self.runs)
        self.progress.info(f"one runner per platform, in parallel: {names}")
        failed = self._run_platforms()
        if failed is not None:
            raise self._platform_error(failed)
        return self._publish_index()

    def _run_platforms(self) -> PlatformRun | None:
        """Run every platform; the first failure cancels the rest. Returns it, if any."""
        pool = futures.ThreadPoolExecutor(max_workers=len(self.runs), thread_name_prefix="lian")
        pending = {pool.submit(self._run_one, run): run for run in self.runs}
        first_failure: PlatformRun | None = None
        try:
            while pending:
                done, _ = futures.wait(pending, timeout=KILL_POLL_S)
                for future in done:
                    run = pending.pop(future)
                    if run.error is not None and first_failure is None and not self.cancel.is_set():
                        first_failure = run
                        self.progress.info(
                            f"{run.target.platform} failed: cancelling "
                            + ", ".join(r.target.platform for r in self.runs if r is not run)
                        )
                        self.cancel.set()
                if self.cancel.is_set():
                    self._stop_commands(pending.values())
                    self._destroy_runners(run for run in pending.values())
        except BaseException as exc:
            # A signal or the time budget in this (the main) thread: stop every platform.
            for run in self.runs:
                run.pipeline.cancel_reason = _stop_reason(exc)
            self.cancel.set()
            with self.lifecycle.shielded():
                while pending:
                    self._stop_commands(pending.values())
                    self._destroy_runners(pending.values())
                    done, _ = futures.wait(pending, timeout=KILL_POLL_S)
                    for future in done:
                        pending.pop(future)
            if isinstance(exc, LianError):
                self._name_stopped(exc)
            raise
        finally:
            pool.shutdown(wait=False)
        return first_failure

    def _run_one(self, run: PlatformRun) -> None:
        run.started = time.monotonic()
        try:
            run.result = run.pipeline.run()
        except BaseException as exc:  # reported by the coordinator
            run.error = exc
        finally:
            run.finished = time.monotonic()

    @staticmethod
    def _stop_commands(runs: Any) -> None:
        """Stop the SSH command of each platform at its next poll, before its runner goes."""
        for run in runs:
            lifecycle = run.pipeline.lifecycle
            for cancel in getattr(lifecycle, "cancels", ()):
                cancel()

    def _name_stopped(self, exc: LianError) -> None:
        """A signal or the budget: say which platforms it stopped, and that no index was
        pushed (a platform that finished is only under its staging tag)."""
        statuses = [r.status() for r in self.runs]
        stopped = [s["platform"] for s in statuses if s["state"] != "succeeded"]
        staged = {s["platform"]: s["pushed"] for s in statuses if "pushed" in s}
        cause = exc.message.split(";")[0]
        exc.message = (
            f"{cause}; stopped {', '.join(stopped) or 'no platform'} and destroyed every "
            "runner; no index was pushed"
        )
        if staged:
            exc.message += " (only under the staging tags " + ", ".join(staged.values()) + ")"
        exc.args = (exc.message,)
        exc.details = {**exc.details, "cancelled": stopped, "staged": staged}

    def _destroy_runners(self, runs: Any) -> None:
        """Destroy every runner of the given platforms' sessions (by label)."""
        compute = self.plan.compute
        for run in runs:
            try:
                found = compute.list_runners({"lian.session": run.plan.session_id})
            except Exception as exc:
                log.warning("listing runners of %s failed: %s", run.plan.session_id, exc)
                continue
            for info in found:
                try:
                    compute.destroy(info.id)
                    self.progress.info(f"{run.target.platform}: destroyed runner {info.id[:12]}")
                except Exception as exc:
                    log.warning("could not destroy runner %s: %s", info.id, exc)

    def _platform_error(self, failed: PlatformRun) -> BaseException:
        exc = failed.error
        assert exc is not None
        if not isinstance(exc, LianError):
            return exc
        statuses = [r.status() for r in self.runs]
        others = [
            f"{s['platform']} {s['state']}"
            for s in statuses
            if s["platform"] != failed.target.platform
        ]
        exc.message = (
            f"{failed.target.platform}: {exc.message} (other platforms: {', '.join(others)})"
        )
        exc.args = (exc.message,)
        exc.details = {
            **exc.details,
            "platform": failed.target.platform,
            "platforms": statuses,
        }
        return exc

    def _publish_index(self) -> model.BuildOutcome:
        plan = self.plan
        with self.progress.phase("index", f"{len(self.runs)} platforms"):
            entries = []
            for run in self.runs:
                assert run.result is not None
                entries.append(
                    index_entry(
                        plan.registry, run.plan.intent.tags[0], run.result.digest, run.target
                    )
                )
            body = oci.image_index(entries)
            for tag in plan.intent.tags:
                plan.registry.put_manifest(tag, oci.OCI_INDEX, body)
        with self.progress.phase("verify", ", ".join(plan.intent.tags)):
            digest = verify_index(plan.registry, plan.intent.tags, body)
        results = [run.result for run in self.runs if run.result is not None]
        caches = [r.cache for r in results]
        return model.BuildOutcome(
            **attrs.asdict(self.progress_outcome(), recurse=False),
            digest=digest,
            index_digest=digest,
            media_type=oci.OCI_INDEX,
            tags=tuple(plan.intent.tags),
            builder=results[0].builder,
            cache=model.CacheOutcome(
                mode=model.BuildMode(plan.intent.cache.mode),
                imports=tuple(i for c in caches for i in c.imports),
                exports=tuple(e for c in caches for e in c.exports),
                cached_steps=sum(c.cached_steps for c in caches),
                total_steps=sum(c.total_steps for c in caches),
            ),
            duration_s=round(time.monotonic() - self.started, 3),
        )


def _stop_reason(exc: BaseException) -> str:
    """Why the coordinator stopped every platform, as a platform's message says it."""
    if isinstance(exc, Cancelled) and "signal" in exc.details:
        return f"lian received {exc.details['signal']}"
    if isinstance(exc, TimeBudgetExceeded):
        return "the build ran past its time budget"
    return f"lian stopped ({type(exc).__name__})"


def _total_usage(statuses: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """runner_seconds over every platform; the cost too, when every platform has one."""
    timed = [s for s in statuses if "runner_seconds" in s]
    if not timed:
        return {}
    usage: dict[str, Any] = {
        "runner_seconds": round(sum(float(s["runner_seconds"]) for s in timed), 3)
    }
    costs = [s.get("cost") for s in timed]
    if all(costs) and len({c["currency"] for c in costs if c}) == 1:
        first = costs[0] or {}
        usage["cost"] = {
            "currency": first["currency"],
            "amount_net": round(sum(float(c["amount_net"]) for c in costs if c), 4),
            "price_source": first["price_source"],
            "platforms": {s["platform"]: s["cost"]["amount_net"] for s in timed},
        }
    return usage


# --------------------------------------------------------------------------- the index


def index_entry(
    registry: api.RegistryProvider, reference: str, digest: str, target: PlatformTarget
) -> oci.IndexEntry:
    """One platform's manifest as the registry holds it, checked against its config:
    an amd64 base image on an arm64 runner yields an amd64 image, caught here."""
    repository = reference.rsplit(":", 1)[0] if "@" not in reference else reference.split("@")[0]
    media_type, raw = registry.get_manifest(f"{repository}@{digest}")
    try:
        config_digest = str(json.loads(raw)["config"]["digest"])
    except (ValueError, KeyError, TypeError):
        raise RegistryError(
            f"{repository}@{digest} is not an image manifest ({media_type})", code="REGISTRY_ERROR"
        ) from None
    found = oci.config_platform(registry.get_blob(reference, config_digest))
    wanted = target.platform
    if found.split("/")[:2] != wanted.split("/")[:2]:
        raise BuildFailed(
            f"{wanted}: the built image is {found} (a base image without {wanted}?)",
            code="PLATFORM_MISMATCH",
            details={"platform": wanted, "found": found, "digest": digest},
        )
    return oci.IndexEntry(digest=digest, media_type=media_type, size=len(raw), platform=wanted)


def verify_index(registry: api.RegistryProvider, tags: Sequence[str], body: bytes) -> str:
    """Every tag must point at exactly the index pushed; returns its digest."""
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    for tag in tags:
        found = registry.manifest_digest(tag)
        if found != digest:
            raise RegistryError(
                f"{tag} points at {found}, not at the pushed index {digest} "
                "(another writer pushed the same tag?)",
                code="DIGEST_MISMATCH",
                details={"pushed": digest, "registry": found},
            )
    return digest


def run_any(
    plan: Plan,
    host: PluginHost,
    store: SecretStore,
    progress: Progress,
    *,
    client_key: ClientKey,
    install_signals: bool = True,
    on_pipeline: Callable[[Any], None] | None = None,
) -> model.BuildOutcome:
    """``lian build``: per-platform runners when possible, else the one-runner pipeline."""
    strategy = choose_strategy(plan)
    if strategy.name != PER_PLATFORM:
        if strategy.reason:
            progress.info(strategy.reason)
        return run_build(
            plan,
            host,
            store,
            progress,
            client_key=client_key,
            install_signals=install_signals,
            on_pipeline=on_pipeline,
        )
    lifecycle = Lifecycle()
    build = MultiPlatformBuild(
        plan, strategy, host, store, progress, lifecycle, client_key=client_key
    )
    if on_pipeline:
        on_pipeline(build)
    if install_signals:
        # The budget covers every attempt of the slowest platform (each may retry once).
        longest = max(len(run.plan.attempts) for run in build.runs)
        lifecycle.install(time_budget_s=plan.size.time_budget_min * 60 * longest)
    try:
        return build.run()
    finally:
        lifecycle.uninstall()
