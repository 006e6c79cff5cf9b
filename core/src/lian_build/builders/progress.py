"""Builder output: parsers for BuildKit progress and metadata and buildah steps, and
the one helper that runs a command while streaming its lines to them.

The parsers are pure; the builders feed them the lines they stream.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from lian_build.validate import is_digest

if TYPE_CHECKING:
    from lian_build.api import CommandResult, Remote

TAIL_LINES = 50

# A Dockerfile instruction vertex: "[2/3] RUN ...", "[builder 1/4] FROM ...",
# "[linux/amd64 build 2/5] COPY ...". Internal vertexes ("[internal] load ...",
# "exporting to image", "importing cache manifest ...") are not steps.
_BUILDKIT_STEP_RE = re.compile(r"^\[(?:[^\]]+ )?\d+/\d+\] ")
_PLAIN_LINE_RE = re.compile(r"^#(\d+) (.*)$")
# buildah prints "STEP 2/3: RUN ..." (prefixed with "[linux/arm64] " per platform).
_BUILDAH_STEP_RE = re.compile(r"^(?:\[[^\]]+\] )?STEP \d+/\d+: ")
_BUILDAH_CACHE_RE = re.compile(r"^(?:\[[^\]]+\] )?--> Using cache ")
# buildah >= 1.29: "--> Cache pulled from remote REPO:KEY" names the repository that
# served a step.
_BUILDAH_PULLED_RE = re.compile(r"^(?:\[[^\]]+\] )?--> Cache pulled from remote (\S+)")


def parse_metadata(data: bytes) -> dict[str, Any]:
    """The object buildctl writes with ``--metadata-file``; ``{}`` when unreadable."""
    try:
        parsed = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def metadata_digest(metadata: dict[str, Any]) -> str | None:
    """``containerimage.digest`` (the pushed manifest or index), if well formed."""
    digest = metadata.get("containerimage.digest")
    if isinstance(digest, str) and is_digest(digest):
        return digest
    descriptor = metadata.get("containerimage.descriptor")
    if isinstance(descriptor, dict):
        fallback = descriptor.get("digest")
        if isinstance(fallback, str) and is_digest(fallback):
            return fallback
    return None


def parse_digest_file(data: bytes) -> str | None:
    """The content of a ``buildah push --digestfile`` file, if it holds a digest."""
    text = data.decode("utf-8", errors="replace").strip()
    return text if is_digest(text) else None


@attrs.define
class BuildKitStepCounter:
    """Counts Dockerfile steps and cache hits from ``plain`` or ``rawjson`` progress.

    Fed line by line so a long build log is never held in memory.
    """

    _plain_names: dict[str, str] = attrs.field(factory=dict)
    _plain_cached: set[str] = attrs.field(factory=set)
    _json_steps: set[str] = attrs.field(factory=set)
    _json_cached: set[str] = attrs.field(factory=set)

    def feed(self, line: str) -> None:
        line = line.rstrip("\r\n")
        if line.startswith("{"):
            self._feed_rawjson(line)
            return
        match = _PLAIN_LINE_RE.match(line)
        if match is None:
            return
        vertex, text = match.groups()
        # The first line printed for a vertex number carries its name.
        self._plain_names.setdefault(vertex, text)
        if text.strip() == "CACHED":
            self._plain_cached.add(vertex)

    def _feed_rawjson(self, line: str) -> None:
        try:
            status = json.loads(line)
        except json.JSONDecodeError:
            return
        if not isinstance(status, dict):
            return
        for vertex in status.get("vertexes") or ():
            if not isinstance(vertex, dict):
                continue
            digest, name = vertex.get("digest"), vertex.get("name")
            if not isinstance(digest, str) or not isinstance(name, str):
                continue
            if not _BUILDKIT_STEP_RE.match(name):
                continue
            self._json_steps.add(digest)
            if vertex.get("cached") is True:
                self._json_cached.add(digest)

    def result(self) -> tuple[int, int]:
        plain_steps = {v for v, name in self._plain_names.items() if _BUILDKIT_STEP_RE.match(name)}
        cached = len(plain_steps & self._plain_cached) + len(self._json_cached)
        return cached, len(plain_steps) + len(self._json_steps)


def count_cache_hits(lines: Iterable[str]) -> tuple[int, int]:
    """``(cached, total)`` Dockerfile steps in BuildKit ``plain`` or ``rawjson`` progress."""
    counter = BuildKitStepCounter()
    for line in lines:
        counter.feed(line)
    return counter.result()


@attrs.define
class BuildahStepCounter:
    """Counts ``STEP n/m:`` lines and ``--> Using cache`` hits in buildah output, and
    remembers which cache repositories served layers (``--> Cache pulled from remote``)."""

    steps: int = 0
    cached: int = 0
    pulled_from: list[str] = attrs.field(factory=list)

    def feed(self, line: str) -> None:
        if _BUILDAH_STEP_RE.match(line):
            self.steps += 1
        elif _BUILDAH_CACHE_RE.match(line):
            self.cached += 1
        elif (match := _BUILDAH_PULLED_RE.match(line)) is not None:
            # "host:port/repo:KEY[:KEY]": the repository ends at the first ':' after the
            # last '/' (the port's colon comes before it).
            token = match.group(1)
            colon = token.find(":", token.rfind("/"))
            repository = token if colon < 0 else token[:colon]
            if repository not in self.pulled_from:
                self.pulled_from.append(repository)

    def result(self) -> tuple[int, int]:
        return self.cached, self.steps


def count_buildah_cache_hits(lines: Iterable[str]) -> tuple[int, int]:
    """``(cached, total)`` steps in ``buildah build`` output."""
    counter = BuildahStepCounter()
    for line in lines:
        counter.feed(line)
    return counter.result()


@attrs.define
class RawJsonRenderer:
    """Turns BuildKit ``--progress=rawjson`` lines into ``plain``-style lines for humans.

    The counter reads the JSON itself (its per-vertex ``cached`` flag is reliable where
    plain output often omits ``CACHED``); people still get readable progress. Lines
    that are not a SolveStatus (buildctl's final ``error: ...``) pass through.
    """

    _numbers: dict[str, int] = attrs.field(factory=dict)
    _announced: set[str] = attrs.field(factory=set)
    _finished: set[str] = attrs.field(factory=set)
    _imports: list[str] = attrs.field(factory=list)

    def render(self, line: str) -> list[str]:
        line = line.rstrip("\r\n")
        if not line.startswith("{"):
            return [line]
        try:
            status = json.loads(line)
        except json.JSONDecodeError:
            return [line]
        if not isinstance(status, dict):
            return [line]
        out: list[str] = []
        for vertex in status.get("vertexes") or ():
            if isinstance(vertex, dict):
                out += self._vertex(vertex)
        for entry in status.get("logs") or ():
            if isinstance(entry, dict):
                out += self._log(entry)
        return out

    @property
    def cache_imports(self) -> list[str]:
        """Refs named by ``importing cache manifest from REF`` vertexes, in order."""
        return list(self._imports)

    def _number(self, digest: str) -> int:
        return self._numbers.setdefault(digest, len(self._numbers) + 1)

    def _vertex(self, vertex: dict[str, Any]) -> list[str]:
        digest, name = vertex.get("digest"), vertex.get("name")
        if not isinstance(digest, str) or not isinstance(name, str):
            return []
        if not (vertex.get("started") or vertex.get("cached") or vertex.get("error")):
            return []  # queued, not running yet: plain progress does not show it either
        number = self._number(digest)
        out = []
        if digest not in self._announced:
            self._announced.add(digest)
            out.append(f"#{number} {name}")
            prefix = "importing cache manifest from "
            if name.startswith(prefix) and name[len(prefix) :] not in self._imports:
                self._imports.append(name[len(prefix) :])
        if digest in self._finished:
            return out
        error = vertex.get("error")
        if isinstance(error, str) and error:
            self._finished.add(digest)
            out.append(f"#{number} ERROR: {error}")
        elif vertex.get("cached") is True:
            self._finished.add(digest)
            out.append(f"#{number} CACHED")
        elif vertex.get("completed"):
            self._finished.add(digest)
            seconds = _elapsed(vertex.get("started"), vertex.get("completed"))
            out.append(f"#{number} DONE" + (f" {seconds:.1f}s" if seconds is not None else ""))
        return out

    def _log(self, entry: dict[str, Any]) -> list[str]:
        digest, data = entry.get("vertex"), entry.get("data")
        if not isinstance(digest, str) or not isinstance(data, str):
            return []
        try:
            text = base64.b64decode(data).decode("utf-8", errors="replace")
        except (binascii.Error, ValueError):
            return []
        number = self._number(digest)
        return [f"#{number} {part}" for part in text.splitlines() if part.strip()]


def _elapsed(started: object, completed: object) -> float | None:
    """Seconds between two RFC 3339 timestamps with nanoseconds, or None."""
    import datetime as dt

    def parse(value: object) -> dt.datetime | None:
        if not isinstance(value, str):
            return None
        match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?", value)
        if match is None:
            return None
        fraction = (match.group(2) or "0")[:6].ljust(6, "0")
        return dt.datetime.fromisoformat(f"{match.group(1)}.{fraction}+00:00")

    start, end = parse(started), parse(completed)
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


class OutputTail:
    """The last lines of a command's output, for OOM classification and messages."""

    def __init__(self, size: int = TAIL_LINES) -> None:
        self._lines: deque[str] = deque(maxlen=size)

    def add(self, line: str) -> None:
        self._lines.append(line.rstrip("\r\n"))

    def add_text(self, text: str) -> None:
        for line in text.splitlines():
            self.add(line)

    def __len__(self) -> int:
        return len(self._lines)

    def text(self) -> str:
        return "\n".join(self._lines)


def run_streaming(
    remote: Remote,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None,
    sinks: Sequence[Callable[[str], None]],
) -> CommandResult:
    """Run argv on the runner, handing every output line to each sink in order.

    A remote that does not stream still returns the output: it is replayed so the
    sinks see it either way.
    """
    streamed = False

    def on_output(line: str) -> None:
        nonlocal streamed
        streamed = True
        line = line.rstrip("\r\n")
        for sink in sinks:
            sink(line)

    result = remote.run(argv, env=env, on_output=on_output)
    if not streamed:
        for text in (result.stdout, result.stderr):
            for line in text.splitlines():
                for sink in sinks:
                    sink(line)
    return result
