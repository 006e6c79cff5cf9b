"""HcloudProvider against the local imitation of the Hetzner Cloud API."""

from __future__ import annotations

import json
import logging

import pytest
from fake_hcloud import FakeHcloud

from lian_build import api
from lian_build.errors import InvalidInput, ProvisionError
from lian_hcloud.provider import READY_SCRIPT, HcloudProvider

NAME = "lian-s1a2b3"


def _user_data_config(fake: FakeHcloud, server_id: int) -> dict:
    header, _, body = fake.user_data[server_id].partition("\n")
    assert header == "#cloud-config"
    return json.loads(body)


# --------------------------------------------------------------------------- spawn / destroy


def test_spawn_then_destroy_round_trip(fake_hcloud, provider, make_request):
    request = make_request()

    runner = provider.spawn(request)

    server = fake_hcloud.servers[int(runner.id)]
    assert server["name"] == NAME
    assert server["status"] == "running"  # start_server (a next action) was waited for
    assert runner.host == server["public_net"]["ipv4"]["ip"]
    assert (runner.port, runner.user, runner.provider) == (22, "root", "hcloud")
    assert runner.host_public_key == request.host_key.public_openssh
    assert runner.tier == request.tier
    # Both actions were polled until they finished, not just fetched once.
    polls = fake_hcloud.requests_to("GET", r"/actions/\d+")
    assert len(polls) >= 2 * (fake_hcloud.action_polls + 1)

    provider.destroy(runner.id)

    assert int(runner.id) not in fake_hcloud.servers
    assert provider.inspect(runner.id) == api.RunnerState(exists=False)


def test_create_request_carries_labels_image_location_and_type(fake_hcloud, provider, make_request):
    request = make_request()
    runner = provider.spawn(request)

    (create,) = fake_hcloud.requests_to("POST", "/servers")
    body = create.body
    assert body["name"] == NAME
    assert body["server_type"] == fake_hcloud.server_types["cx23"]["id"]
    assert body["image"] == "ubuntu-24.04"
    assert body["location"] == "fsn1"
    assert body["start_after_create"] is True
    assert body["labels"] == dict(request.labels)
    assert fake_hcloud.servers[int(runner.id)]["labels"]["lian.session"] == "s1a2b3"
    assert runner.labels == dict(request.labels)


def test_user_data_installs_host_key_and_authorized_key(fake_hcloud, provider, make_request):
    request = make_request()
    runner = provider.spawn(request)

    config = _user_data_config(fake_hcloud, int(runner.id))
    assert config["ssh_keys"]["ed25519_public"] == request.host_key.public_openssh
    assert config["ssh_keys"]["ed25519_private"].strip() == request.host_key.private_openssh.strip()
    assert config["ssh_deletekeys"] is True
    assert config["ssh_genkeytypes"] == []
    assert config["users"][0]["name"] == "root"
    assert config["users"][0]["ssh_authorized_keys"] == [request.authorized_key]
    assert config["ssh_pwauth"] is False
    # A stock image gets its builder from cloud-init; the build waits for cloud-init.
    assert set(config["packages"]) >= {"buildah", "rsync"}
    assert runner.ready_command == ("sh", "-c", READY_SCRIPT)
    assert runner.image == "ubuntu-24.04"


def test_snapshot_id_firewall_and_network_are_sent_as_ids(fake_hcloud, make_provider, make_request):
    firewall_id = fake_hcloud.add_firewall("builders")
    network_id = fake_hcloud.add_network("ci")
    snapshot = fake_hcloud.add_snapshot({"team": "web"})
    provider = make_provider(firewall="builders", network="ci", image=str(snapshot))

    runner = provider.spawn(make_request())

    body = fake_hcloud.requests_to("POST", "/servers")[0].body
    assert body["image"] == snapshot
    assert runner.image == str(snapshot)
    provider.destroy(runner.id)
    fake_hcloud.remove_image(snapshot)
    assert body["firewalls"] == [{"firewall": firewall_id}]
    assert body["networks"] == [network_id]


def test_missing_firewall_is_refused_before_create(fake_hcloud, make_provider, make_request):
    provider = make_provider(firewall="nope")
    with pytest.raises(ProvisionError) as info:
        provider.spawn(make_request())
    assert info.value.details["code"] == "firewall_not_found"
    assert not fake_hcloud.requests_to("POST", "/servers")


# --------------------------------------------------------------------------- server types


def test_deprecated_server_type_is_refused_naming_the_replacement(
    fake_hcloud, provider, make_request
):
    with pytest.raises(ProvisionError) as info:
        provider.spawn(make_request(tier="cx22"))

    assert "cx23" in info.value.message
    assert "deprecated" in info.value.message
    assert info.value.details["code"] == "server_type_deprecated"
    assert info.value.details["replacement"] == "cx23"
    assert not fake_hcloud.requests_to("POST", "/servers")


def test_server_type_unavailable_in_location_is_refused(fake_hcloud, provider, make_request):
    for entry in fake_hcloud.server_types["cx23"]["locations"]:
        entry["available"] = entry["name"] != "fsn1"
    with pytest.raises(ProvisionError) as info:
        provider.spawn(make_request())
    assert info.value.details["code"] == "server_type_unavailable"
    assert info.value.field == "location"


def test_unknown_server_type_is_refused(fake_hcloud, provider, make_request):
    with pytest.raises(ProvisionError) as info:
        provider.spawn(make_request(tier="zz99"))
    assert info.value.details["code"] == "server_type_unknown"


# --------------------------------------------------------------------------- orphans


def test_orphan_from_this_session_is_swept_and_create_retried(fake_hcloud, provider, make_request):
    request = make_request()
    orphan = fake_hcloud.add_server(NAME, dict(request.labels))

    runner = provider.spawn(request)

    assert orphan["id"] not in fake_hcloud.servers
    assert int(runner.id) != orphan["id"]
    assert [s["name"] for s in fake_hcloud.servers.values()] == [NAME]
    assert len(fake_hcloud.requests_to("POST", "/servers")) == 2


def test_same_name_server_of_someone_else_is_left_alone(fake_hcloud, provider, make_request):
    foreign = fake_hcloud.add_server(NAME, {"team": "web"})

    with pytest.raises(ProvisionError) as info:
        provider.spawn(make_request())

    assert info.value.details["code"] == "name_taken"
    assert foreign["id"] in fake_hcloud.servers
    assert not fake_hcloud.requests_to("DELETE", r"/servers/\d+")
    fake_hcloud.remove_server(foreign["id"])


# --------------------------------------------------------------------------- failures


def test_failed_create_action_deletes_the_server(fake_hcloud, provider, make_request):
    fake_hcloud.fail_action("create_server", message="disk image broken")

    with pytest.raises(ProvisionError) as info:
        provider.spawn(make_request())

    assert info.value.details["code"] == "action_failed"
    assert "disk image broken" in info.value.message
    assert fake_hcloud.servers == {}


def test_api_failure_after_create_deletes_the_server(fake_hcloud, provider, make_request):
    fake_hcloud.fail_next("GET", r"/servers/\d+", status=500, code="server_error")

    with pytest.raises(ProvisionError) as info:
        provider.spawn(make_request())

    assert info.value.details["code"] == "server_error"
    assert fake_hcloud.servers == {}


def test_action_timeout_deletes_the_server(fake_hcloud, make_provider, make_request):
    provider = make_provider(create_timeout=0.02)  # 2 polls; the imitation needs 4

    with pytest.raises(ProvisionError) as info:
        provider.spawn(make_request())

    assert info.value.details["code"] == "action_timeout"
    # The create still runs, so the first deletes answer "locked" and are retried.
    deletes = fake_hcloud.requests_to("DELETE", r"/servers/\d+")
    assert len(deletes) > 1
    assert len({d.path for d in deletes}) == 1
    fake_hcloud.settle()
    assert fake_hcloud.servers == {}


def test_unauthorized_names_the_reference_never_the_token(
    fake_hcloud, make_provider, make_request, caplog
):
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-token-Zq8Kx3"
    provider = make_provider(token=wrong)

    with pytest.raises(ProvisionError) as info:
        provider.spawn(make_request())

    error = info.value
    assert error.details["code"] == "unauthorized"
    assert error.field == "token_ref"
    assert "env:HCLOUD_TOKEN" in error.message
    assert "rejected" in error.message
    everything = json.dumps(error.to_dict()) + str(error) + repr(error) + caplog.text
    assert wrong not in everything
    assert fake_hcloud.requests[0].authorization == f"Bearer {wrong}"  # it was really sent


@pytest.mark.parametrize(
    ("status", "code", "field", "phrase"),
    [
        (403, "resource_limit_exceeded", None, "server_limit"),
        (412, "placement_error", "location", "nbg1"),
        (503, "resource_unavailable", "location", "hel1"),
        (400, "invalid_input", None, "refused"),
    ],
)
def test_create_errors_map_to_stable_codes(
    fake_hcloud, provider, make_request, status, code, field, phrase
):
    fake_hcloud.fail_next(
        "POST", "/servers", status=status, code=code, details={"limits": [{"name": "server_limit"}]}
    )

    with pytest.raises(ProvisionError) as info:
        provider.spawn(make_request())

    assert info.value.details["code"] == code
    assert info.value.field == field
    assert phrase in info.value.message
    assert fake_hcloud.servers == {}


def test_rate_limit_is_retried_by_the_library(fake_hcloud, provider, make_request):
    fake_hcloud.rate_limit("POST", "/servers", times=2)

    runner = provider.spawn(make_request())

    assert int(runner.id) in fake_hcloud.servers
    assert len(fake_hcloud.requests_to("POST", "/servers")) == 3


def test_rate_limit_beyond_the_retries_is_a_provision_error(fake_hcloud, provider, make_request):
    fake_hcloud.rate_limit("POST", "/servers", times=50)

    with pytest.raises(ProvisionError) as info:
        provider.spawn(make_request())

    assert info.value.details["code"] == "rate_limit_exceeded"
    assert len(fake_hcloud.requests_to("POST", "/servers")) == 6  # first try + 5 retries


def test_unreachable_api_is_a_provision_error(make_provider, make_request):
    from fixtures.ports import free_port

    provider = make_provider(api_endpoint=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(ProvisionError) as info:
        provider.spawn(make_request())
    assert info.value.details["code"] == "unreachable"


def test_bad_label_is_refused_before_any_request(fake_hcloud, provider, make_request):
    with pytest.raises(InvalidInput) as info:
        provider.spawn(make_request(note="x" * 64))
    assert info.value.field == "labels"
    assert fake_hcloud.requests == []


# ------------------------------------------------------------------ destroy / list / inspect


def test_destroy_is_idempotent(fake_hcloud, provider, make_request):
    runner = provider.spawn(make_request())
    provider.destroy(runner.id)
    provider.destroy(runner.id)
    provider.destroy("987654")
    assert fake_hcloud.servers == {}
    with pytest.raises(InvalidInput):
        provider.destroy("not-a-number")


def test_destroy_action_failure_is_a_provision_error(fake_hcloud, provider, make_request):
    runner = provider.spawn(make_request())
    fake_hcloud.fail_action("delete_server")
    with pytest.raises(ProvisionError) as info:
        provider.destroy(runner.id)
    assert info.value.details["code"] == "action_failed"


def test_list_runners_by_label_follows_pagination(fake_hcloud, provider):
    for i in range(120):
        fake_hcloud.add_server(f"lian-s{i}", {"lian.managed": "true", "lian.workspace": "shop"})
    for i in range(7):
        fake_hcloud.add_server(f"other-{i}", {"lian.managed": "true", "lian.workspace": "blog"})
    fake_hcloud.add_server("unmanaged", {"lian.workspace": "shop"})

    found = provider.list_runners({"lian.managed": "true", "lian.workspace": "shop"})

    assert len(found) == 120
    assert len({r.id for r in found}) == 120
    assert all(r.labels["lian.workspace"] == "shop" for r in found)
    assert all(r.created_at is not None and r.created_at.tzinfo is not None for r in found)
    pages = fake_hcloud.requests_to("GET", "/servers")
    assert [p.query["page"] for p in pages] == [["1"], ["2"], ["3"]]
    assert pages[0].query["label_selector"] == ["lian.managed=true,lian.workspace=shop"]
    fake_hcloud.remove_all_servers()


def test_listed_runners_carry_the_hourly_price_of_their_tier(fake_hcloud, provider):
    fake_hcloud.add_server("lian-priced", {"lian.managed": "true", "lian.tier": "cx33"})
    fake_hcloud.add_server("lian-untiered", {"lian.managed": "true"})

    found = {r.labels.get("lian.tier"): r for r in provider.list_runners({"lian.managed": "true"})}

    cx33 = provider.estimate_cost(api.Tier(name="cx33", cpu=4, memory_gb=8), 3600)
    assert cx33 is not None and found["cx33"].hourly_price == cx33["hourly_net"] > 0
    assert found[None].hourly_price is None  # no tier label: no price to tell
    fake_hcloud.remove_all_servers()


def test_inspect_reports_running_server(provider, make_request):
    runner = provider.spawn(make_request())
    assert provider.inspect(runner.id) == api.RunnerState(exists=True, running=True)


# --------------------------------------------------------------------------- no network


def test_tiers_and_plan_need_no_token_and_no_network(fake_hcloud):
    def no_secrets(reference: str) -> str:
        raise AssertionError("tiers/plan must not resolve secrets")

    provider = HcloudProvider(HcloudProvider.Settings(), no_secrets)

    assert [t.name for t in provider.tiers()] == ["cx23", "cx33", "cx43", "cx53"]
    assert [(t.cpu, t.memory_gb, t.disk_gb) for t in provider.tiers()][-1] == (16, 32, 320)
    assert provider.plan() == {
        "location": "fsn1",
        "image": "newest snapshot labelled lian.runner-image (read at spawn), else ubuntu-24.04",
        "api_endpoint": "https://api.hetzner.cloud/v1",
        "server_types": ["cx23", "cx33", "cx43", "cx53"],
        "packages": ["buildah", "rsync"],
    }
    assert fake_hcloud.requests == []
