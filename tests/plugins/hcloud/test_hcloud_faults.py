"""The real API's failure modes, each ending in a usable runner or one clear error, and
never leaving a server, SSH key object or snapshot behind (the ``fake_hcloud`` fixture
checks the inventory after every test). Runners here are real containers reached over
SSH, so "usable" is checked by logging in."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hcloud import Client
from hcloud.images import Image
from hcloud.server_types import ServerType

from lian_build import api
from lian_build.errors import ProvisionError
from lian_build.remote.ssh import SSHRemote
from lian_build.testing.conformance.spawn import generate_client_key, write_client_key

log = logging.getLogger("test.hcloud")


def _login(runner: api.Runner, client_key: api.HostKey, tmp_path: Path) -> SSHRemote:
    return SSHRemote.connect(
        runner, write_client_key(client_key, tmp_path), wait_timeout_s=60, log=log.info
    )


def _request_with_key(make_request, client_key: api.HostKey, **kwargs) -> api.SpawnRequest:
    import attrs

    return attrs.evolve(make_request(**kwargs), authorized_key=client_key.public_openssh)


# --------------------------------------------------------------------------- ssh_keys


def test_server_without_ssh_keys_refuses_root_commands(fake_hcloud, tmp_path):
    """What the plugin used to do: the imitation reproduces Hetzner's expired password."""
    client_key = generate_client_key()
    client = Client(token=fake_hcloud.token, api_endpoint=fake_hcloud.url, poll_interval=0.01)
    from lian_build import cloudinit
    from lian_build.remote.ssh import generate_host_key

    host_key = generate_host_key()
    created = client.servers.create(
        name="no-keys",
        server_type=ServerType(name="cx23"),
        image=Image(name="ubuntu-24.04"),
        user_data=cloudinit.user_data(authorized_key=client_key.public_openssh, host_key=host_key),
    )
    assert created.root_password  # e-mailed, and expired
    created.action.wait_until_finished()
    for action in created.next_actions:  # start_server: the server is locked until it ends
        action.wait_until_finished()
    server = client.servers.get_by_id(created.server.id)
    runner = api.Runner(
        id=str(server.id),
        provider="hcloud",
        host=server.public_net.ipv4.ip,
        port=22,
        user="root",
        host_public_key=host_key.public_openssh,
        tier=api.Tier(name="cx23", cpu=2, memory_gb=4),
    )
    try:
        with _login(runner, client_key, tmp_path) as remote:
            result = remote.run(["true"], timeout=30)
        refused = result.exit_code != 0
    except Exception as exc:  # refused at login
        refused, result = True, exc
    assert refused, "root login worked although no ssh_keys were given"
    assert "Password change required" in str(getattr(result, "stderr", result)), result
    client.servers.delete(server).wait_until_finished()


def test_session_key_object_is_sent_on_create_and_deleted_after(
    fake_hcloud, provider, make_request, tmp_path
):
    client_key = generate_client_key()
    request = _request_with_key(make_request, client_key)

    runner = provider.spawn(request)

    created = fake_hcloud.requests_to("POST", "/ssh_keys")
    assert len(created) == 1
    assert created[0].body["public_key"] == client_key.public_openssh.strip()
    assert created[0].body["labels"]["lian.session"] == request.session_id
    assert fake_hcloud.requests_to("POST", "/servers")[0].body["ssh_keys"]
    assert fake_hcloud.ssh_keys == {}  # needed only while the server is created
    with _login(runner, client_key, tmp_path) as remote:
        assert remote.run(["id", "-u"], timeout=30).stdout.strip() == "0"
    provider.destroy(runner.id)


def test_key_object_is_deleted_when_create_fails(fake_hcloud, provider, make_request):
    fake_hcloud.fail_next("POST", "/servers", status=500, code="server_error")

    with pytest.raises(ProvisionError) as info:
        provider.spawn(make_request())

    assert info.value.details["code"] == "server_error"
    assert len(fake_hcloud.requests_to("DELETE", r"/ssh_keys/\d+")) == 1


def test_key_already_uploaded_by_its_owner_is_used_and_kept(
    fake_hcloud, provider, make_request, tmp_path
):
    client_key = generate_client_key()
    mine = fake_hcloud.add_ssh_key("laptop", client_key.public_openssh)

    runner = provider.spawn(_request_with_key(make_request, client_key))

    assert fake_hcloud.requests_to("POST", "/servers")[0].body["ssh_keys"] == [mine]
    assert mine in fake_hcloud.ssh_keys  # not ours to delete
    with _login(runner, client_key, tmp_path) as remote:
        assert remote.run(["true"], timeout=30).exit_code == 0
    provider.destroy(runner.id)
    del fake_hcloud.ssh_keys[mine]


def test_key_orphan_of_the_same_session_is_replaced(fake_hcloud, provider, make_request):
    request = make_request()
    stale = generate_client_key().public_openssh
    orphan = fake_hcloud.add_ssh_key(
        "lian-s1a2b3", stale, {"lian.managed": "true", "lian.session": request.session_id}
    )

    runner = provider.spawn(request)

    assert orphan not in fake_hcloud.ssh_keys
    assert fake_hcloud.ssh_keys == {}
    provider.destroy(runner.id)


def test_key_object_clashed_with_and_gone_before_the_lookup_is_created_again(
    fake_hcloud, provider, make_request
):
    # Two platforms of one build upload the same key: the other platform's object made
    # our create fail, and it deleted that object before we looked it up.
    fake_hcloud.fail_next(
        "POST",
        "/ssh_keys",
        status=409,
        code="uniqueness_error",
        message="SSH key with the same public key already exists",
        details={"fields": [{"name": "public_key"}]},
    )

    runner = provider.spawn(make_request())

    assert len(fake_hcloud.requests_to("POST", "/ssh_keys")) == 2
    (created,) = fake_hcloud.requests_to("POST", "/servers")
    assert len(created.body["ssh_keys"]) == 1
    assert fake_hcloud.ssh_keys == {}  # ours, deleted once the server was created
    provider.destroy(runner.id)


def test_key_name_of_someone_else_is_left_alone(fake_hcloud, provider, make_request):
    foreign = fake_hcloud.add_ssh_key("lian-s1a2b3", generate_client_key().public_openssh)

    with pytest.raises(ProvisionError) as info:
        provider.spawn(make_request())

    assert info.value.details["code"] == "name_taken"
    assert foreign in fake_hcloud.ssh_keys
    assert not fake_hcloud.requests_to("POST", "/servers")
    del fake_hcloud.ssh_keys[foreign]


def test_expired_key_objects_of_killed_builds_are_swept(fake_hcloud, provider, make_request):
    def key(name: str, labels: dict[str, str]) -> int:
        return fake_hcloud.add_ssh_key(name, generate_client_key().public_openssh, labels)

    stale = key("lian-sdead01", {"lian.managed": "true", "lian.expires-at": "1000"})
    live = key("lian-slive01", {"lian.managed": "true", "lian.expires-at": "4102444800"})
    foreign = key("deploy", {"lian.expires-at": "1000"})  # not lian's

    runner = provider.spawn(make_request())

    assert stale not in fake_hcloud.ssh_keys
    assert {live, foreign} == set(fake_hcloud.ssh_keys)
    created = fake_hcloud.requests_to("POST", "/ssh_keys")[0].body
    assert created["labels"]["lian.expires-at"] == make_request().labels["lian.expires-at"]
    provider.destroy(runner.id)
    fake_hcloud.ssh_keys.clear()


# --------------------------------------------------------------------------- locked


def test_delete_during_create_is_retried_until_the_lock_clears(fake_hcloud, provider, make_request):
    fake_hcloud.action_min_s = 0.3  # the create action runs a while
    fake_hcloud.fail_next("GET", r"/actions/\d+", status=500, code="server_error")

    with pytest.raises(ProvisionError) as info:
        provider.spawn(make_request())

    assert info.value.details["code"] == "server_error"
    deletes = fake_hcloud.requests_to("DELETE", r"/servers/\d+")
    assert len(deletes) >= 2, "the first delete should have met the create's lock"
    fake_hcloud.settle()
    assert fake_hcloud.servers == {}


def test_lock_that_never_clears_is_one_clear_error(fake_hcloud, provider, make_request):
    runner = provider.spawn(make_request())
    fake_hcloud.fail_next(
        "DELETE", r"/servers/\d+", status=423, code="locked", message="locked", times=1000
    )
    slow = type(provider)(
        type(provider.settings)(api_endpoint=fake_hcloud.url, poll_interval=0.01, lock_timeout=0.2),
        provider.secrets,
    )

    with pytest.raises(ProvisionError) as info:
        slow.destroy(runner.id)

    assert info.value.details["code"] == "locked"
    assert "locked" in info.value.message
    fake_hcloud._faults.clear()
    provider.destroy(runner.id)


# --------------------------------------------------------------------------- tokens


def test_read_only_token_gets_its_own_message(fake_hcloud, make_provider, make_request):
    provider = make_provider(token=fake_hcloud.readonly_token)

    with pytest.raises(ProvisionError) as info:
        provider.spawn(make_request())

    assert info.value.details["code"] == "token_readonly"
    assert "read-only" in info.value.message
    assert "Read & Write" in info.value.message
    assert fake_hcloud.readonly_token not in info.value.message
    assert not fake_hcloud.servers


# --------------------------------------------------------------------------- placement


def test_type_listed_unavailable_is_refused_before_create(fake_hcloud, provider, make_request):
    fake_hcloud.make_unavailable("cx23", "fsn1")

    with pytest.raises(ProvisionError) as info:
        provider.spawn(make_request())

    assert info.value.details["code"] == "server_type_unavailable"
    assert not fake_hcloud.requests_to("POST", "/servers")


def test_resource_unavailable_at_create_names_other_locations(fake_hcloud, provider, make_request):
    fake_hcloud.sold_out.add(("cx23", "fsn1"))  # listed available, sold out when ordered

    with pytest.raises(ProvisionError) as info:
        provider.spawn(make_request())

    assert info.value.details["code"] == "resource_unavailable"
    assert info.value.field == "location"
    assert "nbg1" in info.value.message
    assert len(fake_hcloud.requests_to("DELETE", r"/ssh_keys/\d+")) == 1


def test_rate_limit_answers_carry_the_ratelimit_headers(fake_hcloud):
    import requests

    fake_hcloud.rate_limit("GET", "/server_types", times=1)
    headers = {"Authorization": f"Bearer {fake_hcloud.token}"}
    limited = requests.get(f"{fake_hcloud.url}/server_types", headers=headers, timeout=5)
    normal = requests.get(f"{fake_hcloud.url}/server_types", headers=headers, timeout=5)

    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert int(normal.headers["RateLimit-Remaining"]) > 0
    assert int(normal.headers["RateLimit-Reset"]) > 0


# --------------------------------------------------------------------------- boot


def test_slow_first_boot_is_waited_for(fake_hcloud, provider, make_request, tmp_path):
    fake_hcloud.boot_delay_s = 2.0
    client_key = generate_client_key()

    runner = provider.spawn(_request_with_key(make_request, client_key))

    with _login(runner, client_key, tmp_path) as remote:
        assert remote.run(list(runner.ready_command), timeout=60).exit_code == 0
    provider.destroy(runner.id)


def test_degraded_cloud_init_is_usable(fake_hcloud, provider, make_request, tmp_path):
    fake_hcloud.boot_status = 2  # cloud-init: recoverable errors
    client_key = generate_client_key()

    runner = provider.spawn(_request_with_key(make_request, client_key))

    with _login(runner, client_key, tmp_path) as remote:
        raw = remote.run(["cloud-init", "status", "--wait"], timeout=60)
        ready = remote.run(list(runner.ready_command), timeout=60)
    assert raw.exit_code == 2
    assert ready.exit_code == 0
    assert "recoverable" in ready.stderr
    provider.destroy(runner.id)


def test_failed_cloud_init_is_not_ready(fake_hcloud, make_provider, make_request, tmp_path):
    provider = make_provider(packages=["no-such-package-here"])
    client_key = generate_client_key()

    runner = provider.spawn(_request_with_key(make_request, client_key))

    with _login(runner, client_key, tmp_path) as remote:
        ready = remote.run(list(runner.ready_command), timeout=60)
    assert ready.exit_code == 1
    provider.destroy(runner.id)


def test_request_outside_the_schema_is_invalid_input(fake_hcloud):
    import requests

    headers = {"Authorization": f"Bearer {fake_hcloud.token}"}
    body = {"name": "x1", "server_type": "cx23", "image": "ubuntu-24.04", "sshkeys": [1]}
    answer = requests.post(f"{fake_hcloud.url}/servers", json=body, headers=headers, timeout=5)

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["details"]["fields"][0]["name"] == "sshkeys"
