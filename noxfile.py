"""Developer sessions. `nox -l` lists them.

- lint, typecheck: ruff and mypy over the core and every plugin.
- tests: the fast suite in a fresh venv with everything installed.
- e2e: the slow end-to-end builds (real dockerd, sshd, rsync, buildah, registry).
- plugins / plugin-<name>: the core plus ONE plugin, installed non-editable (as users
  get them), running that plugin's tests; core_alone: the core with no plugin at all.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests"]

PLUGINS = {
    "hcloud": "plugins/lian_hcloud",
    "proxmox": "plugins/lian_proxmox",
    "docker_local": "plugins/lian_docker_local",
    "zot": "plugins/lian_zot",
    "harbor": "plugins/lian_harbor",
    "ghcr": "plugins/lian_ghcr",
    "vault": "plugins/lian_vault",
}
TEST_DEPS = ["pytest>=8", "pytest-timeout", "hypothesis", "bcrypt", "nats-py[nkeys]"]


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install(
        # pytest: lian_build.testing (the conformance kit) is typed against it.
        "mypy",
        "types-paramiko",
        "pytest",
        "-e",
        "./core",
        *(f"-e./{p}" for p in PLUGINS.values()),
    )
    session.run("mypy")


@nox.session
def tests(session: nox.Session) -> None:
    session.install(*TEST_DEPS, "./core[all]", *(f"./{p}" for p in PLUGINS.values()))
    session.run("pytest", "-m", "not e2e", *session.posargs)


@nox.session
def e2e(session: nox.Session) -> None:
    session.install(*TEST_DEPS, "./core[all]", *(f"./{p}" for p in PLUGINS.values()))
    session.run("pytest", "-m", "e2e", "tests", *session.posargs)


@nox.session(name="plugin")
@nox.parametrize("name", list(PLUGINS))
def plugin(session: nox.Session, name: str) -> None:
    """The core and one plugin, non-editable, running that plugin's tests."""
    session.install(*TEST_DEPS, "./core", f"./{PLUGINS[name]}")
    session.run("pytest", f"tests/plugins/{name}", "-m", "not e2e", *session.posargs)


@nox.session
def plugins(session: nox.Session) -> None:
    """Run every per-plugin session, then the core alone."""
    for name in PLUGINS:
        session.notify(f"plugin(name='{name}')")
    session.notify("core_alone")


@nox.session
def core_alone(session: nox.Session) -> None:
    """The core with no provider plugin: help, plugins and a clear error for builds."""
    session.install(*TEST_DEPS, "./core")
    session.run("pytest", "tests/core/test_core_alone.py")
