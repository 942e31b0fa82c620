"""Rate limits per client (Flask-Limiter), shared by the public endpoints and the dashboard's login.

The limiter is keyed by the client's IP address (behind a reverse proxy set TRUSTED_PROXIES so that the
address comes from X-Forwarded-For). Its settings are Flask-Limiter's own config keys (RATELIMIT_ENABLED,
RATELIMIT_STORAGE_URI, RATELIMIT_HEADERS_ENABLED, RATELIMIT_SWALLOW_ERRORS), defaulted in webapp.config;
the limits of our endpoints are RATELIMIT_SERVE and RATELIMIT_CLICK. The default storage, worker-memory://
(limits' memory storage, see WorkerMemoryStorage), is per process: with N gunicorn workers a client gets up to
N times the limit. A shared storage
(redis://…, memcached://…, see the `limits` package) makes the limit hold across workers and machines.
"""

from __future__ import annotations

import math
import threading
import time
import weakref

from flask import Flask, current_app, jsonify
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from limits import parse_many
from limits.storage import MemoryStorage

from webapp.errors import wants_json



class WorkerMemoryStorage(MemoryStorage):
    """limits' memory storage, expiring old counts from one long-lived thread instead of a thread per hit.

    MemoryStorage starts a ``threading.Timer(0.01)`` on every hit when the previous one has finished, so under
    steady traffic a worker starts a thread every ~10 ms: that was 1.3 ms of CPU per /v1/serve (profiled),
    more than choosing the banner. Counts are checked for expiry when read anyway (``get``); the thread only
    frees memory, so once a second is enough. The thread holds the storage weakly and ends with it.
    """

    STORAGE_SCHEME = ["worker-memory"]
    EXPIRE_EVERY_SECONDS = 1.0

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        # MemoryStorage starts a new timer only while self.timer is not alive: keep a live one there.
        self.timer = threading.Thread(target=_expire_while_alive, args=(weakref.ref(self),),  # type: ignore[assignment]
                                      name="rate-limit-expiry", daemon=True)
        self.timer.start()


def _expire_while_alive(storage_ref: weakref.ref[WorkerMemoryStorage]) -> None:
    while True:
        time.sleep(WorkerMemoryStorage.EXPIRE_EVERY_SECONDS)
        storage = storage_ref()
        if storage is None:
            return
        storage._MemoryStorage__expire_events()  # type: ignore[attr-defined]  # the parent's own cleanup
        del storage


limiter = Limiter(get_remote_address)

# Decorators of the public views. A shared scope makes /v1/serve and /v1/embed draw on one budget per client
# (and both click endpoints on another); the limit string is read from the config at request time.
serve_limit = limiter.shared_limit(lambda: current_app.config["RATELIMIT_SERVE"], scope="serve")
click_limit = limiter.shared_limit(lambda: current_app.config["RATELIMIT_CLICK"], scope="click")

LIMIT_KEYS = ("RATELIMIT_SERVE", "RATELIMIT_CLICK")


def init_app(app: Flask) -> None:
    for key in LIMIT_KEYS:                     # a typo in a limit fails at start, not on every request
        try:
            parse_many(app.config[key])
        except ValueError:
            raise ValueError(f"{key}={app.config[key]!r} is not a rate limit such as '600/minute' or "
                             f"'10/second;500/hour'") from None
    app.config.setdefault("RATELIMIT_STORAGE_URI", "worker-memory://")
    limiter.init_app(app)

    @app.errorhandler(RateLimitExceeded)
    def rate_limited(exc: RateLimitExceeded):
        if not wants_json():
            return exc
        current = limiter.current_limit
        retry_after = max(1, math.ceil(current.reset_at - time.time())) if current else 1
        response = jsonify(error=f"too many requests from this client: the limit is {exc.description}; "
                                 f"retry in {retry_after} s")
        response.status_code = 429
        response.headers["Retry-After"] = str(retry_after)
        return response
