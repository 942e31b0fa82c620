"""What each logged event counts, and where: the rules of the counter tables, shared by the event writer
(webapp/storage/events.py) and the counter audit (spark_jobs/counter_audit.py).

The counter tables are views of the event log:

    banner_counts           (location, banner) → impressions, clicks, filtered_clicks
    filtered_click_reasons  reason → clicks
    traffic_counts          (UTC day, location, quarter hour, banner) → impressions, clicks
    context_counts          (context cell, banner) → impressions, clicks   (contextual slots, cql/012)
    referrer_counts         (UTC day, referrer, banner) → impressions, clicks
    lift_counts             (location, UTC day, quarter hour, group, visitor shard)
                                                    → impressions, clicks, holdout_share_micros   (cql/014)

Rules:
1. an impression counts 1 impression;
2. a valid click counts 1 click; a flagged click counts only as 1 filtered click, and 1 under its reason
   (INVALID_REASON when it has none); traffic_counts hold no filtered clicks;
3. a click counts in its impression's quarter hour (the time inside the impression's timeuuid);
4. every event counts under its location and again under the slot-wide row (SLOT_WIDE, once when they are
   the same);
5. imported history (``posterior_scope = IMPORT_SCOPE``) and the clicks of it count nowhere;
6. an impression with a context cell (``context_cell``: served by the contextual policy) counts 1 impression
   under (cell, banner) in context_counts, and its valid click 1 click there (a click counts in its
   impression's cell, carried by its click token); filtered clicks do not count there.
7. referrer_counts count impressions and valid clicks once (no slot-wide copy), under the event's own
   referrer_id ('' for none) and the UTC day of the impression.
8. lift_counts count an impression as 1 impression and ``share_micros(holdout_share)`` (its P(holdout) in
   millionths, an integer: the SRM check's expected holdout count, Σ share, summed exactly), and its valid
   click as 1 click, under the impression's serving group, its visitor shard (:func:`lift_shard`) and the
   quarter hour of the impression (rule 3), for its location and the slot-wide row (rule 4). Rows written
   before cql/013 (no group) count as group 'policy' with a share of 0. Filtered clicks do not count there,
   nor a click whose token carries no group (signed before cql/014: the counter audit adds it from the log).

:func:`counter_rows` lists the rows one event adds to; the writer applies the same rules in aggregate
(``counted_locations``, ``click_counts``, ``filtered_reason``) and tests check both against the audit.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zlib
from dataclasses import dataclass

from eventlog.timeuuids import event_time

SLOT_WIDE = ""              # the location of slot-wide rows in banner_counts, traffic_counts and priors
IMPORT_SCOPE = "import"     # impressions.posterior_scope (and prior_source) of imported history
INVALID_REASON = "invalid"  # the reason a flagged click without one is counted under
BUCKET_MINUTES = 15         # traffic_counts buckets (every time zone offset is a multiple of 15 minutes)
BUCKET_SECONDS = BUCKET_MINUTES * 60

LIFT_SHARDS = 32            # lift_counts: visitor shards, the clusters of the lift's variance (cql/014)
SHARE_SCALE = 1_000_000     # lift_counts.holdout_share_micros: P(holdout) in millionths
POLICY_GROUP = "policy"     # impression_log.serving_group of rows written before cql/013

Counts = tuple[int, int, int]       # banner_counts: (impressions, clicks, filtered_clicks)
IMPRESSION: Counts = (1, 0, 0)
VALID_CLICK: Counts = (0, 1, 0)
FILTERED_CLICK: Counts = (0, 0, 1)


def traffic_bucket(at: dt.datetime) -> dt.datetime:
    """The UTC start of the quarter hour that ``at`` falls in (the traffic_counts bucket)."""
    at = at.astimezone(dt.UTC)
    return at.replace(minute=at.minute - at.minute % BUCKET_MINUTES, second=0, microsecond=0)


def counted_locations(location: str) -> tuple[str, ...]:
    """The locations an event counts under: its own and the slot-wide row (rule 4)."""
    return (location,) if location == SLOT_WIDE else (location, SLOT_WIDE)


def is_imported(posterior_scope: str | None) -> bool:
    """An impression of imported history: it, and its click, count nowhere (rule 5)."""
    return posterior_scope == IMPORT_SCOPE


def click_counts(valid: bool) -> Counts:
    """What a click adds to banner_counts (rule 2)."""
    return VALID_CLICK if valid else FILTERED_CLICK


def filtered_reason(valid: bool, invalid_reason: str | None) -> str | None:
    """The filtered_click_reasons row a click counts in; None for a valid click (rule 2)."""
    return None if valid else (invalid_reason or INVALID_REASON)


def traffic_counts(counts: Counts) -> tuple[int, int]:
    """What banner_counts values add to traffic_counts: impressions and valid clicks (rule 2)."""
    return counts[0], counts[1]


def referrer_counts(counts: Counts) -> tuple[int, int]:
    """What banner_counts values add to referrer_counts: impressions and valid clicks (rule 7)."""
    return counts[0], counts[1]


def lift_shard(customer_id: str | None, impression_id: uuid.UUID | str) -> int:
    """The visitor shard of an impression (rule 8): CRC-32 of its customer_id, or of its impression ID (the
    canonical text, e.g. '6ba7b810-9dad-11d1-80b4-00c04fd430c8') when it has none, modulo LIFT_SHARDS.

    A visitor's impressions all fall in one shard, so shard sums are independent clusters of visitors: the lift's
    variance sums over shards (evaluation/lift.py). Spark computes the same (spark_jobs/counter_audit.py)."""
    key = customer_id or str(impression_id)
    return zlib.crc32(key.encode()) % LIFT_SHARDS


def share_micros(holdout_share: float | None) -> int:
    """P(holdout) in millionths (rule 8): exact for every holdout_percent (a whole percent is 10,000)."""
    return round((holdout_share or 0.0) * SHARE_SCALE)


def click_served_at(impression_id: uuid.UUID, clicked_at: dt.datetime) -> dt.datetime:
    """The time a click counts at: its impression's (rule 3); the click's own when the ID holds no time."""
    return event_time(impression_id, clicked_at)


@dataclass(frozen=True)
class Event:
    """A logged impression or click, as the counting rules see it. ``served_at`` is the impression's time
    (for a click, :func:`click_served_at`)."""

    kind: str                       # 'impression' | 'click'
    tenant_id: str
    slot_id: str
    location: str
    banner_id: str
    served_at: dt.datetime
    valid: bool = True
    invalid_reason: str | None = None
    imported: bool = False          # an impression of imported history, or a click of one
    cell: str | None = None         # the impression's context cell (rule 6); None: not contextual
    referrer_id: str = ""
    serving_group: str | None = POLICY_GROUP    # rule 8; a click whose token names none: None (not counted)
    lift_shard: int = 0             # lift_shard(customer_id, impression_id) of the impression
    holdout_share: float = 0.0      # of an impression: its P(holdout) when served


@dataclass(frozen=True)
class CounterRow:
    """One counter row an event adds to: the table, its key (tenant and slot first), the counter values."""

    table: str
    key: tuple
    values: tuple[int, ...]


def counter_rows(event: Event) -> list[CounterRow]:
    """Every counter row ``event`` adds to, by the rules above."""
    if event.imported:
        return []
    counts = IMPRESSION if event.kind == "impression" else click_counts(event.valid)
    slot = (event.tenant_id, event.slot_id)
    bucket = traffic_bucket(event.served_at)
    rows = []
    for where in counted_locations(event.location):
        rows.append(CounterRow("banner_counts", (*slot, where, event.banner_id), counts))
        traffic = traffic_counts(counts)
        if any(traffic):
            rows.append(CounterRow("traffic_counts", (*slot, bucket.date(), where, bucket, event.banner_id),
                                   traffic))
    if event.cell is not None and any(counts[:2]):
        rows.append(CounterRow("context_counts", (*slot, event.cell, event.banner_id), counts[:2]))
    referred = referrer_counts(counts)
    if any(referred):
        rows.append(CounterRow("referrer_counts", (*slot, bucket.date(), event.referrer_id, event.banner_id),
                               referred))
    if event.serving_group is not None and any(counts[:2]):        # rule 8
        lift = (counts[0], counts[1], share_micros(event.holdout_share) if event.kind == "impression" else 0)
        for where in counted_locations(event.location):
            rows.append(CounterRow("lift_counts", (*slot, where, bucket.date(), bucket, event.serving_group,
                                                   event.lift_shard), lift))
    reason = filtered_reason(event.valid, event.invalid_reason) if event.kind == "click" else None
    if reason is not None:
        rows.append(CounterRow("filtered_click_reasons", (*slot, reason), (1,)))
    return rows
