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

from bandits.policy import Choice, Context, Policy
from webapp.learning.posteriors import PosteriorCache
from webapp.serving import holdout
from webapp.serving.provenance import ClientHasher
from webapp.serving.tokens import ClickTokens
from webapp.storage.database import Database
from webapp.storage.events import EventWriter
from webapp.storage.spool import Spool
from webapp.web import metrics

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, db: Database, config: dict[str, Any]) -> None:
        self.db = db
        self.config = config
        self.pid = os.getpid()
        seed = config["RANDOM_SEED"]
        self.rng = np.random.default_rng(seed)
        self.cache = PosteriorCache(db, config["PROPENSITY_DRAWS"], load_timeout=config["SLOT_LOAD_TIMEOUT_SECONDS"],
                                    idle_seconds=config["SLOT_IDLE_SECONDS"], max_slots=config["SLOT_CACHE_MAX"],
                                    not_found_seconds=config["SLOT_NOT_FOUND_SECONDS"],
                                    context_max_levels=config["CONTEXT_MAX_LEVELS"],
                                    safety_seconds=config["CACHE_SAFETY_REFRESH_SECONDS"],
                                    decay_seconds=config["DECAY_REFRESH_SECONDS"])
        self.spool = Spool(config["SPOOL_DIR"], config["SPOOL_MAX_BYTES"], config["SPOOL_SEGMENT_SECONDS"])
        self.events = EventWriter(db, self.spool, config["IMPRESSION_BATCH_ROWS"])
        self.tokens = ClickTokens(config["CLICK_TOKEN_SECRET"], config["CLICK_WINDOW_SECONDS"])
        self.clients = ClientHasher(config["CLICK_TOKEN_SECRET"])
        self._sample_lock = threading.Lock()   # numpy Generators are not thread-safe
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refresh_thread: threading.Thread | None = None

    def choose(self, policy: Policy, context: Context) -> Choice:
        """The policy's decision for this serve (the arm, its propensity and the state to log)."""
        with self._sample_lock:
            return policy.choose(context, self.rng)

    def holdout(self, tenant_id: str, slot_id: str, customer_id: str, holdout_percent: int, arms: int
                ) -> tuple[holdout.Assignment, int | None]:
        """This serve's group (webapp/serving/holdout.py) and, in the holdout, its uniformly drawn arm."""
        if holdout_percent <= 0:
            return holdout.NO_HOLDOUT, None
        with self._sample_lock:
            assignment = holdout.assign(tenant_id, slot_id, customer_id, holdout_percent, self.rng)
            arm = holdout.uniform_arm(arms, self.rng) if assignment.group == holdout.HOLDOUT else None
        return assignment, arm

    def start(self) -> None:
        """Connect and prepare the cache's reads (warm-up), then refresh, flush, fsync and replay in a daemon
        thread. The cache holds nothing yet: each slot is read on its first serve."""
        self._guard(self.cache.prepare)     # Cassandra may be down: a first serve then answers 503
        if self.config["BACKGROUND_THREADS"]:
            writes = [  # (every seconds, step), each run on its own schedule in this one thread
                (float(self.config["IMPRESSION_WRITE_SECONDS"]), self.events.write_queued),
                (float(self.config["SPOOL_FSYNC_SECONDS"]), self.spool.sync),
                (float(self.config["COUNTER_FLUSH_SECONDS"]), self.events.flush),
                (float(self.config["REPLAY_SECONDS"]), self._replay),
                (1.0, lambda: metrics.observe_runtime(self)),
            ]
            # The refresh in a thread of its own: a long one (many held slots changed, a slow node) must not hold
            # back the counter flush, whose change feed rows are what tell the other workers about a click.
            refresh = [(float(self.config["CACHE_REFRESH_SECONDS"]), self.cache.refresh)]
            self._thread = threading.Thread(target=self._loop, args=(writes,), name="banner-bandit-writes",
                                            daemon=True)
            self._refresh_thread = threading.Thread(target=self._loop, args=(refresh,),
                                                    name="banner-bandit-refresh", daemon=True)
            self._thread.start()
            self._refresh_thread.start()
        atexit.register(self.shutdown)

    def _loop(self, tasks: list) -> None:
        due = [0.0] * len(tasks)
        while not self._stop.wait(max(0.005, min(due) - time.monotonic())):
            for index, (every, step) in enumerate(tasks):
                now = time.monotonic()
                if now >= due[index]:
                    due[index] = now + every
                    self._guard(step)

    def _replay(self) -> None:
        applied = self.events.replay_orphans()
        if applied:
            metrics.REPLAYED.inc(applied)

    def _guard(self, step) -> None:
        try:
            step()
        except Exception:
            log.exception("background step %s failed", getattr(step, "__qualname__", step))

    def sync(self) -> None:
        """Write pending events and counters, then re-read every slot this worker holds now, named in the change
        feed or not (tests and CLI)."""
        self.events.drain()
        self.cache.refresh(full=True)

    def shutdown(self) -> None:
        if self.pid != os.getpid() or self._stop.is_set():
            return
        self._stop.set()
        for thread in (self._thread, self._refresh_thread):
            if thread is not None:
                thread.join(timeout=5)
        try:
            self.events.drain()
        except Exception:
            log.exception("could not flush events at shutdown; they stay in the spool for replay")
        self.spool.close()


_lock = threading.Lock()


def get(app: Flask | None = None) -> Runtime:
    """This process's Runtime for ``app`` (current_app by default), started on first use."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    runtime: Runtime | None = app.extensions.get("runtime")
    if runtime is None or runtime.pid != os.getpid():
        with _lock:
            runtime = app.extensions.get("runtime")
            if runtime is None or runtime.pid != os.getpid():
                config = dict(app.config)
                config["SPOOL_DIR"] = config["SPOOL_DIR"] or os.path.join(app.instance_path, "spool")
                runtime = Runtime(app.extensions["cassandra"], config)
                runtime.start()
                app.extensions["runtime"] = runtime
    return runtime
