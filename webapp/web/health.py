"""Probes for an orchestrator or a container's HEALTHCHECK: liveness (/healthz) and readiness (/readyz).

Liveness says only that the worker answers: restarting a process does not cure a Cassandra outage, so it touches
nothing. Readiness says whether this process could serve: the keyspace exists (the schema step has run) and Cassandra
answers a read of it at the configured consistency (LOCAL_QUORUM on a ring: enough replicas are up). A load balancer
takes a 503 replica out of rotation; serving keeps its own outage handling (503 with Retry-After) for the requests
that still arrive.
"""

from __future__ import annotations

import logging

from cassandra import DriverException
from flask import Blueprint, current_app, jsonify

from webapp.web.errors import DATABASE_UNAVAILABLE

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)

# A probe must answer within the orchestrator's timeout (a few seconds) even while the ring is down.
PROBE_TIMEOUT_SECONDS = 2.0
PROBE_CQL = "SELECT tenant_id FROM {ks}.tenants WHERE tenant_id = ?"
PROBE_TENANT = "-readiness-probe-"          # not a valid tenant ID: never a real row
VERSION_CQL = "SELECT release_version FROM system.local"


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers (touches no database)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Readiness: 200 when the keyspace answers a read at the configured consistency, else 503 with the reason."""
    db = current_app.extensions["cassandra"]
    try:
        session = db.session()
        if db.keyspace not in session.cluster.metadata.keyspaces:
            return _not_ready(f"keyspace {db.keyspace!r} does not exist: run the schema step (flask init-db)")
        # One partition (absent: nothing read but the replicas' answers), at the session's consistency level.
        session.execute(db.prepare(PROBE_CQL), (PROBE_TENANT,), timeout=PROBE_TIMEOUT_SECONDS)
        version = session.execute(VERSION_CQL, timeout=PROBE_TIMEOUT_SECONDS).one()["release_version"]
    except (*DATABASE_UNAVAILABLE, DriverException) as exc:     # no host, too few replicas, timed out…
        log.warning("readiness: Cassandra does not answer: %s", exc)
        return _not_ready(f"Cassandra does not answer: {_describe(exc)}")
    return jsonify(status="ready", cassandra=version, keyspace=db.keyspace,
                   consistency=current_app.config["CASSANDRA_CONSISTENCY"])


def _describe(exc: Exception) -> str:
    """The error's kind, and for "no host available" the kinds of the hosts' own errors (Unavailable, refused…)."""
    errors = getattr(exc, "errors", None)
    if isinstance(errors, dict) and errors:
        return f"{type(exc).__name__} ({', '.join(sorted({type(e).__name__ for e in errors.values()}))})"
    return type(exc).__name__


def _not_ready(reason: str):
    response = jsonify(status="unavailable", error=reason)
    response.status_code = 503
    response.headers["Retry-After"] = "5"
    return response
