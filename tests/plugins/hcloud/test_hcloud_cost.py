"""Prices: read from the API at spawn, cached for the offline plan, bundled before that."""

from __future__ import annotations

import json

import pytest

from lian_build import api
from lian_hcloud import prices
from lian_hcloud.provider import HcloudProvider

CX23 = api.Tier(name="cx23", cpu=2, memory_gb=4, disk_gb=40)


def _offline(**settings) -> HcloudProvider:
    def no_secrets(reference: str) -> str:
        raise AssertionError("estimate_cost must not resolve secrets")

    return HcloudProvider(HcloudProvider.Settings(**settings), no_secrets)


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LIAN_STATE_DIR", str(tmp_path))
    return tmp_path / prices.CACHE_FILE


def test_before_any_build_the_plan_uses_the_bundled_table_and_says_so(fresh_cache):
    cost = _offline().estimate_cost(CX23, 20 * 60)

    assert cost is not None
    assert cost["price_source"] == f"bundled table ({prices.BUNDLED_DATE})"
    assert cost["hourly_net"] == prices.BUNDLED_HOURLY["cx23"]
    assert cost["billed_hours"] == 1  # every started hour is billed
    assert not fresh_cache.exists()


def test_every_started_hour_is_billed():
    cost = prices.cost(0.01, 3601, "api", "fsn1")
    assert (cost["billed_hours"], cost["amount_net"]) == (2, 0.02)


def test_unknown_type_has_no_estimate():
    tier = api.Tier(name="mystery", cpu=3, memory_gb=5)
    assert _offline(server_types=["mystery:3:5"]).estimate_cost(tier, 60) is None


def test_spawn_reads_the_api_price_and_caches_it_for_the_plan(
    fake_hcloud, make_provider, make_request, fresh_cache
):
    provider = make_provider(location="hel1")
    runner = provider.spawn(make_request())
    provider.destroy(runner.id)
    listed = fake_hcloud.server_types["cx23"]["prices"]
    hel1 = float(next(p for p in listed if p["location"] == "hel1")["price_hourly"]["net"])

    now = provider.estimate_cost(CX23, 600)
    later = _offline(location="hel1").estimate_cost(CX23, 600)

    assert now is not None and now["price_source"] == "api" and now["hourly_net"] == hel1
    assert later is not None and later["price_source"].startswith("cache (")
    assert later["hourly_net"] == hel1 and later["location"] == "hel1"
    assert json.loads(fresh_cache.read_text())["prices"]["hel1"]["cx23"] == hel1
    # Another location was never read: bundled table there.
    assert _offline(location="fsn1").estimate_cost(CX23, 600)["price_source"].startswith("bundled")


def test_arm_types_are_offered_with_their_architecture(fake_hcloud, make_provider, make_request):
    provider = make_provider(server_types=["cax11"])
    runner = provider.spawn(make_request(tier="cax11"))

    body = fake_hcloud.requests_to("POST", "/servers")[0].body
    server = fake_hcloud.servers[int(runner.id)]
    assert body["server_type"] == fake_hcloud.server_types["cax11"]["id"]
    assert server["server_type"]["architecture"] == "arm"
    assert server["image"]["architecture"] == "arm"
    provider.destroy(runner.id)


def test_plan_shows_the_estimated_cost_offline(tmp_path):
    from fixtures.cli import lian_envelope

    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    run = lian_envelope(
        [
            "plan",
            "--workspace",
            "shop",
            "--context",
            str(tmp_path),
            "--image",
            "127.0.0.1:5000/shop:1",
            "--provider",
            "hcloud",
            "--compute-opt",
            "api_endpoint=http://127.0.0.1:9/v1",
        ],
        tmp_path / "state",
    )

    assert run.exit_code == 0, run.stderr
    estimate = run.envelope["result"]["estimated_cost"]
    assert estimate["price_source"] == f"bundled table ({prices.BUNDLED_DATE})"
    assert estimate["currency"] == "EUR" and estimate["amount_net"] > 0
    first = run.envelope["result"]["attempts"][0]
    assert estimate["hourly_net"] == prices.BUNDLED_HOURLY[first]
