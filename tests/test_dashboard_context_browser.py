"""The results page's "who clicks what" charts in a real browser (headless Chromium against gunicorn, with the
fixtures of tests/test_admin_browser.py): a chart per context feature draws an interval bar per banner and
level, with no script error nor CSP violation, and a level name a visitor chose stays text."""

from __future__ import annotations

import pytest

from tests.helpers import gen_slot, gen_user, sync
from tests.test_admin_browser import browser, direct_app, log_in, page, server, wait_in_page  # noqa: F401
from tests.test_dashboard_context import HOSTILE

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_each_feature_has_a_chart_of_every_banners_intervals(page, server, direct_app):  # noqa: F811
    client = direct_app.test_client()
    tenant, slot = gen_slot(client, ["a", "b"])
    response = client.put(f"/v1/admin/tenants/{tenant}/slots/{slot}", headers={
        "Authorization": f"Bearer {direct_app.config['ADMIN_API_TOKEN']}"},
        json={"name": "Hero", "policy": "contextual", "context": ["referrer", "segment"]})
    assert response.status_code == 200
    for i in range(90):
        referrer = ("news", "search")[i % 2]
        document = client.get(f"/v1/serve/{tenant}/{slot}", query_string={
            "referrer_id": referrer, "segment": (HOSTILE, "vip", "")[i % 3]}).get_json()
        if (referrer, document["banner"]["id"]) in (("news", "a"), ("search", "b")) and i % 4 < 2:
            client.post("/v1/click", json={"token": document["token"]})
    sync(direct_app)

    log_in(page, server["base"], gen_user(direct_app))
    page.goto(f"{server['base']}/admin/tenants/{tenant}/slots/{slot}/results")
    for feature in ("referrer", "segment"):
        bars = wait_in_page(page, f"""(() => {{
            const chart = Chart.getChart(document.getElementById('context-chart-{feature}'));
            if (!chart) return 0;
            return chart.data.datasets.map((ds, i) => chart.getDatasetMeta(i).data.filter(
                (bar, k) => ds.data[k] !== null && bar.height > 0).length);
        }})()""")
        assert bars == [3, 3], feature          # two banners × (two levels and "other"), each interval drawn
    labels = page.evaluate("Chart.getChart(document.getElementById('context-chart-segment')).data.labels")
    assert HOSTILE in labels
    # the table's own text, as written (inner text would follow the header's CSS upper-casing)
    assert page.locator("#context-table-segment th[data-level]").all_text_contents()[0].strip() in labels
    assert page.evaluate("window.__xss === undefined")
