"""The event log's partition rule (eventlog/partitions.py): its bound at one slot's serve peak, and that the
Spark expressions of it (spark_jobs/timeuuids.py) agree with it."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections import Counter

import pytest

from eventlog import partitions
from eventlog.partitions import BUCKET_SECONDS, MAX_PARTITION_ROWS, PEAK_SERVES_PER_SECOND, SHARDS
from eventlog.timeuuids import TICKS_PER_SECOND, UUID_EPOCH_OFFSET, uuid_datetime

START = dt.datetime(2026, 12, 4, 14, 0, tzinfo=dt.UTC)


def v1(ticks: int, clock_seq: int, node: int) -> uuid.UUID:
    """A version-1 UUID with these fields (what uuid.uuid1 builds)."""
    time_low, time_mid, time_hi = ticks & 0xFFFFFFFF, (ticks >> 32) & 0xFFFF, (ticks >> 48) & 0x0FFF
    return uuid.UUID(fields=(time_low, time_mid, time_hi | 0x1000, 0x80 | (clock_seq >> 8) & 0x3F,
                             clock_seq & 0xFF, node), version=1)


def ticks_of(at: dt.datetime) -> int:
    return round(at.timestamp() * TICKS_PER_SECOND) + UUID_EPOCH_OFFSET


def test_the_arithmetic_bound_holds_at_the_peak():
    assert partitions.rows_per_partition(PEAK_SERVES_PER_SECOND) == 2_500 * 300 / 8
    assert partitions.rows_per_partition(PEAK_SERVES_PER_SECOND) <= MAX_PARTITION_ROWS
    assert partitions.rows_per_partition(2 * PEAK_SERVES_PER_SECOND) > MAX_PARTITION_ROWS   # the bound is real


def test_one_bucket_at_the_peak_stays_within_the_bound_per_partition():
    # One slot at 2,500 serves/s for a whole bucket, IDs as serving mints them (uuid1: a random clock
    # sequence per ID, a random node per process; here four worker processes).
    rng = random.Random(7)
    nodes = [rng.getrandbits(48) | 1 << 40 for _ in range(4)]
    step = TICKS_PER_SECOND // PEAK_SERVES_PER_SECOND
    first = ticks_of(START)
    ids = [v1(first + i * step + rng.randrange(step), rng.getrandbits(14), nodes[i % 4])
           for i in range(PEAK_SERVES_PER_SECOND * BUCKET_SECONDS)]
    rows = Counter(partitions.partition_of(i) for i in ids)
    assert {p.bucket for p in rows} == {START}                     # one bucket …
    assert len(rows) == SHARDS                                     # … spread over every shard
    assert max(rows.values()) <= MAX_PARTITION_ROWS
    assert min(rows.values()) >= 0.95 * len(ids) / SHARDS          # evenly


@pytest.mark.parametrize("kind", ["burst", "whole-seconds"])
def test_shards_spread_ids_that_share_a_clock_sequence_or_a_time(kind):
    rng = random.Random(3)
    first = ticks_of(START)
    if kind == "burst":         # uuid1 within one 100-ns tick: consecutive ticks, one clock sequence
        ids = [v1(first + i, 1234, 1 << 40) for i in range(8_000)]
    else:                       # the Spark jobs' IDs: whole seconds, a hash in the clock sequence
        ids = [v1(first + (i // 100) * TICKS_PER_SECOND, rng.getrandbits(14), rng.getrandbits(48))
               for i in range(8_000)]
    shards = Counter(partitions.shard_of(i) for i in ids)
    assert len(shards) == SHARDS and min(shards.values()) >= 0.8 * len(ids) / SHARDS


def test_a_partition_is_the_bucket_of_the_time_inside_the_id():
    for offset in (0, 1, 299.9999, 300, 86_399.5):
        at = START + dt.timedelta(seconds=offset)
        impression_id = v1(ticks_of(at), 5, 1 << 40)
        bucket, shard = partitions.partition_of(impression_id)
        assert bucket <= uuid_datetime(impression_id) < bucket + dt.timedelta(seconds=BUCKET_SECONDS)
        assert bucket.timestamp() % BUCKET_SECONDS == 0 and 0 <= shard < SHARDS
        assert bucket == partitions.bucket_of(at)


def test_a_range_reads_the_partitions_of_its_buckets_only():
    found = list(partitions.partitions(START + dt.timedelta(seconds=10), START + dt.timedelta(seconds=610)))
    assert [p.bucket for p in found[::SHARDS]] == [START + dt.timedelta(seconds=s) for s in (0, 300, 600)]
    assert len(found) == 3 * SHARDS
    day = list(partitions.day_partitions(START.date()))
    assert len(day) == 86_400 // BUCKET_SECONDS * SHARDS
    assert day[0].bucket == dt.datetime(2026, 12, 4, tzinfo=dt.UTC)
    assert day[-1].bucket == dt.datetime(2026, 12, 4, 23, 55, tzinfo=dt.UTC)


# -- the Spark expressions of the rule ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def spark():
    from tests.spark_support import local_spark
    session = local_spark()
    yield session
    session.stop()


def test_the_spark_expressions_give_the_same_partition(spark):
    from pyspark.sql import functions as F

    from spark_jobs.timeuuids import event_bucket, event_shard, timeuuid

    rng = random.Random(11)
    ids = [uuid.uuid1(clock_seq=rng.getrandbits(14)) for _ in range(200)]
    ids += [v1(ticks_of(START + dt.timedelta(seconds=s)), rng.getrandbits(14), 1 << 40) for s in range(0, 900, 7)]
    frame = spark.createDataFrame([(str(i),) for i in ids], "impression_id string")
    rows = frame.select("impression_id", event_bucket(F.col("impression_id")).alias("bucket"),
                        event_shard(F.col("impression_id")).alias("shard")).collect()
    for row in rows:
        expected = partitions.partition_of(uuid.UUID(row.impression_id))
        assert (row.bucket.replace(tzinfo=dt.UTC), row.shard) == expected, row.impression_id
    # and the IDs the jobs mint themselves
    made = (spark.range(500).select(F.timestamp_seconds(F.lit(1_796_000_000) + F.col("id") * 37).alias("t"),
                                    F.xxhash64("id").alias("k"))
            .select(timeuuid(F.col("t"), F.col("k")).alias("u"))
            .select("u", event_bucket(F.col("u")).alias("bucket"), event_shard(F.col("u")).alias("shard")))
    shards = Counter()
    for row in made.collect():
        expected = partitions.partition_of(uuid.UUID(row.u))
        assert (row.bucket.replace(tzinfo=dt.UTC), row.shard) == expected
        shards[row.shard] += 1
    assert len(shards) == SHARDS
