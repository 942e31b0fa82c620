"""Configuration: defaults, then the environment, then a test dict. The only module that reads os.environ."""

from __future__ import annotations

import os
from typing import Any

DEFAULTS: dict[str, Any] = {
    # Cassandra
    "CASSANDRA_HOSTS": "127.0.0.1",          # comma-separated contact points
    "CASSANDRA_PORT": 9042,
    "CASSANDRA_KEYSPACE": "banner_bandit",
    # Replication of the keyspace when the schema command creates it: SimpleStrategy with a factor, or
    # NetworkTopologyStrategy as "dc1:3,dc2:3".
    "CASSANDRA_REPLICATION": "1",
    "CASSANDRA_LOCAL_DC": "",                 # set for a multi-DC cluster (DCAwareRoundRobinPolicy)
    "CASSANDRA_USERNAME": "",
    "CASSANDRA_PASSWORD": "",
    "CASSANDRA_CONSISTENCY": "LOCAL_QUORUM",  # writes and reads of the event log and config
    # Management API
    "ADMIN_API_TOKEN": "",                    # required for /v1/admin/*; empty = admin API disabled (401)
    # Click tokens
    "CLICK_TOKEN_SECRET": "",                 # HMAC key; empty = falls back to SECRET_KEY
    "SECRET_KEY": "dev-only-secret-change-me",
    "CLICK_WINDOW_SECONDS": 24 * 3600,        # clicks accepted this long after the impression
    # Learning
    "CACHE_REFRESH_SECONDS": 1.0,             # how often each process re-reads posteriors
    "IMPRESSION_WRITE_SECONDS": 0.5,          # how often each process sends its queued impressions
    "IMPRESSION_BATCH_ROWS": 256,             # rows per UNLOGGED batch of one partition (one mutation)
    "COUNTER_FLUSH_SECONDS": 0.5,             # how often each process writes its aggregated counters
    "PROPENSITY_DRAWS": 4096,                 # largest block of precomputed Thompson draws (see posteriors.py)
    "RANDOM_SEED": None,                      # seed for the per-process sampler (None = fresh entropy)
    # Durable event spool (per process) for events Cassandra has not taken yet
    "SPOOL_DIR": "",                          # default: <instance folder>/spool
    "SPOOL_MAX_BYTES": 256 * 1024 * 1024,     # per process; when full, serve/click answer 503
    "SPOOL_FSYNC_SECONDS": 0.2,               # group commit interval
    "SPOOL_SEGMENT_SECONDS": 5.0,             # segment rotation; a segment is deleted once all is written
    "REPLAY_SECONDS": 2.0,                    # how often to look for segments of dead processes
    "STALE_AFTER_SECONDS": 5.0,               # posteriors older than this are flagged in X-Banner-Bandit-Stale
    # Input limits
    "MAX_PARAM_LENGTH": 128,                  # location, customer_id, referrer_id
    "MAX_CONTENT_LENGTH": 64 * 1024,          # request body bytes (Flask answers 413 beyond it)
    "MAX_BANNERS_PER_SLOT": 50,               # creating one more banner in a full slot is refused (409)
    # Rate limits per client IP (Flask-Limiter); limit strings such as "600/minute" or "10/second;500/hour"
    "RATELIMIT_ENABLED": True,
    "RATELIMIT_STORAGE_URI": "memory://",     # per process; e.g. redis://host:6379 to share between workers
    "RATELIMIT_SERVE": "6000/minute",         # /v1/serve and /v1/embed together
    "RATELIMIT_CLICK": "600/minute",          # GET /v1/click/<token> and POST /v1/click together
    "RATELIMIT_HEADERS_ENABLED": False,       # X-RateLimit-* on every response (a 429 always has Retry-After)
    "RATELIMIT_SWALLOW_ERRORS": True,         # an unreachable limit storage lets requests through (logged)
    "TRUSTED_PROXIES": 0,                     # reverse proxies in front whose X-Forwarded-For/-Proto to trust
    # Background threads (tests switch them off and drive refresh/flush by hand)
    "BACKGROUND_THREADS": True,
    "DEFAULT_TIMEZONE": "Asia/Kolkata",
    # Dashboard (/admin)
    "SESSION_COOKIE_SAMESITE": "Lax",         # session cookie: HttpOnly always, SameSite this
    "SESSION_COOKIE_SECURE": False,           # set true when the dashboard is served over HTTPS
    "PERMANENT_SESSION_LIFETIME": 12 * 3600,  # seconds a dashboard login lasts
    "LOGIN_RATE_LIMIT": "10/minute",          # failed logins per client address and per username
    "MAX_IMAGE_BYTES": 512 * 1024,            # largest banner image upload
    "PUBLIC_BASE_URL": "",                    # base of uploaded image URLs and embed snippets; '' = request host
    # Spark jobs (spark_jobs/). Under spark-submit, its --master/--jars/--packages win over these.
    "SPARK_MASTER": "local[2]",
    "SPARK_DRIVER_MEMORY": "1g",
    "SPARK_SHUFFLE_PARTITIONS": 4,
    # City priors (spark_jobs/city_priors.py): strength bounds in pseudo-impressions, default window in days
    "CITY_PRIOR_MAX_STRENGTH": 200.0,
    "CITY_PRIOR_MIN_STRENGTH": 2.0,
    "CITY_PRIOR_WINDOW_DAYS": 90,
}

_INT_KEYS = {"IMPRESSION_BATCH_ROWS", "CASSANDRA_PORT", "CLICK_WINDOW_SECONDS", "PROPENSITY_DRAWS", "MAX_PARAM_LENGTH",
             "MAX_CONTENT_LENGTH", "MAX_BANNERS_PER_SLOT", "TRUSTED_PROXIES", "SPOOL_MAX_BYTES",
             "PERMANENT_SESSION_LIFETIME", "MAX_IMAGE_BYTES", "SPARK_SHUFFLE_PARTITIONS", "CITY_PRIOR_WINDOW_DAYS"}
_FLOAT_KEYS = {"IMPRESSION_WRITE_SECONDS", "CACHE_REFRESH_SECONDS", "COUNTER_FLUSH_SECONDS", "SPOOL_FSYNC_SECONDS",
               "SPOOL_SEGMENT_SECONDS", "REPLAY_SECONDS", "STALE_AFTER_SECONDS", "CITY_PRIOR_MAX_STRENGTH", "CITY_PRIOR_MIN_STRENGTH"}
_BOOL_KEYS = {"BACKGROUND_THREADS", "RATELIMIT_ENABLED", "RATELIMIT_HEADERS_ENABLED",
              "RATELIMIT_SWALLOW_ERRORS", "SESSION_COOKIE_SECURE"}


def _coerce(key: str, raw: str) -> Any:
    if key in _INT_KEYS:
        return int(raw)
    if key in _FLOAT_KEYS:
        return float(raw)
    if key in _BOOL_KEYS:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if key == "RANDOM_SEED":
        return int(raw) if raw.strip() else None
    return raw


def load(overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Return the effective configuration: DEFAULTS < environment (same names) < overrides."""
    env = os.environ if environ is None else environ
    config = dict(DEFAULTS)
    for key in DEFAULTS:
        if key in env:
            try:
                config[key] = _coerce(key, env[key])
            except ValueError as exc:
                raise ValueError(f"environment variable {key}={env[key]!r} is not valid: {exc}") from None
    if overrides:
        config.update(overrides)
    if not config["CLICK_TOKEN_SECRET"]:
        config["CLICK_TOKEN_SECRET"] = config["SECRET_KEY"]
    return config
