"""Start-up cost of the ``lian`` command against a bare import of its frameworks.

Measures ``lian --help`` and ``lian plugins --json`` with every plugin installed against
``python -c "import typer, pluggy, attrs, cattrs"``, in interleaved rounds (or with
hyperfine: --tool hyperfine). Two references explain the gap: the interpreter alone, and
a minimal typer app of the same shape as lian's CLI (plain help, a callback, a command
with a flag). Then ``python -X importtime`` says which modules dominate.

    python bench/startup.py [--quick] [--runs N] [--tool interleaved|hyperfine]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from benchlib import ROOT, VENV_BIN, note, ratio, time_commands, write_result

TARGET_RATIO = 1.5
BARE_IMPORT = "import typer, pluggy, attrs, cattrs"

# The same shape as lian's CLI (plain help, a callback with an option, a command with a
# flag), and nothing else: what typer itself costs to start, show help and run a command.
TYPER_FLOOR_APP = '''
import typer

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.callback()
def root(verbose: int = typer.Option(0, "--verbose", "-v", count=True)) -> None:
    """A root callback, like lian's."""


@app.command()
def plugins(as_json: bool = typer.Option(False, "--json")) -> None:
    """A command with a flag."""
    print("{}")


@app.command()
def other() -> None:
    """A second command, so the app is a group."""


app()
'''

_IMPORTTIME_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


@attrs.frozen
class ImportRow:
    module: str
    depth: int  # 0: imported by running code (the entry point, a lazy import, a plugin load)
    self_us: int
    cumulative_us: int


def parse_importtime(stderr: str) -> list[ImportRow]:
    rows = []
    for line in stderr.splitlines():
        match = _IMPORTTIME_LINE.match(line)
        if match:
            self_us, cumulative_us, indent, module = match.groups()
            depth = (len(indent) - 1) // 2
            rows.append(ImportRow(module, depth, int(self_us), int(cumulative_us)))
    return rows


def importtime_profile(argv: Sequence[str], repeats: int) -> dict[str, Any]:
    """Median over ``repeats`` runs: top-level imports by cumulative time, packages by self
    time, and which lian modules load at all."""
    cumulative: dict[str, list[int]] = defaultdict(list)
    package_self: dict[str, list[int]] = defaultdict(list)
    totals: list[int] = []
    lian_modules: set[str] = set()
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, check=True
        )
        rows = parse_importtime(done.stderr)
        per_package: dict[str, int] = defaultdict(int)
        for row in rows:
            if row.depth == 0:
                cumulative[row.module].append(row.cumulative_us)
            per_package[row.module.split(".")[0]] += row.self_us
            if row.module.startswith("lian"):
                lian_modules.add(row.module)
        for package, spent in per_package.items():
            package_self[package].append(spent)
        totals.append(sum(row.self_us for row in rows))

    def top(table: dict[str, list[int]], count: int = 10) -> list[dict[str, Any]]:
        medians = {name: statistics.median(values) for name, values in table.items()}
        ranked = sorted(medians.items(), key=lambda item: item[1], reverse=True)[:count]
        return [{"module": name, "ms": round(us / 1000, 1)} for name, us in ranked]

    return {
        "command": ["python", "-X", "importtime", *argv],
        "repeats": repeats,
        "total_import_ms": round(statistics.median(totals) / 1000, 1),
        "top_level_by_cumulative": top(cumulative),
        "packages_by_self_time": top(package_self),
        "lian_modules_imported": sorted(lian_modules),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--runs", type=int, help="timed runs per command (default 30, quick 5)")
    parser.add_argument(
        "--tool",
        choices=["interleaved", "hyperfine"],
        default="interleaved",
        help="interleaved rounds (default; fair on a shared machine) or hyperfine",
    )
    args = parser.parse_args()
    runs = args.runs or (5 if args.quick else 30)
    warmup = 1 if args.quick else 3
    python, lian = str(VENV_BIN / "python"), str(VENV_BIN / "lian")

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        floor_app = Path(tmp) / "typer_floor.py"
        floor_app.write_text(TYPER_FLOOR_APP)
        commands = {
            "python_only": [python, "-c", "pass"],
            "bare_import": [python, "-c", BARE_IMPORT],
            "typer_floor_help": [python, str(floor_app), "--help"],
            "typer_floor_command": [python, str(floor_app), "plugins", "--json"],
            "lian_help": [lian, "--help"],
            "lian_plugins_json": [lian, "plugins", "--json"],
        }
        note(f"timing {len(commands)} commands, {runs} runs each (+{warmup} warm-up)")
        timings = time_commands(commands, runs=runs, warmup=warmup, tool=args.tool)

    median = {name: timing.wall.median for name, timing in timings.items()}
    ratios = {
        "lian_help_vs_bare_import": ratio(median["lian_help"], median["bare_import"]),
        "lian_plugins_json_vs_bare_import": ratio(
            median["lian_plugins_json"], median["bare_import"]
        ),
        "lian_help_vs_typer_floor_help": ratio(median["lian_help"], median["typer_floor_help"]),
        "lian_plugins_json_vs_typer_floor_command": ratio(
            median["lian_plugins_json"], median["typer_floor_command"]
        ),
    }
    cpu = {name: timing.cpu_mean_s for name, timing in timings.items()}
    # CPU time is steadier than wall time when other work shares the machine.
    cpu_ratios = {
        "lian_help_vs_bare_import": ratio(cpu["lian_help"], cpu["bare_import"]),
        "lian_plugins_json_vs_bare_import": ratio(cpu["lian_plugins_json"], cpu["bare_import"]),
    }
    repeats = 2 if args.quick else 7
    note(f"import profiles ({repeats} runs each)")
    profiles = {
        "lian_help": importtime_profile(["-m", "lian_build.cli", "--help"], repeats),
        "lian_plugins_json": importtime_profile(
            ["-m", "lian_build.cli", "plugins", "--json"], repeats
        ),
    }
    write_result(
        "startup",
        {
            "quick": args.quick,
            "tool": args.tool,
            "target": f"lian <= {TARGET_RATIO}x bare import (median wall time)",
            "commands": {name: _shown(argv, floor_app) for name, argv in commands.items()},
            "wall_s": {name: timing.wall.rounded() for name, timing in timings.items()},
            "cpu_mean_s": {name: round(timing.cpu_mean_s, 4) for name, timing in timings.items()},
            "ratios_median": ratios,
            "ratios_cpu_mean": cpu_ratios,
            "target_met": {
                "lian_help": ratios["lian_help_vs_bare_import"] <= TARGET_RATIO,
                "lian_plugins_json": ratios["lian_plugins_json_vs_bare_import"] <= TARGET_RATIO,
            },
            "importtime": profiles,
        },
    )


def _shown(argv: Sequence[str], floor_app: Path) -> str:
    """The command as recorded in the results: paths relative to the repository."""
    text = " ".join(argv).replace(str(floor_app), "<typer floor app>")
    return text.replace(str(ROOT) + "/", "")


if __name__ == "__main__":
    main()
