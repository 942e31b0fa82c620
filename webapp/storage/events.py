"""The event writer: every event is spooled, written to Cassandra, counted once.

Impressions: appended to the local spool (webapp/storage/spool.py) before the serve is answered, then queued and
written asynchronously every IMPRESSION_WRITE_SECONDS, as UNLOGGED batches of at most IMPRESSION_BATCH_ROWS
rows of one partition (one mutation each: a fraction of the CPU of one request per row, on both sides); a
failed write is retried until Cassandra takes it. An impression is counted when its row write succeeds —
once, whatever the retries, since the row key is the impression's timeuuid.

Clicks: a lightweight transaction on the click log (the key is the impression) answers recorded or
duplicate. When Cassandra cannot be reached the click is spooled (fsynced) and retried, and counted when
its LWT applies.

Counters are summed per process and written as COUNTER batches every COUNTER_FLUSH_SECONDS, then each slot
they changed is named once in the change feed (store.note_changes, cql/007) for the workers holding it. A batch
that certainly did not apply is put back; one whose outcome is unknown (a timeout) is not retried, so
nothing is counted twice. Spooled segments left by a dead process are replayed with ``IF NOT EXISTS``
and counted only when applied. The log stays the truth: counters may undercount by what a killed
process had not yet flushed, never overcount. The same deltas also go, per quarter hour of the impression,
to traffic_counts: the time series the dashboard charts.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cassandra import OperationTimedOut, ReadTimeout, Unavailable, WriteTimeout, WriteType
from cassandra.cluster import NoHostAvailable
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.protocol import ErrorMessage
from cassandra.query import BatchStatement, BatchType
from datasketch import HyperLogLog

from bandits.registry import DEFAULT_POLICY
from eventlog import counting, partitions
from eventlog.counting import BUCKET_MINUTES, SLOT_WIDE, traffic_bucket  # noqa: F401 - re-exported
from webapp.storage import store
from webapp.storage.database import Database
from webapp.storage.spool import Segment, Spool

log = logging.getLogger(__name__)

VISITOR_SKETCH_P = 11   # HyperLogLog precision: 2**11 registers, ~1.04/sqrt(2048) = 2.3% standard error
VISITOR_SKETCH_DAYS = 2     # a process keeps the sketches of today and yesterday (UTC) in memory

RETRY_BATCH = 5000      # failed writes resubmitted per flush
# Cassandra could not answer in time or at the consistency asked: nothing, or an unknown part, was applied.
# ReadTimeout too: a lightweight transaction (the click insert) reads before it proposes, and that read can time
# out when a replica has just died.
UNREACHABLE = (NoHostAvailable, Unavailable, OperationTimedOut, WriteTimeout, ReadTimeout)
# Protocol v5's CAS_WRITE_UNKNOWN: a lightweight transaction's proposal was accepted by fewer replicas than a
# quorum (one died in the middle), its outcome unknown. Over protocol v4 the server sends it as a WriteTimeout of
# type CAS; python-driver 3.x has no class for it and raises a bare ErrorMessage with this code.
CAS_WRITE_UNKNOWN = 0x1700


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
    posterior_scope: str            # 'location' | 'slot'   } the Thompson columns, kept for the jobs and
    alpha: float                    #                       } reports that read them (null for a policy
    beta: float                     #                       } without a Beta posterior)
    prior_source: str               #                       }
    propensity: float               # P(this banner | context) under the policy
    policy: str = DEFAULT_POLICY    # bandits.registry.POLICIES name of the policy that chose
    policy_state: str = ""          # JSON of the policy's state for the choice (bandits.policy.Choice)
    serving_group: str = "policy"   # 'policy' or 'holdout' (webapp/serving/holdout.py)
    holdout_share: float = 0.0      # P(holdout) of this visitor at serve time: the slot's holdout_percent / 100
    segment: str = ""               # the serve's context (cql/012): publisher's segment, '' = none
    device: str = ""                # mobile / tablet / desktop / other; '' = not derived
    hour: int | None = None         # serve time in the tenant's time zone (None: not known)
    weekday: int | None = None      # 0 = Monday
    context_cell: str | None = None  # the contextual policy's cell: counted in context_counts (None: not)
    origin: str = ""                # the web origin it was served to ('' when the request named none)
    ip_hash: str = ""               # keyed hashes of the serve's client (webapp.serving.provenance)
    ua_hash: str = ""

    @property
    def partition(self) -> partitions.Partition:
        """Its event log partition (below tenant and slot), from its timeuuid."""
        return partitions.partition_of(self.impression_id)

    def row(self) -> tuple:
        bucket, shard = self.partition
        return (self.tenant_id, self.slot_id, bucket, shard, self.impression_id, self.served_at, self.banner_id,
                self.location, self.customer_id, self.referrer_id, self.posterior_scope, self.alpha,
                self.beta, self.prior_source, self.propensity, self.policy, self.policy_state,
                self.serving_group, self.holdout_share, self.segment, self.device, self.hour, self.weekday,
                self.context_cell, self.origin, self.ip_hash, self.ua_hash)

    def to_record(self) -> dict[str, Any]:
        return {**vars(self), "kind": "impression", "impression_id": self.impression_id.hex,
                "served_at": self.served_at.isoformat()}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Impression:
        """The impression of a spool record; a record written before the policy fields (Thompson sampling's
        state in the posterior columns only) gets them from those columns."""
        fields = {k: v for k, v in record.items() if k != "kind"}
        fields["impression_id"] = uuid.UUID(hex=fields["impression_id"])
        fields["served_at"] = dt.datetime.fromisoformat(fields["served_at"])
        if "policy" not in fields:
            fields["policy"] = DEFAULT_POLICY
            fields["policy_state"] = json.dumps(
                {"scope": fields["posterior_scope"], "alpha": fields["alpha"], "beta": fields["beta"],
                 "prior": fields["prior_source"]}, separators=(",", ":"))
        return cls(**fields)


@dataclass(frozen=True)
class Click:
    tenant_id: str
    slot_id: str
    impression_id: uuid.UUID        # its partition is the impression's (eventlog.partitions.partition_of)
    clicked_at: dt.datetime
    banner_id: str
    location: str
    customer_id: str
    referrer_id: str
    valid: bool = True
    invalid_reason: str | None = None    # webapp.serving.click_filter.REASONS
    user_agent: str = ""
    ip: str = ""
    legacy_day: dt.date | None = None   # a token signed before 006 (and its spool record): the impression's
    #                                     UTC day, whose partition of the old `clicks` table is checked too
    cell: str | None = None         # the impression's context cell (from its token): counted there too
    origin: str = ""                    # the web origin the click came from ('' when it named none)
    # Drawn per click request (cql/015): a not-applied LWT whose row carries it is this request's own write,
    # completed by the driver's retry on another node. None in spool records written before that.
    request_id: uuid.UUID | None = field(default_factory=uuid.uuid4)
    serving_group: str | None = None    # the impression's group and visitor shard (from its token), for
    lift_shard: int | None = None       # lift_counts; None: a token signed before cql/014, not counted there

    @property
    def served_at(self) -> dt.datetime:
        """When the clicked impression was served (the time inside its timeuuid), UTC."""
        return counting.click_served_at(self.impression_id, self.clicked_at)

    def row(self) -> tuple:
        bucket, shard = partitions.partition_of(self.impression_id)
        return (self.tenant_id, self.slot_id, bucket, shard, self.impression_id, self.clicked_at, self.banner_id,
                self.location, self.customer_id, self.referrer_id, self.valid, self.invalid_reason,
                self.user_agent, self.ip, self.origin, self.request_id)

    def to_record(self) -> dict[str, Any]:
        record = {**vars(self), "kind": "click", "impression_id": self.impression_id.hex,
                  "clicked_at": self.clicked_at.isoformat(),
                  "request_id": self.request_id.hex if self.request_id else None}
        del record["legacy_day"]
        if self.legacy_day is not None:
            record["day"] = self.legacy_day.isoformat()
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Click:
        """The click of a spool record; a record written before 006 (or of an old token) carries the
        impression's ``day``, kept as ``legacy_day``."""
        fields = {k: v for k, v in record.items() if k not in ("kind", "day")}
        fields["impression_id"] = uuid.UUID(hex=fields["impression_id"])
        fields["clicked_at"] = dt.datetime.fromisoformat(fields["clicked_at"])
        fields["request_id"] = uuid.UUID(hex=fields["request_id"]) if fields.get("request_id") else None
        if record.get("day"):
            fields["legacy_day"] = dt.date.fromisoformat(record["day"])
        return cls(**fields)


class EventWriter:
    """Per-process writer of the event log and the aggregated counters. Thread-safe."""

    def __init__(self, db: Database, spool: Spool, batch_rows: int = 16) -> None:
        self.db = db
        self.spool = spool
        self.batch_rows = max(1, batch_rows)
        self._lock = threading.Lock()
        self._queued: list[tuple[Impression, Segment]] = []      # spooled, not yet sent
        self._deltas: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        self._reasons: dict[tuple[str, str, str], int] = defaultdict(int)
        # (tenant, slot, context cell, banner) → [impressions, clicks], for context_counts
        self._context: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        # (tenant, slot, location, bucket, banner) → [impressions, clicks], for traffic_counts
        self._traffic: dict[tuple[str, str, str, dt.datetime, str], list[int]] = defaultdict(lambda: [0, 0])
        # (tenant, slot, UTC day, referrer, banner) → [impressions, clicks], for referrer_counts
        self._referrers: dict[tuple[str, str, dt.date, str, str], list[int]] = defaultdict(lambda: [0, 0])
        # (tenant, slot, location, bucket, group, shard) → [impressions, clicks, holdout_share_micros], for
        # lift_counts (eventlog.counting rule 8)
        self._lift: dict[tuple[str, str, str, dt.datetime, str, int], list[int]] = defaultdict(lambda: [0, 0, 0])
        # (tenant, slot, UTC day) → (writer_id, this process's sketch of the day's customer IDs) for
        # visitor_sketches, and the ones changed since they were last written. A sketch's row (writer_id, new
        # for each sketch made) is overwritten whole, so a retried or repeated write never counts a visitor
        # twice; a sketch made again after it was forgotten (a late replay) gets a row of its own.
        self._visitors: dict[tuple[str, str, dt.date], tuple[uuid.UUID, HyperLogLog]] = {}
        self._dirty_visitors: set[tuple[str, str, dt.date]] = set()
        self._retry_impressions: list[tuple[Impression, Segment]] = []
        self._retry_clicks: list[tuple[Click, Segment]] = []
        self._spooled_clicks: set[uuid.UUID] = set()     # clicks accepted while Cassandra was away
        self._in_flight = 0
        self._idle = threading.Condition(self._lock)
        self.stats = defaultdict(int)

    # -- impressions --------------------------------------------------------------------------------------

    def record_impression(self, impression: Impression) -> None:
        """Make the impression durable in the spool and queue its write (write_queued). Raises SpoolFull."""
        segment = self.spool.append(impression.to_record())
        with self._lock:
            self._queued.append((impression, segment))
            self._in_flight += 1

    def write_queued(self) -> None:
        """Send the queued impressions: one UNLOGGED batch per partition and at most batch_rows rows."""
        with self._lock:
            queued, self._queued = self._queued, []
        if not queued:
            return
        by_partition: dict[tuple, list[tuple[Impression, Segment]]] = defaultdict(list)
        for item in queued:
            impression = item[0]
            by_partition[(impression.tenant_id, impression.slot_id, *impression.partition)].append(item)
        try:
            session = self.db.session()
            statement = self.db.prepare(store.INSERT_IMPRESSION)
        except Exception as exc:  # noqa: BLE001 - e.g. no session can be made while Cassandra is down
            self._impressions_failed(exc, queued)
            return
        bind = statement.bind
        for items in by_partition.values():
            for start in range(0, len(items), self.batch_rows):
                chunk = items[start:start + self.batch_rows]
                if len(chunk) == 1:
                    request = bind(chunk[0][0].row())
                else:
                    request = BatchStatement(batch_type=BatchType.UNLOGGED)
                    for impression, _ in chunk:
                        request.add(bind(impression.row()))
                try:
                    future = session.execute_async(request)
                except Exception as exc:  # noqa: BLE001
                    self._impressions_failed(exc, chunk)
                    continue
                future.add_callbacks(self._impressions_written, self._impressions_failed,
                                     callback_args=(chunk,), errback_args=(chunk,))

    def _impressions_written(self, _result, chunk: list[tuple[Impression, Segment]]) -> None:
        self._count_impressions([impression for impression, _ in chunk])
        self.spool.done(*(segment for _, segment in chunk))
        with self._lock:
            self.stats["impressions_written"] += len(chunk)
            self.stats["impression_batches"] += 1
            self._in_flight -= len(chunk)
            self._idle.notify_all()

    def _count_impressions(self, impressions: list[Impression]) -> None:
        """Count written impressions: banner_counts, traffic_counts, referrer_counts, visitor sketches."""
        # Summed outside the lock, merged under it: serves take this lock for every impression, and a chunk
        # of a few hundred rows counted row by row under it held them up for milliseconds.
        sums: dict[tuple[str, str, str, str, dt.datetime, str | None], int] = defaultdict(int)
        referred: dict[tuple[str, str, dt.date, str, str], int] = defaultdict(int)
        visitors: dict[tuple[str, str, dt.date], set[str]] = defaultdict(set)
        lifted: dict[tuple[str, str, str, dt.datetime, str, int], list[int]] = defaultdict(lambda: [0, 0])
        for impression in impressions:
            bucket = traffic_bucket(impression.served_at)
            lift = lifted[(impression.tenant_id, impression.slot_id, impression.location, bucket,
                           impression.serving_group or counting.POLICY_GROUP,
                           counting.lift_shard(impression.customer_id, impression.impression_id))]
            lift[0] += 1
            lift[1] += counting.share_micros(impression.holdout_share)
            sums[(impression.tenant_id, impression.slot_id, impression.location, impression.banner_id,
                  bucket, impression.context_cell)] += 1
            referred[(impression.tenant_id, impression.slot_id, bucket.date(), impression.referrer_id,
                      impression.banner_id)] += counting.referrer_counts(counting.IMPRESSION)[0]
            if impression.customer_id:
                visitors[(impression.tenant_id, impression.slot_id, bucket.date())].add(impression.customer_id)
        with self._lock:
            for (tenant_id, slot_id, location, banner_id, bucket, cell), count in sums.items():
                self._add_locked(tenant_id, slot_id, location, banner_id, bucket, impressions=count, cell=cell)
            for key, count in referred.items():
                self._referrers[key][0] += count
            for (tenant_id, slot_id, location, bucket, group, shard), (count, micros) in lifted.items():
                self._add_lift_locked(tenant_id, slot_id, location, bucket, group, shard, count, 0, micros)
            for key, customers in visitors.items():
                if key not in self._visitors:
                    self._visitors[key] = (uuid.uuid4(), HyperLogLog(p=VISITOR_SKETCH_P))
                sketch = self._visitors[key][1]
                for customer_id in customers:
                    sketch.update(customer_id.encode())
                self._dirty_visitors.add(key)

    def _impressions_failed(self, exc: Exception, chunk: list[tuple[Impression, Segment]]) -> None:
        with self._lock:
            errors = self.stats["impression_write_errors"]
            if errors == 0 or errors // 1000 != (errors + len(chunk)) // 1000:   # the first, then per 1000
                log.warning("impression write failed (%s); spooled, will retry", exc)
            self.stats["impression_write_errors"] = errors + len(chunk)
            self._retry_impressions.extend(chunk)
            self._in_flight -= len(chunk)
            self._idle.notify_all()

    # -- clicks -------------------------------------------------------------------------------------------

    def record_click(self, click: Click) -> bool:
        """Record the click once per impression. True when this call recorded (or durably queued) it."""
        with self._lock:
            if click.impression_id in self._spooled_clicks:
                return False
        try:
            applied = self._insert_click(click)
        except UNREACHABLE as exc:
            log.warning("click %s spooled: Cassandra unreachable (%s)", click.impression_id, exc)
            segment = self.spool.append(click.to_record())
            self.spool.sync()            # clicks are rare and each one matters: fsync now
            with self._lock:
                self._spooled_clicks.add(click.impression_id)
                self._retry_clicks.append((click, segment))
                self.stats["clicks_spooled"] += 1
            return True
        return applied

    def _insert_click(self, click: Click, own_write_counts: bool = True) -> bool:
        """Insert the click once; count it and return True when this call wrote it.

        A not-applied answer whose row carries this click's request_id is this process's own write, finished by a
        retry (the driver's, on another node, after the coordinator died with the proposal accepted; or our
        spool's retry after a timeout): it was never counted, so it is counted now (own_write_counts). A replay of
        a dead process's spool passes False: that process may have counted the click before it died.
        """
        if click.legacy_day is not None and store.legacy_click_exists(
                self.db, click.tenant_id, click.slot_id, click.legacy_day, click.impression_id):
            return False        # clicked before the upgrade, in the day-partitioned table: a duplicate
        try:
            rows = self.db.execute(store.INSERT_CLICK, click.row())
        except ErrorMessage as exc:
            if exc.code != CAS_WRITE_UNKNOWN:
                raise
            # As protocol v4 reports it: then it is spooled and retried like any timed-out click, and the retry's
            # IF NOT EXISTS finishes or discards the half-made proposal, so the click is logged once.
            raise WriteTimeout(str(exc), write_type=WriteType.CAS) from exc
        row = rows[0]
        applied = bool(row["[applied]"])
        if not applied and own_write_counts and click.request_id is not None \
                and row.get("request_id") == click.request_id:
            applied = True
            with self._lock:
                self.stats["clicks_own_write_found"] += 1
        if applied:         # a flagged click is stored, and counted only as filtered (eventlog.counting)
            self._count(click.tenant_id, click.slot_id, click.location, click.banner_id, click.served_at,
                        *counting.click_counts(click.valid), cell=click.cell)
            impressions, clicks = counting.referrer_counts(counting.click_counts(click.valid))
            if impressions or clicks:
                key = (click.tenant_id, click.slot_id, traffic_bucket(click.served_at).date(), click.referrer_id,
                       click.banner_id)
                with self._lock:
                    self._referrers[key][1] += clicks
                    if clicks and click.serving_group is not None and click.lift_shard is not None:  # rule 8
                        self._add_lift_locked(click.tenant_id, click.slot_id, click.location,
                                              traffic_bucket(click.served_at), click.serving_group,
                                              click.lift_shard, 0, clicks, 0)
            reason = counting.filtered_reason(click.valid, click.invalid_reason)
            if reason is not None:
                with self._lock:
                    self._reasons[(click.tenant_id, click.slot_id, reason)] += 1
        return applied

    # -- counters -----------------------------------------------------------------------------------------

    def _count(self, tenant_id: str, slot_id: str, location: str, banner_id: str, served_at: dt.datetime,
               impressions: int = 0, clicks: int = 0, filtered: int = 0, cell: str | None = None) -> None:
        with self._lock:
            self._add_locked(tenant_id, slot_id, location, banner_id, traffic_bucket(served_at), impressions,
                             clicks, filtered, cell)

    def _add_locked(self, tenant_id: str, slot_id: str, location: str, banner_id: str, bucket: dt.datetime,
                    impressions: int = 0, clicks: int = 0, filtered: int = 0, cell: str | None = None) -> None:
        if cell is not None and (impressions or clicks):     # eventlog.counting rule 6
            context = self._context[(tenant_id, slot_id, cell, banner_id)]
            context[0] += impressions
            context[1] += clicks
        for where in counting.counted_locations(location):
            delta = self._deltas[(tenant_id, slot_id, where, banner_id)]
            delta[0] += impressions
            delta[1] += clicks
            delta[2] += filtered
            if impressions or clicks:       # filtered clicks are not in traffic_counts
                traffic = self._traffic[(tenant_id, slot_id, where, bucket, banner_id)]
                traffic[0] += impressions
                traffic[1] += clicks

    def _add_lift_locked(self, tenant_id: str, slot_id: str, location: str, bucket: dt.datetime, group: str,
                         shard: int, impressions: int, clicks: int, micros: int) -> None:
        """Add to lift_counts under the location and the slot-wide row (eventlog.counting rules 4 and 8)."""
        for where in counting.counted_locations(location):
            delta = self._lift[(tenant_id, slot_id, where, bucket, group, shard)]
            delta[0] += impressions
            delta[1] += clicks
            delta[2] += micros

    def flush(self) -> None:
        """Retry failed writes, then write the aggregated counter deltas."""
        self._retry()
        with self._lock:
            deltas, self._deltas = self._deltas, defaultdict(lambda: [0, 0, 0])
            reasons, self._reasons = self._reasons, defaultdict(int)
            traffic, self._traffic = self._traffic, defaultdict(lambda: [0, 0])
            context, self._context = self._context, defaultdict(lambda: [0, 0])
            referrers, self._referrers = self._referrers, defaultdict(lambda: [0, 0])
            lifted, self._lift = self._lift, defaultdict(lambda: [0, 0, 0])
        if traffic:
            self._write_traffic(traffic)
        if referrers:
            self._write_referrers(referrers)
        if lifted:
            self._write_lift(lifted)
        self._write_visitor_sketches()
        if deltas or reasons or context:
            self._write_counters(deltas, reasons, context)
        changed = {key[:2] for key in (*deltas, *reasons, *traffic, *context)}
        if changed:
            self._note_counts(changed)

    def _note_counts(self, slots: set[tuple[str, str]]) -> None:
        """One 'counts' row per slot of this flush in the change feed (cql/007), after the counters are
        written, so every worker holding the slot re-reads it. A lost row costs only the delay of the caches'
        safety re-read (CACHE_SAFETY_REFRESH_SECONDS)."""
        try:
            store.note_changes(self.db, ((tenant_id, slot_id, "counts") for tenant_id, slot_id in sorted(slots)))
            self.stats["change_notes"] += len(slots)
        except Exception as exc:  # noqa: BLE001 - the counters are written; caches catch up by their safety re-read
            self.stats["change_note_errors"] += 1
            log.warning("change feed not written for %d slots: %s", len(slots), exc)

    def _write_counters(self, deltas: dict[tuple[str, str, str, str], list[int]],
                        reasons: dict[tuple[str, str, str], int],
                        context: dict[tuple[str, str, str, str], list[int]]) -> None:
        session = self.db.session()
        for partition, batch in store.counter_batches(self.db, deltas, reasons, context).items():
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
                self._restore({k: v for k, v in deltas.items() if k[:2] == partition},
                              {k: v for k, v in reasons.items() if k[:2] == partition},
                              {k: v for k, v in context.items() if k[:2] == partition})

    def _write_referrers(self, referrers: dict[tuple[str, str, dt.date, str, str], list[int]]) -> None:
        """One COUNTER batch per (tenant, slot, UTC day) of referrer_counts (see :meth:`_write_pairs`)."""
        self._write_pairs("referrer", store.referrer_batches(self.db, referrers), referrers, self._referrers,
                          lambda key: key[:3])

    def _write_lift(self, lifted: dict[tuple[str, str, str, dt.datetime, str, int], list[int]]) -> None:
        """One COUNTER batch per (tenant, slot, location, UTC day) partition of lift_counts (see
        :meth:`_write_pairs`)."""
        self._write_pairs("lift", store.lift_batches(self.db, lifted), lifted, self._lift,
                          lambda key: (key[0], key[1], key[2], key[3].date()))

    def _write_visitor_sketches(self) -> None:
        """Overwrite this process's changed sketches (idempotent: a failed write is simply tried again at the
        next flush), then forget the days no serve can add to any more."""
        with self._lock:
            dirty, self._dirty_visitors = self._dirty_visitors, set()
            registers = {key: (self._visitors[key][0], self._visitors[key][1].reg.tobytes()) for key in dirty}
        if not registers:
            return
        now = dt.datetime.now(dt.UTC)
        try:
            statement = self.db.prepare(store.VISITOR_SKETCH_UPSERT)
            session = self.db.session()
            futures = [(key, session.execute_async(statement, (blob, now, *key, writer_id)))
                       for key, (writer_id, blob) in registers.items()]
        except Exception as exc:  # noqa: BLE001 - no session while Cassandra is down: try again next flush
            futures, failed = [], list(registers)
            log.warning("visitor sketches not written, will retry: %s", exc)
        else:
            failed = []
            for key, future in futures:
                try:
                    future.result()
                except Exception as exc:  # noqa: BLE001 - the whole sketch is written again next time
                    failed.append(key)
                    log.warning("visitor sketch write failed, will retry: %s", exc)
        oldest = now.date() - dt.timedelta(days=VISITOR_SKETCH_DAYS - 1)
        with self._lock:
            self._dirty_visitors.update(failed)
            for key in [k for k in self._visitors if k[2] < oldest and k not in self._dirty_visitors]:
                del self._visitors[key]

    def _write_traffic(self, traffic: dict[tuple[str, str, str, dt.datetime, str], list[int]]) -> None:
        """One COUNTER batch per (tenant, slot, UTC day) partition of traffic_counts (see :meth:`_write_pairs`)."""
        self._write_pairs("traffic", store.traffic_batches(self.db, traffic), traffic, self._traffic,
                          lambda key: (key[0], key[1], key[3].date()))

    def _write_pairs(self, name: str, batches: dict[Any, Any], deltas: dict[Any, list[int]],
                     pending: dict[Any, list[int]], partition_of: Callable[[Any], Any]) -> None:
        """Send counter batches of [impressions, clicks, …] deltas, one per partition, by the rules of the
        banner_counts batches: a timed-out batch is dropped (re-applying could count twice), one that certainly
        failed goes back into ``pending`` (keyed like ``deltas``) for the next flush. The batches go out together
        (lift_counts has a partition per location): a flush waits for one round trip, not one per partition."""
        session = self.db.session()
        sent, failed = [], set()
        for partition, batch in batches.items():
            try:
                sent.append((partition, session.execute_async(batch)))
            except Exception as exc:  # noqa: BLE001 - no connection: certainly not applied
                self.stats["counter_batch_errors"] += 1
                failed.add(partition)
                log.warning("%s counter batch failed, will retry: %s", name, exc)
        for partition, future in sent:
            try:
                future.result()
                self.stats[f"{name}_batches"] += 1
            except (WriteTimeout, OperationTimedOut) as exc:
                self.stats["counter_batch_errors"] += 1
                log.error("%s counter batch timed out, not retried: %s", name, exc)
            except Exception as exc:  # noqa: BLE001 - unavailable, no host: certainly not applied
                self.stats["counter_batch_errors"] += 1
                failed.add(partition)
                log.warning("%s counter batch failed, will retry: %s", name, exc)
        if failed:
            with self._lock:
                for key, values in deltas.items():
                    if partition_of(key) in failed:
                        delta = pending[key]
                        for i, value in enumerate(values):
                            delta[i] += value

    def _retry(self) -> None:
        with self._lock:
            impressions = self._retry_impressions[:RETRY_BATCH]
            del self._retry_impressions[:RETRY_BATCH]
            clicks, self._retry_clicks = self._retry_clicks, []
        if impressions:
            with self._lock:
                self._queued.extend(impressions)
                self._in_flight += len(impressions)
            self.write_queued()
        for index, (click, segment) in enumerate(clicks):
            try:
                self._insert_click(click)
            except UNREACHABLE:
                with self._lock:
                    self._retry_clicks.extend(clicks[index:])
                break
            self.spool.done(segment)
            with self._lock:
                self._spooled_clicks.discard(click.impression_id)

    def _restore(self, deltas: dict[tuple[str, str, str, str], list[int]],
                 reasons: dict[tuple[str, str, str], int],
                 context: dict[tuple[str, str, str, str], list[int]] | None = None) -> None:
        with self._lock:
            for key, values in (context or {}).items():
                delta = self._context[key]
                delta[0] += values[0]
                delta[1] += values[1]
            for key, values in deltas.items():
                delta = self._deltas[key]
                for i, value in enumerate(values):
                    delta[i] += value
            for key, clicks in reasons.items():
                self._reasons[key] += clicks

    @property
    def backlog(self) -> int:
        """Events accepted but not yet in Cassandra (this process)."""
        with self._lock:
            return len(self._retry_impressions) + len(self._retry_clicks) + self._in_flight

    def drain(self, timeout: float = 10.0) -> None:
        """Retry, wait for in-flight writes, flush counters (process exit, tests)."""
        self._retry()
        self.write_queued()
        with self._lock:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout)
        self.flush()

    # -- replay ---------------------------------------------------------------------------------------------

    def replay_orphans(self) -> int:
        """Replay spool segments of dead processes; returns the number of events applied now."""
        applied_total = 0
        for path, records, fd in self.spool.orphans():
            try:
                applied_total += self._replay(records)
            except Exception as exc:  # noqa: BLE001 - Cassandra still away: leave it for later
                log.warning("replay of %s postponed: %s", path.name, exc)
                self.spool.abandon_replay(fd)
                break
            self.spool.finish_replay(path, fd)
            log.info("replayed %s: %d records, %d applied", path.name, len(records), applied_total)
        return applied_total

    def _replay(self, records: list[dict[str, Any]]) -> int:
        impressions = [Impression.from_record(r) for r in records if r.get("kind") == "impression"]
        clicks = [Click.from_record(r) for r in records if r.get("kind") == "click"]
        session = self.db.session()
        applied = 0
        statement = self.db.prepare(store.INSERT_IMPRESSION + " IF NOT EXISTS")
        results = execute_concurrent_with_args(session, statement, [i.row() for i in impressions],
                                               concurrency=32, raise_on_first_error=True)
        written = [impression for impression, (success, result) in zip(impressions, results)
                   if success and result.one()["[applied]"]]
        applied += len(written)
        self._count_impressions(written)
        for click in clicks:
            applied += self._insert_click(click, own_write_counts=False)
        with self._lock:
            self.stats["replayed_applied"] += applied
        return applied
