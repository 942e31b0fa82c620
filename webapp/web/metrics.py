"""Prometheus metrics (prometheus_client), exposed at /metrics.

Under gunicorn every worker writes its samples to PROMETHEUS_MULTIPROC_DIR (a setting; gunicorn.conf.py makes
one per server start) and /metrics aggregates all workers; without it (tests, flask run) the process's own
registry is used.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
    multiprocess,
)

SERVES = Counter("banner_bandit_serves_total", "Serve requests answered, by status", ["status"])
CLICKS = Counter("banner_bandit_clicks_total", "Clicks, by outcome (recorded, duplicate, spooled, "
                 "filtered_<reason>)", ["outcome"])
STALE_SERVES = Counter("banner_bandit_stale_serves_total",
                       "Serves answered from posteriors older than STALE_AFTER_SECONDS")
POSTERIOR_AGE = Gauge("banner_bandit_posterior_age_seconds", "Age of the stalest slot in the workers' posterior caches",
                      multiprocess_mode="max")
SPOOL_BYTES = Gauge("banner_bandit_spool_bytes", "Bytes in the event spool not yet in Cassandra",
                    multiprocess_mode="livesum")
BACKLOG = Gauge("banner_bandit_event_backlog", "Events accepted but not yet written to Cassandra",
                multiprocess_mode="livesum")
SPOOL_FULL = Gauge("banner_bandit_spool_full", "1 while a worker's spool is full and refuses events (alarm)",
                   multiprocess_mode="max")
CACHED_SLOTS = Gauge("banner_bandit_cached_slots", "Slots held in the workers' posterior caches (their working sets)",
                     multiprocess_mode="livesum")
SLOT_LOADS = Counter("banner_bandit_slot_loads_total", "Slots read on their first serve, by outcome (loaded, "
                     "not_found, unavailable)", ["outcome"])
SLOT_EVICTIONS = Counter("banner_bandit_slot_evictions_total", "Slots dropped from a posterior cache, by reason "
                         "(idle, capacity)", ["reason"])
CACHE_READS = Counter("banner_bandit_cache_reads_total", "Single-partition reads sent by the posterior caches "
                      "(first serves and refreshes)")
REPLAYED = Counter("banner_bandit_replayed_events_total", "Spooled events of dead processes applied on replay")

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    if current_app.config["PROMETHEUS_MULTIPROC_DIR"]:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def observe_runtime(runtime) -> None:
    """Set the gauges from this worker's runtime (called by its background loop)."""
    age = runtime.cache.age()
    POSTERIOR_AGE.set(age if age != float("inf") else -1)
    CACHED_SLOTS.set(runtime.cache.held)
    SPOOL_BYTES.set(runtime.spool.size)
    BACKLOG.set(runtime.events.backlog)
    SPOOL_FULL.set(1 if runtime.spool.full_since is not None else 0)
