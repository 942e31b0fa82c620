"""Prometheus metrics (prometheus_client), exposed at /metrics.

Readable by a client in METRICS_ALLOW_FROM (loopback by default) or one that sends METRICS_TOKEN as a bearer
token; anyone else gets 403 (the samples are global counts, but they tell traffic and click volumes).

Under gunicorn every worker writes its samples to PROMETHEUS_MULTIPROC_DIR (a setting; gunicorn.conf.py makes
one per server start) and /metrics aggregates all workers; without it (tests, flask run) the process's own
registry is used.
"""

from __future__ import annotations

import ipaddress

from flask import Blueprint, Response, current_app, request
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


def may_scrape() -> bool:
    """Whether this request may read /metrics: its client address is in METRICS_ALLOW_FROM (after ProxyFix,
    the address the trusted proxies name), or it sends METRICS_TOKEN."""
    from webapp.web.config import networks
    from webapp.web.security import bearer_token, token_matches

    if token_matches(bearer_token(request), current_app.config["METRICS_TOKEN"]):
        return True
    try:
        client = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    if client.version == 6 and client.ipv4_mapped is not None:
        client = client.ipv4_mapped
    return any(client in network for network in networks(current_app.config["METRICS_ALLOW_FROM"]))


@bp.get("/metrics")
def metrics() -> Response:
    if not may_scrape():
        response = Response("/metrics is readable from the addresses of METRICS_ALLOW_FROM or with "
                            "METRICS_TOKEN\n", status=403, mimetype="text/plain")
        return response
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
