"""``lian runner-image build|check``: make and verify docker-local runner images.

Progress goes to stderr; stdout gets one JSON line (the envelope) per invocation.
"""

from __future__ import annotations

import enum
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from lian_build.errors import LianError, ProvisionError
from lian_docker_local.engine import connect, missing_image_error

ENVELOPE_VERSION = "1"
# Each tool is reported as name=path (empty when absent). sshd is checked at the path
# the provider starts it from.
_PROBE_SCRIPT = r"""
for tool in sh rsync buildah buildctl buildkitd; do
  printf '%s=%s\n' "$tool" "$(command -v "$tool" || true)"
done
if [ -x /usr/sbin/sshd ]; then echo sshd=/usr/sbin/sshd; else echo sshd=; fi
if [ -w /tmp ]; then echo tmp_writable=yes; else echo tmp_writable=; fi
"""


class Recipe(enum.StrEnum):
    debian = "debian"
    buildkit = "buildkit"


def recipes_dir() -> Path:
    """The runner recipes shipped inside the package (a symlink in the source tree)."""
    return Path(__file__).resolve().parent / "runner"


def runner_image_app() -> typer.Typer:
    app = typer.Typer(
        name="runner-image",
        help="Build and check runner images for the docker-local provider.",
        no_args_is_help=True,
    )
    app.command("build")(build)
    app.command("check")(check)
    return app


def build(
    recipe: Annotated[
        Recipe, typer.Option(help="debian: from Debian packages; buildkit: needs Docker Hub.")
    ] = (Recipe.debian),
    tag: Annotated[
        str | None, typer.Option(help="Image tag (default lian-runner:<recipe>).")
    ] = None,
    mirror: Annotated[str | None, typer.Option(help="Debian mirror for the debian recipe.")] = None,
    docker_host: Annotated[
        str | None, typer.Option(help="Docker engine (default DOCKER_HOST).")
    ] = None,
    arch: Annotated[
        str | None,
        typer.Option(
            help="Runner architecture (debian recipe; a foreign one needs QEMU binfmt_misc)."
        ),
    ] = None,
) -> None:
    """Build a runner image from a recipe, streaming the build output to stderr."""
    from lian_docker_local.provider import host_architecture

    foreign = arch if arch and arch != host_architecture() else None
    image = tag or f"lian-runner:{recipe.value}" + (f"-{foreign}" if foreign else "")
    command_name = "runner-image build"
    env = dict(os.environ)
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    if recipe is Recipe.debian:
        argv = ["bash", str(recipes_dir() / "debian" / "build.sh")]
        argv += ["--arch", arch] if arch else []
        argv.append(image)
        if mirror:
            env["LIAN_DEBIAN_MIRROR"] = mirror
    else:
        argv = [env.get("DOCKER", "docker"), "build", "-t", image, str(recipes_dir() / "buildkit")]
    try:
        exit_code = _stream(argv, env)
    except OSError as exc:
        _fail(command_name, ProvisionError(f"could not run the {recipe.value} recipe: {exc}"))
    if exit_code != 0:
        _fail(
            command_name,
            ProvisionError(
                f"the {recipe.value} runner recipe failed with exit code {exit_code}"
                " (its output is above)",
                details={"recipe": recipe.value, "image": image},
            ),
        )
    _emit(command_name, "ok", {"result": {"image": image, "recipe": recipe.value}})


def check(
    tag: Annotated[str, typer.Option(help="Image to check.")] = "lian-runner:debian",
    docker_host: Annotated[
        str | None, typer.Option(help="Docker engine (default DOCKER_HOST).")
    ] = None,
) -> None:
    """Check that a runner image exists and has sshd, rsync, a builder and a shell."""
    command_name = "runner-image check"
    try:
        result = _check_image(tag, docker_host)
    except LianError as exc:
        _fail(command_name, exc)
    if result["problems"]:
        _fail(
            command_name,
            ProvisionError(
                f"runner image {tag!r} is not usable: {'; '.join(result['problems'])}",
                details=result,
            ),
        )
    _emit(command_name, "ok", {"result": result})


def _check_image(tag: str, docker_host: str | None) -> dict[str, Any]:
    import docker

    client = connect(docker_host)
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        raise missing_image_error(tag) from None
    try:
        output = client.containers.run(
            tag,
            entrypoint=["/bin/sh", "-c"],
            command=[_PROBE_SCRIPT],
            network_mode="none",
            remove=True,
            stdout=True,
            stderr=False,
        )
    except docker.errors.DockerException as exc:
        raise ProvisionError(f"could not run a shell in runner image {tag!r}: {exc}") from exc
    tools = dict(line.split("=", 1) for line in output.decode().splitlines() if "=" in line)
    builders = [name for name in ("buildctl", "buildah") if tools.get(name)]
    problems = [f"no {name}" for name in ("sshd", "rsync") if not tools.get(name)]
    if not builders:
        problems.append("no builder (buildctl or buildah)")
    if not tools.get("tmp_writable"):
        problems.append("/tmp is not writable")
    return {
        "image": tag,
        "id": image.id,
        "size_bytes": image.attrs.get("Size"),
        "builders": builders,
        "buildkitd": bool(tools.get("buildkitd")),
        "tools": {
            name: tools.get(name) or None for name in ("sh", "sshd", "rsync", "buildah", "buildctl")
        },
        "problems": problems,
    }


def _stream(argv: list[str], env: dict[str, str]) -> int:
    """Run argv, copying its combined output to our stderr line by line."""
    with subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stderr.write(line)
            sys.stderr.flush()
    return proc.returncode


def _emit(command_name: str, status: str, body: dict[str, Any]) -> None:
    envelope = {"lian": ENVELOPE_VERSION, "command": command_name, "status": status, **body}
    sys.stdout.write(json.dumps(envelope) + "\n")
    sys.stdout.flush()


def _fail(command_name: str, error: LianError) -> NoReturn:
    sys.stderr.write(f"error: {error.message}\n")
    _emit(command_name, "error", {"error": error.to_dict()})
    raise typer.Exit(error.exit_code)
