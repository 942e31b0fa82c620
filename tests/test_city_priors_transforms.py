"""The Spark side of the priors and the import as pure DataFrame functions on small createDataFrame inputs.

No Cassandra here: the Spark formulas are checked against the numpy ones (bandits/priors.py), the
timeuuids against Python's uuid module, the CSV validation against hand-written expectations.
"""

from __future__ import annotations

import datetime as dt
import uuid

import numpy as np
import pytest
from pyspark.sql import functions as F

from bandits import PriorSettings, city_priors, fit_population
from eventlog.partitions import partition_of
from spark_jobs import city_priors as job
from spark_jobs import import_history
from spark_jobs.timeuuids import timeuuid
from tests.spark_support import local_spark

COUNT_COLUMNS = ["tenant_id", "slot_id", "location", "banner_id", "impressions", "clicks",
                 "history_impressions", "history_clicks"]
WINDOW = job.Window(dt.date(2026, 10, 1), dt.date(2026, 11, 1))
NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def spark():
    session = local_spark()
    yield session
    session.stop()


def test_city_counts_join_clicks_to_their_impressions_and_split_history(spark):
    day = dt.date(2026, 10, 5)
    ids = [str(uuid.uuid1()) for _ in range(6)]
    impressions = spark.createDataFrame([
        ("t", "s", day, ids[0], "pune", "a", "import"),
        ("t", "s", day, ids[1], "pune", "a", "import"),
        ("t", "s", day, ids[2], "pune", "a", "location"),
        ("t", "s", day, ids[3], "", "a", "slot"),
        ("t", "s", day, ids[4], None, "a", None),
        ("t", "s", day, ids[5], "pune", "b", "location"),
    ], ["tenant_id", "slot_id", "day", "impression_id", "location", "banner_id", "posterior_scope"])
    clicks = spark.createDataFrame([
        ("t", "s", day, ids[0], True), ("t", "s", day, ids[2], None), ("t", "s", day, ids[3], True),
        ("t", "s", day, ids[5], False),                      # flagged by the click filter: not learned from
        ("t", "s", day, str(uuid.uuid1()), True),            # its impression is not in the window: ignored
    ], "tenant_id string, slot_id string, day date, impression_id string, valid boolean")
    rows = {(r.location, r.banner_id): tuple(r)[4:] for r in job.city_counts(impressions, clicks).collect()}
    assert rows == {
        ("pune", "a"): (3, 2, 2, 1),        # impressions, clicks, imported impressions, imported clicks
        ("", "a"): (2, 1, 0, 0),            # no location ('' and null)
        ("pune", "b"): (1, 0, 0, 0),
    }


def random_counts(rng: np.random.Generator) -> list[tuple]:
    """City counts of a few slots and banners, with the awkward cases: one city, no clicks, no cities."""
    rows = []
    for slot in ("s1", "s2"):
        for banner in ("a", "b", "c"):
            cities = {"a": 12, "b": 1, "c": 0}[banner] if slot == "s1" else 6
            for city in range(cities):
                n = int(rng.integers(1, 5000))
                c = 0 if (slot, banner) == ("s2", "c") else int(rng.binomial(n, rng.beta(4, 100)))
                hn = int(rng.integers(0, n + 1))
                hc = int(min(c, rng.binomial(hn, c / n))) if n else 0
                rows.append(("t", slot, f"city{city}", banner, n, c, hn, hc))
            n0 = int(rng.integers(0, 800))
            rows.append(("t", slot, "", banner, n0, int(rng.binomial(n0, 0.03)), 0, 0))
    return rows


def test_spark_priors_agree_with_the_numpy_functions(spark):
    settings = PriorSettings(max_strength=150.0, min_strength=2.0)
    rows = random_counts(np.random.default_rng(2026))
    counts = spark.createDataFrame(rows, COUNT_COLUMNS)
    statistics = {(r.slot_id, r.banner_id): r for r in job.slot_statistics(counts, settings).collect()}
    priors = {(r.slot_id, r.location, r.banner_id): r
              for r in job.prior_rows(counts, job.slot_statistics(counts, settings), settings, WINDOW,
                                      NOW).collect()}
    assert len(statistics) == 6
    for (slot, banner), stat in statistics.items():
        mine = [r for r in rows if r[1] == slot and r[3] == banner]
        cities = [r for r in mine if r[2]]
        fit = fit_population([r[4] for r in cities], [r[5] for r in cities],
                             sum(r[4] for r in mine), sum(r[5] for r in mine), settings)
        assert (stat.slot_impressions, stat.slot_clicks, stat.cities) == (fit.impressions, fit.clicks,
                                                                          fit.cities)
        assert stat.mean == pytest.approx(fit.mean, rel=1e-12)
        assert stat.strength == pytest.approx(fit.strength, rel=1e-9)
        assert (stat.rho is None) == (fit.rho is None)
        if fit.rho is not None:
            assert stat.rho == pytest.approx(fit.rho, rel=1e-9)
        slot_row = priors[(slot, "", banner)]
        assert (slot_row.alpha, slot_row.beta) == (pytest.approx(fit.alpha), pytest.approx(fit.beta))
        alpha, beta = city_priors(fit, [r[6] for r in cities], [r[7] for r in cities], settings)
        for r, a, b in zip(cities, alpha, beta):
            row = priors[(slot, r[2], banner)]
            assert (row.alpha, row.beta) == (pytest.approx(a, rel=1e-9), pytest.approx(b, rel=1e-9))
    assert len(priors) == len(rows)             # one row per city and one slot-wide row per banner
    assert all(r.alpha + r.beta <= 150.0 + 1e-9 for r in priors.values())
    assert {r.computed_at.replace(tzinfo=None) for r in priors.values()} == {NOW.replace(tzinfo=None)}
    # The awkward cases took the documented fallbacks.
    assert statistics[("s1", "b")].rho is None and statistics[("s1", "b")].strength == 150.0   # one city
    assert statistics[("s2", "c")].rho is None                                                 # no clicks
    assert statistics[("s1", "c")].cities == 0


def test_prior_sources_say_where_a_prior_came_from(spark):
    counts = spark.createDataFrame([("t", "s", "pune", "a", 1000, 50, 400, 20),
                                    ("t", "s", "agra", "a", 1000, 80, 0, 0)], COUNT_COLUMNS)
    settings = PriorSettings()
    rows = {r.location: r.source
            for r in job.prior_rows(counts, job.slot_statistics(counts, settings), settings, WINDOW, NOW).collect()}
    assert rows[""].startswith("city_priors 2026-10-01..2026-10-31: slot-wide, 2000 impressions, 130 clicks, "
                               "2 cities")
    assert "history 400 impressions, 20 clicks" in rows["pune"]
    assert "history 0 impressions" in rows["agra"] and "live in window 1000 impressions" in rows["agra"]


def test_stale_priors_are_the_old_keys_of_refreshed_slots_only(spark):
    columns = ["tenant_id", "slot_id", "location", "banner_id"]
    existing = spark.createDataFrame([("t", "s", "", "a"), ("t", "s", "pune", "a"), ("t", "s", "agra", "a"),
                                      ("t", "other", "pune", "a")], columns)
    fresh = spark.createDataFrame([("t", "s", "", "a"), ("t", "s", "pune", "a")], columns)
    assert [tuple(r) for r in job.stale_priors(existing, fresh).collect()] == [("t", "s", "agra", "a")]


def test_timeuuid_column_is_a_version_1_uuid_of_the_time(spark):
    times = [dt.datetime(2026, 10, 1, 9, 30, 0, 123456), dt.datetime(1999, 12, 31, 23, 59, 59),
             dt.datetime(2040, 2, 29, 0, 0, 0, 1)]
    keys = [0, -1, 1234567890123456789]
    frame = spark.createDataFrame([(t, k) for t in times for k in keys], ["ts", "key"])
    rows = frame.select("ts", "key", timeuuid(F.col("ts"), F.col("key")).alias("id")).collect()
    seen = set()
    for row in rows:
        value = uuid.UUID(row.id)
        assert value.version == 1 and value.variant == uuid.RFC_4122
        since_1582 = row.ts.replace(tzinfo=None) - dt.datetime(1582, 10, 15)
        assert value.time == (since_1582 // dt.timedelta(microseconds=1)) * 10
        assert value.node & 0x010000000000                      # multicast bit: not a real MAC
        seen.add(value)
    assert len(seen) == len(rows)


def test_history_rows_are_validated_with_their_line_numbers(spark, tmp_path):
    path = tmp_path / "history.csv"
    path.write_text(
        "time,tenant,slot,banner,location,customer_id,referrer_id,clicked\n"                # 1
        "2026-10-01T09:30:00+05:30,t1,hero,a,  New   DELHI ,c1,news,1\n"                     # 2 good
        "2026-10-01 04:00:00,t1,hero,b,,,,0\n"                                                # 3 good, no location
        "\n"                                                                                  # 4 blank: skipped
        "yesterday,t1,hero,a,Pune,c1,,1\n"                                                    # 5 time
        "2026-10-01T10:00:00Z,t1,hero,a b,Pune,c1,,1\n"                                       # 6 banner id
        "2026-10-01T10:00:00Z,t1,hero,a,Pune,c1,,2\n"                                         # 7 clicked
        "2026-10-01T10:00:00Z,t1,hero,a,Pune\n"                                               # 8 fields
        "2099-01-01T00:00:00Z,t1,hero,a,Pune,c1,,0\n"                                         # 9 future
        '"2026-10-01T11:00:00Z","t1","hero","a","Pune, MH","c2","",yes\n'                     # 10 good, quoted
        "2026-10-01 04:00:00,t1,hero,b,,,,0\n",                                               # 11 same as 3
        encoding="utf-8")
    lines = import_history.read_lines(spark, str(path))
    parsed = import_history.parse_lines(lines, 128, NOW)
    rejected = [(r.line_number, r.error.split(" ")[0]) for r in
                import_history.rejected_rows(parsed).orderBy("line_number").collect()]
    assert rejected == [(5, "time"), (6, "banner"), (7, "clicked"), (8, "expected"), (9, "time")]
    impressions, clicks = import_history.event_rows(parsed)
    by_line = {r.line_number: r for r in parsed.where("error IS NULL").collect()}
    assert sorted(by_line) == [2, 3, 10, 11]
    assert by_line[2].location == "new delhi" and by_line[2].time == dt.datetime(2026, 10, 1, 4, 0)
    assert by_line[10].location == "pune, mh" and by_line[10].clicked is True
    assert (by_line[3].occurrence, by_line[11].occurrence) == (1, 2)    # identical lines stay distinct
    rows = impressions.collect()
    assert len(rows) == 4 and len({r.impression_id for r in rows}) == 4
    assert {r.posterior_scope for r in rows} == {"import"}
    assert {(r.bucket.replace(tzinfo=dt.UTC), r.shard) for r in rows} == {   # each in its impression's partition
        partition_of(uuid.UUID(r.impression_id)) for r in rows}
    assert {r.bucket.date() for r in rows} == {dt.date(2026, 10, 1)}
    assert sorted(r.location for r in clicks.collect()) == ["new delhi", "pune, mh"]
    # Deterministic: the same file gives the same IDs again.
    again = import_history.event_rows(import_history.parse_lines(lines, 128, NOW))[0]
    assert {r.impression_id for r in again.collect()} == {r.impression_id for r in rows}


def test_a_file_without_the_header_is_unusable():
    with pytest.raises(import_history.UnusableFile, match="line 1: expected the header"):
        import_history.check_header("2026-10-01T10:00:00Z,t1,hero,a,Pune,c1,,1")
    import_history.check_header("\ufeffTime, Tenant,slot,banner,location,customer_id,referrer_id,clicked")


def test_windows_are_whole_utc_days_with_an_exclusive_end():
    window = job.Window.last_days(7, today=dt.date(2026, 11, 23))
    assert (window.since, window.until, str(window)) == (dt.date(2026, 11, 17), dt.date(2026, 11, 24),
                                                         "2026-11-17..2026-11-23")
    with pytest.raises(ValueError, match="empty window"):
        job.Window(dt.date(2026, 11, 2), dt.date(2026, 11, 2))
    with pytest.raises(ValueError, match="at least one day"):
        job.Window.last_days(0)


def test_the_job_refuses_a_bad_window_before_starting_spark(capsys):
    assert job.main(["--since", "2026-10-05", "--until", "2026-10-01"]) == 2
    assert "empty window" in capsys.readouterr().err
