""".dockerignore with Docker's own semantics.

Docker's rules differ from .gitignore (and from ``pathspec``): each pattern is a Go
``filepath.Match`` pattern plus ``**``, relative to the context root (a leading ``/`` is
dropped), a path is excluded when it or one of its parent directories matches, ``!``
re-includes, and the last matching pattern wins.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs

from lian_build.errors import InvalidInput

IGNORE_FILE = ".dockerignore"
_FIELD = "dockerignore"
_REGEX_SPECIALS = frozenset(".+()|{}$^")


@attrs.frozen
class Pattern:
    text: str  # cleaned, without the leading "!"
    exception: bool
    regex: re.Pattern[str] = attrs.field(repr=False)
    parts: tuple[str, ...] = attrs.field(repr=False)

    def matches(self, path: str) -> bool:
        return self.regex.fullmatch(path) is not None


def _clean(path: str) -> str:
    cleaned = posixpath.normpath(path.replace(os.sep, "/")) if path else "."
    return cleaned.lstrip("/") or "."


@functools.lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    """Translate one pattern the way moby's patternmatcher does."""
    out = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        ch = pattern[i]
        if in_class:
            if ch == "]":
                in_class = False
                out.append("]")
            elif ch == "\\" and i + 1 < n:
                i += 1
                out.append(re.escape(pattern[i]))
            elif ch == "[":
                out.append(r"\[")
            else:
                out.append(ch)
        elif ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 1
                if i + 1 < n and pattern[i + 1] == "/":
                    i += 1  # "**/" behaves as "**"
                # "**" at the end takes everything; elsewhere any number of directories.
                out.append(".*" if i + 1 >= n else "(?:.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            i += 1
            out.append(re.escape(pattern[i]) if i < n else r"\\")
        elif ch == "[":
            in_class = True
            out.append("[")
            if i + 1 < n and pattern[i + 1] == "^":
                i += 1
                out.append("^")
        elif ch in _REGEX_SPECIALS:
            out.append("\\" + ch)
        else:
            out.append(ch)
        i += 1
    if in_class:
        raise InvalidInput(f"bad .dockerignore pattern {pattern!r}: unclosed '['", field=_FIELD)
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error as exc:
        raise InvalidInput(f"bad .dockerignore pattern {pattern!r}: {exc}", field=_FIELD) from None


def parse(lines: Sequence[str]) -> list[Pattern]:
    """Patterns from .dockerignore lines (comments and blank lines skipped)."""
    patterns = []
    for number, raw in enumerate(lines, start=1):
        line = raw.removeprefix("\ufeff") if number == 1 else raw
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        exception = line.startswith("!")
        if exception:
            line = line[1:].strip()
            if not line:
                raise InvalidInput(
                    f".dockerignore line {number}: '!' must be followed by a pattern",
                    field=_FIELD,
                )
        text = _clean(line)
        parts = tuple(text.split("/"))
        patterns.append(Pattern(text, exception, regex=_compile(text), parts=parts))
    return patterns


@attrs.frozen
class Matcher:
    patterns: tuple[Pattern, ...]

    def excluded(self, relpath: str) -> bool:
        """Whether ``relpath`` (relative to the context root) stays out of the context."""
        path = _clean(relpath)
        if path == ".":
            return False
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        excluded = False
        for pattern in self.patterns:
            # Only a pattern that could flip the current answer needs evaluating.
            if pattern.exception != excluded:
                continue
            if any(pattern.matches(prefix) for prefix in prefixes):
                excluded = not pattern.exception
        return excluded

    def may_include_below(self, reldir: str) -> bool:
        """Whether an exception pattern could re-include something under ``reldir``."""
        dir_parts = _clean(reldir).split("/")
        return any(_could_match_below(p.parts, dir_parts) for p in self.patterns if p.exception)


def _could_match_below(pattern_parts: tuple[str, ...], dir_parts: list[str]) -> bool:
    # Without "**" a pattern matches paths with exactly as many components as it has,
    # so it can reach below the directory only if it is longer and its leading
    # components match the directory's.
    for i, part in enumerate(pattern_parts):
        if "**" in part:
            return True
        if i >= len(dir_parts):
            return True
        if not _compile(part).fullmatch(dir_parts[i]):
            return False
    return False


def load(context: Path, dockerfile: str = "Dockerfile") -> Matcher:
    """The context's ignore rules; the Dockerfile and the ignore file are always kept.

    ``<dockerfile>.dockerignore`` next to the Dockerfile wins over the context's
    ``.dockerignore``, as in BuildKit.
    """
    candidates = [context / f"{dockerfile}.dockerignore", context / IGNORE_FILE]
    lines: list[str] = []
    for candidate in candidates:
        if candidate.is_file():
            try:
                text = candidate.read_text(encoding="utf-8", errors="surrogateescape")
            except OSError as exc:
                raise InvalidInput(
                    f"context: {candidate.name} cannot be read ({exc.strerror})",
                    field="context",
                    details={"unreadable": [candidate.name]},
                ) from None
            lines = text.splitlines()
            break
    patterns = parse(lines)
    keep = parse(["!" + IGNORE_FILE, "!" + dockerfile])
    matcher = Matcher(tuple(patterns))
    # Docker's CLI appends these exceptions only when needed; appending them always would
    # make every directory look like it might hold a re-included file.
    extra = [p for p in keep if matcher.excluded(p.text)]
    return Matcher((*patterns, *extra))


@attrs.frozen
class Scan:
    """What to send: ``included`` (parents before children) and ``pruned`` (excluded
    entries whose parent is sent; nothing at or below them is sent)."""

    included: tuple[str, ...]
    pruned: tuple[str, ...]


def scan(context: Path, matcher: Matcher | None = None) -> Scan:
    """Walk ``context`` once, applying ``matcher`` (default: ``load(context)``)."""
    matcher = matcher or load(context)
    included: list[str] = []
    pruned: list[str] = []
    _scan_dir(context, "", matcher, included, pruned)
    return Scan(tuple(included), tuple(pruned))


def _scan_dir(
    root: Path, reldir: str, matcher: Matcher, included: list[str], pruned: list[str]
) -> None:
    try:
        with os.scandir(root / reldir if reldir else root) as entries:
            names = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in entries)
    except OSError as exc:
        # An unreadable directory that is sent would fail the sync later; say which.
        shown = f"{reldir}/" if reldir else "the context directory"
        raise InvalidInput(
            f"context: {shown} cannot be read ({exc.strerror}); fix its permissions "
            "or exclude it in .dockerignore",
            field="context",
            details={"unreadable": [f"{reldir}/" if reldir else "."]},
        ) from None
    for name, is_dir in names:
        rel = f"{reldir}/{name}" if reldir else name
        excluded = matcher.excluded(rel)
        if not is_dir:
            (pruned if excluded else included).append(rel)
            continue
        if excluded and not matcher.may_include_below(rel):
            pruned.append(rel)
            continue
        below_included: list[str] = []
        below_pruned: list[str] = []
        _scan_dir(root, rel, matcher, below_included, below_pruned)
        if excluded and not below_included:
            pruned.append(rel)
            continue
        # An excluded directory holding a re-included file is still created.
        included.append(rel)
        included.extend(below_included)
        pruned.extend(below_pruned)


def walk_included(context: Path, dockerfile: str = "Dockerfile") -> Iterator[str]:
    """Relative POSIX paths of the files, symlinks and directories to send."""
    yield from scan(context, load(context, dockerfile)).included
