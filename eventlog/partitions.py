"""Where an event row lives: the partition of the event log (``impression_log``, ``click_log``).

A partition is (tenant, slot, bucket, shard), all four taken from the impression alone:

    bucket = the UTC start of the BUCKET_SECONDS window holding the time inside the impression's timeuuid
    shard  = (time_low mod 2⁸ + clock_seq_low) mod SHARDS         (two bytes of the same timeuuid)

so a click (whose token names the impression) finds its impression's partition without a lookup, and its
dedupe stays a single-partition lightweight transaction. The two bytes spread rows evenly over the shards
whatever minted the ID: serving's ``uuid1`` draws a random clock sequence per ID (and consecutive IDs of one
process differ in the time's low bits), while the Spark jobs' deterministic IDs (spark_jobs/timeuuids.py)
carry a hash of the event in the clock sequence even when their times are whole seconds.

The bound, at the serve peak of one slot (PEAK_SERVES_PER_SECOND):

    rows per partition = peak · BUCKET_SECONDS / SHARDS = 2,500 · 300 / 8 = 93,750  ≤ 100,000

(Cassandra's guidance is ~100k rows / 100 MB a partition; an impression row is ~200 bytes, so ~19 MB.)
A click row lives in its impression's partition, so the click log holds at most as many. A reader of a time
range reads (buckets in the range) × SHARDS partitions: 8 × 12 an hour, 8 × 288 a day.

These two constants are part of every row's key: changing them means a migration of the log.
The Spark column expressions of the same rule are in spark_jobs/timeuuids.py (tested against these).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import NamedTuple

from eventlog.timeuuids import uuid_seconds

BUCKET_SECONDS = 300              # 5 minutes of one slot's events per bucket …
SHARDS = 8                        # … spread over 8 partitions
PEAK_SERVES_PER_SECOND = 2_500    # the serve peak of one slot that the bound is computed for
MAX_PARTITION_ROWS = 100_000      # Cassandra's guidance


class Partition(NamedTuple):
    """The partition key of an event row below (tenant_id, slot_id)."""

    bucket: dt.datetime           # UTC start of the bucket
    shard: int                    # 0 ≤ shard < SHARDS


def rows_per_partition(serves_per_second: float = PEAK_SERVES_PER_SECOND) -> float:
    """Expected impression rows in one partition when one slot serves at this rate."""
    return serves_per_second * BUCKET_SECONDS / SHARDS


def bucket_of(at: dt.datetime) -> dt.datetime:
    """The UTC start of the bucket ``at`` falls in."""
    seconds = int(at.timestamp())
    return dt.datetime.fromtimestamp(seconds - seconds % BUCKET_SECONDS, dt.UTC)


def shard_of(impression_id: uuid.UUID) -> int:
    """The shard of an impression (and of its click)."""
    return ((impression_id.time_low & 0xFF) + impression_id.clock_seq_low) % SHARDS


def partition_of(impression_id: uuid.UUID) -> Partition:
    """The partition of the impression with this timeuuid, and of its click."""
    seconds = int(uuid_seconds(impression_id) // 1)
    bucket = dt.datetime.fromtimestamp(seconds - seconds % BUCKET_SECONDS, dt.UTC)
    return Partition(bucket, shard_of(impression_id))


def buckets(start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """The buckets holding any time in [start, end] (both included), oldest first."""
    first, last = bucket_of(start), bucket_of(end)
    count = int((last - first).total_seconds()) // BUCKET_SECONDS + 1
    return [first + dt.timedelta(seconds=i * BUCKET_SECONDS) for i in range(max(count, 0))]


def partitions(start: dt.datetime, end: dt.datetime) -> Iterator[Partition]:
    """Every partition (below tenant and slot) that can hold an event of [start, end]."""
    for bucket in buckets(start, end):
        for shard in range(SHARDS):
            yield Partition(bucket, shard)


def day_partitions(day: dt.date) -> Iterator[Partition]:
    """Every partition of one UTC day."""
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    yield from partitions(start, start + dt.timedelta(days=1) - dt.timedelta(microseconds=1))
