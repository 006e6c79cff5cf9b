"""The imitation itself behaves like the documented API (checked through the real library)."""

from __future__ import annotations

import pytest
from fake_hcloud import FakeHcloud, matches_selector
from hcloud import APIException, Client
from hcloud.images import Image
from hcloud.server_types import ServerType


@pytest.fixture
def client(fake_hcloud: FakeHcloud) -> Client:
    return Client(token=fake_hcloud.token, api_endpoint=fake_hcloud.url, poll_interval=0.01)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("env=ci", True),
        ("env=dev", False),
        ("env!=dev", True),
        ("env", True),
        ("!env", False),
        ("!team", True),
        ("env in (dev,ci)", True),
        ("env notin (dev,ci)", False),
        ("env=ci,tier=cx23", True),
        ("env=ci,tier=cx33", False),
    ],
)
def test_label_selector_terms(selector, expected):
    assert matches_selector({"env": "ci", "tier": "cx23"}, selector) is expected


def test_wrong_token_is_unauthorized(fake_hcloud):
    client = Client(token="nope", api_endpoint=fake_hcloud.url)
    with pytest.raises(APIException) as info:
        client.servers.get_all()
    assert info.value.code == "unauthorized"
    assert info.value.correlation_id


def test_create_validates_name_labels_type_and_user_data(fake_hcloud, client):
    def create(**overrides):
        arguments = {
            "name": "a1",
            "server_type": ServerType(name="cx23"),
            "image": Image(name="ubuntu-24.04"),
        }
        arguments.update(overrides)
        return client.servers.create(**arguments)

    create()
    for overrides, code in [
        ({}, "uniqueness_error"),
        ({"name": "Not_A_Host"}, "invalid_input"),
        ({"name": "a2", "labels": {"k": "v" * 64}}, "invalid_input"),
        ({"name": "a3", "labels": {"hetzner.cloud/x": "1"}}, "invalid_input"),
        ({"name": "a4", "server_type": ServerType(name="zz1")}, "invalid_input"),
        ({"name": "a5", "user_data": "x" * (32 * 1024 + 1)}, "invalid_input"),
    ]:
        with pytest.raises(APIException) as info:
            create(**overrides)
        assert info.value.code == code, overrides
    assert [s["name"] for s in fake_hcloud.servers.values()] == ["a1"]
    fake_hcloud.remove_all_servers()


def test_actions_finish_asynchronously(fake_hcloud, client):
    created = client.servers.create(
        name="a1", server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04")
    )
    assert created.action.status == "running"
    assert created.server.status == "initializing"
    created.action.wait_until_finished()
    for action in created.next_actions:
        action.wait_until_finished()
    assert client.servers.get_by_id(created.server.id).status == "running"
    assert len(fake_hcloud.requests_to("GET", r"/actions/\d+")) > 2
    client.servers.delete(created.server).wait_until_finished()


def test_server_types_carry_deprecation(client):
    old = client.server_types.get_by_name("cx22")
    new = client.server_types.get_by_name("cx23")
    assert old.locations[0].deprecation.unavailable_after.year == 2025
    assert new.locations[0].deprecation is None


def test_pagination_meta(fake_hcloud, client):
    for i in range(51):
        fake_hcloud.add_server(f"s{i}")
    page, meta = client.servers.get_list(page=2, per_page=50)
    assert len(page) == 1
    assert meta.pagination.last_page == 2
    assert meta.pagination.next_page is None
    assert meta.pagination.previous_page == 1
    fake_hcloud.remove_all_servers()
