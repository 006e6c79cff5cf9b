"""Runner snapshots: which one spawn boots, and what `check` reports."""

from __future__ import annotations


def test_check_without_snapshot_reports_the_problem(fake_hcloud, provider):
    result = provider.check_runner_image({})

    assert result["image_id"] is None
    assert "lian runner-image build --provider hcloud" in result["problems"][0]


def test_newest_snapshot_of_the_right_architecture_is_booted(
    fake_hcloud, make_provider, make_request
):
    label = {"lian.runner-image": "buildah"}
    older = fake_hcloud.add_snapshot(label)
    newer = fake_hcloud.add_snapshot(label)
    arm = fake_hcloud.add_snapshot(label, architecture="arm")
    unlabelled = fake_hcloud.add_snapshot({"team": "web"})
    provider = make_provider()

    checked = provider.check_runner_image({})
    runner = provider.spawn(make_request())
    arm_runner = make_provider(server_types=["cax11"]).spawn(make_request("s9", tier="cax11"))

    assert checked["image_id"] == newer and checked["older_snapshots"] == [older]
    assert checked["problems"] == []
    assert runner.image.startswith(f"{newer} ")
    assert arm_runner.image.startswith(f"{arm} ")
    body = fake_hcloud.requests_to("POST", "/servers")[0].body
    assert body["image"] == newer
    assert '"packages"' not in body["user_data"]  # baked in: nothing installed at boot
    for image_id in (older, newer, arm, unlabelled):
        fake_hcloud.remove_image(image_id)
