"""ADR-001's lift-out boundaries and the start-up import discipline, as tests."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "core"
PLUGIN_PACKAGES = {
    "lian_hcloud",
    "lian_proxmox",
    "lian_docker_local",
    "lian_zot",
    "lian_harbor",
    "lian_ghcr",
    "lian_orchestrator",
    "lian_vault",
}
PROVIDER_SDKS = {"hcloud", "proxmoxer", "docker"}
HEAVY = {"hcloud", "proxmoxer", "docker", "paramiko", "nats", "httpx", "starlette", "uvicorn"}


def _core_files() -> list[Path]:
    return sorted(p for p in (CORE / "src").rglob("*.py"))


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_no_plugin_and_no_provider_sdk(path):
    bad = _imported_roots(path) & (PLUGIN_PACKAGES | PROVIDER_SDKS)
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_core_has_no_caller_vocabulary():
    # build-directives-ncl-vocabulary: caller-specific logic stays in caller directives.
    pattern = re.compile(r"provisioning_workspace|vapora_|woodpecker_")
    hits = [
        str(p.relative_to(ROOT))
        for p in list(CORE.rglob("*.py")) + list((ROOT / "schemas").rglob("*.ncl"))
        if pattern.search(p.read_text())
    ]
    assert not hits


def test_no_provisioning_lib_dependency():
    # no-provisioning-lib-import: the packaging and code never pull in the caller's platform.
    pattern = re.compile(r"platform-config|platform_config|stratum-|stratum_|\bprovisioning\b")
    files = [CORE / "pyproject.toml", *(CORE / "src").rglob("*.py")]
    hits = [str(p.relative_to(ROOT)) for p in files if pattern.search(p.read_text())]
    assert not hits


def _modules_after(args: list[str]) -> set[str]:
    code = (
        "import sys, json\n"
        "from lian_build.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stderr.write('\\nMODULES=' + json.dumps(sorted(m.split('.')[0] for m in sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    marker = proc.stderr.rsplit("MODULES=", 1)
    assert len(marker) == 2, proc.stderr
    return set(json.loads(marker[1]))


@pytest.mark.parametrize("args", [["--help"], ["plugins", "--json"], ["plugins"]])
def test_startup_imports_no_provider_sdk(args):
    loaded = _modules_after(args)
    assert not (loaded & HEAVY), f"`lian {' '.join(args)}` imported {sorted(loaded & HEAVY)}"
    # ...while every plugin entry module was imported.
    assert loaded >= PLUGIN_PACKAGES
