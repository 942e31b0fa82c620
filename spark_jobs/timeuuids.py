"""Version-1 UUIDs (Cassandra ``timeuuid``) as Spark column expressions: deterministic ones, and the time inside.

The constants and the Python functions are in eventlog/timeuuids.py.

A timeuuid orders by time, and Cassandra rejects any other UUID version in a ``timeuuid`` column. Serving
mints them with ``uuid.uuid1()``; jobs that write events (the history import, the benchmark generator) build
them from the event's time and a 64-bit key instead, so the same event always gets the same ID and
re-running a job overwrites rows instead of duplicating them:

    t          = 100-ns intervals since 1582-10-15 (the UUID epoch) = unix µs · 10 + UUID_EPOCH_OFFSET
    time_low   = t mod 2³²;  time_mid = (t >> 32) mod 2¹⁶;  time_hi = ((t >> 48) mod 2¹²) | 0x1000  (version 1)
    clock_seq  = ((key >>> 48) mod 2¹⁴) | 0x8000                                               (RFC 4122 variant)
    node       = (key mod 2⁴⁸) | 0x010000000000              (multicast bit set: never a real MAC address)
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from eventlog.partitions import BUCKET_SECONDS, SHARDS
from eventlog.timeuuids import TICKS_PER_MICROSECOND, TICKS_PER_SECOND, UUID_EPOCH_OFFSET


def _hex(value: Column, digits: int) -> Column:
    return F.lower(F.lpad(F.hex(value), digits, "0"))


def timeuuid(timestamp: Column, key: Column) -> Column:
    """A version-1 UUID string for ``timestamp`` (a timestamp column) and ``key`` (a long column)."""
    ticks = F.unix_micros(timestamp) * TICKS_PER_MICROSECOND + F.lit(UUID_EPOCH_OFFSET)
    time_low = ticks.bitwiseAND(F.lit(0xFFFFFFFF))
    time_mid = F.shiftright(ticks, 32).bitwiseAND(F.lit(0xFFFF))
    time_hi = F.shiftright(ticks, 48).bitwiseAND(F.lit(0x0FFF)).bitwiseOR(F.lit(0x1000))
    clock_seq = F.shiftrightunsigned(key, 48).bitwiseAND(F.lit(0x3FFF)).bitwiseOR(F.lit(0x8000))
    node = key.bitwiseAND(F.lit(0xFFFFFFFFFFFF)).bitwiseOR(F.lit(0x010000000000))
    return F.concat_ws("-", _hex(time_low, 8), _hex(time_mid, 4), _hex(time_hi, 4), _hex(clock_seq, 4),
                       _hex(node, 12))


def timeuuid_time(uuid_string: Column, fallback: Column) -> Column:
    """The time inside a version-1 UUID string (``fallback`` for other versions), as a timestamp column:
    eventlog.timeuuids.event_time, floored to the microsecond the same way."""
    def part(start: int, length: int) -> Column:
        return F.conv(F.substring(uuid_string, start, length), 16, 10).cast("long")

    ticks = F.shiftleft(part(16, 3), 48) + F.shiftleft(part(10, 4), 32) + part(1, 8)   # time_hi, mid, low
    at = F.timestamp_micros(F.floor((ticks - F.lit(UUID_EPOCH_OFFSET)) / TICKS_PER_MICROSECOND).cast("long"))
    return F.when(F.substring(uuid_string, 15, 1) == "1", at).otherwise(fallback)


def event_bucket(uuid_string: Column) -> Column:
    """The event log bucket of an impression's timeuuid string: eventlog.partitions.partition_of's bucket."""
    def part(start: int, length: int) -> Column:
        return F.conv(F.substring(uuid_string, start, length), 16, 10).cast("long")

    ticks = F.shiftleft(part(16, 3), 48) + F.shiftleft(part(10, 4), 32) + part(1, 8)
    seconds = F.floor((ticks - F.lit(UUID_EPOCH_OFFSET)) / F.lit(TICKS_PER_SECOND)).cast("long")
    return F.timestamp_seconds(seconds - F.pmod(seconds, F.lit(BUCKET_SECONDS)))


def event_shard(uuid_string: Column) -> Column:
    """The event log shard of an impression's timeuuid string: eventlog.partitions.shard_of.
    (time_low's low byte is characters 7-8 of the string, clock_seq_low characters 22-23.)"""
    time_low_byte = F.conv(F.substring(uuid_string, 7, 2), 16, 10).cast("int")
    clock_seq_low = F.conv(F.substring(uuid_string, 22, 2), 16, 10).cast("int")
    return F.pmod(time_low_byte + clock_seq_low, F.lit(SHARDS)).cast("int")
