"""One Cassandra Cluster/Session per process, created lazily after the fork; statements prepared once."""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import ConstantReconnectionPolicy, DCAwareRoundRobinPolicy, RoundRobinPolicy, TokenAwarePolicy
from cassandra.query import PreparedStatement, dict_factory
from flask import Flask

log = logging.getLogger(__name__)

CQL_DIR = Path(__file__).resolve().parents[2] / "cql"
_KEYSPACE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")


def replication_map(spec: str) -> dict[str, Any]:
    """"3" → SimpleStrategy RF 3; "dc1:3,dc2:2" → NetworkTopologyStrategy."""
    spec = spec.strip()
    if spec.isdigit():
        return {"class": "SimpleStrategy", "replication_factor": int(spec)}
    result: dict[str, Any] = {"class": "NetworkTopologyStrategy"}
    for part in spec.split(","):
        dc, _, factor = part.partition(":")
        if not dc.strip() or not factor.strip().isdigit():
            raise ValueError(f"CASSANDRA_REPLICATION must be 'N' or 'dc:N,dc:N', got {spec!r}")
        result[dc.strip()] = int(factor)
    return result


class Database:
    """Owns this process's Cluster and Session. Nothing connects until :meth:`session` is first called."""

    def __init__(self, config: dict[str, Any]) -> None:
        keyspace = config["CASSANDRA_KEYSPACE"]
        if not _KEYSPACE_RE.match(keyspace):
            raise ValueError(f"CASSANDRA_KEYSPACE {keyspace!r} is not a valid keyspace name")
        self.keyspace: str = keyspace
        self.hosts = [h.strip() for h in config["CASSANDRA_HOSTS"].split(",") if h.strip()]
        self.port = int(config["CASSANDRA_PORT"])
        self.replication = replication_map(str(config["CASSANDRA_REPLICATION"]))
        self.local_dc = config["CASSANDRA_LOCAL_DC"] or None
        self.consistency = getattr(ConsistencyLevel, config["CASSANDRA_CONSISTENCY"])
        self.username = config["CASSANDRA_USERNAME"]
        self.password = config["CASSANDRA_PASSWORD"]
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._cluster: Cluster | None = None
        self._session: Session | None = None
        self._prepared: dict[str, PreparedStatement] = {}

    # -- connection ------------------------------------------------------------------------------------

    def _connect(self) -> None:
        if self.local_dc:
            balancing = TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=self.local_dc))
        else:
            balancing = TokenAwarePolicy(RoundRobinPolicy())
        profile = ExecutionProfile(
            load_balancing_policy=balancing,
            consistency_level=self.consistency,
            serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
            row_factory=dict_factory,
            request_timeout=10.0,
        )
        auth = None
        if self.username:
            from cassandra.auth import PlainTextAuthProvider

            auth = PlainTextAuthProvider(self.username, self.password)
        self._cluster = Cluster(
            self.hosts,
            port=self.port,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            auth_provider=auth,
            protocol_version=5,
            # Come back quickly after an outage (the default backs off to 10 minutes).
            reconnection_policy=ConstantReconnectionPolicy(delay=1.0, max_attempts=None),
            connect_timeout=3,
            schema_event_refresh_window=0.2,
            topology_event_refresh_window=0.2,
            max_schema_agreement_wait=10,
        )
        self._session = self._cluster.connect()
        self._pid = os.getpid()
        self._prepared = {}

    def session(self) -> Session:
        """This process's session (reconnects after a fork: a Cluster must never cross one)."""
        if self._session is None or self._pid != os.getpid():
            with self._lock:
                if self._session is None or self._pid != os.getpid():
                    self._connect()
        assert self._session is not None
        return self._session

    def prepare(self, cql: str) -> PreparedStatement:
        """Prepare once per process. ``{ks}`` in the text is replaced by the configured keyspace."""
        session = self.session()
        statement = self._prepared.get(cql)
        if statement is None:
            statement = session.prepare(cql.replace("{ks}", self.keyspace))
            self._prepared[cql] = statement
        return statement

    def execute(self, cql: str, params: tuple | list = ()) -> list[dict[str, Any]]:
        return list(self.session().execute(self.prepare(cql), params))

    def shutdown(self) -> None:
        with self._lock:
            if self._cluster is not None and self._pid == os.getpid():
                self._cluster.shutdown()
            self._cluster = self._session = None
            self._prepared = {}

    # -- schema -----------------------------------------------------------------------------------------

    def apply_schema(self) -> list[str]:
        """Create the keyspace (if absent) and apply every cql/*.cql file in order. Idempotent."""
        session = self.session()
        replication = ", ".join(f"'{k}': {v!r}" if isinstance(v, str) else f"'{k}': {v}"
                                for k, v in self.replication.items())
        # DDL cannot take bind markers; the keyspace name is validated in __init__.
        session.execute(f"CREATE KEYSPACE IF NOT EXISTS {self.keyspace} WITH replication = {{{replication}}}",
                        timeout=60)     # like the tables: schema changes take over 10 s on a busy node
        session.set_keyspace(self.keyspace)
        applied = []
        for path in sorted(CQL_DIR.glob("*.cql")):
            for statement in split_statements(path.read_text()):
                session.execute(statement, timeout=60)
            applied.append(path.name)
        self._cluster.control_connection.wait_for_schema_agreement()
        return applied

    def drop_keyspace(self) -> None:
        self.session().execute(f"DROP KEYSPACE IF EXISTS {self.keyspace}", timeout=60)


def split_statements(text: str) -> list[str]:
    """Split a CQL file into statements (';' at end of line), dropping '--' comment lines."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in re.split(r";[ \t]*(?:\n|$)", "\n".join(lines)) if s.strip()]


def init_app(app: Flask) -> Database:
    db = Database(app.config)
    app.extensions["cassandra"] = db
    return db
