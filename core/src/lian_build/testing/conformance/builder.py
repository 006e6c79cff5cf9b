"""The conformance suite every Builder should pass (no runner needed)."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from lian_build import api
from lian_build.testing.conformance._support import no_network

# Every shell metacharacter, whitespace and both quotes: an argv element holding it
# must reach the runner as one word, quoted by the core and nowhere else.
HOSTILE_VALUE = "a b;c|d&e$(f)`g`'h'\"i\"*?[j]<k>\\l\n~#!%{m}"
REGISTRY = "127.0.0.1:5000"
PRIMARY_TAG = f"{REGISTRY}/lian-conformance/app:1"


def conformance_job(**overrides: Any) -> api.BuildJob:
    """A BuildJob whose paths, build argument and secret path carry metacharacters."""
    fields: dict[str, Any] = {
        "context_dir": "/tmp/lian conformance/ctx $(x)",
        "dockerfile": "docker files/Dockerfile;v2",
        "tags": (PRIMARY_TAG, f"{REGISTRY}/lian-conformance/app:latest"),
        "build_args": {"HOSTILE": HOSTILE_VALUE, "PLAIN": "1"},
        "cache_imports": (f"{REGISTRY}/cache/app:buildcache",),
        "cache_exports": (f"{REGISTRY}/cache/app:buildcache",),
        "insecure_registries": frozenset({REGISTRY}),
        "secrets": (api.BuildSecret(id="npm", path="/tmp/lian conformance/secrets/npm token"),),
        "docker_config_dir": "/tmp/lian conformance/docker",
        "work_dir": "/tmp/lian conformance",
    }
    return api.BuildJob(**{**fields, **overrides})


def _elements(commands: list[list[str]]) -> list[str]:
    return [element for argv in commands for element in argv]


class BuilderConformance:
    """Subclass as ``class TestMyBuilder(BuilderConformance)`` and supply:

    - ``builder`` (required): a Builder instance, configured as the host would make it.

    Only ``commands(job)`` is checked: it must return argv lists (never shell strings),
    need no network, and keep every value with metacharacters in one element, unquoted.
    """

    def test_identity(self, builder: api.Builder) -> None:
        assert isinstance(builder, api.Builder)
        assert isinstance(builder.name, str) and builder.name, "a builder needs a name"

    def test_commands_are_lists_of_str(self, builder: api.Builder) -> None:
        commands = builder.commands(conformance_job())
        assert isinstance(commands, list) and commands, "commands() returned no command"
        for argv in commands:
            assert isinstance(argv, list) and argv, f"not a non-empty argv list: {argv!r}"
            bad = [element for element in argv if not isinstance(element, str)]
            assert not bad, f"argv elements that are not str: {bad!r}"

    def test_program_is_a_single_word(self, builder: api.Builder) -> None:
        for argv in builder.commands(conformance_job()):
            assert argv[0] and not any(c.isspace() for c in argv[0]), (
                f"argv[0] {argv[0]!r} looks like a shell string, not a program"
            )

    def test_commands_need_no_network(self, builder: api.Builder) -> None:
        with no_network("commands() (lian plan prints them)"):
            builder.commands(conformance_job())

    def test_commands_are_deterministic(self, builder: api.Builder) -> None:
        job = conformance_job()
        assert builder.commands(job) == builder.commands(job)

    @pytest.mark.parametrize(
        "value",
        [
            f"HOSTILE={HOSTILE_VALUE}",
            "/tmp/lian conformance/ctx $(x)",
            "/tmp/lian conformance/secrets/npm token",
            PRIMARY_TAG,
        ],
        ids=["build-arg", "context-dir", "secret-path", "primary-tag"],
    )
    def test_values_stay_single_unquoted_elements(self, builder: api.Builder, value: str) -> None:
        elements = _elements(builder.commands(conformance_job()))
        assert any(value in element for element in elements), (
            f"no single argv element holds {value!r} whole: {elements!r}"
        )
        quoted = shlex.quote(value)
        assert quoted == value or not any(quoted in element for element in elements), (
            f"{value!r} arrives shell-quoted already; the core quotes argv itself"
        )
