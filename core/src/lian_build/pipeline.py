"""The build lifecycle: spawn -> wait for SSH -> sync -> build -> push -> record -> destroy.

One attempt per tier in the plan (the first tier, plus at most MAX_OOM_RETRIES more
after an out-of-memory failure). The runner is destroyed in a ``finally`` that signals
cannot interrupt; a runner whose id never reached us (a signal during spawn) is found by
its session label and destroyed too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import attrs

from lian_build import api, model, oom
from lian_build.errors import (
    BuildFailed,
    Cancelled,
    LianError,
    OutOfMemory,
    ProvisionError,
    RegistryError,
    RemoteError,
    RunnerLost,
    TimeBudgetExceeded,
)
from lian_build.events import EventBus
from lian_build.lifecycle import Lifecycle
from lian_build.plan import Plan, RemotePaths
from lian_build.plugins import PluginHost
from lian_build.progress import Progress
from lian_build.secrets import SecretStore

if TYPE_CHECKING:
    from lian_build.remote.ssh import ClientKey, SSHRemote

log = logging.getLogger("lian.pipeline")

SSH_WAIT_S = 180.0
REMOTE_CLEANUP_S = 30.0  # lian's own cleanup on the runner, before it is destroyed
LOST_PROBE_S = 5.0  # after a lost connection: how long to try reaching the runner again
SETTLE_TRIES, SETTLE_WAIT_S = 3, 1.0  # re-inspect a runner that still says "running"
EXPIRY_GRACE_S = 15 * 60  # a reaper may destroy a runner this long after its budget ran out


def runner_labels(plan: Plan, expires_at: dt.datetime, tier: str | None = None) -> dict[str, str]:
    """Labels every provider puts on its machines; reaping and ``lian runners`` find
    runners by them.

    The owner labels name this lian process (host, boot, pid, start time), so the next
    sweep on this host destroys the runner as soon as the process is dead, without
    waiting for ``lian.expires-at``.
    """
    from lian_build.reap import owner_labels

    labels = {
        "lian.managed": "true",
        "lian.session": plan.session_id,
        "lian.workspace": plan.intent.workspace[:63],
        "lian.expires-at": str(int(expires_at.timestamp())),
        **owner_labels(),
    }
    if tier is not None:
        labels["lian.tier"] = tier[:63]
    return labels


@attrs.frozen
class CgroupReading:
    oom_kills: int | None = None
    peak_bytes: int | None = None
    cpu_seconds: float | None = None


# Locates the runner's own memory cgroup (v1 or v2) from /proc/self/cgroup and prints the
# counters. A fixed script: nothing user-supplied is interpolated into it.
_CGROUP_SCRIPT = r"""
v2=$(awk -F: '$1=="0"{print $3}' /proc/self/cgroup)
v1m=$(awk -F: '$2 ~ /(^|,)memory(,|$)/{print $3}' /proc/self/cgroup)
v1c=$(awk -F: '$2 ~ /(^|,)cpuacct(,|$)/{print $3}' /proc/self/cgroup)
for d in "/sys/fs/cgroup/memory$v1m" /sys/fs/cgroup/memory; do
  if [ -r "$d/memory.oom_control" ]; then
    echo "oom_control $(awk '$1=="oom_kill"{print $2}' "$d/memory.oom_control")"
    echo "peak $(cat "$d/memory.max_usage_in_bytes")"; break
  fi
done
for d in "/sys/fs/cgroup/cpuacct$v1c" "/sys/fs/cgroup/cpu,cpuacct$v1c"; do
  if [ -r "$d/cpuacct.usage" ]; then echo "cpu_ns $(cat "$d/cpuacct.usage")"; break; fi
done
if [ -r "/sys/fs/cgroup$v2/memory.events" ]; then
  echo "oom_events $(awk '$1=="oom_kill"{print $2}' "/sys/fs/cgroup$v2/memory.events")"
  [ -r "/sys/fs/cgroup$v2/memory.peak" ] && echo "peak $(cat "/sys/fs/cgroup$v2/memory.peak")"
  echo "cpu_us $(awk '$1=="usage_usec"{print $2}' "/sys/fs/cgroup$v2/cpu.stat")"
fi
true
"""


def parse_cgroup_report(text: str) -> CgroupReading:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip():
            values.setdefault(key, value.strip())

    def number(key: str) -> int | None:
        try:
            return int(values[key])
        except (KeyError, ValueError):
            return None

    kills = number("oom_control")
    if kills is None:
        kills = number("oom_events")
    cpu = number("cpu_ns")
    cpu_s = cpu / 1e9 if cpu is not None else None
    if cpu_s is None and number("cpu_us") is not None:
        cpu_s = (number("cpu_us") or 0) / 1e6
    return CgroupReading(oom_kills=kills, peak_bytes=number("peak"), cpu_seconds=cpu_s)


@contextlib.contextmanager
def runner_credentials(
    remote: api.Remote,
    paths: RemotePaths,
    auth: api.RegistryAuth | None,
    build_secrets: Mapping[str, str],
    *,
    guard: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
) -> Iterator[str]:
    """Put the registry credentials (a DOCKER_CONFIG dir, yielded) and the build secrets
    on the runner for the build step only: both are removed when it ends, success or
    failure, so a long-lived host keeps nothing (the context goes at teardown).

    ``guard`` wraps each SSH exchange (the pipeline defers signals there). After an
    interrupt the connection is not used again: a signal may have left it mid-message,
    and the teardown destroys the runner anyway."""
    from lian_build.remote.dockerconfig import install_docker_config

    docker_config: str | None = None
    interrupted = False
    try:
        with guard():
            docker_config = install_docker_config(remote, [auth] if auth else [], paths.work_dir)
            for sid, value in build_secrets.items():
                remote.write_file(f"{paths.secrets_dir}/{sid}", value.encode(), mode=0o600)
        yield docker_config
    except (KeyboardInterrupt, Cancelled, TimeBudgetExceeded):
        interrupted = True
        raise
    finally:
        if not interrupted:
            _remove_credentials(remote, paths, docker_config, guard)


def _remove_credentials(
    remote: api.Remote,
    paths: RemotePaths,
    docker_config: str | None,
    guard: Callable[[], AbstractContextManager[None]],
) -> None:
    from lian_build.remote.dockerconfig import remove_docker_config

    try:
        with guard():
            removed = remote.run(["rm", "-rf", "--", paths.secrets_dir], timeout=30)
            if removed.exit_code != 0:
                log.warning("removing secrets from the runner failed: %s", removed.stderr.strip())
            if docker_config is not None:
                remove_docker_config(remote, docker_config)
    except Exception as exc:  # teardown removes the whole work dir next anyway
        log.warning("removing credentials from the runner failed: %s", exc)


def event_settings(plan: Plan, store: SecretStore) -> api.EventSettings:
    """The plan's event settings, with the NATS seed resolved from its reference."""
    events = plan.intent.events
    if events.nkey_seed is None and plan.intent.nkey_seed_ref:
        return attrs.evolve(events, nkey_seed=store(plan.intent.nkey_seed_ref))
    return events


def read_cgroup(remote: api.Remote) -> CgroupReading:
    try:
        result = remote.run(["sh", "-c", _CGROUP_SCRIPT], timeout=30)
    except LianError as exc:
        log.debug("cannot read the runner's cgroup: %s", exc)
        return CgroupReading()
    return parse_cgroup_report(result.stdout)


@attrs.define
class AttemptResult:
    tier: api.Tier
    runner_id: str | None = None
    outcome: api.BuildOutcome | None = None
    verdict: oom.OomVerdict | None = None
    builder: str | None = None
    sync: dict[str, Any] = attrs.field(factory=dict)
    before: CgroupReading = CgroupReading()
    after: CgroupReading = CgroupReading()
    duration_s: float = 0.0
    runner_image: str | None = None
    runner_s: float | None = None  # from the spawn request to the end of destroy


class BuildPipeline:
    architecture: str | None = None  # a per-platform pipeline asks for its runner's

    def __init__(
        self,
        plan: Plan,
        host: PluginHost,
        store: SecretStore,
        progress: Progress,
        lifecycle: Lifecycle,
        *,
        client_key: ClientKey,
        ssh_wait_s: float = SSH_WAIT_S,
        events: EventBus | None = None,
    ) -> None:
        self.plan = plan
        self.host = host
        self.store = store
        self.progress = progress
        self.lifecycle = lifecycle
        self.client_key = client_key
        self.ssh_wait_s = ssh_wait_s
        # A multi-platform build passes one bus shared by its per-platform pipelines.
        self.events = events or EventBus(
            host.event_sinks(event_settings(plan, store)),
            workspace=plan.intent.workspace,
            session_id=plan.session_id,
            redact=store.redact,
        )
        self.attempts: list[AttemptResult] = []
        self.started = time.monotonic()

    # ------------------------------------------------------------------ public

    def progress_outcome(self) -> model.BuildProgress:
        """How far the build got; attached to error envelopes."""
        plan = self.plan
        last = self.attempts[-1] if self.attempts else None
        size = plan.size
        return model.BuildProgress(
            session_id=plan.session_id,
            workspace=plan.intent.workspace,
            image=str(plan.intent.image),
            provider=plan.compute.name,
            registry=plan.registry.name,
            size=model.RunnerSize(**attrs.asdict(size)),
            tiers_tried=tuple(a.tier.name for a in self.attempts),
            retries=max(0, len(self.attempts) - 1),
            tier=last.tier.name if last else None,
            phases=dict(self.progress.phases),
            **self._runner_usage(),
        )

    def _runner_usage(self) -> dict[str, Any]:
        """runner_image, runner_seconds and cost (when the provider knows prices)."""
        timed = [a for a in self.attempts if a.runner_s is not None]
        if not timed:
            return {}
        usage: dict[str, Any] = {
            "runner_image": timed[-1].runner_image,
            "runner_seconds": round(sum(a.runner_s or 0.0 for a in timed), 3),
        }
        costs = [self.plan.compute.estimate_cost(a.tier, a.runner_s or 0.0) for a in timed]
        if costs and all(costs):
            total = sum(float(c["amount_net"]) for c in costs if c)
            usage["cost"] = {**(costs[-1] or {}), "amount_net": round(total, 4), "runners": costs}
        return usage

    def summary(self) -> dict[str, Any]:
        """The progress record as JSON data (events carry it)."""
        return model.unstructure(self.progress_outcome())

    def run(self) -> model.BuildOutcome:
        plan = self.plan
        intent = plan.intent
        self.events.emit(
            "started",
            {
                "image": str(intent.image),
                "provider": plan.compute.name,
                "size": attrs.asdict(plan.size),
            },
        )
        try:
            try:
                result = self._run()
            finally:
                removed = self._dispose_session_cache()
            if removed is not None:
                result = attrs.evolve(
                    result, cache=attrs.evolve(result.cache, removed=tuple(removed))
                )
        except LianError as exc:
            self._note_pushed(exc)
            kind = "cancelled" if exc.code == "CANCELLED" else "failed"
            self.events.emit(kind, {"code": exc.code, "message": exc.message, **self.summary()})
            raise
        except BaseException as exc:
            self.events.emit("failed", {"code": "INTERNAL", "message": type(exc).__name__})
            raise
        finally:
            self.events.close()
        return result

    def _pushed_digest(self) -> str | None:
        last = self.attempts[-1] if self.attempts else None
        if last is None or last.outcome is None or last.outcome.exit_code != 0:
            return None
        return last.outcome.digest or ""

    def _note_pushed(self, exc: LianError) -> None:
        """A failure after a successful push (a cancel during destroy, a verify error)
        still says the image was pushed, and where."""
        digest = self._pushed_digest()
        if digest is None:
            return
        exc.details.setdefault("pushed", True)
        if digest:
            exc.details.setdefault("digest", digest)
        exc.details.setdefault("tags", list(self.plan.intent.tags))

    # ------------------------------------------------------------------ internals

    def _run(self) -> model.BuildOutcome:
        plan = self.plan
        intent = plan.intent
        # Check the context, resolve every secret and check the registry before paying
        # for a machine.
        from lian_build.contextcheck import check_context

        with self.progress.phase("context", str(intent.context)):
            check_context(intent.context, intent.dockerfile)
        build_secrets = {sid: self.store(ref) for sid, ref in intent.secrets}
        auth = plan.registry.auth()
        if auth is not None:
            self.store.remember(auth.password)
        with self.progress.phase("registry", f"checking {plan.registry.host}"):
            plan.registry.check()
        self._reap_expired()

        attempt: AttemptResult | None = None
        for index, tier in enumerate(plan.attempts):
            attempt = AttemptResult(tier=tier)
            self.attempts.append(attempt)  # listed in error envelopes even if it fails
            self._attempt(attempt, auth, build_secrets)
            outcome = attempt.outcome
            assert outcome is not None
            self._record(attempt)
            if outcome.exit_code == 0:
                break
            verdict = attempt.verdict
            if verdict is not None and verdict.runner_lost:
                # Not retried: the same tier would be paid for again with no reason to
                # expect a different end; never recorded as OOM (see _record).
                raise RunnerLost(
                    f"runner {attempt.runner_id} on {tier.name} was lost mid-build: "
                    f"{verdict.reason}",
                    details={
                        "runner_id": attempt.runner_id,
                        "tier": tier.name,
                        "reason": verdict.reason,
                        "log_tail": self.store.redact(outcome.stderr_tail[-2000:]),
                    },
                )
            is_last = index + 1 >= len(plan.attempts)
            if verdict is not None and verdict.is_oom and not is_last:
                nxt = plan.attempts[index + 1]
                self.progress.info(
                    f"out of memory on {tier.name} ({verdict.reason}); retrying once on {nxt.name}"
                )
                self.events.emit(
                    "retry", {"from_tier": tier.name, "to_tier": nxt.name, "reason": verdict.reason}
                )
                continue
            tail = self.store.redact(outcome.stderr_tail[-2000:])
            if verdict is not None and verdict.is_oom:
                raise OutOfMemory(
                    f"the build ran out of memory on {tier.name} ({verdict.reason}) and no larger "
                    "tier is left to retry on",
                    details={"tiers_tried": [a.tier.name for a in self.attempts], "log_tail": tail},
                )
            registry_error = self._registry_cause(tail)
            if registry_error is not None:
                raise registry_error
            raise BuildFailed(
                f"the build failed on {tier.name} with exit code {outcome.exit_code}",
                details={"exit_code": outcome.exit_code, "log_tail": tail},
            )
        assert attempt is not None and attempt.outcome is not None
        digest = self._verify_push(attempt.outcome)
        assert attempt.builder is not None
        result = model.BuildOutcome(
            **attrs.asdict(self.progress_outcome(), recurse=False),
            digest=digest,
            tags=intent.tags,
            builder=attempt.builder,
            cache=model.CacheOutcome(
                mode=model.BuildMode(intent.cache.mode),
                imports=plan.cache_refs.imports,
                exports=plan.cache_refs.exports,
                cached_steps=attempt.outcome.cached_steps,
                total_steps=attempt.outcome.total_steps,
                # Which imported refs served the hits; absent when the builder cannot tell.
                served_by=(
                    None
                    if attempt.outcome.cache_sources is None
                    else tuple(attempt.outcome.cache_sources)
                ),
            ),
            sync=model.SyncOutcome(**attempt.sync),
            peak_memory_bytes=attempt.after.peak_bytes,
            duration_s=round(time.monotonic() - self.started, 3),
        )
        self.events.emit("completed", {"digest": digest, **self.summary()})
        return result

    def _dispose_session_cache(self) -> list[str] | None:
        """``'ephemeral`` session builds: remove the session's own dev/ cache once the
        build is over (success or failure). Best effort: a refusal is a warning, never a
        failed build. None when the disposition keeps the cache."""
        cache_choice = self.plan.intent.cache
        if cache_choice.mode != "session" or cache_choice.disposition != "ephemeral":
            return None
        if not self.plan.cache_refs.exports or cache_choice.actor is None:
            return []
        from lian_build.builders import repository_of
        from lian_build.cachestore import remove_session_cache

        try:
            with self.progress.phase("cache-dispose", "removing the session's dev/ cache"):
                done = remove_session_cache(
                    self.plan.registry,
                    workspace=self.plan.intent.workspace,
                    actor=cache_choice.actor,
                    repositories=[repository_of(ref) for ref in self.plan.cache_refs.exports],
                    log=self.progress.info,
                )
        except (LianError, NotImplementedError) as exc:
            message = getattr(exc, "message", None) or type(exc).__name__
            self.progress.info(f"could not remove the session's dev/ cache: {message}")
            return []
        return [d.reference for d in done]

    def _registry_cause(self, tail: str) -> RegistryError | None:
        """A build that failed because the registry went away is a registry error: ask
        the registry again, then look for the builder's own registry complaint."""
        from lian_build.oom import registry_line

        registry = self.plan.registry
        try:
            registry.check()
        except RegistryError as exc:
            # The registry's own error (and code), told as the cause of the failed build.
            exc.message = f"the build failed because the registry failed: {exc.message}"
            exc.args = (exc.message,)
            exc.details["log_tail"] = tail
            return exc
        except LianError as exc:
            log.debug("registry re-check after the failure: %s", exc.message)
        line = registry_line(tail, registry.host)
        if line is None:
            return None
        return RegistryError(
            f"the builder could not reach the registry {registry.host}: {line}",
            code="REGISTRY_UNREACHABLE",
            details={"host": registry.host, "log_tail": tail},
        )

    def _reap_expired(self) -> None:
        from lian_build.reap import reap_expired

        try:
            reap_expired(self.plan.compute, log=self.progress.info)
        except LianError as exc:
            log.warning("reaping expired runners failed: %s", exc.message)

    def _attempt(
        self,
        attempt: AttemptResult,
        auth: api.RegistryAuth | None,
        build_secrets: Mapping[str, str],
    ) -> None:
        from lian_build.remote.ssh import SSHRemote, generate_host_key

        plan = self.plan
        tier = attempt.tier
        started = time.monotonic()
        budget_s = plan.size.time_budget_min * 60
        if self.lifecycle.budget_s is not None:
            self.lifecycle.arm_budget(budget_s)  # a retry on a bigger tier gets a fresh budget
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=budget_s + EXPIRY_GRACE_S)
        request = api.SpawnRequest(
            session_id=plan.session_id,
            workspace=plan.intent.workspace,
            tier=tier,
            labels=runner_labels(plan, expires, tier.name),
            authorized_key=self.client_key.public_openssh,
            host_key=generate_host_key(),
            runner_image=plan.intent.runner.image,
            expires_at=expires,
            architecture=self.architecture,
        )
        runner: api.Runner | None = None
        remote: SSHRemote | None = None
        try:
            with self.progress.phase("provision", f"{plan.compute.name} runner, tier {tier.name}"):
                runner = plan.compute.spawn(request)
            attempt.runner_id, attempt.runner_image = runner.id, runner.image
            self.events.emit("runner", {"runner_id": runner.id, "tier": tier.name})
            with self.progress.phase("ssh", f"{runner.user}@{runner.host}:{runner.port}"):
                remote = SSHRemote.connect(
                    runner, self.client_key, wait_timeout_s=self.ssh_wait_s, log=self.progress.info
                )
            if runner.ready_command:
                with (
                    self.progress.phase("ready", " ".join(runner.ready_command)),
                    self.lifecycle.deferred(remote.request_cancel),
                ):
                    ready = remote.run(list(runner.ready_command), on_output=self.progress.line)
                if ready.exit_code != 0:
                    raise ProvisionError(
                        f"runner {runner.id} did not become ready: "
                        f"`{' '.join(runner.ready_command)}` exited {ready.exit_code}",
                        code="RUNNER_NOT_READY",
                        details={"log_tail": self.store.redact(ready.stderr[-2000:])},
                    )
            attempt.outcome, attempt.builder = self._build_on(remote, attempt, auth, build_secrets)
            if attempt.outcome.exit_code != 0:
                state = _safe_inspect(plan.compute, runner.id)
                kills = None
                if attempt.after.oom_kills is not None:
                    kills = attempt.after.oom_kills - (attempt.before.oom_kills or 0)
                attempt.verdict = oom.classify(
                    attempt.outcome.exit_code,
                    attempt.outcome.stderr_tail,
                    oom_kills=kills,
                    runner_state=state,
                )
        except RemoteError as exc:
            if runner is None or exc.code != "CONNECTION_LOST":
                raise
            # The daemon or the machine died mid-build: on a memory-limited runner that is
            # most often the OOM killer (buildkitd itself killed).
            state = _settled_state(plan.compute, runner.id)
            attempt.outcome = api.BuildOutcome(exit_code=-1, stderr_tail=exc.message)
            kills = self._oom_kills_after_loss(runner, attempt, state)
            attempt.verdict = oom.classify(
                None, exc.message, oom_kills=kills, runner_state=state, connection_lost=True
            )
        finally:
            attempt.duration_s = time.monotonic() - started
            # A signal may have landed inside the SSH library: do not reuse the connection.
            interrupted = isinstance(sys.exc_info()[1], Cancelled | TimeBudgetExceeded)
            with self.lifecycle.shielded():
                self._teardown(remote, runner, request, reuse_ssh=not interrupted)
                if runner is not None:
                    attempt.runner_s = time.monotonic() - started

    def _oom_kills_after_loss(
        self, runner: api.Runner, attempt: AttemptResult, state: api.RunnerState | None
    ) -> int | None:
        """The cgroup OOM counter read over a fresh connection, when the runner still
        runs and answers (sshd itself may be what the OOM killer took)."""
        from lian_build.remote.ssh import SSHRemote

        if state is None or not state.running or attempt.before.oom_kills is None:
            return None
        try:
            remote = SSHRemote.connect(
                runner, self.client_key, wait_timeout_s=LOST_PROBE_S, log=log.debug
            )
        except LianError as exc:
            log.debug("runner %s does not answer SSH again: %s", runner.id, exc.message)
            return None
        try:
            after = read_cgroup(remote)
        finally:
            remote.close()
        if after.oom_kills is None:
            return None
        return after.oom_kills - attempt.before.oom_kills

    def _build_on(
        self,
        remote: SSHRemote,
        attempt: AttemptResult,
        auth: api.RegistryAuth | None,
        build_secrets: Mapping[str, str],
    ) -> tuple[api.BuildOutcome, str]:
        from lian_build.builders import select_builder
        from lian_build.remote.sync import sync_context

        plan = self.plan
        paths = plan.paths
        # Signals wait for a safe point around SSH commands (Lifecycle.deferred); the
        # rsync child of the sync step is interrupted directly.
        with self.lifecycle.deferred(remote.request_cancel):
            remote.run(
                ["mkdir", "-p", "-m", "700", paths.work_dir, paths.context_dir, paths.secrets_dir]
            )
        with self.progress.phase("sync", str(plan.intent.context)):
            stats = sync_context(
                plan.intent.context,
                remote,
                paths.context_dir,
                log=self.progress.info,
                dockerfile=plan.intent.dockerfile,
            )
        attempt.sync = attrs.asdict(stats)
        guard = functools.partial(self.lifecycle.deferred, remote.request_cancel)
        with runner_credentials(remote, paths, auth, build_secrets, guard=guard) as docker_config:
            builder = select_builder(plan.intent.builder, plan.builders, remote)
            job = plan.job(docker_config_dir=docker_config)
            attempt.before = read_cgroup(remote)
            with self.progress.phase("build", f"{builder.name} on {attempt.tier.name}"):
                outcome = builder.build(job, remote, self.progress.line)
            attempt.after = read_cgroup(remote)
        return outcome, builder.name

    def _teardown(
        self,
        remote: SSHRemote | None,
        runner: api.Runner | None,
        request: api.SpawnRequest,
        *,
        reuse_ssh: bool = True,
    ) -> None:
        compute = self.plan.compute
        with self.progress.phase(
            "destroy", runner.id if runner else f"session {request.session_id}"
        ):
            if remote is not None:
                _bounded_cleanup(remote, self.plan.paths.work_dir if reuse_ssh else None)
            ids = [runner.id] if runner else []
            try:
                # Anything of this session the provider created but never returned to us.
                found = compute.list_runners({"lian.session": request.session_id})
                ids += [info.id for info in found if info.id not in ids]
            except Exception as exc:
                log.warning("listing runners of session %s failed: %s", request.session_id, exc)
            for runner_id in ids:
                try:
                    compute.destroy(runner_id)
                except Exception as exc:
                    log.error(
                        "could not destroy runner %s (%s); `lian reap` will retry by label",
                        runner_id,
                        exc,
                    )

    def _verify_push(self, outcome: api.BuildOutcome) -> str:
        primary = self.plan.intent.tags[0]
        with self.progress.phase("verify", primary):
            digest = self.plan.registry.manifest_digest(primary)
        if digest is None:
            raise RegistryError(
                f"the build reported success but {primary} is not in the registry",
                code="PUSH_NOT_FOUND",
            )
        if outcome.digest and outcome.digest != digest:
            raise RegistryError(
                f"{primary} points at {digest}, not at the pushed {outcome.digest} "
                "(another writer pushed the same tag?)",
                code="DIGEST_MISMATCH",
                details={"pushed": outcome.digest, "registry": digest},
            )
        return digest

    def _record(self, attempt: AttemptResult) -> None:
        outcome = attempt.outcome
        self.host.record_metrics(
            api.BuildMetrics(
                workspace=self.plan.intent.workspace,
                session_id=self.plan.session_id,
                provider=self.plan.compute.name,
                tier=attempt.tier.name,
                cpu=attempt.tier.cpu,
                memory_gb=int(attempt.tier.memory_gb) or 1,
                peak_memory_bytes=attempt.after.peak_bytes,
                cpu_seconds=_delta(attempt.before.cpu_seconds, attempt.after.cpu_seconds),
                duration_s=round(attempt.duration_s, 3),
                succeeded=outcome is not None and outcome.exit_code == 0,
                oom=bool(attempt.verdict and attempt.verdict.is_oom),
                finished_at=dt.datetime.now(dt.UTC),
            )
        )


def _bounded_cleanup(remote: SSHRemote, work_dir: str | None) -> None:
    """Remove lian's work dir on the runner and close SSH, in a thread with a deadline.

    A signal raised inside paramiko (Cancelled is raised wherever the main thread is)
    can leave one of its locks held, and the next command over that connection would
    wait forever; the runner must still be destroyed, so the cleanup gets a bounded
    wait and the machine is destroyed either way.
    """
    import threading

    def cleanup() -> None:
        try:
            if work_dir is not None:
                remote.run(["rm", "-rf", work_dir], timeout=REMOTE_CLEANUP_S)
        except Exception as exc:  # the machine is destroyed next anyway
            log.debug("remote cleanup failed: %s", exc)
        finally:
            remote.close()

    worker = threading.Thread(target=cleanup, name="lian-remote-cleanup", daemon=True)
    worker.start()
    worker.join(REMOTE_CLEANUP_S + 5)
    if worker.is_alive():
        log.warning("cleaning up the runner over SSH did not finish; destroying it anyway")


def _delta(before: float | None, after: float | None) -> float | None:
    if after is None:
        return None
    return round(after - (before or 0.0), 3)


def _safe_inspect(compute: api.ComputeProvider, runner_id: str) -> api.RunnerState | None:
    try:
        return compute.inspect(runner_id)
    except Exception as exc:
        log.debug("inspect %s failed: %s", runner_id, exc)
        return None


def _settled_state(compute: api.ComputeProvider, runner_id: str) -> api.RunnerState | None:
    """The runner's state after a lost connection; a machine being killed or removed
    still reads "running" for a moment, so ask again briefly before believing it."""
    state = _safe_inspect(compute, runner_id)
    for _ in range(SETTLE_TRIES):
        if state is None or not state.running or state.oom_killed:
            break
        time.sleep(SETTLE_WAIT_S)
        state = _safe_inspect(compute, runner_id)
    return state


def run_build(
    plan: Plan,
    host: PluginHost,
    store: SecretStore,
    progress: Progress,
    *,
    client_key: ClientKey,
    install_signals: bool = True,
    on_pipeline: Callable[[BuildPipeline], None] | None = None,
) -> model.BuildOutcome:
    """Run a planned build with signal handling and the time budget armed."""
    lifecycle = Lifecycle()
    pipeline = BuildPipeline(plan, host, store, progress, lifecycle, client_key=client_key)
    if on_pipeline:
        on_pipeline(pipeline)
    if install_signals:
        lifecycle.install(time_budget_s=plan.size.time_budget_min * 60)
    try:
        result = pipeline.run()
        lifecycle.finish()
        return result
    except LianError as exc:
        pipeline._note_pushed(exc)  # a signal while the event sinks were closing
        raise
    finally:
        lifecycle.uninstall()
