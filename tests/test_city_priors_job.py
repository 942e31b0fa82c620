"""The priors job and the history import on a local Spark session against the test Cassandra, and serving
with the priors they produce (Flask test client)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter

import pytest
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.util import uuid_from_time

from eventlog.partitions import partition_of
from spark_jobs import city_priors, import_history
from spark_jobs.sample_history import SampleSpec, generate
from tests.helpers import gen_slot, sync
from tests.spark_support import job_config, local_spark
from webapp.storage import store
from webapp.storage.database import Database

CAP = 200.0
TODAY = dt.datetime.now(dt.UTC).date()
DAY = TODAY - dt.timedelta(days=2)
WIDE = city_priors.Window(TODAY - dt.timedelta(days=6), TODAY + dt.timedelta(days=1))

# The constructed log: (location, day, imported, {banner: (impressions, clicks)}).
LOG = [
    ("mumbai", DAY, True, {"a": (2000, 200), "b": (2000, 60)}),       # rich: a 10 %, b 3 %
    ("delhi", DAY, True, {"a": (1500, 75), "b": (1500, 90)}),
    ("pune", DAY, True, {"a": (1000, 70), "b": (1000, 20)}),
    ("chennai", DAY, False, {"a": (600, 18), "b": (600, 12)}),         # live: in the counters already
    ("surat", DAY, True, {"a": (20, 6), "b": (20, 0)}),                 # sparse: a 30 % on 20
    ("", DAY, False, {"a": (300, 15), "b": (300, 6)}),                 # no location
    ("agra", TODAY - dt.timedelta(days=4), True, {"a": (200, 30), "b": (200, 4)}),   # only in WIDE
    ("jaipur", TODAY - dt.timedelta(days=10), True, {"a": (300, 290), "b": (300, 0)}),  # in no window
]


@pytest.fixture(scope="module")
def config(keyspace):
    return job_config(CASSANDRA_KEYSPACE=keyspace, CITY_PRIOR_MAX_STRENGTH=CAP)


@pytest.fixture(scope="module")
def spark(config):
    session = local_spark(**{k: config[k] for k in ("CASSANDRA_KEYSPACE", "CITY_PRIOR_MAX_STRENGTH")})
    yield session
    session.stop()


@pytest.fixture(scope="module")
def db(config):
    database = Database(config)
    yield database
    database.shutdown()


def write_log(db: Database, tenant: str, slot: str) -> None:
    """Insert LOG as impression and click rows (imported ones marked like import_history marks them), and
    a few clicks the click filter flagged, which must not count."""
    impressions, clicks = [], []
    for location, day, imported, banners in LOG:
        served_at = dt.datetime.combine(day, dt.time(12), dt.UTC)
        scope = "import" if imported else ("location" if location else "slot")
        for banner, (n, c) in banners.items():
            for i in range(n):
                impression_id = uuid_from_time(served_at)       # random node and clock sequence
                key = (tenant, slot, *partition_of(impression_id), impression_id)
                impressions.append((*key, served_at, banner, location, scope, scope))
                if i < c:
                    clicks.append((*key, served_at, banner, location, True))
                elif location == "delhi" and i < c + 10:     # flagged by the click filter: never counted
                    clicks.append((*key, served_at, banner, location, False))
    db.execute("INSERT INTO {ks}.slots (tenant_id, slot_id, name) VALUES (?, ?, ?)", (tenant, slot, slot))
    for banner in ("a", "b"):
        db.execute("INSERT INTO {ks}.banners (tenant_id, slot_id, banner_id) VALUES (?, ?, ?)",
                   (tenant, slot, banner))
    session = db.session()
    # Only the columns the log has (binding None would write tombstones).
    insert_impression = db.prepare(
        "INSERT INTO {ks}.impression_log (tenant_id, slot_id, bucket, shard, impression_id, served_at, banner_id, "
        "location, posterior_scope, prior_source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
    insert_click = db.prepare("INSERT INTO {ks}.click_log (tenant_id, slot_id, bucket, shard, impression_id, "
                              "clicked_at, banner_id, location, valid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
    for statement, rows in ((insert_impression, impressions), (insert_click, clicks)):
        for ok, result in execute_concurrent_with_args(session, statement, rows, concurrency=64):
            assert ok, result


def expected_priors(window: city_priors.Window) -> dict[tuple[str, str], tuple[float, float]]:
    """The priors of LOG in ``window``, computed here from the formulas as documented (not by the code)."""
    rows = [r for r in LOG if window.since <= r[1] < window.until]
    expected = {}
    for banner in ("a", "b"):
        big_n = sum(r[3][banner][0] for r in rows)
        big_c = sum(r[3][banner][1] for r in rows)
        mu = (big_c + 0.5) / (big_n + 1)
        cities = [r[3][banner] for r in rows if r[0]]
        m, n_c = len(cities), sum(n for n, _ in cities)
        p = sum(c for _, c in cities) / n_c
        squares = sum(n * (c / n - p) ** 2 for n, c in cities)
        rho = (squares / (p * (1 - p)) - (m - 1)) / (n_c - sum(n * n for n, _ in cities) / n_c - (m - 1))
        strength = CAP if rho <= 0 else max(2.0, min(1 / rho - 1, big_n, CAP))
        expected[("", banner)] = (mu * strength, (1 - mu) * strength)
        for location, _, imported, banners in rows:
            if not location:
                continue
            h_n, h_c = banners[banner] if imported else (0, 0)
            scale = min(1.0, CAP / (strength + h_n))
            expected[(location, banner)] = ((mu * strength + h_c) * scale,
                                            ((1 - mu) * strength + h_n - h_c) * scale)
    return expected


def read_priors(db: Database, tenant: str, slot: str) -> dict[tuple[str, str], dict]:
    rows = db.execute("SELECT * FROM {ks}.priors WHERE tenant_id = ? AND slot_id = ?", (tenant, slot))
    return {(r["location"], r["banner_id"]): r for r in rows}


def mean(row) -> float:
    return row[0] / (row[0] + row[1]) if isinstance(row, tuple) else row["alpha"] / (row["alpha"] + row["beta"])


def test_priors_job_on_a_constructed_log(spark, config, db):
    tenant, slot = f"t{uuid.uuid4().hex[:10]}", "hero"
    write_log(db, tenant, slot)

    since = store.utcnow() - dt.timedelta(seconds=1)
    summary = city_priors.run(spark, config, WIDE, [tenant])
    # The workers holding the slot are told to re-read its priors (the change feed, cql/007).
    assert [(r["slot_id"], r["kind"]) for r in store.changed_slots(db, since) if r["tenant_id"] == tenant] == [
        (slot, "priors")]
    expected = expected_priors(WIDE)
    written = read_priors(db, tenant, slot)
    assert set(written) == set(expected)            # jaipur is outside the window: no row
    for key, (alpha, beta) in expected.items():
        assert (written[key]["alpha"], written[key]["beta"]) == (pytest.approx(alpha, rel=1e-9),
                                                                 pytest.approx(beta, rel=1e-9)), key
        assert written[key]["source"].startswith(f"city_priors {WIDE}")
        assert written[key]["computed_at"] is not None
    assert (summary.priors_written, summary.priors_deleted, summary.locations) == (len(expected), 0, 6)

    slot_a = expected[("", "a")]
    # A data-rich city stays near its own CTR (10 %), a sparse one is pulled toward the slot-wide rate.
    assert mean(written[("mumbai", "a")]) == pytest.approx(0.10, abs=0.005)
    assert mean(slot_a) < mean(written[("surat", "a")]) < 0.30
    assert mean(written[("surat", "a")]) - mean(slot_a) < (0.30 - mean(slot_a)) / 2
    # A live-only city's prior is the slot-wide one: its own data is in the serving counters.
    assert written[("chennai", "a")]["alpha"] == pytest.approx(slot_a[0])
    # The cap holds, and binds for the rich city.
    assert all(r["alpha"] + r["beta"] <= CAP + 1e-9 for r in written.values())
    assert written[("mumbai", "a")]["alpha"] + written[("mumbai", "a")]["beta"] == pytest.approx(CAP)

    # Re-running is idempotent.
    again = city_priors.run(spark, config, WIDE, [tenant])
    rewritten = read_priors(db, tenant, slot)
    assert {k: (r["alpha"], r["beta"], r["source"]) for k, r in rewritten.items()} == {
        k: (r["alpha"], r["beta"], r["source"]) for k, r in written.items()}
    assert (again.priors_written, again.priors_deleted) == (summary.priors_written, 0)

    # A window without agra's day, read by scanning the tables: agra's rows go (it falls back to the
    # slot-wide prior), the rest follow the data.
    shifted = city_priors.Window(DAY, TODAY + dt.timedelta(days=1))
    scanned = city_priors.run(spark, config, shifted, [tenant], scan=True)
    after = read_priors(db, tenant, slot)
    assert set(after) == set(expected) - {("agra", "a"), ("agra", "b")}
    assert scanned.priors_deleted == 2
    for key, (alpha, beta) in expected_priors(shifted).items():
        assert (after[key]["alpha"], after[key]["beta"]) == (pytest.approx(alpha, rel=1e-9),
                                                             pytest.approx(beta, rel=1e-9)), key


def test_history_import_rejects_bad_rows_with_line_numbers_and_imports_good_ones(spark, config, db, tmp_path):
    tenant = f"t{uuid.uuid4().hex[:10]}"
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = tmp_path / "history.csv"
    path.write_text("\n".join([
        "time,tenant,slot,banner,location,customer_id,referrer_id,clicked",
        f"{when},{tenant},hero,a,Pune,c1,news,1",
        f"{when},{tenant},hero,a,Pune,c2,,0",
        f"{when},{tenant},hero,b,,c3,,0",
        f"31/12/2026,{tenant},hero,a,Pune,c4,,1",
        f"{when},{tenant},hero,a,Pune,c5,,1,extra",
        f"{when},{tenant},he ro,a,Pune,c6,,1",
        f"{when},{tenant},hero,b,Pune,c7,,true",
    ]) + "\n", encoding="utf-8")
    result = import_history.run(spark, config, str(path))
    assert [(line, reason.split(" ")[0]) for line, reason, _ in result.rejected] == [
        (5, "time"), (6, "expected"), (7, "slot")]
    assert (result.impressions, result.clicks, result.rejected_count) == (4, 2, 3)
    at = dt.datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)

    def stored():
        impressions = store.logged_events(db, "impressions", tenant, "hero", at, at)
        clicks = store.logged_events(db, "clicks", tenant, "hero", at, at)
        return impressions, clicks

    impressions, clicks = stored()
    assert sorted((r["banner_id"], r["location"], r["customer_id"]) for r in impressions) == [
        ("a", "pune", "c1"), ("a", "pune", "c2"), ("b", "", "c3"), ("b", "pune", "c7")]
    assert {(r["posterior_scope"], r["prior_source"], r["propensity"]) for r in impressions} == {
        ("import", "import", None)}
    assert sorted((r["customer_id"], r["valid"]) for r in clicks) == [("c1", True), ("c7", True)]
    assert {r["impression_id"] for r in clicks} <= {r["impression_id"] for r in impressions}
    # The counters are not touched: imported history reaches serving through the priors.
    assert db.execute("SELECT * FROM {ks}.banner_counts WHERE tenant_id = ? AND slot_id = 'hero'", (tenant,)) == []

    # Importing the same file again writes the same rows.
    import_history.run(spark, config, str(path))
    again_impressions, again_clicks = stored()
    assert (len(again_impressions), len(again_clicks)) == (4, 2)


def test_a_window_of_too_many_partitions_is_scanned_instead(spark, config, db, monkeypatch):
    tenant, slot = f"t{uuid.uuid4().hex[:10]}", "hero"
    db.execute("INSERT INTO {ks}.slots (tenant_id, slot_id, name) VALUES (?, ?, ?)", (tenant, slot, slot))
    db.execute("INSERT INTO {ks}.banners (tenant_id, slot_id, banner_id) VALUES (?, ?, ?)", (tenant, slot, "a"))
    for hour in (1, 9, 17):
        # banner "gone" was deleted (no banners row): its events stay in the log, and the job skips them
        for banner in ("a", "gone"):
            impression_id = uuid_from_time(dt.datetime.combine(DAY, dt.time(hour), dt.UTC))
            db.execute("INSERT INTO {ks}.impression_log (tenant_id, slot_id, bucket, shard, impression_id, "
                       "banner_id, location) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (tenant, slot, *partition_of(impression_id), impression_id, banner, "pune"))
    keyspace = config["CASSANDRA_KEYSPACE"]
    joined = city_priors.extract(spark, keyspace, WIDE, [tenant])[0].count()
    monkeypatch.setattr(city_priors, "MAX_JOIN_PARTITIONS", 1)
    assert city_priors.window_partitions(spark, keyspace, WIDE, [tenant]) is None
    assert city_priors.extract(spark, keyspace, WIDE, [tenant])[0].count() == joined == 3


def test_a_missing_file_is_unusable(spark, config, tmp_path):
    with pytest.raises(import_history.UnusableFile, match="does not exist"):
        import_history.run(spark, config, str(tmp_path / "nope.csv"))


def test_after_import_and_priors_a_new_city_favours_the_banner_that_wins_elsewhere(
        spark, config, app, client, tmp_path):
    tenant, slot = gen_slot(client, ["best", "mid", "low"])
    sync(app)
    path = tmp_path / "history.csv"
    generate(SampleSpec(rows=6000, tenant=tenant, slot=slot, ctr={"best": 0.10, "mid": 0.04, "low": 0.03},
                        cities=["Mumbai", "Delhi", "Pune", "Chennai", "Jaipur", "Surat"], days=3, seed=7),
             path)

    def first_serves(city: str, n: int = 100) -> Counter:
        served = Counter()
        for i in range(n):
            served[client.get(f"/v1/serve/{tenant}/{slot}?location={city}").get_json()["banner"]["id"]] += 1
            if i % 10 == 9:
                sync(app)
        return served

    result = import_history.run(spark, config, str(path))
    assert (result.impressions, result.rejected_count) == (6000, 0)
    # History in the log alone changes nothing for serving (counters untouched, no priors yet).
    before = first_serves("Kochi")
    assert before["best"] < 60, before

    city_priors.run(spark, config, city_priors.Window.last_days(7), [tenant])
    sync(app)                                   # one cache refresh, no restart
    first = client.get(f"/v1/serve/{tenant}/{slot}?location=Goa").get_json()["posterior"]
    assert (first["scope"], first["prior"]) == ("slot", "slot")
    after = first_serves("Goa")
    assert after["best"] >= 80, after
    # A city of the history serves from its own prior.
    known = client.get(f"/v1/serve/{tenant}/{slot}?location=Mumbai").get_json()["posterior"]
    assert (known["scope"], known["prior"]) == ("location", "location")
