"""docker-local against the real Docker engine: spawn, SSH, limits, labels, destroy."""

from __future__ import annotations

import datetime as dt
import json
import socket
from typing import Any

import paramiko
import pytest

from lian_build import api
from lian_build.errors import ProvisionError
from lian_docker_local import provider as provider_module
from lian_docker_local.container import CGROUP_LINK

pytestmark = pytest.mark.docker


def test_spawned_runner_answers_ssh_with_pinned_host_key(make_provider, make_request, ssh_run):
    provider = make_provider()
    runner = provider.spawn(make_request())

    assert (runner.provider, runner.host, runner.user) == ("docker-local", "127.0.0.1", "root")
    rsync = ssh_run(runner, "rsync --version")
    buildah = ssh_run(runner, "buildah --version")
    assert rsync.exit_code == 0 and rsync.stdout.startswith("rsync  version")
    assert buildah.exit_code == 0 and "buildah version" in buildah.stdout
    assert ssh_run(runner, "touch /tmp/probe && echo ok").stdout.strip() == "ok"


def test_runner_rejects_a_client_pinning_another_host_key(
    make_provider, make_request, ssh_run, session_keys
):
    runner = make_provider().spawn(make_request())
    other_key = session_keys.client_public  # a valid ed25519 key, but not the host's

    with pytest.raises(paramiko.SSHException):
        ssh_run(runner, "true", pinned_key=other_key)


def test_limits_labels_and_key_injection(make_provider, make_request, docker_client):
    request = make_request(tier=api.Tier("4c-8g", 4, 8))
    runner = make_provider().spawn(request)

    attrs = docker_client.containers.get(runner.id).attrs
    host = attrs["HostConfig"]
    host_cpus = docker_client.info()["NCPU"]
    assert host["Memory"] == host["MemorySwap"] == 8 * 1024**3
    assert host["NanoCpus"] == min(4, host_cpus) * 1_000_000_000
    assert host["NetworkMode"] == "host"
    assert host["CgroupnsMode"] == "host"
    assert {"SYS_ADMIN", "MKNOD", "SYS_CHROOT", "SETFCAP"} <= set(host["CapAdd"])
    assert not host["AutoRemove"] and not host["Privileged"]
    # The container's labels: the request's, plus those the image carries (its recipe).
    image_labels = docker_client.images.get(attrs["Config"]["Image"]).labels or {}
    assert attrs["Config"]["Labels"] == {**image_labels, **request.labels}
    assert dict(request.labels) == dict(runner.labels)
    # The private host key travels by archive only: not in env, argv or labels.
    private_body = request.host_key.private_openssh.splitlines()[1]
    assert private_body not in json.dumps(attrs)


def test_runner_sees_its_own_memory_cgroup(make_provider, make_request, ssh_run):
    runner = make_provider().spawn(make_request(tier=api.Tier("small", 1, 0.5)))

    limit = ssh_run(runner, f"cat {CGROUP_LINK}/memory.limit_in_bytes")
    resolved = ssh_run(runner, f"readlink {CGROUP_LINK}")
    own = ssh_run(runner, "awk -F: '$2 == \"memory\" {print $3}' /proc/self/cgroup")

    assert limit.exit_code == 0, limit.stderr
    assert int(limit.stdout) == int(0.5 * 1024**3)
    assert resolved.stdout.strip() == "/sys/fs/cgroup/memory" + own.stdout.strip()
    assert runner.id in resolved.stdout


def test_destroy_is_idempotent(make_provider, make_request, docker_client):
    import docker

    provider = make_provider()
    runner = provider.spawn(make_request())

    provider.destroy(runner.id)
    provider.destroy(runner.id)
    provider.destroy("0" * 64)

    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(runner.id)
    assert provider.inspect(runner.id) == api.RunnerState(exists=False)


def test_list_runners_finds_by_labels_only(
    make_provider, make_request, docker_client, reap_test_containers, runner_image
):
    provider = make_provider()
    wanted = provider.spawn(make_request(labels={"lian.workspace": "wanted"}))
    other = provider.spawn(make_request(labels={"lian.workspace": "other"}))
    unrelated = docker_client.containers.create(
        runner_image, ["sleep", "60"], labels=reap_test_containers.labels
    )

    found = provider.list_runners({**reap_test_containers.labels, "lian.workspace": "wanted"})
    all_lian = provider.list_runners({**reap_test_containers.labels, "lian.managed": "true"})

    assert [info.id for info in found] == [wanted.id]
    assert found[0].labels["lian.workspace"] == "wanted"
    assert found[0].created_at is not None
    age = dt.datetime.now(dt.UTC) - found[0].created_at
    assert dt.timedelta(0) <= age < dt.timedelta(hours=1)
    assert {info.id for info in all_lian} == {wanted.id, other.id}
    assert unrelated.id not in {info.id for info in all_lian}


def test_oom_kill_shows_in_cgroup_counter_and_inspect(make_provider, make_request, ssh_run):
    provider = make_provider()
    runner = provider.spawn(make_request(tier=api.Tier("tiny", 1, 0.15)))
    counter = f"awk '$1 == \"oom_kill\" {{print $2}}' {CGROUP_LINK}/memory.oom_control"
    assert ssh_run(runner, counter).stdout.strip() == "0"
    assert provider.inspect(runner.id) == api.RunnerState(exists=True, running=True)

    # tail keeps the newline-free stream in memory: ~500 MB against a 150 MB limit.
    hog = ssh_run(runner, "head -c 500m /dev/zero | tail >/dev/null")

    assert hog.exit_code != 0
    assert int(ssh_run(runner, counter).stdout) >= 1
    state = provider.inspect(runner.id)
    assert state == api.RunnerState(exists=True, running=True, exit_code=None, oom_killed=True)


def test_port_race_retries_with_another_port(
    make_provider, make_request, monkeypatch, docker_client, reap_test_containers
):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken, _free_port()])
        monkeypatch.setattr(provider_module, "_free_port", lambda host: next(ports))

        runner = make_provider().spawn(make_request())

        assert runner.port != taken
        left = docker_client.containers.list(
            all=True, filters={"label": f"lian.test-session={reap_test_containers.session}"}
        )
        assert [c.id for c in left] == [runner.id]


def test_bridge_network_publishes_sshd_on_bind_host(make_provider, make_request, ssh_run):
    runner = make_provider(network="bridge").spawn(make_request())

    result = ssh_run(runner, "rsync --version")

    assert result.exit_code == 0


def test_missing_image_names_the_build_command(make_provider, make_request):
    with pytest.raises(ProvisionError, match="lian runner-image build --tag lian-runner:absent"):
        make_provider().spawn(make_request(runner_image="lian-runner:absent"))


def test_unreachable_engine_says_how_to_start_it(make_request, tmp_path):
    settings = provider_module.DockerLocalSettings(docker_host=f"unix://{tmp_path}/none.sock")
    provider = provider_module.DockerLocalProvider(settings, lambda ref: "")

    with pytest.raises(ProvisionError, match="Start it") as caught:
        provider.spawn(make_request())
    assert caught.value.exit_code == 4
    # plan() never touches the engine.
    assert provider.plan()["engine"] == f"unix://{tmp_path}/none.sock"


def test_inspect_reports_exit_code_of_a_stopped_runner(make_provider, make_request, docker_client):
    provider = make_provider()
    runner = provider.spawn(make_request())
    container: Any = docker_client.containers.get(runner.id)
    container.kill(signal="SIGKILL")
    container.wait()

    assert provider.inspect(runner.id) == api.RunnerState(
        exists=True, running=False, exit_code=137, oom_killed=False
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_buildah_builds_inside_the_runner(make_provider, make_request, ssh_run):
    runner = make_provider().spawn(make_request())
    # busybox-static is in the image: a FROM scratch build needs no registry.
    script = (
        "set -e; mkdir -p /tmp/ctx && cp /bin/busybox /tmp/ctx/ && cd /tmp/ctx && "
        "printf 'FROM scratch\\nCOPY busybox /bin/busybox\\n"
        'RUN ["/bin/busybox", "sh", "-c", "echo built > /marker"]\\n\' > Dockerfile && '
        # buildah >= 1.29 raises RLIMIT_NOFILE/NPROC per RUN step unless given the
        # container's own limits (the buildah builder passes them the same way).
        'lim() { awk -v n="$1" \'$0 ~ n {print $(NF-2) ":" $(NF-1)}\' /proc/self/limits; } && '
        "buildah build --isolation chroot --storage-driver vfs -q -t lian-probe "
        "--ulimit nofile=$(lim 'open files') --ulimit nproc=$(lim 'processes') . >/dev/null && "
        "ctr=$(buildah --storage-driver vfs from lian-probe) && "
        "cat $(buildah --storage-driver vfs mount $ctr)/marker"
    )

    result = ssh_run(runner, script)

    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "built"


FAKE_BUILDKITD = b"""#!/bin/sh
# Stand-in for buildkitd: records how it was started, then idles like a daemon.
printf '%s\\n' "$@" > /tmp/buildkitd-args
exec sleep 3600
"""


def test_start_script_confines_buildkitd_to_the_runner_cgroup(
    make_provider, make_request, runner_image
):
    """A real runner container: the start script finds the runner's own cgroup, writes
    buildkitd's config with it as defaultCgroupParent and starts buildkitd --config."""
    import io
    import tarfile

    from lian_docker_local import container as runner_files

    provider = make_provider(image=runner_image)
    request = make_request(tier=api.Tier("tiny", 1, 0.5))
    port = _free_port()
    made = provider._create(provider._docker(), request, runner_image, port)
    try:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo("usr/local/bin/buildkitd")
            info.size, info.mode = len(FAKE_BUILDKITD), 0o755
            tar.addfile(info, io.BytesIO(FAKE_BUILDKITD))
        assert made.put_archive("/", buffer.getvalue())
        keys = runner_files.ssh_files_archive(
            request.host_key.private_openssh, request.authorized_key
        )
        assert made.put_archive("/", keys)
        made.start()
        provider._wait_for_sshd(made, port)

        def run(command: str) -> str:
            result = made.exec_run(["sh", "-c", command])
            assert result.exit_code == 0, result.output
            return str(result.output.decode().strip())

        own = run("awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3; exit }' /proc/1/cgroup")
        assert own.startswith("/") and own != "/"
        assert run(f"cat {runner_files.BUILDKITD_CONFIG}") == (
            f'[worker.oci]\n  defaultCgroupParent = "{own}"'
        )
        assert run("cat /tmp/buildkitd-args").splitlines() == [
            "--config",
            runner_files.BUILDKITD_CONFIG,
        ]
        # The parent is the container's own memory cgroup, where the tier's limit is set.
        limit = run(f"cat /sys/fs/cgroup/memory{own}/memory.limit_in_bytes")
        assert int(limit) == int(0.5 * 1024**3)
    finally:
        provider.destroy(made.id)
