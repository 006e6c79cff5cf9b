"""Input rules for values that reach a registry, a builder or the runner's file system.

Each check raises ``InvalidInput`` naming the field and the rule it broke. Image
references follow the OCI distribution grammar (distribution's ``reference/regexp.go``)
and must be fully qualified: the first component names a registry host.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import attrs

from lian_build.errors import InvalidInput

# ----------------------------------------------------------------- the reference grammar
# Kept as named fragments so each one can be compared with distribution's regexp.go.

_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_DOMAIN_RE = re.compile(_DOMAIN)
_REMOTE_NAME_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_TAG_RE = re.compile(_TAG, re.ASCII)  # Go's \w is ASCII-only
_DIGEST_RE = re.compile(_DIGEST)
_PATH_COMPONENT_RE = re.compile(_PATH_COMPONENT)
_PLATFORM_PART_RE = re.compile(r"[a-z0-9_]+")
_BUILD_ARG_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

NAME_TOTAL_LENGTH_MAX = 255  # distribution's NameTotalLengthMax
PATH_COMPONENT_MAX = 128
# go-digest's registered algorithms and their exact (lowercase) hex lengths.
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


@attrs.frozen
class ImageRef:
    """A parsed, fully-qualified image reference."""

    registry: str  # host[:port], e.g. "ghcr.io", "127.0.0.1:5000", "[::1]:5000"
    repository: str  # path below the registry, e.g. "org/app"
    tag: str | None = None
    digest: str | None = None  # "sha256:<hex>"

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out


def _is_registry_host(component: str) -> bool:
    # distribution's splitDomain: a first component with '.' or ':' (or localhost) is a host.
    return "." in component or ":" in component or component == "localhost"


def image_reference(value: str, field: str = "image") -> ImageRef:
    """Parse ``registry/path[:tag][@digest]``; the registry host is required."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{field} must be a non-empty image reference", field=field)
    example = "e.g. ghcr.io/org/app:1.0 or 127.0.0.1:5000/app@sha256:<hex>"

    rest, _, digest = value.partition("@")
    digest_or_none = digest or None
    if "@" in value and not digest:
        raise InvalidInput(f"{field} {value!r}: '@' must be followed by a digest", field=field)
    if digest_or_none is not None:
        _check_digest(digest_or_none, field, value)

    # A tag is the text after the last ':' when no '/' follows it (a ':' before a '/'
    # is a port).
    name, tag_or_none = rest, None
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        name, tag_or_none = rest[:colon], rest[colon + 1 :]
        if not _TAG_RE.fullmatch(tag_or_none):
            raise InvalidInput(
                f"{field} {value!r}: tag {tag_or_none!r} must match [A-Za-z0-9_][A-Za-z0-9_.-]"
                "{0,127}",
                field=field,
            )

    first, slash, remote = name.partition("/")
    if not slash or not _is_registry_host(first):
        raise InvalidInput(
            f"{field} {value!r} is not fully qualified: it must start with a registry host "
            f"(a name with '.', a host:port or localhost), {example}",
            field=field,
        )
    if not _DOMAIN_RE.fullmatch(first):
        raise InvalidInput(
            f"{field} {value!r}: {first!r} is not a valid registry host[:port]", field=field
        )
    if remote.lower() != remote:
        raise InvalidInput(f"{field} {value!r}: the repository path must be lowercase", field=field)
    if not _REMOTE_NAME_RE.fullmatch(remote):
        raise InvalidInput(
            f"{field} {value!r}: repository {remote!r} must be '/'-separated path components of "
            "lowercase letters and digits joined by '.', '_', '__' or '-'",
            field=field,
        )
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidInput(
            f"{field}: the name (registry and repository) is longer than "
            f"{NAME_TOTAL_LENGTH_MAX} characters",
            field=field,
        )
    return ImageRef(registry=first, repository=remote, tag=tag_or_none, digest=digest_or_none)


def is_digest(value: str) -> bool:
    """Whether ``value`` is a digest (``sha256:<64 hex>``): the one digest rule."""
    try:
        _check_digest(value, "digest", value)
    except InvalidInput:
        return False
    return True


def _check_digest(digest: str, field: str, value: str) -> None:
    if not _DIGEST_RE.fullmatch(digest):
        raise InvalidInput(
            f"{field} {value!r}: digest must be algorithm:hex with at least 32 hex digits",
            field=field,
        )
    algorithm, _, hex_part = digest.partition(":")
    expected = _DIGEST_HEX_LENGTHS.get(algorithm)
    if expected is not None and not re.fullmatch(rf"[a-f0-9]{{{expected}}}", hex_part):
        raise InvalidInput(
            f"{field} {value!r}: a {algorithm} digest is {expected} lowercase hex digits",
            field=field,
        )


def path_component(value: str, field: str) -> str:
    """One registry path component (workspace names, actor ids): they end up in refs."""
    if not isinstance(value, str) or not _PATH_COMPONENT_RE.fullmatch(value):
        raise InvalidInput(
            f"{field} must be a registry path component: lowercase letters and digits, "
            f"separated by '.', '_', '__' or '-' (got {value!r})",
            field=field,
        )
    if len(value) > PATH_COMPONENT_MAX:
        raise InvalidInput(f"{field} must be at most {PATH_COMPONENT_MAX} characters", field=field)
    return value


def tag(value: str, field: str = "tag") -> str:
    if not isinstance(value, str) or not _TAG_RE.fullmatch(value):
        raise InvalidInput(
            f"{field} {value!r}: a tag is 1 to 128 characters from letters, digits, '_', '.' "
            "and '-', not starting with '.' or '-'",
            field=field,
        )
    return value


# ----------------------------------------------------------------- platforms


def platform(value: str, field: str = "platforms") -> str:
    """``os/arch[/variant]``, each part lowercase ``[a-z0-9_]+`` (names are not checked)."""
    parts = value.split("/") if isinstance(value, str) else []
    if len(parts) not in (2, 3) or not all(_PLATFORM_PART_RE.fullmatch(p) for p in parts):
        raise InvalidInput(
            f"{field}: {value!r} is not a platform: os/arch[/variant] in lowercase, "
            "e.g. linux/amd64 or linux/arm64/v8",
            field=field,
        )
    return value


def platforms(value: str | Iterable[str], field: str = "platforms") -> tuple[str, ...]:
    """A comma-separated string or a list of platforms; duplicates dropped, order kept."""
    items = value.split(",") if isinstance(value, str) else list(value)
    seen: dict[str, None] = {}
    for item in items:
        stripped = item.strip() if isinstance(item, str) else item
        if stripped == "":
            continue  # tolerate "a,b," and "" (no platform: the builder's default)
        seen[platform(stripped, field)] = None
    return tuple(seen)


# ----------------------------------------------------------------- local paths


def context_dir(path: str | os.PathLike[str], field: str = "context") -> Path:
    """An existing, readable directory; returned resolved (absolute, no symlinks)."""
    candidate = Path(path)
    if not candidate.exists():
        raise InvalidInput(f"{field}: {str(candidate)!r} does not exist", field=field)
    if not candidate.is_dir():
        raise InvalidInput(f"{field}: {str(candidate)!r} is not a directory", field=field)
    if not os.access(candidate, os.R_OK | os.X_OK):
        raise InvalidInput(f"{field}: {str(candidate)!r} is not readable", field=field)
    return candidate.resolve()


def dockerfile_in_context(context: Path, dockerfile: str, field: str = "dockerfile") -> Path:
    """The Dockerfile's path relative to the (resolved) context.

    It must be relative and stay inside the context after resolving ``..`` and
    symlinks: only the context is copied to the runner.
    """
    if not isinstance(dockerfile, str) or not dockerfile.strip():
        raise InvalidInput(f"{field} must be a non-empty relative path", field=field)
    if os.path.isabs(dockerfile):
        raise InvalidInput(
            f"{field} {dockerfile!r} must be relative to the build context", field=field
        )
    root = context.resolve()
    resolved = (root / dockerfile).resolve()
    if not resolved.is_relative_to(root):
        raise InvalidInput(
            f"{field} {dockerfile!r} resolves outside the build context (.. or a symlink)",
            field=field,
        )
    if not resolved.is_file():
        raise InvalidInput(
            f"{field} {dockerfile!r} does not exist in the build context", field=field
        )
    return resolved.relative_to(root)


# ----------------------------------------------------------------- build args


def build_arg(key: str, value: str, field: str = "build_args") -> tuple[str, str]:
    """A ``--build-arg`` pair. The value may hold anything but NUL (argv cannot)."""
    if not isinstance(key, str) or not _BUILD_ARG_KEY_RE.fullmatch(key):
        raise InvalidInput(f"{field}: key {key!r} must match [A-Za-z_][A-Za-z0-9_]*", field=field)
    if not isinstance(value, str) or "\x00" in value:
        raise InvalidInput(
            f"{field}: the value of {key} must be a string without NUL characters",
            field=field,
        )
    return key, value


# The same rules as schemas/rules.ncl SecretRef and Name, for flag input.
_SECRET_REF_RE = re.compile(r"[a-z][a-z0-9+.-]*:.+", re.DOTALL)
_PLUGIN_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")


def secret_ref(value: str, field: str = "secrets") -> str:
    """``scheme:rest`` (env:NAME, file:/path, vault:...): a reference, never a value."""
    if not _SECRET_REF_RE.fullmatch(value):
        raise InvalidInput(
            f"{field} must be a secret reference scheme:rest, e.g. env:NPM_TOKEN, "
            f"file:/run/secrets/x or vault:ci/npm",
            field=field,
        )
    return value


def plugin_name(value: str, field: str) -> str:
    if not _PLUGIN_NAME_RE.fullmatch(value):
        raise InvalidInput(
            f"{field} must be a plugin name: lowercase letters, digits, '_' and '-' "
            f"(got {value!r})",
            field=field,
        )
    return value


def known_languages() -> tuple[str, ...]:
    from lian_build.sizing import LANGUAGE_DEFAULTS

    # The sizing table's languages, plus common ones that get the default size.
    return tuple(sorted({*LANGUAGE_DEFAULTS, *GENERIC_LANGUAGES}))


GENERIC_LANGUAGES = ("c", "cpp", "dotnet", "node", "php", "python", "ruby", "other")


def language(value: str, field: str = "language") -> str:
    """A language the sizing defaults know (case-insensitive)."""
    known = known_languages()
    if value.strip().lower() not in known:
        raise InvalidInput(
            f"unknown {field} {value!r}; known: {', '.join(known)}",
            field=field,
            details={"known": list(known)},
        )
    return value
