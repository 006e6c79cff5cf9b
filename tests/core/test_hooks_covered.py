"""Every hook in lian_build.hookspecs is exercised by at least one test.

A hook counts as tested when its name appears in a ``test_*.py`` file under tests/
other than this one and test_docs.py (which only checks the documentation). Adding a
hook without a test fails here, listing the hooks that lack one.
"""

from __future__ import annotations

from pathlib import Path

from lian_build import hookspecs

TESTS = Path(__file__).resolve().parents[1]
NOT_COUNTED = {"test_hooks_covered.py", "test_docs.py"}


def _hook_names() -> list[str]:
    return sorted(
        name
        for name, fn in vars(hookspecs).items()
        if name.startswith("lian_") and hasattr(fn, "lian_build_spec")
    )


def _test_sources() -> dict[Path, str]:
    return {
        path: path.read_text(encoding="utf-8")
        for path in sorted(TESTS.rglob("test_*.py"))
        if path.name not in NOT_COUNTED
    }


def test_hooks_and_test_files_are_found() -> None:
    assert len(_hook_names()) >= 8
    assert len(_test_sources()) >= 10


def test_every_hook_has_a_test() -> None:
    sources = _test_sources()
    untested = [
        hook for hook in _hook_names() if not any(hook in text for text in sources.values())
    ]
    assert not untested, (
        "hooks no test mentions (write a test that implements or calls each): "
        + ", ".join(untested)
    )
