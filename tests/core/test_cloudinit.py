"""The cloud-init user data every cloud provider plugin sends."""

from __future__ import annotations

import json

import pytest

from fixtures.keys import new_authorized_key, new_host_key
from lian_build import api
from lian_build.cloudinit import USER_DATA_LIMIT_BYTES, user_data
from lian_build.errors import InvalidInput

CLIENT_KEY = new_authorized_key("ci@lian")


def _parse(document: str) -> dict:
    header, _, body = document.partition("\n")
    assert header == "#cloud-config"
    return json.loads(body)


def test_installs_pinned_host_key_and_authorized_key():
    host_key = new_host_key()
    config = _parse(user_data(authorized_key=CLIENT_KEY, host_key=host_key))

    assert config["ssh_keys"] == {
        "ed25519_private": host_key.private_openssh.strip() + "\n",
        "ed25519_public": host_key.public_openssh,
    }
    assert config["ssh_deletekeys"] is True
    assert config["ssh_genkeytypes"] == []
    assert config["ssh_pwauth"] is False
    assert config["disable_root"] is False
    assert config["users"] == [
        {"name": "root", "lock_passwd": True, "ssh_authorized_keys": [CLIENT_KEY]}
    ]
    assert "runcmd" not in config and "packages" not in config


def test_non_root_user_gets_sudo_and_root_stays_disabled():
    config = _parse(user_data(authorized_key=CLIENT_KEY, host_key=new_host_key(), user="builder"))
    (entry,) = config["users"]
    assert entry["name"] == "builder"
    assert entry["sudo"] == "ALL=(ALL) NOPASSWD:ALL"
    assert "disable_root" not in config


def test_runcmd_stays_argv_lists_so_no_shell_is_involved():
    hostile = "$(rm -rf /); echo 'x'"
    config = _parse(
        user_data(
            authorized_key=CLIENT_KEY,
            host_key=new_host_key(),
            packages=["rsync", "buildkit"],
            runcmd=[["systemctl", "enable", "--now", "buildkit"], ["echo", hostile]],
        )
    )
    assert config["runcmd"] == [["systemctl", "enable", "--now", "buildkit"], ["echo", hostile]]
    assert all(isinstance(cmd, list) for cmd in config["runcmd"])
    assert config["packages"] == ["rsync", "buildkit"]
    assert config["package_update"] is True


def test_json_body_uses_yaml_safe_separators():
    document = user_data(authorized_key=CLIENT_KEY, host_key=new_host_key())
    # YAML needs a space after ':' in flow mappings; JSON's default gives one.
    assert '"ssh_pwauth": false' in document
    assert document.isascii()


@pytest.mark.parametrize(
    "runcmd", [["echo hi"], [[]], [["echo", 1]]], ids=["bare-string", "empty", "non-string"]
)
def test_runcmd_must_be_argv_lists(runcmd):
    with pytest.raises(InvalidInput) as info:
        user_data(authorized_key=CLIENT_KEY, host_key=new_host_key(), runcmd=runcmd)
    assert info.value.field == "runcmd"


@pytest.mark.parametrize(
    "key", ["", "not a key", CLIENT_KEY + "\nssh-ed25519 AAAA second"], ids=["empty", "junk", "two"]
)
def test_authorized_key_must_be_one_public_key(key):
    with pytest.raises(InvalidInput) as info:
        user_data(authorized_key=key, host_key=new_host_key())
    assert info.value.field == "authorized_key"


def test_host_key_must_be_ed25519_with_openssh_private_half():
    good = new_host_key()
    wrong_type = api.HostKey(good.private_openssh, "ssh-rsa AAAAB3Nza host")
    wrong_private = api.HostKey(
        "-----BEGIN RSA PRIVATE KEY-----\nsecret-bytes\n", good.public_openssh
    )
    for host_key in (wrong_type, wrong_private):
        with pytest.raises(InvalidInput) as info:
            user_data(authorized_key=CLIENT_KEY, host_key=host_key)
        assert info.value.field == "host_key"
        assert "secret-bytes" not in info.value.message


def test_bad_user_name_is_refused():
    with pytest.raises(InvalidInput) as info:
        user_data(authorized_key=CLIENT_KEY, host_key=new_host_key(), user="root; rm")
    assert info.value.field == "ssh_user"


def test_size_limit_is_enforced():
    many = [["echo", "x" * 100] for _ in range(400)]
    with pytest.raises(InvalidInput) as info:
        user_data(authorized_key=CLIENT_KEY, host_key=new_host_key(), runcmd=many)
    assert info.value.field == "user_data"
    assert info.value.details["limit"] == USER_DATA_LIMIT_BYTES
    fits = user_data(authorized_key=CLIENT_KEY, host_key=new_host_key(), runcmd=many[:100])
    assert len(fits.encode()) <= USER_DATA_LIMIT_BYTES
