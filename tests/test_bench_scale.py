"""benchmarks/bench_scale.py: the projection of rows per partition and the verdicts against the aims."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # the scripts import their siblings

import bench_scale
from bench_scale import ClickResult, ScaleResult, Window, projection, verdicts


def window(cassandra: float, workers: float) -> Window:
    return Window(seconds=20, cassandra_cores=cassandra, worker_cores=workers, master_cores=0, machine_cores=1,
                  reads_per_s=0, scans_per_s=0)


def result(slots: int, rps: float, idle: tuple[float, float], rss_load: float, rss_all: float) -> ScaleResult:
    return ScaleResult(slots=slots, keyspace=f"bb_bench_scale_{slots}", loading={}, first_serve_s=1, workers=2,
                       idle=window(*idle), load={"rps": rps, "p99_ms": 5, "failed": 0},
                       rss_after_load_mib=[rss_load, rss_load], rss_after_all_mib=[rss_all, rss_all],
                       click=ClickResult(workers=2, seen_after_s={"1": 0.5, "2": 1.25}))


def test_projection_scales_the_largest_partition_to_the_peak_rate():
    partitions = {"load": {"rps": 1250.0}, "seconds": 10.0, "tables": [
        {"table": "impressions", "partition_key": ["tenant_id text", "slot_id text", "day date"],
         "hot_rows": 12500, "hot_max_rows": 12500, "hot_partitions": 1},
        {"table": "clicks", "partition_key": ["tenant_id text"], "hot_rows": 0, "hot_max_rows": 0,
         "hot_partitions": 0},
    ]}
    [row] = projection(partitions)
    # 1,250 rows/s into one partition at 1,250 serves/s → 2,500 rows/s at the peak of 2,500 serves/s.
    assert row["table"] == "impressions"
    assert row["per_hour"] == 2500 * 3600
    assert row["per_day"] == 2500 * 86400


def test_a_sharded_partition_projects_its_share_only():
    partitions = {"load": {"rps": 2500.0}, "seconds": 4.0, "tables": [
        {"table": "impressions", "partition_key": ["tenant_id text", "slot_id text", "bucket bigint", "shard int"],
         "hot_rows": 10000, "hot_max_rows": 2500, "hot_partitions": 4}]}
    [row] = projection(partitions)
    assert row["per_hour"] == 625 * 3600


def test_verdicts_against_the_aims():
    results = [result(10, 1000, (0.01, 0.01), 90, 90), result(10000, 900, (0.2, 0.5), 95, 400)]
    text = "\n".join(verdicts(results))
    assert "idle CPU at 10,000 slots: 0.700 cores" in text and "NOT met" in text
    assert "90% of 10 slots'" in text
    assert "+5 MiB per worker" in text
    assert "at most 1.25 s" in text


def test_verdicts_met():
    results = [result(10, 1000, (0.01, 0.01), 90, 90), result(10000, 990, (0.02, 0.01), 91, 91)]
    lines = verdicts(results)
    assert lines[0].startswith("idle CPU at 10,000 slots: 0.030 cores") and "met" in lines[0]
    assert "NOT" not in " ".join(lines)
    assert bench_scale.AIM_THROUGHPUT_SHARE == 0.95


def test_render_has_one_row_per_scale_and_the_partition_table(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench_scale.py", "--slots", "10,10000"])
    args = bench_scale.parse_args()
    assert args.slot_counts == [10, 10000]
    results = [result(10, 1000, (0.01, 0.01), 90, 90), result(10000, 900, (0.2, 0.5), 95, 400)]
    results[0].partitions = {"load": {"rps": 1250.0}, "seconds": 10.0, "tables": [
        {"table": "impressions", "partition_key": ["day date"], "hot_rows": 12500, "hot_max_rows": 12500,
         "hot_partitions": 1},
        {"table": "impression_log", "partition_key": ["tenant_id text", "bucket timestamp", "shard int"],
         "hot_rows": 12500, "hot_max_rows": 1250, "hot_partitions": 8}]}
    text = bench_scale.render(results, args, "make bench-scale", "5.0.8")
    rows = [line for line in text.splitlines() if line.startswith("| 10")]
    assert [row.split("|")[1].strip() for row in rows] == ["10", "10,000"]
    header = next(line for line in text.splitlines() if line.startswith("| Slots"))
    assert all(row.count("|") == header.count("|") for row in rows)
    assert "| impressions | day date | 1 | 12,500 | – | 9,000,000 | 216,000,000 |" in text
    # 1,250 rows in 10 s at 1,250 serves/s: 250 rows/s at 2,500 serves/s, over a 300 s bucket
    assert "| impression_log | tenant_id text, bucket timestamp, shard int | 8 | 1,250 | 75,000 | – | – |" in text


def test_bad_slots_are_refused(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench_scale.py", "--slots", "10,many"])
    with pytest.raises(SystemExit) as exc:
        bench_scale.parse_args()
    assert exc.value.code == 2
    assert "--slots" in capsys.readouterr().err


def test_the_cached_slots_gauge_is_summed_over_its_samples():
    exposition = """# HELP banner_bandit_cached_slots Slots this worker holds
# TYPE banner_bandit_cached_slots gauge
banner_bandit_cached_slots{pid="101"} 100.0
banner_bandit_cached_slots{pid="102"} 98.0
banner_bandit_cached_slots_created 1.7e9
banner_bandit_serves_total{status="200"} 5000.0
"""
    gauge = bench_scale.gauge_total(exposition, "banner_bandit_cached_slots")
    assert gauge["total"] == 198.0
    assert len(gauge["samples"]) == 2
    assert bench_scale.gauge_total(exposition, "banner_bandit_missing") is None
