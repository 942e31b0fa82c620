"""The results page of a contextual slot (webapp/dashboard/context.py, templates/admin/results.html): per
context feature, a banner × level table of estimated CTR with 95% intervals and the counts behind them, its
chart's data, the policy named, and level names (visitor-given) escaped. The page test runs on the real
Cassandra with the Flask test client; the table builder is also tested alone."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

from bandits.contextual import OTHER
from tests.helpers import gen_slot, gen_user, login, sync
from webapp.dashboard.context import chart_data, context_tables, level_label

HOSTILE = "</script><img src=x onerror=alert(1)>"       # a segment any publisher page may send
CTR = {("news", "a"): 0.5, ("news", "b"): 0.0, ("search", "a"): 0.0, ("search", "b"): 0.5}


class LevelTables(HTMLParser):
    """The page's per-feature tables: feature → {"levels": [(data-level, header text)], "rows": {banner:
    [cell text]}}."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict] = {}
        self._table: dict | None = None
        self._cell: list[str] | None = None
        self._level: str | None = None
        self._row: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "table" and (attributes.get("id") or "").startswith("context-table-"):
            self._table = self.tables.setdefault(attributes["data-feature"], {"levels": [], "rows": {}})
        elif self._table is not None and tag in ("th", "td"):
            self._cell, self._level = [], attributes.get("data-level")
        elif self._table is not None and tag == "tr":
            self._row = []

    def handle_endtag(self, tag):
        if self._table is None:
            return
        if tag in ("th", "td") and self._cell is not None:
            text = " ".join("".join(self._cell).split())
            if tag == "th" and self._level is not None:
                self._table["levels"].append((self._level, text))
            elif tag == "td" and self._row is not None:
                self._row.append(text)
            self._cell = None
        elif tag == "tr" and self._row:
            self._table["rows"][self._row[0]] = self._row[1:]
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def level_tables(page: str) -> dict[str, dict]:
    parser = LevelTables()
    parser.feed(page)
    return parser.tables


def chart_json(page: str) -> list[dict]:
    match = re.search(r'<script type="application/json" id="context-chart-data">(.*?)</script>', page, re.S)
    assert match, "no chart data on the page"
    return json.loads(match.group(1))


def percent(text: str) -> float:
    return float(text.rstrip("%")) / 100


def test_the_results_page_shows_ctr_by_level_with_intervals_chart_and_escaped_levels(app, client, admin_headers):
    tenant, slot = gen_slot(client, ["a", "b"])
    response = client.put(f"/v1/admin/tenants/{tenant}/slots/{slot}", headers=admin_headers,
                          json={"name": "Hero", "policy": "contextual", "context": ["referrer", "segment"]})
    assert response.status_code == 200
    served = 0
    for i in range(120):
        referrer = ("news", "search")[i % 2]
        query = {"referrer_id": referrer, "segment": (HOSTILE, "vip", "")[i % 3]}
        document = client.get(f"/v1/serve/{tenant}/{slot}", query_string=query).get_json()
        served += 1
        if CTR[(referrer, document["banner"]["id"])] and i % 4 < 2:       # half the visits of a pair that clicks
            client.post("/v1/click", json={"token": document["token"]})
        if i % 30 == 29:
            sync(app)
    sync(app)
    plain = gen_slot(client, ["a"], tenant=tenant, slot="plain")[1]
    with app.app_context():
        user = gen_user(app)
    assert login(client, user).status_code == 302

    page = client.get(f"/admin/tenants/{tenant}/slots/{slot}/results").get_data(as_text=True)
    assert 'id="policy-name">contextual Thompson sampling' in page
    assert 'id="context-policy"' in page and "admin/context.js" in page
    tables = level_tables(page)
    assert list(tables) == ["referrer", "segment"]
    referrers = tables["referrer"]
    assert [key for key, _ in referrers["levels"]] == ["referrer=news", "referrer=search", f"referrer={OTHER}"]
    assert set(referrers["rows"]) == {"a", "b"}
    for banner, cells in referrers["rows"].items():
        for text in cells:                       # "12.34% 10.1%–14.5% 3/40": estimate, 95% interval, counts
            estimate, interval, counts = text.split(" ")
            low, high = interval.split("–")
            assert percent(low) - 5e-4 <= percent(estimate) <= percent(high) + 5e-4, (banner, text)   # rounded
            clicks, impressions = map(int, counts.split("/"))
            assert 0 <= clicks <= impressions
    shown = sum(int(cells[i].split(" ")[2].split("/")[1]) for cells in referrers["rows"].values() for i in range(3))
    assert shown == served                        # every counted impression is behind some referrer level
    news_a, news_b = (percent(referrers["rows"][b][0].split(" ")[0]) for b in ("a", "b"))
    search_a, search_b = (percent(referrers["rows"][b][1].split(" ")[0]) for b in ("a", "b"))
    assert news_a > news_b and search_b > search_a         # who clicks what

    segment_levels = [key for key, _ in tables["segment"]["levels"]]
    assert f"segment={HOSTILE}" in segment_levels and "segment=vip" in segment_levels
    assert HOSTILE not in page and "<img src=x" not in page                  # escaped in HTML…
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    charts = chart_json(page)                                                # …and in the JSON block
    assert [chart["feature"] for chart in charts] == ["referrer", "segment"]
    assert HOSTILE in charts[1]["labels"]
    assert charts[0]["labels"] == ["news", "search", level_label("referrer", OTHER)]
    for chart in charts:
        for banner in chart["banners"]:
            assert len(banner["ctr"]) == len(banner["low"]) == len(banner["high"]) == len(chart["labels"])
            assert all(lo <= c <= hi for lo, c, hi in zip(banner["low"], banner["ctr"], banner["high"]))
    assert charts[0]["banners"][0]["id"] == "a" and abs(charts[0]["banners"][0]["ctr"][0] - news_a) < 5e-5

    thompson = client.get(f"/admin/tenants/{tenant}/slots/{plain}/results").get_data(as_text=True)
    assert 'id="policy-name">Thompson sampling per city' in thompson
    assert 'id="context-table"' not in thompson and "context-chart-data" not in thompson


# -- the table builder alone --------------------------------------------------------------------------------

REPORT = {
    "features": ["hour", "segment"],
    "levels": ["hour=9", "hour=other", "segment=vip", "segment=other"],
    "by_banner": {b: {level: {"ctr": 0.1 * (i + 1), "low": 0.05, "high": 0.3} for level in
                      ["hour=9", "hour=other", "segment=vip", "segment=other"]} for i, b in enumerate("ab")},
}
CELLS = [
    {"cell": "hour=9\tsegment=vip", "banner_id": "a", "impressions": 40, "clicks": 4},
    {"cell": "hour=9\tsegment=rare", "banner_id": "b", "impressions": 10, "clicks": 1},   # rare: "other"
    {"cell": "hour=23\tsegment=vip", "banner_id": "b", "impressions": 5, "clicks": 0},    # 23 not fitted
    {"cell": "segment=vip", "banner_id": "a", "impressions": 3, "clicks": 3},             # recorded without hour
    {"cell": "hour=9\tsegment=vip", "banner_id": "gone", "impressions": 7, "clicks": 7},  # a deleted banner
]


def test_tables_fold_unfitted_levels_into_other_and_sum_counts_per_level():
    tables = context_tables(REPORT, CELLS)
    hour, segment = tables
    assert (hour["feature"], hour["title"], segment["feature"]) == ("hour", "Hour of the day", "segment")
    assert [(lv["key"], lv["label"]) for lv in hour["levels"]] == [
        ("hour=9", "09:00–09:59"), ("hour=other", "other (rare, unseen or none)")]
    assert [row["banner"] for row in hour["rows"]] == ["a", "b"]
    counts = {(t["feature"], row["banner"], t["levels"][i]["level"]): (c["impressions"], c["clicks"])
              for t in tables for row in t["rows"] for i, c in enumerate(row["cells"])}
    assert counts == {("hour", "a", "9"): (40, 4), ("hour", "a", "other"): (3, 3),
                      ("hour", "b", "9"): (10, 1), ("hour", "b", "other"): (5, 0),
                      ("segment", "a", "vip"): (43, 7), ("segment", "a", "other"): (0, 0),
                      ("segment", "b", "vip"): (5, 0), ("segment", "b", "other"): (10, 1)}
    assert [(lv["impressions"], lv["clicks"]) for lv in segment["levels"]] == [(48, 7), (10, 1)]
    assert hour["rows"][1]["cells"][0] == {"ctr": 0.2, "low": 0.05, "high": 0.3, "impressions": 10, "clicks": 1}
    assert chart_data(tables)[0] == {"feature": "hour", "labels": ["09:00–09:59", "other (rare, unseen or none)"],
                                     "banners": [{"id": "a", "ctr": [0.1, 0.1], "low": [0.05, 0.05],
                                                  "high": [0.3, 0.3]},
                                                 {"id": "b", "ctr": [0.2, 0.2], "low": [0.05, 0.05],
                                                  "high": [0.3, 0.3]}]}
    assert context_tables(None, CELLS) == [] and chart_data([]) == []
    below = {**REPORT, "by_banner": {"a": {level: {"ctr": -0.004, "low": 0.0, "high": 0.01}
                                           for level in REPORT["levels"]}}}
    assert context_tables(below, [])[0]["rows"][0]["cells"][0]["ctr"] == 0.0     # a rate is never below 0


def test_level_labels():
    assert level_label("weekday", "0") == "Monday" and level_label("weekday", "6") == "Sunday"
    assert level_label("hour", "0") == "00:00–00:59"
    assert level_label("device", "mobile") == "mobile" and level_label("segment", "9") == "9"
