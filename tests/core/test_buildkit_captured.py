"""BuildKit v0.32.2's real output (captured inside a runner, in data/buildkit-v0.32.2/):
the hit count trusts rawjson, people still see plain-style lines, OOM is recognised."""

from __future__ import annotations

import json
from pathlib import Path

from core.localremote import LocalRemote

from lian_build import api, oom
from lian_build.builders.buildkit import BuildKitBuilder
from lian_build.builders.progress import RawJsonRenderer, count_cache_hits

DATA = Path(__file__).parent / "data" / "buildkit-v0.32.2"
IMPORTED = "127.0.0.1:5000/bkcheck/manualcache:probe"


def lines(name: str) -> list[str]:
    return (DATA / name).read_text().splitlines()


def test_rawjson_counts_the_registry_cache_hit():
    # FROM, RUN (cached from the registry) and COPY are steps; internal vertexes are not.
    assert count_cache_hits(lines("cache-hit.rawjson.log")) == (1, 3)


def test_plain_progress_of_the_same_hit_is_unreliable():
    # Why the builder reads rawjson: the same build printed as plain, usually without CACHED.
    assert count_cache_hits(lines("cache-hit-no-CACHED-line.plain.log")) == (0, 3)
    assert count_cache_hits(lines("cache-hit-with-CACHED-line.plain.log")) == (1, 3)


def test_rendered_rawjson_reads_like_plain_progress():
    renderer = RawJsonRenderer()
    rendered = [text for line in lines("cache-hit.rawjson.log") for text in renderer.render(line)]
    numbers = {text.split(" ", 1)[1]: text.split(" ", 1)[0] for text in rendered}
    run = numbers['[2/3] RUN echo "built at step run" > /built.txt && sleep 1']
    assert f"{run} CACHED" in rendered
    copy = numbers["[3/3] COPY app.txt /app.txt"]
    assert any(text.startswith(f"{copy} DONE ") for text in rendered)
    assert renderer.cache_imports == [IMPORTED]
    # Every line is "#N ..." and no JSON reaches people.
    assert all(text.startswith("#") and "{" not in text for text in rendered)


def test_renderer_decodes_logs_errors_and_passes_plain_text_through():
    renderer = RawJsonRenderer()
    vertex = {"digest": "sha256:aa", "name": "[2/2] RUN make", "started": "2026-01-01T00:00:00Z"}
    assert renderer.render(json.dumps({"vertexes": [vertex]})) == ["#1 [2/2] RUN make"]
    log = {"vertex": "sha256:aa", "stream": 2, "data": "S2lsbGVkCg=="}  # "Killed\n"
    assert renderer.render(json.dumps({"logs": [log]})) == ["#1 Killed"]
    failed = {**vertex, "completed": "2026-01-01T00:00:07.5Z", "error": "exit code: 137"}
    assert renderer.render(json.dumps({"vertexes": [failed]})) == ["#1 ERROR: exit code: 137"]
    assert renderer.render("error: failed to solve: x") == ["error: failed to solve: x"]
    assert renderer.render("{broken") == ["{broken"]


def test_captured_oom_and_exit_3_are_classified():
    oom_log = (DATA / "oom-killed-step-with-cgroup-parent.plain.log").read_text()
    assert oom.classify(1, oom_log).is_oom
    assert not oom.classify(1, (DATA / "run-step-exit-3.plain.log").read_text()).is_oom


FAKE = """#!/bin/sh
state="$(dirname "$0")"
cat "$state/progress" >&2
while [ $# -gt 0 ]; do
  [ "$1" = "--metadata-file" ] && echo '{}' > "$2"
  shift
done
"""


def test_build_counts_from_rawjson_and_shows_rendered_lines(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "buildctl").write_text(FAKE)
    (bin_dir / "buildctl").chmod(0o755)
    (bin_dir / "progress").write_text((DATA / "cache-hit.rawjson.log").read_text())
    job = api.BuildJob(
        context_dir=str(tmp_path),
        dockerfile="Dockerfile",
        tags=("127.0.0.1:5000/app:1",),
        cache_imports=(IMPORTED,),
        work_dir=str(tmp_path / "work"),
        push=False,
    )
    shown: list[str] = []
    outcome = BuildKitBuilder().build(job, LocalRemote(extra_path=[str(bin_dir)]), shown.append)
    assert (outcome.cached_steps, outcome.total_steps) == (1, 3)
    assert outcome.cache_sources == (IMPORTED,)
    assert shown and all(line.startswith("#") for line in shown)
    assert any(line.endswith(" CACHED") for line in shown)
    # With two imported refs BuildKit does not say which served: unknown, not a guess.
    two = api.BuildJob(**{**_fields(job), "cache_imports": (IMPORTED, "127.0.0.1:5000/x:y")})
    again = BuildKitBuilder().build(two, LocalRemote(extra_path=[str(bin_dir)]), shown.append)
    assert again.cache_sources == (IMPORTED,)  # only one of them was actually imported


def _fields(job: api.BuildJob) -> dict[str, object]:
    import attrs

    return attrs.asdict(job, recurse=False)
