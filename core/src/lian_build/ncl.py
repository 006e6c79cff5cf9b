"""Nickel evaluation, bounded in time and memory.

py-nickel cannot be interrupted once it runs, and a ``.build-spec.ncl`` comes from the
repository being built: a loop or a memory explosion in it must not hang or kill lian.
So every evaluation runs in a child process (``lian_build._ncl_child``) with an
address-space limit, and the parent kills it at the wall-clock timeout.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from lian_build import model
from lian_build.errors import ContractViolation, InvalidInput

log = logging.getLogger("lian.ncl")

# Which schema module defines each contract name ``evaluate(contract=...)`` accepts.
CONTRACT_MODULES: dict[str, str] = {
    "BuildDirectives": "build_directives.ncl",
    "BuildArtifact": "build_directives.ncl",
    "ComputeProviderRef": "build_directives.ncl",
    "RegistryProviderRef": "build_directives.ncl",
    "RunnerOverride": "build_directives.ncl",
    "NatsEventConfig": "build_directives.ncl",
    "BuildSecretRef": "build_directives.ncl",
    "BuildSpec": "build_spec.ncl",
    "CachePolicy": "cache_policy.ncl",
    "SessionActor": "cache_policy.ncl",
    "BuildResult": "build_result.ncl",
    "BuildOutcome": "build_result.ncl",
    "VaultCredRef": "vault_refs.ncl",
    "VaultKeyRef": "vault_refs.ncl",
}

# How a summary line names the file, by contract.
_FILE_KINDS = {"BuildDirectives": "directives file", "BuildSpec": "build spec"}

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# "┌─ /path/file.ncl:12:5" lines in a Nickel report.
_LOCATION = re.compile(r"┌─ (?P<file>.+?):(?P<line>\d+):(?P<column>\d+)\s*$", re.MULTILINE)
# "contract broken by the value of `cpu`", "missing definition for `compute`",
# "extra field `bogus`".
_BLAMED_FIELD = re.compile(r"(?:value of|definition for|extra field) `(?P<field>[^`]+)`")
_MEMORY_FAILURE = re.compile(r"memory allocation of \d+ bytes failed|out of memory", re.I)


def schemas_dir() -> Path:
    """The NCL contracts shipped in the package (a symlink in a source checkout)."""
    return Path(str(importlib.resources.files("lian_build") / "schemas")).resolve()


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _nickel_string(text: str) -> str:
    """A Nickel string literal: JSON escapes, and ``%{`` must not start interpolation."""
    if "%{" in text:
        raise InvalidInput(f"path {text!r} contains '%{{', which Nickel cannot import")
    return json.dumps(text, ensure_ascii=False)


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _contract_expr(contract: str) -> str:
    module = CONTRACT_MODULES.get(contract)
    if module is None:
        raise ValueError(f"unknown contract {contract!r}; known: {sorted(CONTRACT_MODULES)}")
    return f"(import {_nickel_string(module)}).{contract}"


def _program(source: str | None, file: Path | None, contract: str | None) -> str:
    if file is not None:
        body = f"import {_nickel_string(str(file))}"
    elif source is not None:
        body = source
    else:
        raise ValueError("evaluate() needs source or file")
    if contract is None:
        return body
    # The contract goes on the outside so blame points at the user's file:line; the
    # newline keeps a trailing comment in ``source`` from swallowing the parenthesis.
    return f"({body}\n) | {_contract_expr(contract)}"


def _read_check(file: Path) -> Path:
    path = file.expanduser().resolve()
    if not path.is_file():
        raise InvalidInput(f"NCL file {_display(path)} does not exist", details={"path": str(path)})
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise InvalidInput(
            f"NCL file {_display(path)} cannot be read: {exc.strerror}", details={"path": str(path)}
        ) from None
    return path


def evaluate(
    source: str | None = None,
    *,
    file: Path | None = None,
    contract: str | None = None,
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
) -> Any:
    """Evaluate Nickel and return the exported value (JSON data).

    ``contract`` names a schema contract (``"BuildDirectives"``) applied to the value.
    Import paths: the schemas dir, then the file's folder. Raises ContractViolation
    (codes CONTRACT_VIOLATION, NCL_TIMEOUT, NCL_MEMORY) or InvalidInput (unreadable file).
    """
    path = _read_check(file) if file is not None else None
    import_paths = [str(schemas_dir())]
    if path is not None:
        import_paths.append(str(path.parent))
    request = {
        "source": _program(source, path, contract),
        "import_paths": import_paths,
        "memory_mb": memory_mb,
    }
    what = (
        f"{_FILE_KINDS.get(contract or '', 'NCL file')} {_display(path)}" if path else "NCL source"
    )
    reply = _run_child(request, timeout_s=timeout_s, memory_mb=memory_mb, what=what)
    if reply.get("ok"):
        return json.loads(reply["json"])
    if reply.get("kind") == "memory":
        raise _memory_error(what, memory_mb)
    raise _violation(what, strip_ansi(str(reply.get("report", ""))), path)


def _run_child(
    request: dict[str, Any], *, timeout_s: float, memory_mb: int, what: str
) -> dict[str, Any]:
    env = {**os.environ, "RUST_BACKTRACE": "0"}
    try:
        proc = subprocess.run(
            [sys.executable, "-P", "-m", "lian_build._ncl_child"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        # subprocess.run has already killed and reaped the child.
        raise ContractViolation(
            f"{what} did not finish evaluating within {timeout_s:g}s "
            "(an endless recursion or a very large computation?)",
            code="NCL_TIMEOUT",
            details={"timeout_s": timeout_s},
        ) from None
    if proc.returncode == 0:
        reply: dict[str, Any] = json.loads(proc.stdout)
        return reply
    stderr_tail = proc.stderr[-2000:]
    aborted = proc.returncode in (-signal.SIGABRT, -signal.SIGKILL, -signal.SIGSEGV)
    if aborted and _MEMORY_FAILURE.search(stderr_tail):
        raise _memory_error(what, memory_mb)
    log.debug("nickel child failed (exit %s): %s", proc.returncode, stderr_tail)
    raise ContractViolation(
        f"{what} could not be evaluated: the evaluator exited with status {proc.returncode}",
        details={"stderr": strip_ansi(stderr_tail)},
    )


def _memory_error(what: str, memory_mb: int) -> ContractViolation:
    return ContractViolation(
        f"{what} needs more than {memory_mb} MB to evaluate (a runaway computation?)",
        code="NCL_MEMORY",
        details={"memory_mb": memory_mb},
    )


def _violation(what: str, report: str, path: Path | None) -> ContractViolation:
    lines = [line.strip() for line in report.strip().splitlines()]
    headline = lines[0].removeprefix("error: ") if lines else "evaluation failed"
    # Nickel puts a custom contract's message on the line after the headline.
    if len(lines) > 1 and lines[1] and not lines[1].startswith(("┌", "│", "=")):
        headline = f"{headline}: {lines[1]}"
    locations = [m.groupdict() for m in _LOCATION.finditer(report)]
    if path is not None:
        in_user_file = [loc for loc in locations if loc["file"] == str(path)]
        locations = in_user_file or locations
    # Skip the generated "<unknown>" spans: they point nowhere a user can open.
    locations = [loc for loc in locations if not loc["file"].startswith("<")]
    location = locations[0] if locations else None
    breaks = headline.startswith(("contract broken", "missing definition", "extra field"))
    verb = "breaks a contract" if breaks else "failed to evaluate"
    summary = f"{what} {verb}: {headline}"
    details: dict[str, Any] = {}
    if location is not None:
        where = f"{_display(Path(location['file']))}:{location['line']}:{location['column']}"
        summary += f" (at {where})"
        details.update(
            file=location["file"], line=int(location["line"]), column=int(location["column"])
        )
    blamed = _BLAMED_FIELD.search(headline)
    field = blamed.group("field") if blamed else None
    return ContractViolation(f"{summary}\n{report}", field=field, details=details)


def evaluate_directives(
    path: Path, *, timeout_s: float = 10.0, memory_mb: int = 1024
) -> dict[str, Any]:
    """A directives file's exported JSON, contract-checked; ``context`` made absolute."""
    data = evaluate(file=path, contract="BuildDirectives", timeout_s=timeout_s, memory_mb=memory_mb)
    if not isinstance(data, dict):
        raise InvalidInput(f"directives file {_display(path)} is not a record", field="directives")
    folder = path.expanduser().resolve().parent
    data["context"] = str((folder / data.get("context", ".")).resolve())
    return data


def load_directives(
    path: Path, *, timeout_s: float = 10.0, memory_mb: int = 1024
) -> model.BuildDirectives:
    """Evaluate a directives file against BuildDirectives; ``context`` becomes absolute."""
    data = evaluate_directives(path, timeout_s=timeout_s, memory_mb=memory_mb)
    return model.structure(data, model.BuildDirectives, what=f"directives file {_display(path)}")


def load_build_spec(
    path: Path, *, timeout_s: float = 10.0, memory_mb: int = 1024
) -> model.BuildSpec:
    """Evaluate a ``.build-spec.ncl`` against BuildSpec."""
    data = evaluate(file=path, contract="BuildSpec", timeout_s=timeout_s, memory_mb=memory_mb)
    return model.structure(data, model.BuildSpec, what=f"build spec {_display(path)}")
