"""The event writer: impressions go out asynchronously, clicks are deduplicated, counters are aggregated.

Impression rows have a unique key (a timeuuid minted at serve time), so writing one twice is harmless and
a failed write is retried. Counter increments are not idempotent: they are summed per process and written
as COUNTER batches every COUNTER_FLUSH_SECONDS; a batch that certainly did not apply is put back, one whose
outcome is unknown (a timeout) is not, so nothing is counted twice (the log stays the truth, and the priors
job can rebuild counts from it). The same deltas also go, per quarter hour of the impression, to
traffic_counts: the time series the dashboard charts.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from cassandra import OperationTimedOut, WriteTimeout
from cassandra.cluster import ResponseFuture
from cassandra.query import BatchStatement
from cassandra.util import datetime_from_uuid1

from webapp import store
from webapp.cassandra import Database

log = logging.getLogger(__name__)

SLOT_WIDE = ""          # the banner_counts / priors location of slot-wide rows
MAX_RETRY_QUEUE = 100_000
BUCKET_MINUTES = 15     # traffic_counts time buckets (every time zone offset is a multiple of 15 minutes)


def traffic_bucket(at: dt.datetime) -> dt.datetime:
    """The UTC start of the quarter hour that ``at`` falls in (the traffic_counts bucket)."""
    at = at.astimezone(dt.timezone.utc)
    return at.replace(minute=at.minute - at.minute % BUCKET_MINUTES, second=0, microsecond=0)


@dataclass(frozen=True)
class Impression:
    tenant_id: str
    slot_id: str
    impression_id: uuid.UUID        # timeuuid
    served_at: dt.datetime          # UTC
    banner_id: str
    location: str                   # normalized, '' when none
    customer_id: str
    referrer_id: str
    posterior_scope: str            # 'location' | 'slot'
    alpha: float
    beta: float
    prior_source: str
    propensity: float

    @property
    def day(self) -> dt.date:
        return self.served_at.date()

    def row(self) -> tuple:
        return (self.tenant_id, self.slot_id, self.day, self.impression_id, self.served_at, self.banner_id,
                self.location, self.customer_id, self.referrer_id, self.posterior_scope, self.alpha,
                self.beta, self.prior_source, self.propensity)


@dataclass(frozen=True)
class Click:
    tenant_id: str
    slot_id: str
    day: dt.date                    # the impression's day (partition of its row)
    impression_id: uuid.UUID
    clicked_at: dt.datetime
    banner_id: str
    location: str
    customer_id: str
    referrer_id: str

    @property
    def served_at(self) -> dt.datetime:
        """When the clicked impression was served (the time inside its timeuuid), UTC."""
        if self.impression_id.version != 1:
            return self.clicked_at
        return datetime_from_uuid1(self.impression_id).replace(tzinfo=dt.timezone.utc)

    def row(self) -> tuple:
        return (self.tenant_id, self.slot_id, self.day, self.impression_id, self.clicked_at, self.banner_id,
                self.location, self.customer_id, self.referrer_id)


class EventWriter:
    """Per-process writer of the event log and the aggregated counters. Thread-safe."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._deltas: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        # (tenant, slot, location, bucket, banner) → [impressions, clicks], for traffic_counts
        self._traffic: dict[tuple[str, str, str, dt.datetime, str], list[int]] = defaultdict(lambda: [0, 0])
        self._retry: list[Impression] = []
        self._pending: set[ResponseFuture] = set()
        self.stats = {"impressions_written": 0, "impression_write_errors": 0, "counter_batches": 0,
                      "counter_batch_errors": 0, "impressions_dropped": 0}

    # -- impressions --------------------------------------------------------------------------------------

    def record_impression(self, impression: Impression) -> None:
        """Write the impression row asynchronously and add it to this process's counter deltas."""
        self._count(impression.tenant_id, impression.slot_id, impression.location, impression.banner_id,
                    impression.served_at, 1, 0)
        self._write_impression(impression)

    def _write_impression(self, impression: Impression) -> None:
        future = self.db.session().execute_async(self.db.prepare(store.INSERT_IMPRESSION), impression.row())
        with self._lock:
            self._pending.add(future)
        future.add_callbacks(self._written, self._write_failed,
                             callback_args=(future,), errback_args=(future, impression))

    def _written(self, _result, future: ResponseFuture) -> None:
        with self._lock:
            self._pending.discard(future)
            self.stats["impressions_written"] += 1

    def _write_failed(self, exc: Exception, future: ResponseFuture, impression: Impression) -> None:
        log.warning("impression %s not written (%s); will retry", impression.impression_id, exc)
        with self._lock:
            self._pending.discard(future)
            self.stats["impression_write_errors"] += 1
            if len(self._retry) < MAX_RETRY_QUEUE:
                self._retry.append(impression)
            else:
                self.stats["impressions_dropped"] += 1
                log.error("impression retry queue full: impression %s dropped", impression.impression_id)

    # -- clicks -------------------------------------------------------------------------------------------

    def record_click(self, click: Click) -> bool:
        """Insert the click if its impression has none yet (LWT). True when this call recorded it."""
        rows = self.db.execute(store.INSERT_CLICK, click.row())
        applied = bool(rows[0]["[applied]"])
        if applied:
            self._count(click.tenant_id, click.slot_id, click.location, click.banner_id, click.served_at, 0, 1)
        return applied

    # -- counters -----------------------------------------------------------------------------------------

    def _count(self, tenant_id: str, slot_id: str, location: str, banner_id: str, served_at: dt.datetime,
               impressions: int, clicks: int) -> None:
        bucket = traffic_bucket(served_at)
        with self._lock:
            for where in {location, SLOT_WIDE}:
                for delta in (self._deltas[(tenant_id, slot_id, where, banner_id)],
                              self._traffic[(tenant_id, slot_id, where, bucket, banner_id)]):
                    delta[0] += impressions
                    delta[1] += clicks

    def flush(self) -> None:
        """Write aggregated counter deltas and retry failed impression writes."""
        with self._lock:
            deltas, self._deltas = self._deltas, defaultdict(lambda: [0, 0])
            traffic, self._traffic = self._traffic, defaultdict(lambda: [0, 0])
            retry, self._retry = self._retry, []
        for impression in retry:
            self._write_impression(impression)
        if deltas:
            self._write_counters(store.counter_batches(self.db, deltas), deltas, "_deltas",
                                 lambda key: key[:2])
        if traffic:
            self._write_counters(store.traffic_batches(self.db, traffic), traffic, "_traffic",
                                 lambda key: (key[0], key[1], key[3].date()))

    def _write_counters(self, batches: dict[tuple, BatchStatement], deltas: dict[tuple, list[int]],
                        pending_attr: str, partition_of: Callable[[tuple], tuple]) -> None:
        """Execute one COUNTER batch per partition; put back the deltas of batches that certainly failed."""
        session = self.db.session()
        for partition, batch in batches.items():
            try:
                session.execute(batch)
                self.stats["counter_batches"] += 1
            except (WriteTimeout, OperationTimedOut) as exc:
                # Outcome unknown: re-applying could count twice, so the delta is dropped (see module doc).
                self.stats["counter_batch_errors"] += 1
                log.error("counter batch timed out, not retried: %s", exc)
            except Exception as exc:  # noqa: BLE001 - unavailable, no host: certainly not applied
                self.stats["counter_batch_errors"] += 1
                log.warning("counter batch failed, will retry: %s", exc)
                with self._lock:
                    pending = getattr(self, pending_attr)
                    for key, (impressions, clicks) in deltas.items():
                        if partition_of(key) == partition:
                            delta = pending[key]
                            delta[0] += impressions
                            delta[1] += clicks

    def drain(self, timeout: float = 10.0) -> None:
        """Flush, then wait for in-flight impression writes (process exit)."""
        self.flush()
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            try:
                future.result()
            except Exception:  # noqa: BLE001 - already logged by the errback
                pass
        if self._retry:
            self.flush()

