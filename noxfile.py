"""Developer sessions. `nox -l` lists them.

- lint, typecheck: ruff and mypy over the core and every plugin.
- tests: the fast suite in a fresh venv with everything installed.
- e2e: the slow end-to-end builds (real dockerd, sshd, rsync, buildah, registry).
- plugins / plugin-<name>: the core plus ONE plugin (and a registry plugin where its
  tests run builds), installed non-editable (as users get them), running that plugin's
  tests; core_alone: the core with no plugin at all.
- plugin_lowest-<name>: the same with the LOWEST versions the plugin declares for its
  third-party dependencies (``name>=X`` installed as ``name==X``).
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
    "orchestrator": "plugins/lian_orchestrator",
    "vault": "plugins/lian_vault",
}
# docker: the cloud imitations start real runner containers for their servers/VMs.
TEST_DEPS = ["pytest>=8", "pytest-timeout", "hypothesis", "bcrypt", "nats-py[nkeys]", "docker>=7"]
# Plugins whose declared lower bounds are tested (their SDKs change under them).
LOWEST = ["hcloud", "proxmox"]
# A plugin whose tests run `lian build`/`plan` also needs a registry plugin: the
# orchestrator's CLI tests go through a build, hcloud's through `lian plan`, both with
# the zot registry plugin.
PLUGIN_TEST_PEERS = {
    "orchestrator": ["plugins/lian_zot"],
    "hcloud": ["plugins/lian_zot"],
    "proxmox": ["plugins/lian_zot"],  # the per-platform plan tests plan with a registry
}


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
    peers = (f"./{path}" for path in PLUGIN_TEST_PEERS.get(name, []))
    session.install(*TEST_DEPS, "./core", f"./{PLUGINS[name]}", *peers)
    session.run("pytest", f"tests/plugins/{name}", "-m", "not e2e", *session.posargs)


@nox.session(name="plugin_lowest")
@nox.parametrize("name", LOWEST)
def plugin_lowest(session: nox.Session, name: str) -> None:
    """One plugin's tests with its third-party dependencies at their declared minimum."""
    pins = lowest_pins(PLUGINS[name])
    peers = (f"./{path}" for path in PLUGIN_TEST_PEERS.get(name, []))
    session.install(*TEST_DEPS, "./core", f"./{PLUGINS[name]}", *peers, *pins)
    session.run("pytest", f"tests/plugins/{name}", "-m", "not e2e", *session.posargs)


def lowest_pins(plugin_dir: str) -> list[str]:
    """``name==X`` for every ``name>=X`` the plugin declares (lian-build itself excluded)."""
    import re
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(plugin_dir) / "pyproject.toml").read_text())["project"]
    pins = []
    for requirement in project.get("dependencies", []):
        match = re.fullmatch(r"\s*([A-Za-z0-9_.\[\]-]+)\s*>=\s*([0-9][^,;\s]*)\s*", requirement)
        if match and not match.group(1).startswith("lian-build"):
            pins.append(f"{match.group(1)}=={match.group(2)}")
    return pins


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
