"""quoting: what a real POSIX shell reads back is exactly the argv we started from."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lian_build.errors import InvalidInput
from lian_build.remote.quoting import join, with_env

# Any text an argv element can hold: no NUL (exec forbids it), no lone surrogates.
_ARG_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"))
_NASTY = st.sampled_from(
    ["", " ", "a b", ";", "$(id)", "`id`", "'", '"', "\\", "\n", "*", "~", "-n", "a'b\"c", "é✓"]
)
_ARG = st.one_of(_ARG_TEXT, _NASTY)


def _shell_argv(command: str) -> list[str]:
    """What `sh -c` sees when `printf "%s\\0"` prints each argument of ``command``."""
    script = 'printf "%s\\0" ' + command
    out = subprocess.run(["sh", "-c", script], capture_output=True, check=True).stdout
    return [part.decode() for part in out.split(b"\0")[:-1]]


@settings(max_examples=200, deadline=None)
@given(st.lists(_ARG, min_size=1, max_size=6))
def test_join_survives_a_real_shell(argv: list[str]) -> None:
    assert _shell_argv(join(argv)) == argv


@settings(max_examples=100, deadline=None)
# A fixed prefix keeps generated names clear of PATH, IFS and the script's own variable.
@given(st.dictionaries(st.from_regex(r"V_[A-Za-z0-9_]{0,8}", fullmatch=True), _ARG, max_size=3))
def test_with_env_values_arrive_literally(env: dict[str, str]) -> None:
    names = sorted(env)
    inner = 'for n in "$@"; do eval "printf \'%s\\0\' \\"\\${$n}\\""; done'
    command = with_env(["sh", "-c", inner, "sh", *names], env)
    out = subprocess.run(["sh", "-c", command], capture_output=True, check=True).stdout
    assert [p.decode() for p in out.split(b"\0")[:-1]] == [env[n] for n in names]


def test_with_env_shape_and_option_like_values() -> None:
    command = with_env(["printenv", "A"], {"A": "-i"})
    assert command == "env -- A=-i printenv A"
    out = subprocess.run(["sh", "-c", command], capture_output=True, check=True).stdout
    assert out == b"-i\n"


def test_with_env_without_env_is_join() -> None:
    assert with_env(["echo", "a b"], {}) == join(["echo", "a b"]) == "echo 'a b'"


@pytest.mark.parametrize("name", ["1A", "A-B", "A B", "", "A=B", "$(x)"])
def test_with_env_rejects_bad_names(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        with_env(["true"], {name: "v"})
    assert caught.value.field == "env"


def test_join_refuses_a_bare_string() -> None:
    with pytest.raises(TypeError):
        join("echo hi")  # type: ignore[arg-type]
