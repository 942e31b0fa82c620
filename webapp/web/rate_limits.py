"""Rate limits per client: the `limits` package, through Flask-Limiter for the dashboard's login and directly
for the public endpoints (serve, embed, click).

Limits are keyed by the client's IP address (behind a reverse proxy set TRUSTED_PROXIES so that the
address comes from X-Forwarded-For). The settings are Flask-Limiter's own config keys (RATELIMIT_ENABLED,
RATELIMIT_STORAGE_URI, RATELIMIT_STRATEGY, RATELIMIT_HEADERS_ENABLED, RATELIMIT_SWALLOW_ERRORS), defaulted
in webapp.web.config; the limits of our endpoints are RATELIMIT_SERVE and RATELIMIT_CLICK.

Why not Flask-Limiter's decorator on /v1/serve: it resolves and filters every limit of the route on each
request (twice: in its before_request hook and in the decorator), several times the CPU of what one
``hit`` on a parsed limit costs (profiled with `make profile-serve`). :func:`client_limit` does just the
hit, with the same storage, strategy, 429 answer and headers. The default storage, memory:// (limits'
own), is per process: with N gunicorn workers a client gets up to N times the limit. A shared storage
(redis://…, memcached://…, see the `limits` package) makes the limit hold across workers and machines.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass

from flask import Flask, current_app, jsonify, make_response, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import STRATEGIES, RateLimiter
from werkzeug.exceptions import TooManyRequests

from webapp.web.errors import wants_json

limiter = Limiter(get_remote_address)


@limiter.request_filter
def _outside_the_dashboard() -> bool:
    """Flask-Limiter guards the dashboard (its login) only. Without this filter its before_request hook
    resolves the (empty) limits of every request, the public ones included: a cost on every serve, profiled."""
    return request.blueprint != "admin"


log = logging.getLogger(__name__)

LIMIT_KEYS = ("RATELIMIT_SERVE", "RATELIMIT_CLICK")


class ClientRateLimited(TooManyRequests):
    """429 from :func:`client_limit`: ``limit`` is the limit that was exceeded."""

    def __init__(self, limit: RateLimitItem, retry_after: int) -> None:
        super().__init__(description=str(limit))
        self.limit = limit
        self.retry_after = retry_after


@dataclass(frozen=True)
class ClientLimits:
    """One app's public limits: the strategy over its storage and the parsed limits per config key."""

    strategy: RateLimiter
    limits: dict[str, tuple[RateLimitItem, ...]]
    swallow_errors: bool
    headers: bool


def client_limit(config_key: str, scope: str):
    """Limit a view per client IP to the limits in ``config[config_key]``, in a budget shared by every view
    decorated with the same ``scope`` (serve and embed draw on one, both click endpoints on another)."""

    def decorate(view):
        @functools.wraps(view)
        def limited(*args, **kwargs):
            state: ClientLimits | None = current_app.extensions.get("client_limits")
            if state is None:                       # RATELIMIT_ENABLED is off
                return view(*args, **kwargs)
            key = get_remote_address()
            hit = None
            for item in state.limits[config_key]:
                try:
                    allowed = state.strategy.hit(item, key, scope)
                except Exception:
                    if not state.swallow_errors:
                        raise
                    log.exception("rate limit storage failed; letting the request through")
                    return view(*args, **kwargs)
                if not allowed:
                    reset = state.strategy.get_window_stats(item, key, scope).reset_time
                    raise ClientRateLimited(item, max(1, math.ceil(reset - time.time())))
                hit = hit or item
            if not state.headers or hit is None:
                return view(*args, **kwargs)
            response = make_response(view(*args, **kwargs))
            stats = state.strategy.get_window_stats(hit, key, scope)
            response.headers["X-RateLimit-Limit"] = str(hit.amount)
            response.headers["X-RateLimit-Remaining"] = str(stats.remaining)
            response.headers["X-RateLimit-Reset"] = str(math.ceil(stats.reset_time))
            return response

        return limited

    return decorate


serve_limit = client_limit("RATELIMIT_SERVE", scope="serve")
click_limit = client_limit("RATELIMIT_CLICK", scope="click")


def init_app(app: Flask) -> None:
    parsed = {}
    for key in LIMIT_KEYS:                     # a typo in a limit fails at start, not on every request
        try:
            parsed[key] = tuple(parse_many(app.config[key]))
        except ValueError:
            raise ValueError(f"{key}={app.config[key]!r} is not a rate limit such as '600/minute' or "
                             f"'10/second;500/hour'") from None
    app.config.setdefault("RATELIMIT_STORAGE_URI", "memory://")
    limiter.init_app(app)
    if app.config.get("RATELIMIT_ENABLED", True):
        strategy = app.config.get("RATELIMIT_STRATEGY", "fixed-window")
        if strategy not in STRATEGIES:
            raise ValueError(f"RATELIMIT_STRATEGY={strategy!r} is not one of {', '.join(STRATEGIES)}")
        storage = storage_from_string(app.config["RATELIMIT_STORAGE_URI"],
                                      **app.config.get("RATELIMIT_STORAGE_OPTIONS", {}))
        app.extensions["client_limits"] = ClientLimits(
            STRATEGIES[strategy](storage), parsed, bool(app.config.get("RATELIMIT_SWALLOW_ERRORS", True)),
            bool(app.config.get("RATELIMIT_HEADERS_ENABLED", False)))

    @app.errorhandler(ClientRateLimited)
    def client_rate_limited(exc: ClientRateLimited):
        return _too_many(exc.description, exc.retry_after)

    @app.errorhandler(RateLimitExceeded)
    def rate_limited(exc: RateLimitExceeded):
        if not wants_json():
            return exc
        current = limiter.current_limit
        return _too_many(exc.description, max(1, math.ceil(current.reset_at - time.time())) if current else 1)


def _too_many(limit: str, retry_after: int):
    """The JSON 429 answer (every /v1/ error is JSON, the embed page's too), with Retry-After."""
    response = jsonify(error=f"too many requests from this client: the limit is {limit}; retry in {retry_after} s")
    response.status_code = 429
    response.headers["Retry-After"] = str(retry_after)
    return response
