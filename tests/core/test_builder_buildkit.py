"""BuildKitBuilder: exact buildctl command lines, output parsing, and build() driving
a stand-in ``buildctl`` (BuildKit itself cannot be installed on these machines)."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from core.build_jobs import REG, job
from core.localremote import LocalRemote

from lian_build import api
from lian_build.builders.buildkit import (
    BuildKitBuilder,
    count_cache_hits,
    csv_join,
    parse_metadata,
)
from lian_build.builders.progress import metadata_digest
from lian_build.errors import InvalidInput

NASTY = "a b;c $(touch /tmp/pwned) `id` \"dq\" 'sq' \\ $HOME\nsecond line, with comma"


def sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def argv_of(build_job: api.BuildJob, builder: BuildKitBuilder | None = None) -> list[str]:
    commands = (builder or BuildKitBuilder()).commands(build_job)
    assert len(commands) == 1
    return commands[0]


def values_of(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


# --------------------------------------------------------------------------- commands


def test_minimal_command_line_is_exact():
    assert argv_of(job()) == [
        "buildctl", "build",
        "--frontend", "dockerfile.v0",
        "--local", "context=/tmp/lian/ctx",
        "--local", "dockerfile=/tmp/lian/ctx",
        "--opt", "filename=Dockerfile",
        "--output", f"type=image,name={REG}/app:1,push=true,oci-mediatypes=true",
        "--progress=rawjson",
        "--metadata-file", "/tmp/lian/work/metadata.json",
    ]  # fmt: skip


def test_full_command_line_is_exact():
    build_job = job(
        dockerfile="docker/Dockerfile.prod",
        tags=(f"{REG}/app:1", f"{REG}/app:latest"),
        platforms=("linux/amd64", "linux/arm64"),
        target="runtime",
        build_args={"VERSION": "1.2", "EMPTY": ""},
        cache_imports=(f"{REG}/cache/ci/ws/app:main", "ghcr.io/org/cache:dev"),
        cache_exports=(f"{REG}/cache/ci/ws/app:main",),
        insecure_registries=frozenset({REG}),
        secrets=(api.BuildSecret("npm", "/tmp/lian/work/secrets/npm"),),
        progress="rawjson",
    )
    builder = BuildKitBuilder(addr="tcp://127.0.0.1:1234")
    assert argv_of(build_job, builder) == [
        "buildctl", "--addr", "tcp://127.0.0.1:1234", "build",
        "--frontend", "dockerfile.v0",
        "--local", "context=/tmp/lian/ctx",
        "--local", "dockerfile=/tmp/lian/ctx/docker",
        "--opt", "filename=Dockerfile.prod",
        "--opt", "target=runtime",
        "--opt", "platform=linux/amd64,linux/arm64",
        "--opt", "build-arg:VERSION=1.2",
        "--opt", "build-arg:EMPTY=",
        "--output",
        f'type=image,"name={REG}/app:1,{REG}/app:latest",push=true,oci-mediatypes=true,'
        "registry.insecure=true",
        "--import-cache", f"type=registry,ref={REG}/cache/ci/ws/app:main,registry.insecure=true",
        "--import-cache", "type=registry,ref=ghcr.io/org/cache:dev",
        "--export-cache",
        f"type=registry,ref={REG}/cache/ci/ws/app:main,mode=max,oci-mediatypes=true,"
        "image-manifest=true,ignore-error=true,registry.insecure=true",
        "--secret", "id=npm,src=/tmp/lian/work/secrets/npm",
        "--progress=rawjson",
        "--metadata-file", "/tmp/lian/work/metadata.json",
    ]  # fmt: skip


def test_secure_registry_gets_no_insecure_flag():
    argv = argv_of(
        job(
            tags=("ghcr.io/org/app:1",),
            cache_imports=("ghcr.io/org/cache:ci",),
            cache_exports=("ghcr.io/org/cache:ci",),
            insecure_registries=frozenset({REG}),
        )
    )
    assert not any("insecure" in arg for arg in argv)


def test_insecure_flag_follows_each_cache_host():
    argv = argv_of(
        job(
            tags=("ghcr.io/org/app:1",),
            cache_imports=(f"{REG}/c:a", "ghcr.io/org/c:b"),
            cache_exports=("ghcr.io/org/c:b", f"{REG}/c:a"),
            insecure_registries=frozenset({REG}),
        )
    )
    assert "registry.insecure=true" not in values_of(argv, "--output")[0]
    imports = values_of(argv, "--import-cache")
    exports = values_of(argv, "--export-cache")
    assert [i.endswith("registry.insecure=true") for i in imports] == [True, False]
    assert [e.endswith("registry.insecure=true") for e in exports] == [False, True]


def test_several_tags_are_one_csv_quoted_name_field():
    tags = (f"{REG}/app:1", f"{REG}/app:2", f"{REG}/other:3")
    (output,) = values_of(argv_of(job(tags=tags)), "--output")
    # buildctl splits the value with Go's encoding/csv: Python's csv reads it the same way.
    assert next(csv.reader([output])) == [
        "type=image",
        "name=" + ",".join(tags),
        "push=true",
        "oci-mediatypes=true",
    ]


def test_no_push_leaves_the_image_in_buildkit():
    (output,) = values_of(argv_of(job(push=False)), "--output")
    assert "push=true" not in output


def test_no_cache_no_secrets_no_platform_flags():
    argv = argv_of(job())
    for flag in ("--import-cache", "--export-cache", "--secret", "--addr"):
        assert flag not in argv
    assert not any(arg.startswith(("platform=", "target=", "build-arg:")) for arg in argv)


def test_csv_join_quotes_commas_and_quotes():
    fields = ["id=x", 'src=/run/a,b"c', "plain"]
    joined = csv_join(fields)
    assert joined == 'id=x,"src=/run/a,b""c",plain'
    assert next(csv.reader([joined])) == fields


def test_metacharacters_stay_single_argv_elements():
    argv = argv_of(
        job(
            context_dir="/tmp/lian/ctx with space;$(x)",
            build_args={"NASTY": NASTY},
            target="t'$(x)",
        )
    )
    assert f"build-arg:NASTY={NASTY}" in argv
    assert "context=/tmp/lian/ctx with space;$(x)" in argv
    assert "target=t'$(x)" in argv


def test_argv_survives_the_core_quoting_through_a_real_shell():
    quoting = pytest.importorskip("lian_build.remote.quoting")
    argv = argv_of(
        job(
            context_dir="/tmp/lian/ctx 'x' $(y)",
            build_args={"NASTY": NASTY, "GLOB": "*", "DASH": "-rf"},
            secrets=(api.BuildSecret("id;x", "/tmp/a b/$(c)"),),
        )
    )
    # printf prints every argument NUL-terminated: newlines inside values survive too.
    script = "printf '%s\\0' " + quoting.join(argv)
    out = subprocess.run(["sh", "-c", script], capture_output=True, check=True).stdout
    assert out.decode().split("\0")[:-1] == argv


def test_unknown_progress_mode_is_rejected_naming_the_field():
    with pytest.raises(InvalidInput) as caught:
        BuildKitBuilder().commands(job(progress="tty"))
    assert caught.value.field == "progress"


def test_environment_sets_docker_config_only_when_given():
    builder = BuildKitBuilder()
    assert builder.environment(job()) == {}
    assert builder.environment(job(docker_config_dir="/tmp/lian/docker")) == {
        "DOCKER_CONFIG": "/tmp/lian/docker"
    }


# --------------------------------------------------------------------------- parsing

PLAIN_PROGRESS = f"""\
#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 312B done
#1 DONE 0.0s

#2 [internal] load metadata for {REG}/base/debian:12
#2 DONE 0.1s

#3 [internal] load .dockerignore
#3 transferring context: 2B done
#3 DONE 0.0s

#4 importing cache manifest from {REG}/cache/ci/ws/app:main
#4 inferred cache manifest type: application/vnd.oci.image.manifest.v1+json done
#4 DONE 0.0s

#5 [build 1/4] FROM {REG}/base/debian:12@{sha("base")}
#5 resolve {REG}/base/debian:12@{sha("base")} done
#5 DONE 0.0s

#6 [internal] load build context
#6 transferring context: 4.21kB done
#6 DONE 0.0s

#7 [build 2/4] RUN apt-get update && apt-get install -y curl
#7 CACHED

#8 [build 3/4] COPY . /src
#8 CACHED

#9 [build 4/4] RUN make -C /src
#9 0.231 cc -O2 -o app main.c
#10 [stage-1 1/2] FROM {REG}/base/debian:12@{sha("base")}
#10 CACHED
#9 [build 4/4] RUN make -C /src
#9 1.402 done
#9 DONE 1.4s

#11 [stage-1 2/2] COPY --from=build /src/app /usr/local/bin/app
#11 DONE 0.1s

#12 exporting to image
#12 exporting layers 0.2s done
#12 exporting manifest {sha("manifest")} 0.0s done
#12 exporting config {sha("config")} 0.0s done
#12 naming to {REG}/app:1 done
#12 pushing layers 0.1s done
#12 pushing manifest for {REG}/app:1@{sha("manifest")} 0.0s done
#12 DONE 0.4s

#13 exporting cache to registry
#13 preparing build cache for export
#13 writing layer {sha("layer")} 0.0s done
#13 writing cache manifest {sha("cache")} done
#13 DONE 0.3s
"""


def rawjson_lines() -> list[str]:
    def status(**kw: object) -> str:
        return json.dumps(kw, separators=(",", ":"))

    t0, t1 = "2024-05-01T10:00:00.100000000Z", "2024-05-01T10:00:01.200000000Z"
    load = {"digest": sha("load"), "name": "[internal] load build definition from Dockerfile"}
    base = {"digest": sha("from"), "name": f"[1/3] FROM {REG}/base:1@{sha('b')}"}
    run = {"digest": sha("run"), "inputs": [sha("from")], "name": "[2/3] RUN apk add curl"}
    copy = {"digest": sha("copy"), "inputs": [sha("run")], "name": "[3/3] COPY . /app"}
    export = {"digest": sha("export"), "name": "exporting to image"}
    return [
        status(vertexes=[{**load, "started": t0}]),
        status(
            vertexes=[{**load, "started": t0, "completed": t1}],
            statuses=[
                {
                    "id": "transferring dockerfile:",
                    "vertex": sha("load"),
                    "current": 312,
                    "timestamp": t1,
                    "started": t0,
                    "completed": t1,
                }
            ],
        ),
        status(vertexes=[{**base, "started": t0, "completed": t1, "cached": True}]),
        status(vertexes=[{**run, "started": t0, "completed": t1, "cached": True}]),
        status(vertexes=[{**copy, "started": t0}]),
        status(logs=[{"vertex": sha("copy"), "stream": 1, "data": "aGVsbG8K", "timestamp": t1}]),
        status(vertexes=[{**copy, "started": t0, "completed": t1}]),
        status(vertexes=[{**export, "started": t0, "completed": t1}]),
    ]


METADATA = {
    "cache.manifest": {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha("cache"),
        "size": 1069,
    },
    "containerimage.config.digest": sha("config"),
    "containerimage.descriptor": {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha("manifest"),
        "size": 1054,
        "platform": {"architecture": "amd64", "os": "linux"},
    },
    "containerimage.digest": sha("manifest"),
    "image.name": f"{REG}/app:1,{REG}/app:latest",
}


def test_count_cache_hits_in_plain_progress():
    # Steps: build 1-4 and stage-1 1-2; cached: build 2, build 3, stage-1 1.
    assert count_cache_hits(PLAIN_PROGRESS.splitlines()) == (3, 6)


def test_count_cache_hits_in_rawjson_progress():
    # FROM and RUN cached; COPY built; internal and export vertexes are not steps.
    assert count_cache_hits(rawjson_lines()) == (2, 3)


def test_count_cache_hits_ignores_noise():
    noise = ["", "#x nonsense", "{not json", "[]", '{"vertexes": "bad"}', "plain text"]
    assert count_cache_hits(noise) == (0, 0)


def test_parse_metadata_and_digest():
    metadata = parse_metadata(json.dumps(METADATA, indent=2).encode())
    assert metadata["image.name"] == f"{REG}/app:1,{REG}/app:latest"
    assert metadata_digest(metadata) == sha("manifest")


def test_metadata_digest_falls_back_to_the_descriptor():
    metadata = {k: v for k, v in METADATA.items() if k != "containerimage.digest"}
    assert metadata_digest(metadata) == sha("manifest")


@pytest.mark.parametrize("data", [b"", b"not json", b"[1, 2]", b"\xff\xfe"])
def test_parse_metadata_of_garbage_is_empty(data):
    assert parse_metadata(data) == {}
    assert metadata_digest(parse_metadata(data)) is None


def test_malformed_digest_is_not_reported():
    assert metadata_digest({"containerimage.digest": "sha256:short"}) is None


# --------------------------------------------------------------------------- a stand-in buildctl

FAKE_BUILDCTL = """#!/bin/sh
# Stand-in for buildctl: records its argv and environment, replays captured progress.
state="$(dirname "$0")"
printf '%s\\n' "$@" > "$state/argv"
printf '%s' "${DOCKER_CONFIG:-unset}" > "$state/docker_config"
case "$1" in --addr) shift 2;; esac
case "$1" in
  --version)
    [ -e "$state/no-version" ] && exit 127
    echo "buildctl github.com/moby/buildkit v0.16.0"; exit 0;;
  debug)
    echo x >> "$state/tries"
    [ -e "$state/denied" ] && { echo "dial unix /run/buildkit/buildkitd.sock: permission denied" >&2; exit 1; }
    [ -e "$state/no-daemon" ] && { echo "connection refused" >&2; exit 1; }
    if [ -e "$state/socket-after" ]; then
      # buildkitd still starting: the socket appears after N tries.
      [ "$(wc -l < "$state/tries")" -le "$(cat "$state/socket-after")" ] && {
        echo "dial unix /run/buildkit/buildkitd.sock: connect: no such file or directory" >&2
        exit 1; }
    fi
    echo "ID: w1"; exit 0;;
esac
cat "$state/progress" >&2
[ -e "$state/fail" ] && exit 1
while [ $# -gt 0 ]; do
  if [ "$1" = "--metadata-file" ]; then cp "$state/metadata.json" "$2"; fi
  shift
done
exit 0
"""


@pytest.fixture
def fake_buildctl(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "buildctl"
    script.write_text(FAKE_BUILDCTL)
    script.chmod(0o755)
    (bin_dir / "progress").write_text(PLAIN_PROGRESS)
    (bin_dir / "metadata.json").write_text(json.dumps(METADATA))
    return bin_dir


def test_available_needs_binary_and_daemon(fake_buildctl: Path):
    remote = LocalRemote(extra_path=[str(fake_buildctl)])
    builder = BuildKitBuilder(addr="unix:///run/buildkit/buildkitd.sock", ready_wait_s=1)
    assert builder.available(remote)
    assert remote.calls[0][0][-2:] == ["unix:///run/buildkit/buildkitd.sock", "--version"]
    # The readiness probe passes the buildctl argv (with --addr) to its wait loop.
    assert remote.calls[1][0][-3:] == ["buildctl", "--addr", "unix:///run/buildkit/buildkitd.sock"]
    assert (fake_buildctl / "argv").read_text().splitlines()[-2:] == ["debug", "workers"]
    (fake_buildctl / "no-daemon").touch()
    assert not builder.available(remote)
    (fake_buildctl / "no-version").touch()
    assert not builder.available(remote)


def test_readiness_waits_for_the_socket_of_a_starting_daemon(fake_buildctl: Path):
    (fake_buildctl / "socket-after").write_text("3")
    builder = BuildKitBuilder(ready_wait_s=20)
    assert builder.available(LocalRemote(extra_path=[str(fake_buildctl)]))
    assert len((fake_buildctl / "tries").read_text().splitlines()) == 4


def test_readiness_gives_up_at_once_on_other_errors(fake_buildctl: Path):
    (fake_buildctl / "denied").touch()
    assert not BuildKitBuilder(ready_wait_s=20).available(
        LocalRemote(extra_path=[str(fake_buildctl)])
    )
    assert len((fake_buildctl / "tries").read_text().splitlines()) == 1


def test_readiness_wait_is_bounded(fake_buildctl: Path):
    (fake_buildctl / "no-daemon").touch()
    assert not BuildKitBuilder(ready_wait_s=1).available(
        LocalRemote(extra_path=[str(fake_buildctl)])
    )
    tries = len((fake_buildctl / "tries").read_text().splitlines())
    assert 1 < tries < 40  # retried every 0.2 s, then gave up


def test_available_is_false_without_buildctl(tmp_path: Path):
    remote = LocalRemote(extra_path=[str(tmp_path)])
    assert not BuildKitBuilder(addr=f"unix://{tmp_path}/none.sock").available(remote)


def test_build_streams_counts_and_reads_the_digest(fake_buildctl: Path, tmp_path: Path):
    work = tmp_path / "work"  # does not exist yet: build() creates it
    build_job = job(work_dir=str(work), docker_config_dir=str(tmp_path / "docker"))
    lines: list[str] = []
    outcome = BuildKitBuilder().build(
        build_job, LocalRemote(extra_path=[str(fake_buildctl)]), lines.append
    )
    assert outcome.exit_code == 0
    assert outcome.digest == sha("manifest")
    assert (outcome.cached_steps, outcome.total_steps) == (3, 6)
    assert lines == PLAIN_PROGRESS.splitlines()
    assert outcome.stderr_tail.splitlines() == PLAIN_PROGRESS.splitlines()[-50:]
    assert (fake_buildctl / "argv").read_text().splitlines() == argv_of(build_job)[1:]
    assert (fake_buildctl / "docker_config").read_text() == str(tmp_path / "docker")


def test_failed_build_reports_exit_code_and_tail(fake_buildctl: Path, tmp_path: Path):
    error = [
        "#9 [4/4] RUN make -C /src",
        "#9 0.512 main.c:3:1: error: expected ';' before '}' token",
        '#9 ERROR: process "/bin/sh -c make -C /src" did not complete successfully: exit code: 2',
        "------",
        'ERROR: failed to solve: process "/bin/sh -c make -C /src" did not complete '
        "successfully: exit code: 2",
    ]
    (fake_buildctl / "progress").write_text("\n".join(["#0 filler"] * 80 + error) + "\n")
    (fake_buildctl / "fail").touch()
    lines: list[str] = []
    outcome = BuildKitBuilder().build(
        job(work_dir=str(tmp_path / "work")),
        LocalRemote(extra_path=[str(fake_buildctl)]),
        lines.append,
    )
    assert outcome.exit_code == 1
    assert outcome.digest is None
    tail = outcome.stderr_tail.splitlines()
    assert len(tail) == 50
    assert tail[-5:] == error
    assert lines[-5:] == error
    assert (fake_buildctl / "docker_config").read_text() == "unset"
