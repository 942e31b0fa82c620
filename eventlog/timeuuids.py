"""Version-1 UUIDs (Cassandra ``timeuuid``): minting them for events, and reading back the time inside.

A version-1 UUID holds t = 100-ns intervals since 1582-10-15 (the UUID epoch, RFC 4122 § 4.1.4):

    t = unix µs · 10 + UUID_EPOCH_OFFSET

The Spark column expressions of the same formulas (spark_jobs/timeuuids.py) take their constants from here.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid

UUID_EPOCH_OFFSET = 0x01B21DD213814000      # 100-ns intervals from 1582-10-15 to 1970-01-01
TICKS_PER_MICROSECOND = 10
TICKS_PER_SECOND = 10_000_000
UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def uuid_seconds(value: uuid.UUID) -> float:
    """Unix seconds inside a version-1 UUID."""
    return (value.time - UUID_EPOCH_OFFSET) / TICKS_PER_SECOND


def uuid_datetime(value: uuid.UUID) -> dt.datetime:
    """The time inside a version-1 UUID as an aware UTC datetime, floored to the microsecond (as the Spark
    expression floors it)."""
    return UNIX_EPOCH + dt.timedelta(microseconds=(value.time - UUID_EPOCH_OFFSET) // TICKS_PER_MICROSECOND)


def event_time(event_id: uuid.UUID, fallback: dt.datetime) -> dt.datetime:
    """When an event with this ID happened: the time inside a version-1 UUID, else ``fallback``."""
    return uuid_datetime(event_id) if event_id.version == 1 else fallback


_node = (0, 0)      # (pid, node) of this process's timeuuids


def timeuuid() -> uuid.UUID:
    """A version-1 UUID (Cassandra timeuuid) of now, unique across processes and machines.

    ``uuid.uuid1()`` without a node asks libuuid, which locks and rewrites a clock file on every call; given
    a node it is computed in Python from the clock, a random clock sequence and the node. The node is random
    per process (multicast bit set, as RFC 4122 § 4.5 asks of a node that is not a MAC address), so two
    processes never share one; within the process uuid1 keeps timestamps strictly increasing.
    """
    global _node
    pid = os.getpid()
    if _node[0] != pid:             # first call in this process (gunicorn forks workers)
        _node = (pid, int.from_bytes(os.urandom(6), "big") | (1 << 40))
    return uuid.uuid1(node=_node[1])
