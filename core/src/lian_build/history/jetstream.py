"""The fleet history store: one NATS JetStream stream every CI machine appends to.

URL: ``nats://[token@]host:port`` or ``tls://host:port`` (TLS), with optional query
parameters: ``stream`` (default ``lian-history``), ``subject`` (prefix, default
``lian.history``), ``keep`` (builds kept per workspace, default 500), ``nkey_seed`` and
``token`` (secret references such as ``env:NAME`` or ``vault:...``), ``ca_file`` (a CA
bundle for ``tls://``).

Each workspace is one subject (``<subject>.<workspace, escaped>``) and the stream keeps
at most ``keep`` messages per subject, so reading a workspace's last builds reads at most
``keep`` messages, whatever the size of the fleet. Each record carries a
``Nats-Msg-Id``, so a spooled record sent twice is stored once.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

from lian_build.api import BuildMetrics
from lian_build.history import DEFAULT_WINDOW, HistoryP95, HistoryUnavailable, p95_of
from lian_build.history.records import metrics_from_json, metrics_to_json

log = logging.getLogger("lian.history")

DEFAULT_STREAM = "lian-history"
DEFAULT_SUBJECT = "lian.history"
DEFAULT_KEEP = 500
CONNECT_TIMEOUT_S = 2.0
REQUEST_TIMEOUT_S = 3.0


def subject_token(workspace: str) -> str:
    """An injective escape of ``workspace`` into one subject token (no ``.``, ``*``, ``>``)."""
    return urllib.parse.quote(workspace, safe="-_").replace(".", "%2E")


def _default_resolve(reference: str) -> str:
    from lian_build.secrets import SecretStore, parse_reference

    scheme, _ = parse_reference(reference)
    if scheme in ("env", "file"):
        from lian_build.builtin.secrets import EnvSecretResolver, FileSecretResolver

        return SecretStore({"env": EnvSecretResolver(), "file": FileSecretResolver()})(reference)
    from lian_build.plugins import PluginHost

    return SecretStore(PluginHost.load().secret_resolvers())(reference)


class JetStreamHistoryStore:
    name = "jetstream"

    def __init__(
        self,
        server: str,
        *,
        stream: str = DEFAULT_STREAM,
        subject: str = DEFAULT_SUBJECT,
        keep: int = DEFAULT_KEEP,
        nkey_seed: str | None = None,
        token: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        self._server = server
        parts = urllib.parse.urlsplit(server)
        self.location = f"{parts.scheme}://{parts.hostname}:{parts.port or 4222}"
        self.stream = stream
        self.subject = subject
        self.keep = keep
        self._nkey_seed = nkey_seed
        self._token = token
        self._ca_file = ca_file
        self._loop: Any = None
        self._thread: threading.Thread | None = None
        self._nc: Any = None
        self._js: Any = None
        self._broken: str | None = None

    @classmethod
    def from_url(
        cls, url: str, *, resolve: Callable[[str], str] | None = None
    ) -> JetStreamHistoryStore:
        """Parse a history URL; raise ValueError (never with a secret in it) when bad."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("nats", "tls") or not parts.hostname:
            raise ValueError("history URL must be nats://host:port or tls://host:port")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("history URL has an invalid port") from None
        query = dict(urllib.parse.parse_qsl(parts.query))
        unknown = sorted(
            set(query) - {"stream", "subject", "keep", "nkey_seed", "token", "ca_file"}
        )
        if unknown:
            raise ValueError(f"history URL has unknown parameters: {', '.join(unknown)}")
        resolve = resolve or _default_resolve
        secrets: dict[str, str | None] = {}
        for name in ("nkey_seed", "token"):
            ref = query.get(name)
            try:
                secrets[name] = resolve(ref) if ref else None
            except Exception as exc:  # a LianError or a resolver's own failure
                message = getattr(exc, "message", None) or type(exc).__name__
                raise ValueError(f"history URL {name}: {message}") from None
        try:
            keep = int(query.get("keep", DEFAULT_KEEP))
        except ValueError:
            raise ValueError("history URL keep= is not an integer") from None
        if keep < 1:
            raise ValueError("history URL keep= must be at least 1")
        netloc = parts.netloc.rsplit("@", 1)[-1]
        userinfo = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
        server = urllib.parse.urlunsplit((parts.scheme, netloc, "", "", ""))
        if port is None:
            server += ":4222"
        token = secrets["token"]
        user = password = None
        if userinfo and not token:
            if ":" in userinfo:
                user, password = (urllib.parse.unquote(p) for p in userinfo.split(":", 1))
            else:
                token = urllib.parse.unquote(userinfo)
        store = cls(
            server,
            stream=query.get("stream", DEFAULT_STREAM),
            subject=query.get("subject", DEFAULT_SUBJECT),
            keep=keep,
            nkey_seed=secrets["nkey_seed"],
            token=token,
            ca_file=query.get("ca_file"),
        )
        store._user, store._password = user, password
        return store

    _user: str | None = None
    _password: str | None = None

    # ------------------------------------------------------------------ the loop thread

    def _call(self, coro_fn: Callable[[], Any], timeout: float) -> Any:
        import asyncio

        if self._broken:
            raise HistoryUnavailable(self._broken)
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="lian-history", daemon=True
            )
            self._thread.start()
        future = asyncio.run_coroutine_threadsafe(coro_fn(), self._loop)
        try:
            return future.result(timeout)
        except HistoryUnavailable:
            raise
        except Exception as exc:
            future.cancel()
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if self._nc is None:  # could not even connect: do not try again this run
                self._broken = reason
            raise HistoryUnavailable(reason) from None

    async def _connect(self) -> Any:
        import nats
        from nats.js.errors import NotFoundError

        async def quiet(exc: Exception) -> None:
            log.debug("history NATS: %s", exc)

        options: dict[str, Any] = {
            "servers": [self._server],
            "error_cb": quiet,
            "connect_timeout": CONNECT_TIMEOUT_S,
            "allow_reconnect": False,
            "max_reconnect_attempts": 1,
            "reconnect_time_wait": 0.1,
        }
        if self._nkey_seed:
            options["nkeys_seed_str"] = self._nkey_seed
        if self._token:
            options["token"] = self._token
        if self._user is not None:
            options["user"] = self._user
            options["password"] = self._password
        if self._server.startswith("tls://"):
            import ssl

            options["tls"] = ssl.create_default_context(cafile=self._ca_file)
            options["tls_hostname"] = urllib.parse.urlsplit(self._server).hostname
        nc = await nats.connect(**options)
        js = nc.jetstream(timeout=REQUEST_TIMEOUT_S)
        try:
            await js.stream_info(self.stream)
        except NotFoundError:
            from nats.js.api import StorageType, StreamConfig

            await js.add_stream(
                StreamConfig(
                    name=self.stream,
                    subjects=[f"{self.subject}.>"],
                    max_msgs_per_subject=self.keep,
                    storage=StorageType.FILE,
                    duplicate_window=3600.0,
                )
            )
        self._nc, self._js = nc, js
        return js

    async def _jetstream(self) -> Any:
        if self._js is None:
            await self._connect()
        return self._js

    # ------------------------------------------------------------------ the interface

    def _subject(self, workspace: str) -> str:
        return f"{self.subject}.{subject_token(workspace)}"

    async def _read_from(
        self, js: Any, subject: str, start: int | None, count: int | None, at_least: int = 0
    ) -> list[bytes] | None:
        """Messages on ``subject`` from sequence ``start`` (None: the first) to the end.

        None, without reading, when fewer than ``at_least`` would come."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL if start is None else DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=30.0,
            mem_storage=True,
        )
        sub = await js.pull_subscribe(subject, stream=self.stream, config=config)
        got: list[bytes] = []
        try:
            if count is None:
                count = int((await sub.consumer_info()).num_pending)
                if count < at_least:
                    return None
            while len(got) < count:
                batch = await sub.fetch(min(count - len(got), 256), timeout=REQUEST_TIMEOUT_S)
                got.extend(m.data for m in batch)
        finally:
            try:
                await sub.unsubscribe()
                await js.delete_consumer(self.stream, sub._consumer)
            except Exception as exc:  # the inactivity threshold removes it anyway
                log.debug("history: consumer cleanup: %s", exc)
        return got

    def append(self, metrics: BuildMetrics) -> bool:
        payload = json.dumps(metrics_to_json(metrics), sort_keys=True).encode()
        msg_id = f"{metrics.workspace}/{metrics.session_id}/{metrics.finished_at.isoformat()}"

        async def publish() -> None:
            js = await self._jetstream()
            await js.publish(
                self._subject(metrics.workspace),
                payload,
                stream=self.stream,
                headers={"Nats-Msg-Id": msg_id},
            )

        self._call(publish, CONNECT_TIMEOUT_S + 2 * REQUEST_TIMEOUT_S)
        return True

    def recent(self, workspace: str, n: int = DEFAULT_WINDOW) -> list[BuildMetrics]:
        if n <= 0:
            return []
        subject = self._subject(workspace)

        async def read() -> list[bytes]:
            js = await self._jetstream()
            info = await js.stream_info(self.stream, subjects_filter=subject)
            count = int((info.state.subjects or {}).get(subject, 0))
            if count == 0:
                return []
            if count <= n:
                return await self._read_from(js, subject, None, count) or []
            # Read only the tail: start far enough back that about n of this workspace's
            # messages follow (its share of the stream says how far), and go back further
            # while fewer than n match. A stream shared by a fleet interleaves workspaces.
            first, last = info.state.first_seq, info.state.last_seq
            span = math.ceil(n * max(1, info.state.messages) / count * 1.5)
            while True:
                start = max(first, last - span + 1)
                at_least = n if start > first else 0
                got = await self._read_from(js, subject, start, None, at_least=at_least)
                if got is not None:
                    return got[-n:]
                span *= 4

        raw = self._call(read, CONNECT_TIMEOUT_S + 8 * REQUEST_TIMEOUT_S)
        found: list[BuildMetrics] = []
        for data in raw:
            try:
                found.append(metrics_from_json(json.loads(data)))
            except (ValueError, UnicodeDecodeError) as exc:
                log.warning("history: skipping a corrupt record on %s: %s", subject, exc)
        return [m for m in found if m.workspace == workspace]

    def p95(self, workspace: str, n: int = DEFAULT_WINDOW) -> HistoryP95:
        return p95_of(workspace, self.recent(workspace, n))

    def workspaces(self) -> list[str]:
        prefix = f"{self.subject}."

        async def subjects() -> list[str]:
            js = await self._jetstream()
            info = await js.stream_info(self.stream, subjects_filter=f"{prefix}>")
            return list((info.state.subjects or {}).keys())

        found = self._call(subjects, CONNECT_TIMEOUT_S + 2 * REQUEST_TIMEOUT_S)
        return sorted(urllib.parse.unquote(s[len(prefix) :]) for s in found)

    def close(self) -> None:
        if self._loop is None:
            return
        if self._nc is not None:
            try:
                self._broken = None
                nc = self._nc
                self._call(lambda: nc.drain(), REQUEST_TIMEOUT_S)
            except HistoryUnavailable as exc:
                log.debug("history: drain failed: %s", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        if not self._loop.is_running():
            self._loop.close()
        self._loop = None
        self._nc = self._js = None
