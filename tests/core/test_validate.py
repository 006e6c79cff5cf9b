"""Input rules: OCI references, path components, platforms, local paths, build args."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lian_build import validate
from lian_build.errors import InvalidInput

SHA = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("reference", "registry", "repository", "tag", "digest"),
    [
        ("ghcr.io/org/app:1.0", "ghcr.io", "org/app", "1.0", None),
        ("127.0.0.1:5000/a/b:tag", "127.0.0.1:5000", "a/b", "tag", None),
        ("localhost/x", "localhost", "x", None, None),
        ("localhost:5000/x:latest", "localhost:5000", "x", "latest", None),
        ("[::1]:5000/x", "[::1]:5000", "x", None, None),
        ("[2001:db8::1]/team/app:v2", "[2001:db8::1]", "team/app", "v2", None),
        (f"registry.example.com/app@{SHA}", "registry.example.com", "app", None, SHA),
        (f"reg.io:443/a/b:1.2@{SHA}", "reg.io:443", "a/b", "1.2", SHA),
        ("Registry.Example.COM/app", "Registry.Example.COM", "app", None, None),
        ("reg.io/a.b_c__d---e/f:T_ag.-1", "reg.io", "a.b_c__d---e/f", "T_ag.-1", None),
        ("my-host.io/app:" + "t" * 128, "my-host.io", "app", "t" * 128, None),
        ("reg.io/app@sha512:" + "0" * 128, "reg.io", "app", None, "sha512:" + "0" * 128),
        ("reg.io/app@blake3:" + "F" * 32, "reg.io", "app", None, "blake3:" + "F" * 32),
    ],
)
def test_valid_references_parse_into_parts(reference, registry, repository, tag, digest):
    ref = validate.image_reference(reference)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )
    assert ref.name == f"{registry}/{repository}"
    assert str(ref) == reference


@pytest.mark.parametrize(
    ("reference", "rule"),
    [
        ("", "non-empty"),
        ("app", "fully qualified"),
        ("org/app:1.0", "fully qualified"),  # Docker Hub shorthand: no registry host
        ("localhost", "fully qualified"),
        ("reg.io/Org/app", "lowercase"),
        ("reg.io/app:", "tag"),
        ("reg.io/app:.bad", "tag"),
        ("reg.io/app:" + "t" * 129, "tag"),
        ("reg.io/app:ta g", "tag"),
        ("reg.io/app:tag\u00e9", "tag"),  # Go's \w is ASCII
        ("reg.io/app@", "digest"),
        ("reg.io/app@sha256:abc", "digest"),
        ("reg.io/app@sha256:" + "A" * 64, "lowercase hex"),
        ("reg.io/app@sha256:" + "a" * 63, "64 lowercase hex"),
        ("reg.io/app@1sha:" + "a" * 32, "digest"),
        ("reg.io/-app", "path components"),
        ("reg.io/app-", "path components"),
        ("reg.io/a..b", "path components"),
        ("reg.io/a___b", "path components"),
        ("reg.io//app", "path components"),
        ("reg.io/app/", "path components"),
        ("-reg.io/app", "registry host"),
        ("reg.io:port/app", "registry host"),
        ("reg.io:99x/app", "registry host"),
        ("[::1/app", "registry host"),
        ("reg.io/" + "a" * 250, "255"),
    ],
)
def test_invalid_references_name_the_field_and_rule(reference, rule):
    with pytest.raises(InvalidInput) as err:
        validate.image_reference(reference, field="artifact.image")
    assert err.value.field == "artifact.image"
    assert rule in err.value.message


def test_a_port_before_a_slash_is_not_a_tag():
    ref = validate.image_reference("reg.io:5000/app")
    assert ref.registry == "reg.io:5000"
    assert ref.tag is None


@pytest.mark.parametrize("value", ["a", "my-app", "a.b", "a_b", "a__b", "a---b", "0", "x" * 128])
def test_path_component_accepts(value):
    assert validate.path_component(value, "workspace") == value


@pytest.mark.parametrize(
    "value", ["", "A", "my app", "-a", "a-", "a___b", "a..b", "a/b", "é", "x" * 129]
)
def test_path_component_rejects(value):
    with pytest.raises(InvalidInput) as err:
        validate.path_component(value, "workspace")
    assert err.value.field == "workspace"


_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*")


@given(st.from_regex(_COMPONENT, fullmatch=True).filter(lambda s: len(s) <= 128))
def test_path_component_accepts_everything_the_grammar_generates(value):
    assert validate.path_component(value, "actor") == value
    # A valid component is also a valid one-component repository.
    assert validate.image_reference(f"reg.io/{value}").repository == value


@given(st.text(max_size=40))
def test_path_component_agrees_with_the_grammar_on_any_text(value):
    ok = _COMPONENT.fullmatch(value) is not None and len(value) <= 128
    try:
        validate.path_component(value, "actor")
    except InvalidInput:
        assert not ok
    else:
        assert ok


@pytest.mark.parametrize("value", ["latest", "1.0.0-rc.1", "_x", "A" * 128])
def test_tag_accepts(value):
    assert validate.tag(value) == value


@pytest.mark.parametrize("value", ["", ".x", "-x", "a" * 129, "a:b", "a/b"])
def test_tag_rejects(value):
    with pytest.raises(InvalidInput, match="tag"):
        validate.tag(value)


@pytest.mark.parametrize("value", ["linux/amd64", "linux/arm64/v8", "windows/amd64", "os_x/arch_1"])
def test_platform_accepts(value):
    assert validate.platform(value) == value


@pytest.mark.parametrize("value", ["linux", "Linux/amd64", "linux/", "/amd64", "a/b/c/d", "l x/y"])
def test_platform_rejects(value):
    with pytest.raises(InvalidInput) as err:
        validate.platform(value)
    assert err.value.field == "platforms"


def test_platforms_from_csv_or_list_deduplicate_in_order():
    assert validate.platforms("linux/arm64, linux/amd64,linux/arm64,") == (
        "linux/arm64",
        "linux/amd64",
    )
    assert validate.platforms(["linux/amd64", "linux/amd64"]) == ("linux/amd64",)
    assert validate.platforms("") == ()
    with pytest.raises(InvalidInput):
        validate.platforms("linux/amd64,LINUX/arm64")


def test_context_dir(tmp_path):
    assert validate.context_dir(tmp_path) == tmp_path.resolve()
    with pytest.raises(InvalidInput, match="does not exist") as err:
        validate.context_dir(tmp_path / "missing")
    assert err.value.field == "context"
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInput, match="not a directory"):
        validate.context_dir(tmp_path / "file")


def test_context_dir_unreadable(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0)
    if os.geteuid() == 0:
        # Root reads any directory: answer access() the way it would for a normal user.
        real_access = os.access
        monkeypatch.setattr(
            validate.os,
            "access",
            lambda p, mode: False if Path(p) == locked else real_access(p, mode),
        )
    with pytest.raises(InvalidInput, match="not readable"):
        validate.context_dir(locked)


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "docker").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    (ctx / "docker" / "Dockerfile.prod").write_text("FROM scratch\n")
    (tmp_path / "outside").write_text("FROM scratch\n")
    return ctx


def test_dockerfile_inside_the_context(context):
    assert validate.dockerfile_in_context(context, "Dockerfile") == Path("Dockerfile")
    assert validate.dockerfile_in_context(context, "docker/../docker/Dockerfile.prod") == Path(
        "docker/Dockerfile.prod"
    )
    (context / "link").symlink_to(context / "docker" / "Dockerfile.prod")
    assert validate.dockerfile_in_context(context, "link") == Path("docker/Dockerfile.prod")


@pytest.mark.parametrize(
    ("dockerfile", "rule"),
    [
        ("", "non-empty"),
        ("/etc/passwd", "relative"),
        ("../outside", "outside the build context"),
        ("escape", "outside the build context"),
        ("missing", "does not exist"),
        ("docker", "does not exist"),
    ],
)
def test_dockerfile_rejected(context, dockerfile, rule):
    (context / "escape").symlink_to(context.parent / "outside")
    with pytest.raises(InvalidInput, match=rule) as err:
        validate.dockerfile_in_context(context, dockerfile)
    assert err.value.field == "dockerfile"


def test_build_args():
    assert validate.build_arg("NODE_ENV", "production") == ("NODE_ENV", "production")
    assert validate.build_arg("_X1", "multi\nline 'quoted' $value") == (
        "_X1",
        "multi\nline 'quoted' $value",
    )
    for bad_key in ["", "1X", "A-B", "A B", "A=B"]:
        with pytest.raises(InvalidInput, match="key") as err:
            validate.build_arg(bad_key, "v")
        assert err.value.field == "build_args"
    with pytest.raises(InvalidInput, match="NUL"):
        validate.build_arg("K", "a\x00b")
