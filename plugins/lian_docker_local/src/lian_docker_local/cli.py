"""``lian runner-image build|check``: make and verify docker-local runner images.

Progress goes to stderr; stdout gets one JSON line (the envelope) per invocation.
"""

from __future__ import annotations

import enum
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from lian_build.api import run_command
from lian_build.errors import ProvisionError
from lian_docker_local.engine import connect, missing_image_error

# Each tool is reported as name=path (empty when absent). sshd is checked at the path
# the provider starts it from.
_PROBE_SCRIPT = r"""
for tool in sh rsync buildah buildctl buildkitd; do
  printf '%s=%s\n' "$tool" "$(command -v "$tool" || true)"
done
if [ -x /usr/sbin/sshd ]; then echo sshd=/usr/sbin/sshd; else echo sshd=; fi
if [ -w /tmp ]; then echo tmp_writable=yes; else echo tmp_writable=; fi
"""


PROVIDER_HELP = "Compute provider whose runner image to make or check (e.g. hcloud)."


class Recipe(enum.StrEnum):
    debian = "debian"
    buildkit = "buildkit"


RECIPE_LABEL = "lian.recipe"
DEFAULT_SUITE = "trixie"


def recipes_dir() -> Path:
    """The runner recipes shipped inside the package (a symlink in the source tree)."""
    return Path(__file__).resolve().parent / "runner"


def expected_recipe_label(suite: str | None = None) -> str:
    """The ``lian.recipe`` label the debian recipe puts on an image it builds now: the
    hash of the recipe script and its emulation shim, and the Debian suite
    (``LIAN_DEBIAN_SUITE``, default trixie). An image whose label differs was made by
    another (older) recipe."""
    import hashlib

    recipe = recipes_dir() / "debian"
    script = (recipe / "build.sh").read_bytes() + (recipe / "emulation-shim.c").read_bytes()
    suite = suite or os.environ.get("LIAN_DEBIAN_SUITE") or DEFAULT_SUITE
    return f"{hashlib.sha256(script).hexdigest()[:16]}-{suite}"


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
    provider: Annotated[str, typer.Option(help=PROVIDER_HELP)] = "docker-local",
    compute_opt: Annotated[
        list[str] | None, typer.Option("--compute-opt", help="KEY=VALUE provider setting.")
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

    def body() -> dict[str, Any]:
        if provider != "docker-local":
            return _on_provider("build", provider, compute_opt or [])
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
            docker = env.get("DOCKER", "docker")
            argv = [docker, "build", "-t", image, str(recipes_dir() / "buildkit")]
        try:
            exit_code = _stream(argv, env)
        except OSError as exc:
            raise ProvisionError(f"could not run the {recipe.value} recipe: {exc}") from None
        if exit_code != 0:
            raise ProvisionError(
                f"the {recipe.value} runner recipe failed with exit code {exit_code}"
                " (its output is above)",
                details={"recipe": recipe.value, "image": image},
            )
        return {"image": image, "recipe": recipe.value}

    run_command("runner-image build", body)


def check(
    tag: Annotated[str, typer.Option(help="Image to check.")] = "lian-runner:debian",
    docker_host: Annotated[
        str | None, typer.Option(help="Docker engine (default DOCKER_HOST).")
    ] = None,
    provider: Annotated[str, typer.Option(help=PROVIDER_HELP)] = "docker-local",
    compute_opt: Annotated[
        list[str] | None, typer.Option("--compute-opt", help="KEY=VALUE provider setting.")
    ] = None,
) -> None:
    """Check that a runner image exists and has sshd, rsync, a builder and a shell."""

    def body() -> dict[str, Any]:
        if provider != "docker-local":
            return _on_provider("check", provider, compute_opt or [])
        result = _check_image(tag, docker_host)
        if result["problems"]:
            raise ProvisionError(
                f"runner image {tag!r} is not usable: {'; '.join(result['problems'])}",
                details=result,
            )
        return result

    run_command("runner-image check", body)


def _on_provider(command: str, provider: str, compute_opts: list[str]) -> dict[str, Any]:
    """Another provider's runner images (ComputeProvider.build/check_runner_image)."""
    from lian_build.runner_images import on_provider

    result = on_provider(command, provider, compute_opts, {})
    if result.get("problems"):
        raise ProvisionError(
            f"{provider} runner image is not usable: {'; '.join(result['problems'])}",
            details=result,
        )
    return result


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
    label = (image.attrs.get("Config") or {}).get("Labels", {}) or {}
    recipe = label.get(RECIPE_LABEL)
    expected = expected_recipe_label()
    builders = [name for name in ("buildctl", "buildah") if tools.get(name)]
    problems = [f"no {name}" for name in ("sshd", "rsync") if not tools.get(name)]
    if not builders:
        problems.append("no builder (buildctl or buildah)")
    if not tools.get("tmp_writable"):
        problems.append("/tmp is not writable")
    # Images made by this plugin's debian recipe carry the label; an older recipe's
    # image (e.g. bookworm's buildah 1.28, which misses the remote cache) is stale.
    ours = recipe is not None or tag.startswith("lian-runner:")
    if ours and recipe != expected and tools.get("buildah"):
        problems.append(
            f"made by another runner recipe ({RECIPE_LABEL}={recipe or 'none'}, this plugin "
            f"builds {expected}): rebuild it with `lian runner-image build --tag {tag}`"
        )
    return {
        "image": tag,
        "id": image.id,
        "size_bytes": image.attrs.get("Size"),
        "builders": builders,
        "buildkitd": bool(tools.get("buildkitd")),
        "recipe": recipe,
        "expected_recipe": expected,
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
