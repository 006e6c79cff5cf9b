"""`lian runner-image build|check` against the real Docker engine."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import tarfile
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from fixtures.require import require, require_binary
from lian_docker_local import plugin

pytestmark = pytest.mark.docker


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    plugin.lian_register_commands(app)
    # A lone sub-app would be flattened into the root command: keep a sibling.
    app.command("noop")(lambda: None)
    return app


def _invoke(cli: typer.Typer, *args: str) -> tuple[int, dict[str, Any], str]:
    result = CliRunner().invoke(cli, ["runner-image", *args])
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout  # exactly one envelope on stdout
    return result.exit_code, json.loads(lines[0]), result.stderr


def test_check_reports_the_builder_inside(cli, runner_image):
    exit_code, envelope, _ = _invoke(cli, "check", "--tag", runner_image)

    assert exit_code == 0
    assert envelope["lian"] == "1" and envelope["command"] == "runner-image check"
    assert envelope["status"] == "ok"
    result = envelope["result"]
    assert result["builders"] == ["buildah"] and result["buildkitd"] is False
    assert result["tools"]["sshd"] == "/usr/sbin/sshd"
    assert result["tools"]["rsync"] == "/usr/bin/rsync"
    assert result["problems"] == []


def test_check_missing_image_says_how_to_build_it(cli, docker_client):
    exit_code, envelope, stderr = _invoke(cli, "check", "--tag", "lian-runner:absent")

    assert exit_code == 4
    assert envelope["status"] == "error"
    assert envelope["error"]["code"] == "PROVISION_FAILED"
    assert "lian runner-image build --tag lian-runner:absent" in envelope["error"]["message"]
    assert "lian runner-image build" in stderr


def test_check_flags_an_image_without_sshd(cli, docker_client):
    # A shell and nothing else: busybox alone.
    busybox = Path(require_binary("busybox"))
    tag = "lian-test-busybox:cli-check"
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(busybox.resolve(), arcname="bin/busybox")
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(link)
        tmp = tarfile.TarInfo("tmp")
        tmp.type, tmp.mode = tarfile.DIRTYPE, 0o1777
        tar.addfile(tmp)
    docker_client.api.import_image_from_data(archive.getvalue(), repository=tag)
    try:
        exit_code, envelope, _ = _invoke(cli, "check", "--tag", tag)
    finally:
        docker_client.images.remove(tag, force=True)

    assert exit_code == 4
    problems = envelope["error"]["details"]["problems"]
    assert problems == ["no sshd", "no rsync", "no builder (buildctl or buildah)"]


def test_build_failure_is_an_error_envelope(cli):
    require_binary("debootstrap")
    require(os.geteuid() == 0, "root, for debootstrap")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        mirror = f"http://127.0.0.1:{closed.getsockname()[1]}/debian"

    exit_code, envelope, stderr = _invoke(
        cli, "build", "--tag", "lian-runner:never", "--mirror", mirror
    )

    assert exit_code == 4
    assert envelope["command"] == "runner-image build"
    assert envelope["error"]["details"] == {"recipe": "debian", "image": "lian-runner:never"}
    assert mirror in stderr  # the recipe's own output is streamed to stderr


@pytest.mark.e2e
def test_build_debian_recipe_makes_a_usable_image(cli, docker_client):
    require_binary("debootstrap")
    require(os.geteuid() == 0, "root, for debootstrap")
    require(shutil.which("docker") is not None, "the docker CLI")
    tag = "lian-runner:e2e-build"
    try:
        exit_code, envelope, _ = _invoke(cli, "build", "--tag", tag)
        assert exit_code == 0
        assert envelope["result"] == {"image": tag, "recipe": "debian"}
        assert _invoke(cli, "check", "--tag", tag)[1]["result"]["builders"] == ["buildah"]
    finally:
        docker_client.images.remove(tag, force=True)


def test_check_flags_a_runner_image_made_by_another_recipe(cli, runner_image, docker_client):
    """An image with an older recipe's label (e.g. the bookworm one, whose buildah misses
    the cache after ARG) is reported with the command that rebuilds it."""
    import uuid

    from lian_docker_local.cli import expected_recipe_label

    exit_code, envelope, _ = _invoke(cli, "check", "--tag", runner_image)
    assert exit_code == 0
    assert envelope["result"]["recipe"] == expected_recipe_label()

    tag = f"lian-runner:stale-{uuid.uuid4().hex[:8]}"
    container = docker_client.containers.create(runner_image, command=["true"])
    try:
        repository, _, version = tag.partition(":")
        container.commit(
            repository=repository,
            tag=version,
            changes=["LABEL lian.recipe=0123456789abcdef-bookworm"],
        )
        exit_code, envelope, _ = _invoke(cli, "check", "--tag", tag)
    finally:
        container.remove(force=True)
        docker_client.images.remove(tag, force=True)
    assert exit_code == 4
    (problem,) = envelope["error"]["details"]["problems"]
    assert (
        "0123456789abcdef-bookworm" in problem and f"lian runner-image build --tag {tag}" in problem
    )


def test_the_test_fixture_expects_the_label_the_recipe_makes() -> None:
    from fixtures.docker import expected_recipe_label as fixture_label
    from lian_docker_local.cli import expected_recipe_label

    assert fixture_label() == expected_recipe_label()
