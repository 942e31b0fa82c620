"""Per-process serving runtime: posterior cache, event writer, sampler and the background loop.

Created lazily on first use in each process (after gunicorn forks), never at import time.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from typing import Any

import numpy as np
from flask import Flask, current_app

from webapp.bandits import ThompsonSampler
from webapp.cassandra import Database
from webapp.events import EventWriter
from webapp.posteriors import PosteriorCache
from webapp.tokens import ClickTokens

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, db: Database, config: dict[str, Any]) -> None:
        self.db = db
        self.config = config
        self.pid = os.getpid()
        seed = config["RANDOM_SEED"]
        self.rng = np.random.default_rng(seed)
        self.sampler = ThompsonSampler(self.rng)
        self.cache = PosteriorCache(db)
        self.events = EventWriter(db)
        self.tokens = ClickTokens(config["CLICK_TOKEN_SECRET"], config["CLICK_WINDOW_SECONDS"])
        self._sample_lock = threading.Lock()   # numpy Generators are not thread-safe
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def select(self, alpha, beta) -> int:
        with self._sample_lock:
            return self.sampler.select(alpha, beta)

    def propensities(self, posterior):
        with self._sample_lock:
            return posterior.propensities(self.rng, self.config["PROPENSITY_DRAWS"])

    def start(self) -> None:
        """Load the cache once (warm-up), then refresh and flush in a daemon thread."""
        self.cache.refresh()
        if self.config["BACKGROUND_THREADS"]:
            self._thread = threading.Thread(target=self._loop, name="banner-bandit-refresh", daemon=True)
            self._thread.start()
        atexit.register(self.shutdown)

    def _loop(self) -> None:
        refresh_every = float(self.config["CACHE_REFRESH_SECONDS"])
        flush_every = float(self.config["COUNTER_FLUSH_SECONDS"])
        next_refresh = time.monotonic() + refresh_every
        next_flush = time.monotonic() + flush_every
        while not self._stop.wait(max(0.01, min(next_refresh, next_flush) - time.monotonic())):
            now = time.monotonic()
            if now >= next_flush:
                next_flush = now + flush_every
                self._guard(self.events.flush)
            if now >= next_refresh:
                next_refresh = now + refresh_every
                self._guard(self.cache.refresh)

    def _guard(self, step) -> None:
        try:
            step()
        except Exception:  # noqa: BLE001 - the loop must survive a Cassandra hiccup
            log.exception("background step %s failed", step.__qualname__)

    def sync(self) -> None:
        """Flush counters and refresh the cache now (tests and CLI)."""
        self.events.drain()
        self.cache.refresh()

    def shutdown(self) -> None:
        if self.pid != os.getpid() or self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.events.drain()
        except Exception:  # noqa: BLE001
            log.exception("could not flush events at shutdown")


_lock = threading.Lock()


def get(app: Flask | None = None) -> Runtime:
    """This process's Runtime for ``app`` (current_app by default), started on first use."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    runtime: Runtime | None = app.extensions.get("runtime")
    if runtime is None or runtime.pid != os.getpid():
        with _lock:
            runtime = app.extensions.get("runtime")
            if runtime is None or runtime.pid != os.getpid():
                runtime = Runtime(app.extensions["cassandra"], app.config)
                runtime.start()
                app.extensions["runtime"] = runtime
    return runtime
