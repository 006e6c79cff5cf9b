"""Builder output: parsers for BuildKit progress and metadata and buildah steps, and
the one helper that runs a command while streaming its lines to them.

The parsers are pure; the builders feed them the lines they stream.
"""

from __future__ import annotations

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
    """Counts ``STEP n/m:`` lines and ``--> Using cache`` hits in buildah output."""

    steps: int = 0
    cached: int = 0

    def feed(self, line: str) -> None:
        if _BUILDAH_STEP_RE.match(line):
            self.steps += 1
        elif _BUILDAH_CACHE_RE.match(line):
            self.cached += 1

    def result(self) -> tuple[int, int]:
        return self.cached, self.steps


def count_buildah_cache_hits(lines: Iterable[str]) -> tuple[int, int]:
    """``(cached, total)`` steps in ``buildah build`` output."""
    counter = BuildahStepCounter()
    for line in lines:
        counter.feed(line)
    return counter.result()


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
