"""End-to-end: simulated visitors against gunicorn on the test keyspace; the stats API must agree."""

from __future__ import annotations

import pytest

from simulator import Scenario
from simulator.service import ServiceClient, gunicorn, run_service
from tests.helpers import ADMIN_TOKEN

pytestmark = pytest.mark.slow


def test_stats_api_agrees_with_what_the_simulator_sent(keyspace):
    scenario = Scenario(name="e2e", n_banners=3, n_cities=3, horizon=300, batch_size=30, base_ctr=0.2,
                        banner_spread=0.8, click_delay_seconds=20.0, impressions_per_hour=3600.0)
    with gunicorn(keyspace, ADMIN_TOKEN, workers=2) as base_url:
        report = run_service(scenario, seed=7, client=ServiceClient(base_url, ADMIN_TOKEN))
    print(report.summary())
    assert report.impressions == 300
    assert report.clicks > 20 and report.click_outcomes == {"recorded": report.clicks}
    assert set(report.sent) == {"", *scenario.cities}
    assert report.agrees, report.mismatches
    assert report.reported[""] == report.sent[""]
