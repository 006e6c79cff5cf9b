"""`lian runner-image check --provider proxmox`: the template's config, then a clone
booted as a build would boot it and probed through the guest agent; no VM is left."""

from __future__ import annotations

from pve_machine import Pve


def test_check_boots_a_clone_probes_it_and_judges_its_buildah(pve: Pve) -> None:
    result = pve.provider().check_runner_image()
    assert result["booted"] is True
    assert result["problems"] == []
    assert result["cloud_init_drives"] == ["ide2"]
    assert result["tools"]["sshd"] == "/usr/sbin/sshd"
    assert result["tools"]["rsync"] and result["tools"]["buildah"]
    # A buildah older than 1.39 (bookworm's 1.28) misses the cache after ARG: a warning.
    version = result["tools"]["buildah_version"]
    old = tuple(int(part) for part in version.split(".")[:2]) < (1, 39)
    assert [("1.39" in w) for w in result["warnings"]] == ([True] if old else [])
    assert len(pve.fake.calls("POST", r"/clone$")) == 1


def test_a_template_without_a_cloud_init_drive_is_refused_without_booting(pve: Pve) -> None:
    del pve.fake.vms[pve.fake.template_id].config["ide2"]
    result = pve.provider().check_runner_image()
    assert result["booted"] is False
    assert any("cloud-init drive" in p for p in result["problems"])
    assert not pve.fake.calls("POST", r"/clone$")


def test_a_plain_vm_as_template_needs_full_clones(pve: Pve) -> None:
    source = pve.fake.vms[pve.fake.template_id]
    source.template, source.foreign = False, True  # a plain VM, not the plugin's
    result = pve.provider().check_runner_image()
    assert any("not a template" in p for p in result["problems"])
