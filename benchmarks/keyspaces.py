"""The benchmarks' own keyspaces: each run starts from an empty one (imported by the bench scripts, which run
from this folder)."""

from __future__ import annotations

import os

PREFIX = "bb_bench"


def drop_keyspace(name: str, hosts: str | None = None, port: int | None = None) -> None:
    """DROP KEYSPACE ``name`` (only a bb_bench* one: never a keyspace the service may use)."""
    if not name.startswith(PREFIX):
        raise ValueError(f"refusing to drop {name!r}: benchmarks drop only their own {PREFIX}* keyspaces")
    from cassandra.cluster import Cluster

    cluster = Cluster((hosts or os.environ.get("CASSANDRA_HOSTS", "127.0.0.1")).split(","),
                      port=port or int(os.environ.get("CASSANDRA_PORT", "9042")))
    try:
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=120)
    finally:
        cluster.shutdown()
