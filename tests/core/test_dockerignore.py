""".dockerignore with Docker's semantics (examples from Docker's documentation)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lian_build.errors import InvalidInput
from lian_build.remote.dockerignore import Matcher, load, parse, scan, walk_included


def matcher(*lines: str) -> Matcher:
    return Matcher(tuple(parse(list(lines))))


def make_tree(root: Path, files: list[str]) -> None:
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)


def test_docs_example_one_and_two_levels_and_single_char() -> None:
    m = matcher("# comment", "*/temp*", "*/*/temp*", "temp?")
    assert m.excluded("somedir/temporary.txt")
    assert m.excluded("somedir/temp")
    assert not m.excluded("temporary.txt")  # */temp* needs one directory level
    assert m.excluded("somedir/subdir/temporary.txt")
    assert not m.excluded("a/b/c/temporary.txt")  # deeper than either pattern
    assert m.excluded("tempa") and m.excluded("tempb")
    assert not m.excluded("temp") and not m.excluded("tempab")
    assert not m.excluded("# comment")


def test_double_star_matches_any_depth_including_root() -> None:
    m = matcher("**/*.go")
    assert m.excluded("main.go")
    assert m.excluded("cmd/tool/main.go")
    assert not m.excluded("cmd/tool/main.gox")
    assert matcher("a/**/b").excluded("a/b")
    assert matcher("a/**/b").excluded("a/x/y/b")
    assert not matcher("a/**/b").excluded("x/a/b")


def test_trailing_double_star_takes_everything_below() -> None:
    m = matcher("foo/**")
    assert m.excluded("foo/x") and m.excluded("foo/x/y")
    assert not m.excluded("foo")


def test_exceptions_last_match_wins() -> None:
    m = matcher("*.md", "!README.md")
    assert m.excluded("CHANGES.md") and not m.excluded("README.md")

    m = matcher("*.md", "!README*.md", "README-secret.md")
    assert m.excluded("README-secret.md")
    assert not m.excluded("README-public.md")

    m = matcher("*.md", "README-secret.md", "!README*.md")
    assert not m.excluded("README-secret.md")


def test_parent_directory_match_excludes_everything_below() -> None:
    m = matcher("node_modules", "/build/")
    assert m.excluded("node_modules/react/index.js")
    assert m.excluded("build/out/a.o")
    assert not m.excluded("src/node_modules_like.txt")
    # Patterns are anchored at the context root, like Docker (not like .gitignore).
    assert not m.excluded("web/node_modules/x.js")


def test_exception_inside_excluded_directory() -> None:
    m = matcher("vendor", "!vendor/keep.txt")
    assert m.excluded("vendor/drop.txt")
    assert not m.excluded("vendor/keep.txt")


def test_whitespace_comments_and_cleaning() -> None:
    m = matcher("  spaced.txt  ", " #not-a-comment", "./a/../b.txt", "", "# c.txt")
    assert m.excluded("spaced.txt")
    assert m.excluded("#not-a-comment")  # only a leading "#" starts a comment
    assert m.excluded("b.txt")
    assert not m.excluded("c.txt")
    assert m.excluded("./b.txt") and m.excluded("/b.txt")


def test_character_classes_and_escapes() -> None:
    m = matcher("file[0-9].txt", "x[^a]y", r"lit\*eral", "a.b")
    assert m.excluded("file7.txt") and not m.excluded("filea.txt")
    assert m.excluded("xby") and not m.excluded("xay")
    assert m.excluded("lit*eral") and not m.excluded("litXeral")
    assert m.excluded("a.b") and not m.excluded("aXb")  # "." is literal


@pytest.mark.parametrize("line", ["!", "! ", "[abc"])
def test_bad_patterns_name_the_rule(line: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse([line])
    assert caught.value.field == "dockerignore"


def test_walk_sends_dockerfile_and_ignore_file_even_when_ignored(tmp_path: Path) -> None:
    make_tree(tmp_path, ["Dockerfile", "app.py", "docs/x.md", "docs/keep.md"])
    (tmp_path / ".dockerignore").write_text("*\n!app.py\n!docs/keep.md\n")
    assert list(walk_included(tmp_path)) == [
        ".dockerignore",
        "Dockerfile",
        "app.py",
        "docs",
        "docs/keep.md",
    ]


def test_walk_keeps_a_dockerfile_in_an_excluded_directory(tmp_path: Path) -> None:
    make_tree(tmp_path, ["build/Dockerfile.prod", "build/junk", "src/a.c"])
    (tmp_path / ".dockerignore").write_text("build\n")
    included = list(walk_included(tmp_path, dockerfile="build/Dockerfile.prod"))
    assert included == [".dockerignore", "build", "build/Dockerfile.prod", "src", "src/a.c"]


def test_dockerfile_specific_ignore_file_wins(tmp_path: Path) -> None:
    make_tree(tmp_path, ["Dockerfile", "a.txt", "b.txt"])
    (tmp_path / ".dockerignore").write_text("a.txt\n")
    (tmp_path / "Dockerfile.dockerignore").write_text("b.txt\n")
    included = set(walk_included(tmp_path))
    assert "a.txt" in included and "b.txt" not in included


def test_walk_keeps_empty_included_directories_and_symlinks(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    make_tree(tmp_path, ["target.txt"])
    (tmp_path / "link").symlink_to("target.txt")
    (tmp_path / "dirlink").symlink_to("empty")
    assert list(walk_included(tmp_path)) == ["dirlink", "empty", "link", "target.txt"]


def test_walk_does_not_descend_into_excluded_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tree(
        tmp_path,
        ["node_modules/a/b.js", ".git/HEAD", "vendor/x/keep.txt", "vendor/y/z.txt", "src/m.py"],
    )
    (tmp_path / ".dockerignore").write_text("node_modules/\n.git\nvendor\n!vendor/x/keep.txt\n")
    visited: list[str] = []
    real_scandir = os.scandir

    def recording_scandir(path: os.PathLike[str]) -> Iterator[os.DirEntry[str]]:
        visited.append(Path(path).relative_to(tmp_path).as_posix())
        return real_scandir(path)

    monkeypatch.setattr("lian_build.remote.dockerignore.os.scandir", recording_scandir)
    result = scan(tmp_path, load(tmp_path))
    assert "node_modules" not in visited and ".git" not in visited
    assert "vendor/y" not in visited  # no exception can reach below vendor/y
    assert "vendor/x" in visited
    assert result.included == (
        ".dockerignore",
        "src",
        "src/m.py",
        "vendor",
        "vendor/x",
        "vendor/x/keep.txt",
    )
    assert set(result.pruned) == {".git", "node_modules", "vendor/y"}


def test_may_include_below_follows_pattern_components() -> None:
    m = matcher("*", "!a/*/keep", "!**/deep.txt")
    assert m.may_include_below("anything")  # "**" can reach anywhere
    m = matcher("*", "!a/*/keep")
    assert m.may_include_below("a") and m.may_include_below("a/b")
    assert not m.may_include_below("b")
    assert not m.may_include_below("a/b/keep")  # the pattern ends at that depth
