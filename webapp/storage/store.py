"""Every CQL statement of the service, in one place. Thin functions over a Database."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cassandra.query import BatchStatement, BatchType, SimpleStatement
from cassandra.util import uuid_from_time

from eventlog import partitions
from webapp.storage.database import Database


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- configuration ------------------------------------------------------------------------------------------

def put_tenant(db: Database, tenant_id: str, name: str, timezone: str, click_filter: str | None = None
               ) -> bool:
    """Create or replace a tenant (click_filter: settings JSON, None = defaults). True when created."""
    now = utcnow()
    created = db.execute(
        "INSERT INTO {ks}.tenants (tenant_id, name, timezone, click_filter, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS",
        (tenant_id, name, timezone, click_filter, now, now),
    )[0]["[applied]"]
    if not created:
        db.execute("UPDATE {ks}.tenants SET name = ?, timezone = ?, click_filter = ?, updated_at = ? "
                   "WHERE tenant_id = ?", (name, timezone, click_filter, now, tenant_id))
    note_change(db, tenant_id, TENANT_WIDE, "tenant")
    return created


def set_click_filter(db: Database, tenant_id: str, click_filter: str) -> None:
    """Replace only the tenant's click filter settings (JSON), leaving its other settings as they are."""
    db.execute("UPDATE {ks}.tenants SET click_filter = ?, updated_at = ? WHERE tenant_id = ?",
               (click_filter, utcnow(), tenant_id))
    note_change(db, tenant_id, TENANT_WIDE, "tenant")


def set_allowed_origins(db: Database, tenant_id: str, origins: list[str]) -> None:
    """Replace a tenant's allowed origins (cql/008); an empty list allows every origin."""
    db.execute("UPDATE {ks}.tenants SET allowed_origins = ? WHERE tenant_id = ?", (set(origins), tenant_id))
    note_change(db, tenant_id, TENANT_WIDE, "tenant")


def get_tenant(db: Database, tenant_id: str) -> dict[str, Any] | None:
    rows = db.execute("SELECT * FROM {ks}.tenants WHERE tenant_id = ?", (tenant_id,))
    return rows[0] if rows else None


def list_tenants(db: Database) -> list[dict[str, Any]]:
    """Every tenant: a full scan, for the dashboard's and the API's listings only (a person asked; never
    periodic, never on the serve path)."""
    rows = db.execute("SELECT tenant_id, name, timezone, click_filter, allowed_origins FROM {ks}.tenants")
    return sorted(rows, key=lambda r: r["tenant_id"])


@dataclass(frozen=True)
class SlotLayout:
    """What the dashboard keeps about a slot beyond its name; None = leave as stored."""
    width: int | None = None
    height: int | None = None
    locations: frozenset[str] | None = None


NO_DECAY = 0.0      # SlotLearning.decay_half_life_hours: stop decaying (stored as null)


@dataclass(frozen=True)
class SlotLearning:
    """How a slot learns; None = leave as stored. A half-life of NO_DECAY clears it (cumulative counts).
    ``policy``: a name of bandits.registry.POLICIES, already validated."""
    decay_half_life_hours: float | None = None
    policy: str | None = None
    holdout_percent: int | None = None      # 0..50, validated (webapp/serving/holdout.py)
    context: tuple[str, ...] | None = None      # bandits.contextual features, already validated; () clears


def put_slot(db: Database, tenant_id: str, slot_id: str, name: str,
             layout: SlotLayout = SlotLayout(), learning: SlotLearning = SlotLearning()) -> bool:
    now = utcnow()
    created = db.execute(
        "INSERT INTO {ks}.slots (tenant_id, slot_id, name, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?) IF NOT EXISTS",
        (tenant_id, slot_id, name, now, now),
    )[0]["[applied]"]
    if not created:
        db.execute("UPDATE {ks}.slots SET name = ?, updated_at = ? WHERE tenant_id = ? AND slot_id = ?",
                   (name, now, tenant_id, slot_id))
    if layout.width is not None and layout.height is not None:
        db.execute("UPDATE {ks}.slots SET width = ?, height = ? WHERE tenant_id = ? AND slot_id = ?",
                   (layout.width, layout.height, tenant_id, slot_id))
    if layout.locations is not None:
        db.execute("UPDATE {ks}.slots SET locations = ? WHERE tenant_id = ? AND slot_id = ?",
                   (set(layout.locations), tenant_id, slot_id))
    if learning.decay_half_life_hours is not None:
        db.execute("UPDATE {ks}.slots SET decay_half_life_hours = ? WHERE tenant_id = ? AND slot_id = ?",
                   (learning.decay_half_life_hours or None, tenant_id, slot_id))
    if learning.policy is not None:
        db.execute("UPDATE {ks}.slots SET policy = ? WHERE tenant_id = ? AND slot_id = ?",
                   (learning.policy, tenant_id, slot_id))
    if learning.holdout_percent is not None:
        db.execute("UPDATE {ks}.slots SET holdout_percent = ? WHERE tenant_id = ? AND slot_id = ?",
                   (learning.holdout_percent, tenant_id, slot_id))
    if learning.context is not None:
        db.execute("UPDATE {ks}.slots SET context = ? WHERE tenant_id = ? AND slot_id = ?",
                   (list(learning.context) or None, tenant_id, slot_id))
    note_change(db, tenant_id, slot_id, "slot")
    return created


def list_slots(db: Database, tenant_id: str) -> list[dict[str, Any]]:
    return db.execute("SELECT * FROM {ks}.slots WHERE tenant_id = ?", (tenant_id,))


def get_slot(db: Database, tenant_id: str, slot_id: str) -> dict[str, Any] | None:
    rows = db.execute("SELECT * FROM {ks}.slots WHERE tenant_id = ? AND slot_id = ?", (tenant_id, slot_id))
    return rows[0] if rows else None


@dataclass(frozen=True)
class BannerFields:
    image_url: str
    target_url: str
    alt: str
    active: bool
    starts_at: dt.datetime | None = None    # served from (UTC); None = already
    ends_at: dt.datetime | None = None      # served until (UTC, exclusive); None = no end


def put_banner(db: Database, tenant_id: str, slot_id: str, banner_id: str, fields: BannerFields) -> bool:
    now = utcnow()
    created = db.execute(
        "INSERT INTO {ks}.banners (tenant_id, slot_id, banner_id, image_url, target_url, alt, active, "
        "starts_at, ends_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS",
        (tenant_id, slot_id, banner_id, fields.image_url, fields.target_url, fields.alt, fields.active,
         fields.starts_at, fields.ends_at, now, now),
    )[0]["[applied]"]
    if not created:
        db.execute(
            "UPDATE {ks}.banners SET image_url = ?, target_url = ?, alt = ?, active = ?, starts_at = ?, "
            "ends_at = ?, updated_at = ? WHERE tenant_id = ? AND slot_id = ? AND banner_id = ?",
            (fields.image_url, fields.target_url, fields.alt, fields.active, fields.starts_at, fields.ends_at,
             now, tenant_id, slot_id, banner_id),
        )
    note_change(db, tenant_id, slot_id, "banner")
    return created


def get_banner(db: Database, tenant_id: str, slot_id: str, banner_id: str) -> dict[str, Any] | None:
    rows = db.execute("SELECT * FROM {ks}.banners WHERE tenant_id = ? AND slot_id = ? AND banner_id = ?",
                      (tenant_id, slot_id, banner_id))
    return rows[0] if rows else None


def list_banners(db: Database, tenant_id: str, slot_id: str) -> list[dict[str, Any]]:
    return db.execute("SELECT * FROM {ks}.banners WHERE tenant_id = ? AND slot_id = ?", (tenant_id, slot_id))


# -- deletes: configuration only. The event log, counters and priors stay (the log is the truth; audits
# and history stay true); stats and reports list a slot's banners from the banners table, so they skip
# what was deleted.

def delete_banner(db: Database, tenant_id: str, slot_id: str, banner_id: str) -> None:
    db.execute("DELETE FROM {ks}.banners WHERE tenant_id = ? AND slot_id = ? AND banner_id = ?",
               (tenant_id, slot_id, banner_id))
    note_change(db, tenant_id, slot_id, "deleted")


def delete_slot(db: Database, tenant_id: str, slot_id: str) -> None:
    """The slot's banners (one partition), then its row: a worker's refresh sees the slot gone."""
    db.execute("DELETE FROM {ks}.banners WHERE tenant_id = ? AND slot_id = ?", (tenant_id, slot_id))
    db.execute("DELETE FROM {ks}.slots WHERE tenant_id = ? AND slot_id = ?", (tenant_id, slot_id))
    note_change(db, tenant_id, slot_id, "deleted")


def delete_tenant(db: Database, tenant_id: str) -> None:
    """Every slot (with its banners), every API key, then the tenant row."""
    for row in db.execute("SELECT slot_id FROM {ks}.slots WHERE tenant_id = ?", (tenant_id,)):
        delete_slot(db, tenant_id, row["slot_id"])
    for key_id in tenant_api_key_ids(db, tenant_id):
        delete_api_key(db, tenant_id, key_id)
    db.execute("DELETE FROM {ks}.tenants WHERE tenant_id = ?", (tenant_id,))
    note_change(db, tenant_id, TENANT_WIDE, "deleted")


# -- tenant API keys (cql/010) ------------------------------------------------------------------------------

def put_api_key(db: Database, tenant_id: str, key_id: str, name: str, scopes: frozenset[str],
                secret_hash: str, created_at: dt.datetime) -> None:
    db.execute("INSERT INTO {ks}.api_keys (key_id, tenant_id, name, scopes, secret_hash, created_at) "
               "VALUES (?, ?, ?, ?, ?, ?)", (key_id, tenant_id, name, set(scopes), secret_hash, created_at))
    db.execute("INSERT INTO {ks}.tenant_api_keys (tenant_id, key_id) VALUES (?, ?)", (tenant_id, key_id))


def get_api_key(db: Database, key_id: str) -> dict[str, Any] | None:
    rows = db.execute("SELECT * FROM {ks}.api_keys WHERE key_id = ?", (key_id,))
    return rows[0] if rows else None


def tenant_api_key_ids(db: Database, tenant_id: str) -> list[str]:
    return [r["key_id"] for r in db.execute("SELECT key_id FROM {ks}.tenant_api_keys WHERE tenant_id = ?",
                                            (tenant_id,))]


def list_api_keys(db: Database, tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's keys, oldest first: one partition of IDs, then the keys (a handful) by ID."""
    ids = tenant_api_key_ids(db, tenant_id)
    if not ids:
        return []
    rows = db.execute("SELECT * FROM {ks}.api_keys WHERE key_id IN ?", (ids,))
    return sorted((r for r in rows if r["tenant_id"] == tenant_id), key=lambda r: (r["created_at"], r["key_id"]))


def delete_api_key(db: Database, tenant_id: str, key_id: str) -> None:
    db.execute("DELETE FROM {ks}.api_keys WHERE key_id = ?", (key_id,))
    db.execute("DELETE FROM {ks}.tenant_api_keys WHERE tenant_id = ? AND key_id = ?", (tenant_id, key_id))


def touch_api_key(db: Database, key_id: str, at: dt.datetime) -> None:
    """last_used_at; an UPDATE of a revoked key would resurrect a partial row, hence IF EXISTS."""
    db.execute("UPDATE {ks}.api_keys SET last_used_at = ? WHERE key_id = ? IF EXISTS", (at, key_id))


# -- the change feed (cql/007_slot_changes.cql): which slots a worker holding them must re-read ----------------

CHANGE_BUCKET_SECONDS = 5       # one slot_changes partition per 5-second window
TENANT_WIDE = ""                # slot_id of a change to the tenant's own row (name, time zone, click filter)
CHANGE_BATCH_ROWS = 100         # rows per UNLOGGED batch (one partition, one mutation)
INSERT_CHANGE = "INSERT INTO {ks}.slot_changes (bucket, change_id, tenant_id, slot_id, kind) VALUES (?, ?, ?, ?, ?)"
READ_CHANGES = ("SELECT change_id, tenant_id, slot_id, kind FROM {ks}.slot_changes "
                "WHERE bucket = ? AND change_id > minTimeuuid(?)")


def change_bucket(at: dt.datetime) -> dt.datetime:
    """The slot_changes partition of a moment: the UTC start of its 5-second window."""
    seconds = int(at.timestamp()) // CHANGE_BUCKET_SECONDS * CHANGE_BUCKET_SECONDS
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def note_change(db: Database, tenant_id: str, slot_id: str, kind: str) -> None:
    """Tell every worker holding the slot (``slot_id`` TENANT_WIDE: any slot of the tenant, and the tenant's
    row) to re-read it. Call after the change is written: a worker re-reads what is there when it sees the
    row. ``kind`` says what changed ('tenant', 'slot', 'banner', 'counts', 'priors', 'deleted', …); readers
    re-read the whole slot whatever it is."""
    note_changes(db, [(tenant_id, slot_id, kind)])


def note_changes(db: Database, changes: Iterable[tuple[str, str, str]]) -> None:
    """note_change for many (tenant, slot, kind): UNLOGGED batches of one partition each, sent concurrently."""
    now = utcnow()
    bucket = change_bucket(now)
    statement = db.prepare(INSERT_CHANGE)
    rows = [(bucket, uuid_from_time(now), tenant_id, slot_id, kind) for tenant_id, slot_id, kind in changes]
    if not rows:
        return
    session = db.session()
    futures = []
    for start in range(0, len(rows), CHANGE_BATCH_ROWS):
        chunk = rows[start:start + CHANGE_BATCH_ROWS]
        if len(chunk) == 1:
            futures.append(session.execute_async(statement, chunk[0]))
            continue
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        for row in chunk:
            batch.add(statement, row)
        futures.append(session.execute_async(batch))
    for future in futures:
        future.result()


def change_reads(since: dt.datetime, until: dt.datetime) -> list[Read]:
    """The reads of every slot_changes row written after ``since`` up to ``until``: one a partition."""
    first, last = change_bucket(since), change_bucket(until)
    count = int((last - first).total_seconds()) // CHANGE_BUCKET_SECONDS + 1
    return [(READ_CHANGES, (first + dt.timedelta(seconds=i * CHANGE_BUCKET_SECONDS), since)) for i in range(count)]


def changed_slots(db: Database, since: dt.datetime, until: dt.datetime | None = None) -> list[dict[str, Any]]:
    """The slot_changes rows written after ``since`` (tests, tools; the cache reads them through
    read_partitions)."""
    return [row for cql, params in change_reads(since, until or utcnow()) for row in db.execute(cql, params)]


# -- the serving cache's reads: one partition each, sent concurrently --------------------------------------
# A worker reads only the slots it serves (webapp/learning/posteriors.py), never a whole table. The only
# SELECTs of this module without a partition key are list_tenants and list_users: the dashboard's and the
# management API's listings, run when a person asks, never periodically nor on the serve path.

TENANT_ROW = "SELECT tenant_id, click_filter, timezone, allowed_origins FROM {ks}.tenants WHERE tenant_id = ?"
SLOT_ROW = ("SELECT tenant_id, slot_id, decay_half_life_hours, policy, holdout_percent, context FROM {ks}.slots "
            "WHERE tenant_id = ? AND slot_id = ?")
TENANT_SLOT_ROWS = ("SELECT tenant_id, slot_id, decay_half_life_hours, policy, holdout_percent, context "
                    "FROM {ks}.slots "
                    "WHERE tenant_id = ? AND slot_id IN ?")        # one partition: the tenant's slots
SLOT_BANNERS = ("SELECT tenant_id, slot_id, banner_id, image_url, target_url, alt, active, starts_at, ends_at "
                "FROM {ks}.banners WHERE tenant_id = ? AND slot_id = ?")
SLOT_COUNTS = ("SELECT tenant_id, slot_id, location, banner_id, impressions, clicks FROM {ks}.banner_counts "
               "WHERE tenant_id = ? AND slot_id = ?")
SLOT_PRIORS = ("SELECT tenant_id, slot_id, location, banner_id, alpha, beta, source FROM {ks}.priors "
               "WHERE tenant_id = ? AND slot_id = ?")
SLOT_CONTEXT_COUNTS = ("SELECT tenant_id, slot_id, cell, banner_id, impressions, clicks FROM {ks}.context_counts "
                       "WHERE tenant_id = ? AND slot_id = ?")      # the contextual policy's counts (cql/012)
SLOT_PARTITIONS = (SLOT_ROW, SLOT_BANNERS, SLOT_COUNTS, SLOT_PRIORS,   # what a slot's state is built from
                   SLOT_CONTEXT_COUNTS)

Read = tuple[str, tuple]                                  # (cql, parameters)


def read_partitions(db: Database, reads: list[Read], timeout: float, window: int = 256
                    ) -> list[list[dict[str, Any]] | Exception]:
    """Run single-partition SELECTs concurrently (``window`` in flight at a time; the driver routes each to a
    replica of its partition) and return, in order, each one's rows or the exception it raised. ``timeout``
    bounds each request."""
    session = db.session()
    results: list[list[dict[str, Any]] | Exception] = []
    for start in range(0, len(reads), window):
        futures = []
        for cql, params in reads[start:start + window]:
            try:
                futures.append(session.execute_async(db.prepare(cql), params, timeout=timeout))
            except Exception as exc:  # noqa: BLE001 - e.g. no host, or the table is gone: that read failed
                futures.append(exc)
        for future in futures:
            if isinstance(future, Exception):
                results.append(future)
                continue
            try:
                results.append(list(future.result()))
            except Exception as exc:  # noqa: BLE001 - reported per read; the caller keeps what it had
                results.append(exc)
    return results


# -- learned statistics ---------------------------------------------------------------------------------

def slot_counts(db: Database, tenant_id: str, slot_id: str, location: str) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT banner_id, impressions, clicks, filtered_clicks FROM {ks}.banner_counts "
        "WHERE tenant_id = ? AND slot_id = ? AND location = ?", (tenant_id, slot_id, location))


def slot_priors(db: Database, tenant_id: str, slot_id: str) -> list[dict[str, Any]]:
    return db.execute("SELECT location, banner_id, alpha, beta, source FROM {ks}.priors "
                      "WHERE tenant_id = ? AND slot_id = ?", (tenant_id, slot_id))


def slot_counts_by_location(db: Database, tenant_id: str, slot_id: str) -> list[dict[str, Any]]:
    """Every (location, banner) counter row of a slot: one partition."""
    return db.execute(
        "SELECT location, banner_id, impressions, clicks FROM {ks}.banner_counts "
        "WHERE tenant_id = ? AND slot_id = ?", (tenant_id, slot_id))


def known_locations(db: Database, tenant_id: str, slot_id: str) -> list[str]:
    rows = db.execute("SELECT location FROM {ks}.banner_counts WHERE tenant_id = ? AND slot_id = ?",
                      (tenant_id, slot_id))
    return sorted({r["location"] for r in rows} - {""})


COUNTER_UPDATE = ("UPDATE {ks}.banner_counts SET impressions = impressions + ?, clicks = clicks + ?, "
                  "filtered_clicks = filtered_clicks + ? "
                  "WHERE tenant_id = ? AND slot_id = ? AND location = ? AND banner_id = ?")
REASON_UPDATE = ("UPDATE {ks}.filtered_click_reasons SET clicks = clicks + ? "
                 "WHERE tenant_id = ? AND slot_id = ? AND reason = ?")
CONTEXT_UPDATE = ("UPDATE {ks}.context_counts SET impressions = impressions + ?, clicks = clicks + ? "
                  "WHERE tenant_id = ? AND slot_id = ? AND cell = ? AND banner_id = ?")


def counter_batches(db: Database, deltas: dict[tuple[str, str, str, str], list[int]],
                    reasons: dict[tuple[str, str, str], int],
                    context: dict[tuple[str, str, str, str], list[int]] | None = None
                    ) -> dict[tuple[str, str], BatchStatement]:
    """COUNTER batches of the aggregated deltas, one per (tenant, slot).

    deltas: (tenant, slot, location, banner) → [impressions, clicks, filtered clicks];
    reasons: (tenant, slot, reason) → filtered clicks;
    context: (tenant, slot, cell, banner) → [impressions, clicks] (context_counts).
    """
    statement = db.prepare(COUNTER_UPDATE)
    reason_statement = db.prepare(REASON_UPDATE)
    batches: dict[tuple[str, str], BatchStatement] = {}
    if context:
        context_statement = db.prepare(CONTEXT_UPDATE)
        for (tenant_id, slot_id, cell, banner_id), (impressions, clicks) in context.items():
            batch = batches.setdefault((tenant_id, slot_id), BatchStatement(batch_type=BatchType.COUNTER))
            batch.add(context_statement, (impressions, clicks, tenant_id, slot_id, cell, banner_id))
    for (tenant_id, slot_id, reason), clicks in reasons.items():
        batch = batches.setdefault((tenant_id, slot_id), BatchStatement(batch_type=BatchType.COUNTER))
        batch.add(reason_statement, (clicks, tenant_id, slot_id, reason))
    for (tenant_id, slot_id, location, banner_id), (impressions, clicks, filtered) in deltas.items():
        batch = batches.setdefault((tenant_id, slot_id), BatchStatement(batch_type=BatchType.COUNTER))
        batch.add(statement, (impressions, clicks, filtered, tenant_id, slot_id, location, banner_id))
    return batches


def context_counts(db: Database, tenant_id: str, slot_id: str) -> list[dict[str, Any]]:
    """The slot's context_counts rows (cell, banner_id, impressions, clicks)."""
    return db.execute(SLOT_CONTEXT_COUNTS, (tenant_id, slot_id))


def filtered_reasons(db: Database, tenant_id: str, slot_id: str) -> dict[str, int]:
    return {r["reason"]: int(r["clicks"] or 0) for r in db.execute(
        "SELECT reason, clicks FROM {ks}.filtered_click_reasons WHERE tenant_id = ? AND slot_id = ?",
        (tenant_id, slot_id))}


def count_click_rate(db: Database, tenant_id: str, kind: str, key: str, bucket: int) -> int:
    """Add this click to the (customer or IP, window) counter and return the window's total."""
    db.execute("UPDATE {ks}.click_rates SET clicks = clicks + 1 "
               "WHERE tenant_id = ? AND kind = ? AND key = ? AND bucket = ?", (tenant_id, kind, key, bucket))
    rows = db.execute("SELECT clicks FROM {ks}.click_rates WHERE tenant_id = ? AND kind = ? AND key = ? "
                      "AND bucket = ?", (tenant_id, kind, key, bucket))
    return int(rows[0]["clicks"]) if rows else 1


TRAFFIC_UPDATE = ("UPDATE {ks}.traffic_counts SET impressions = impressions + ?, clicks = clicks + ? "
                  "WHERE tenant_id = ? AND slot_id = ? AND day = ? AND location = ? AND bucket = ? "
                  "AND banner_id = ?")


def traffic_batches(db: Database, deltas: dict[tuple[str, str, str, dt.datetime, str], list[int]]
                    ) -> dict[tuple[str, str, dt.date], BatchStatement]:
    """COUNTER batches of quarter-hour deltas keyed (tenant, slot, location, bucket, banner), one per
    (tenant, slot, UTC day) partition."""
    statement = db.prepare(TRAFFIC_UPDATE)
    batches: dict[tuple[str, str, dt.date], BatchStatement] = {}
    for (tenant_id, slot_id, location, bucket, banner_id), (impressions, clicks) in deltas.items():
        day = bucket.date()
        batch = batches.setdefault((tenant_id, slot_id, day), BatchStatement(batch_type=BatchType.COUNTER))
        batch.add(statement, (impressions, clicks, tenant_id, slot_id, day, location, bucket, banner_id))
    return batches


REFERRER_UPDATE = ("UPDATE {ks}.referrer_counts SET impressions = impressions + ?, clicks = clicks + ? "
                   "WHERE tenant_id = ? AND slot_id = ? AND day = ? AND referrer_id = ? AND banner_id = ?")


def referrer_batches(db: Database, deltas: dict[tuple[str, str, dt.date, str, str], list[int]]
                     ) -> dict[tuple[str, str, dt.date], BatchStatement]:
    """COUNTER batches of referrer deltas keyed (tenant, slot, UTC day, referrer, banner) → [impressions,
    clicks], one per (tenant, slot, day) partition."""
    statement = db.prepare(REFERRER_UPDATE)
    batches: dict[tuple[str, str, dt.date], BatchStatement] = {}
    for (tenant_id, slot_id, day, referrer_id, banner_id), (impressions, clicks) in deltas.items():
        batch = batches.setdefault((tenant_id, slot_id, day), BatchStatement(batch_type=BatchType.COUNTER))
        batch.add(statement, (impressions, clicks, tenant_id, slot_id, day, referrer_id, banner_id))
    return batches


def referrer_rows(db: Database, tenant_id: str, slot_id: str, days: list[dt.date]) -> list[dict[str, Any]]:
    """The slot's referrer_counts rows (day, referrer_id, banner_id, impressions, clicks) of the given UTC
    days: one partition read per day, concurrently."""
    return _per_day(db, "SELECT day, referrer_id, banner_id, impressions, clicks FROM {ks}.referrer_counts "
                        "WHERE tenant_id = ? AND slot_id = ? AND day = ?",
                    ((tenant_id, slot_id, day) for day in days))


LIFT_UPDATE = ("UPDATE {ks}.lift_counts SET impressions = impressions + ?, clicks = clicks + ?, "
               "holdout_share_micros = holdout_share_micros + ? WHERE tenant_id = ? AND slot_id = ? AND location = ? "
               "AND day = ? AND bucket = ? AND serving_group = ? AND shard = ?")


def lift_batches(db: Database, deltas: dict[tuple[str, str, str, dt.datetime, str, int], list[int]]
                 ) -> dict[tuple[str, str, str, dt.date], BatchStatement]:
    """COUNTER batches of lift deltas keyed (tenant, slot, location, quarter-hour bucket, group, shard) →
    [impressions, clicks, holdout_share_micros] (eventlog.counting rule 8), one per (tenant, slot, location, UTC
    day) partition (cql/014)."""
    statement = db.prepare(LIFT_UPDATE)
    batches: dict[tuple[str, str, str, dt.date], BatchStatement] = {}
    for (tenant_id, slot_id, location, bucket, group, shard), (impressions, clicks, micros) in deltas.items():
        day = bucket.date()
        batch = batches.setdefault((tenant_id, slot_id, location, day), BatchStatement(batch_type=BatchType.COUNTER))
        batch.add(statement, (impressions, clicks, micros, tenant_id, slot_id, location, day, bucket, group, shard))
    return batches


def lift_rows(db: Database, tenant_id: str, slot_id: str, location: str, start: dt.datetime,
              end: dt.datetime) -> list[dict[str, Any]]:
    """The slot's lift_counts rows of ``location`` ('' = all) with start <= bucket < end (UTC): bucket,
    serving_group, shard, impressions, clicks, holdout_share_micros. One partition read per UTC day, concurrently."""
    last = max(start, end - dt.timedelta(microseconds=1)).date()
    days = [start.date() + dt.timedelta(days=n) for n in range((last - start.date()).days + 1)]
    return _per_day(db, "SELECT bucket, serving_group, shard, impressions, clicks, holdout_share_micros "
                        "FROM {ks}.lift_counts WHERE tenant_id = ? AND slot_id = ? AND location = ? AND day = ? "
                        "AND bucket >= ? AND bucket < ?",
                    ((tenant_id, slot_id, location, day, start, end) for day in days))


VISITOR_SKETCH_UPSERT = ("UPDATE {ks}.visitor_sketches SET registers = ?, updated_at = ? "
                         "WHERE tenant_id = ? AND slot_id = ? AND day = ? AND writer_id = ?")


def visitor_sketch_rows(db: Database, tenant_id: str, slot_id: str, days: list[dt.date]) -> list[dict[str, Any]]:
    """Every writer's visitor sketch (registers) of the slot in the given UTC days."""
    return _per_day(db, "SELECT day, writer_id, registers FROM {ks}.visitor_sketches "
                        "WHERE tenant_id = ? AND slot_id = ? AND day = ?",
                    ((tenant_id, slot_id, day) for day in days))


def utc_days(start: dt.datetime, end: dt.datetime) -> list[dt.date]:
    """The UTC days from ``start``'s to ``end``'s, both included: the partitions of a time range."""
    first, last = start.astimezone(dt.UTC).date(), end.astimezone(dt.UTC).date()
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def _per_day(db: Database, cql: str, params, timeout: float | None = None) -> list[dict[str, Any]]:
    """One query per UTC-day partition, all sent at once: ``params`` yields each day's parameters; ``timeout``
    bounds each (None: the session's default)."""
    statement = db.prepare(cql)
    session = db.session()
    extra = {} if timeout is None else {"timeout": timeout}
    futures = [session.execute_async(statement, values, **extra) for values in params]
    return [row for future in futures for row in future.result()]


def traffic(db: Database, tenant_id: str, slot_id: str, location: str, start: dt.datetime,
            end: dt.datetime) -> list[dict[str, Any]]:
    """Quarter-hour rows with start <= bucket < end (UTC): reads only the UTC-day partitions in range,
    concurrently."""
    return _per_day(db, "SELECT bucket, banner_id, impressions, clicks FROM {ks}.traffic_counts WHERE tenant_id = ? "
                        "AND slot_id = ? AND day = ? AND location = ? AND bucket >= ? AND bucket < ?",
                    ((tenant_id, slot_id, day, location, start, end) for day in utc_days(start, end)))


def traffic_partitions(db: Database, tenant_id: str, slot_id: str, days: list[dt.date],
                       since: dt.datetime | None = None, timeout: float | None = None) -> list[dict[str, Any]]:
    """Every (location, bucket, banner) row of the slot's traffic_counts in the given UTC days, read
    concurrently; with ``since``, only buckets >= since (filtered inside each partition)."""
    cql = ("SELECT location, bucket, banner_id, impressions, clicks FROM {ks}.traffic_counts "
           "WHERE tenant_id = ? AND slot_id = ? AND day = ?")
    if since is None:
        return _per_day(db, cql, ((tenant_id, slot_id, day) for day in days), timeout)
    return _per_day(db, cql + " AND bucket >= ? ALLOW FILTERING", ((tenant_id, slot_id, day, since) for day in days),
                    timeout)


# -- dashboard users and images -----------------------------------------------------------------------------

def put_user(db: Database, username: str, password_hash: str, role: str, tenant_id: str, *,
             replace: bool, session_epoch: str = "", must_change_password: bool = False) -> bool:
    """Create a user; with ``replace``, overwrite one of the same name (enabled again, and its sessions
    ended: a new ``session_epoch``). Returns False when the user exists and ``replace`` is false (nothing
    written)."""
    now = utcnow()
    created = db.execute(
        "INSERT INTO {ks}.users (username, password_hash, role, tenant_id, session_epoch, disabled, "
        "must_change_password, created_at, updated_at) VALUES (?, ?, ?, ?, ?, false, ?, ?, ?) IF NOT EXISTS",
        (username, password_hash, role, tenant_id, session_epoch, must_change_password, now, now),
    )[0]["[applied]"]
    if not created and replace:
        db.execute("UPDATE {ks}.users SET password_hash = ?, role = ?, tenant_id = ?, session_epoch = ?, "
                   "disabled = false, must_change_password = ?, updated_at = ? WHERE username = ?",
                   (password_hash, role, tenant_id, session_epoch, must_change_password, now, username))
        return True
    return created


def set_password_hash(db: Database, username: str, password_hash: str) -> None:
    db.execute("UPDATE {ks}.users SET password_hash = ?, updated_at = ? WHERE username = ?",
               (password_hash, utcnow(), username))


def get_user(db: Database, username: str) -> dict[str, Any] | None:
    rows = db.execute("SELECT username, password_hash, role, tenant_id, session_epoch, disabled, "
                      "must_change_password FROM {ks}.users WHERE username = ?", (username,))
    return rows[0] if rows else None


def list_users(db: Database) -> list[dict[str, Any]]:
    """Every dashboard user: a full scan for the dashboard's users page only (never periodic)."""
    rows = db.execute("SELECT username, role, tenant_id, created_at, disabled FROM {ks}.users")
    return sorted(rows, key=lambda r: r["username"])


def set_session_epoch(db: Database, username: str, epoch: str) -> bool:
    """Replace a user's session epoch (ending their sessions); False when there is no such user."""
    return db.execute("UPDATE {ks}.users SET session_epoch = ?, updated_at = ? WHERE username = ? IF EXISTS",
                      (epoch, utcnow(), username))[0]["[applied]"]


def set_password(db: Database, username: str, password_hash: str, epoch: str, must_change: bool) -> bool:
    """A new password and a new session epoch together; False when there is no such user."""
    return db.execute("UPDATE {ks}.users SET password_hash = ?, session_epoch = ?, must_change_password = ?, "
                      "updated_at = ? WHERE username = ? IF EXISTS",
                      (password_hash, epoch, must_change, utcnow(), username))[0]["[applied]"]


def set_user_disabled(db: Database, username: str, disabled: bool, epoch: str) -> bool:
    """Disable or enable a user, with a new session epoch; False when there is no such user."""
    return db.execute("UPDATE {ks}.users SET disabled = ?, session_epoch = ?, updated_at = ? "
                      "WHERE username = ? IF EXISTS", (disabled, epoch, utcnow(), username))[0]["[applied]"]


def delete_user(db: Database, username: str) -> None:
    db.execute("DELETE FROM {ks}.users WHERE username = ?", (username,))


def put_image(db: Database, tenant_id: str, image_id: str, content_type: str, data: bytes) -> None:
    db.execute("INSERT INTO {ks}.images (tenant_id, image_id, content_type, data, size, created_at) "
               "VALUES (?, ?, ?, ?, ?, ?)", (tenant_id, image_id, content_type, data, len(data), utcnow()))


def get_image(db: Database, tenant_id: str, image_id: str) -> dict[str, Any] | None:
    rows = db.execute("SELECT content_type, data FROM {ks}.images WHERE tenant_id = ? AND image_id = ?",
                      (tenant_id, image_id))
    return rows[0] if rows else None


# -- event log ----------------------------------------------------------------------------------------------
# impression_log and click_log, partitioned by (tenant, slot, bucket, shard) of the impression's timeuuid
# (eventlog/partitions.py, cql/006_event_partitions.cql). A reader of a time range reads only the
# partitions of the buckets in it, concurrently.

INSERT_IMPRESSION = (
    "INSERT INTO {ks}.impression_log (tenant_id, slot_id, bucket, shard, impression_id, served_at, banner_id, "
    "location, customer_id, referrer_id, posterior_scope, alpha, beta, prior_source, propensity, policy, "
    "policy_state, serving_group, holdout_share, segment, device, hour, weekday, context_cell, origin, ip_hash, "
    "ua_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

INSERT_CLICK = (
    "INSERT INTO {ks}.click_log (tenant_id, slot_id, bucket, shard, impression_id, clicked_at, banner_id, "
    "location, customer_id, referrer_id, valid, invalid_reason, user_agent, ip, origin, request_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
)

EVENT_TABLES = {"impressions": "impression_log", "clicks": "click_log"}


def _per_partition(db: Database, cql: str, tenant_id: str, slot_id: str, start: dt.datetime,
                   end: dt.datetime, *extra: Any) -> list[dict[str, Any]]:
    """``cql`` (keyed tenant, slot, bucket, shard, then ``extra``) on every log partition of [start, end]."""
    statement = db.prepare(cql)
    session = db.session()
    futures = [session.execute_async(statement, (tenant_id, slot_id, p.bucket, p.shard, *extra))
               for p in partitions.partitions(start, end)]
    return [row for future in futures for row in future.result()]


def count_events(db: Database, table: str, tenant_id: str, slot_id: str, start: dt.datetime,
                 end: dt.datetime) -> int:
    """Impressions (table 'impressions') or clicks ('clicks') of the slot whose impression was served in
    [start, end]: a count over the partitions of those buckets only."""
    if table not in EVENT_TABLES:
        raise ValueError(table)
    rows = _per_partition(
        db, f"SELECT count(*) AS n FROM {{ks}}.{EVENT_TABLES[table]} WHERE tenant_id = ? AND slot_id = ? "
        "AND bucket = ? AND shard = ? AND impression_id >= minTimeuuid(?) AND impression_id <= maxTimeuuid(?)",
        tenant_id, slot_id, start, end, start, end)
    return sum(r["n"] for r in rows)


def logged_events(db: Database, table: str, tenant_id: str, slot_id: str, start: dt.datetime,
                  end: dt.datetime) -> list[dict[str, Any]]:
    """Every column of the slot's impression ('impressions') or click ('clicks') rows whose impression was
    served in [start, end] (tests and checks; the partitions of those buckets only)."""
    if table not in EVENT_TABLES:
        raise ValueError(table)
    return _per_partition(
        db, f"SELECT * FROM {{ks}}.{EVENT_TABLES[table]} WHERE tenant_id = ? AND slot_id = ? "
        "AND bucket = ? AND shard = ? AND impression_id >= minTimeuuid(?) AND impression_id <= maxTimeuuid(?)",
        tenant_id, slot_id, start, end, start, end)


def group_impressions(db: Database, tenant_id: str, slot_id: str, start: dt.datetime,
                      end: dt.datetime) -> list[dict[str, Any]]:
    """The lift's inputs from the log, the slot's impressions served in [start, end]: their time, location,
    customer, group and holdout share (null in rows from before cql/013). The partitions of those buckets only
    (the report reads lift_counts; tests check those against this)."""
    return _per_partition(
        db, "SELECT impression_id, served_at, location, customer_id, serving_group, holdout_share "
        "FROM {ks}.impression_log WHERE tenant_id = ? AND slot_id = ? AND bucket = ? AND shard = ? "
        "AND impression_id >= minTimeuuid(?) AND impression_id <= maxTimeuuid(?)",
        tenant_id, slot_id, start, end, start, end)


def clicked_impressions(db: Database, tenant_id: str, slot_id: str, start: dt.datetime,
                        end: dt.datetime) -> set[uuid.UUID]:
    """The impressions of the slot served in [start, end] that have a valid click (flagged clicks left out)."""
    rows = _per_partition(
        db, "SELECT impression_id, valid FROM {ks}.click_log WHERE tenant_id = ? AND slot_id = ? AND bucket = ? "
        "AND shard = ? AND impression_id >= minTimeuuid(?) AND impression_id <= maxTimeuuid(?)",
        tenant_id, slot_id, start, end, start, end)
    return {r["impression_id"] for r in rows if r["valid"] is not False}


# -- off-policy evaluation results (spark_jobs/evaluate.py, cql/013) -------------------------------------------

EVALUATION_COLUMNS = ("tenant_id", "slot_id", "run_at", "candidate", "estimator", "estimate", "low", "high",
                      "effective_sample_size", "events", "left_out", "zero_support", "observed_ctr", "since",
                      "until", "flags")


def put_evaluation_results(db: Database, rows: list[dict[str, Any]]) -> None:
    statement = db.prepare(f"INSERT INTO {{ks}}.evaluation_results ({', '.join(EVALUATION_COLUMNS)}) "
                           f"VALUES ({', '.join('?' * len(EVALUATION_COLUMNS))})")
    session = db.session()
    for future in [session.execute_async(statement, tuple(row[c] for c in EVALUATION_COLUMNS)) for row in rows]:
        future.result()


def latest_evaluation(db: Database, tenant_id: str, slot_id: str) -> list[dict[str, Any]]:
    """The rows of the slot's latest evaluation run (one partition; the run's rows are contiguous)."""
    first = db.execute("SELECT run_at FROM {ks}.evaluation_results WHERE tenant_id = ? AND slot_id = ? LIMIT 1",
                       (tenant_id, slot_id))
    if not first:
        return []
    return db.execute("SELECT * FROM {ks}.evaluation_results WHERE tenant_id = ? AND slot_id = ? AND run_at = ?",
                      (tenant_id, slot_id, first[0]["run_at"]))


def logged_ids(db: Database, table: str, tenant_id: str, slot_id: str, start: dt.datetime,
               end: dt.datetime) -> list[uuid.UUID]:
    """The impression IDs in the log ('impressions') or click log ('clicks') of the slot, served in
    [start, end], with repeats if a row were stored twice (it cannot be: the ID is the row's key)."""
    if table not in EVENT_TABLES:
        raise ValueError(table)
    rows = _per_partition(
        db, f"SELECT impression_id FROM {{ks}}.{EVENT_TABLES[table]} WHERE tenant_id = ? AND slot_id = ? "
        "AND bucket = ? AND shard = ? AND impression_id >= minTimeuuid(?) AND impression_id <= maxTimeuuid(?)",
        tenant_id, slot_id, start, end, start, end)
    return [r["impression_id"] for r in rows]


def logged_impression_ids(db: Database, tenant_id: str, slot_id: str, start: dt.datetime,
                          end: dt.datetime) -> list[uuid.UUID]:
    """The IDs of the slot's logged impressions served in [start, end] (tests, benchmarks, checks)."""
    return logged_ids(db, "impressions", tenant_id, slot_id, start, end)


def get_impression(db: Database, tenant_id: str, slot_id: str, impression_id: uuid.UUID
                   ) -> dict[str, Any] | None:
    bucket, shard = partitions.partition_of(impression_id)
    rows = db.execute("SELECT * FROM {ks}.impression_log WHERE tenant_id = ? AND slot_id = ? AND bucket = ? "
                      "AND shard = ? AND impression_id = ?", (tenant_id, slot_id, bucket, shard, impression_id))
    return rows[0] if rows else None


def get_click(db: Database, tenant_id: str, slot_id: str, impression_id: uuid.UUID) -> dict[str, Any] | None:
    bucket, shard = partitions.partition_of(impression_id)
    rows = db.execute("SELECT * FROM {ks}.click_log WHERE tenant_id = ? AND slot_id = ? AND bucket = ? "
                      "AND shard = ? AND impression_id = ?", (tenant_id, slot_id, bucket, shard, impression_id))
    return rows[0] if rows else None


def legacy_click_exists(db: Database, tenant_id: str, slot_id: str, day: dt.date,
                        impression_id: uuid.UUID) -> bool:
    """Whether the day-partitioned click table of before 006 holds a click of this impression: checked for
    click tokens signed before the upgrade (they carry the day), so a click recorded then counts once."""
    return bool(db.execute("SELECT impression_id FROM {ks}.clicks WHERE tenant_id = ? AND slot_id = ? "
                           "AND day = ? AND impression_id = ?", (tenant_id, slot_id, day, impression_id)))


# -- event log migration (migrate-events): the day-partitioned tables of 001 into the log above ---------------

LEGACY_IMPRESSION_COLUMNS = ("impression_id", "served_at", "banner_id", "location", "customer_id",
                             "referrer_id", "posterior_scope", "alpha", "beta", "prior_source", "propensity",
                             "policy", "policy_state")
LEGACY_CLICK_COLUMNS = ("impression_id", "clicked_at", "banner_id", "location", "customer_id", "referrer_id",
                        "valid", "invalid_reason", "user_agent", "ip")
# Impressions are copied with a plain INSERT (the same row again changes nothing); clicks with IF NOT EXISTS,
# so a click recorded in click_log since the upgrade is never replaced.
# The old tables have no group (cql/013), context (cql/012), origin or client hashes (cql/008): those columns
# stay null in copied rows.
COPY_IMPRESSION = (
    "INSERT INTO {ks}.impression_log (tenant_id, slot_id, bucket, shard, impression_id, served_at, banner_id, "
    "location, customer_id, referrer_id, posterior_scope, alpha, beta, prior_source, propensity, policy, "
    "policy_state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
COPY_CLICK = (
    "INSERT INTO {ks}.click_log (tenant_id, slot_id, bucket, shard, impression_id, clicked_at, banner_id, "
    "location, customer_id, referrer_id, valid, invalid_reason, user_agent, ip) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
)


def legacy_partitions(db: Database, old_table: str) -> list[tuple[str, str, dt.date]]:
    """Every (tenant, slot, day) partition of an old event table: a scan of partition keys, for the one-off
    migration only (never on a request or periodic path)."""
    if old_table not in EVENT_TABLES:
        raise ValueError(old_table)
    rows = db.execute(f"SELECT DISTINCT tenant_id, slot_id, day FROM {{ks}}.{old_table}")
    return sorted(((r["tenant_id"], r["slot_id"], _as_date(r["day"])) for r in rows),
                  key=lambda key: (key[0], key[1], str(key[2])))


def _as_date(value: Any) -> Any:
    """A CQL date as the driver returns it (cassandra.util.Date) as a datetime.date; a day outside
    datetime.date's range stays as it is (it still binds)."""
    try:
        return value.date() if hasattr(value, "days_from_epoch") else value
    except (OverflowError, ValueError):
        return value


def legacy_rows(db: Database, old_table: str, tenant_id: str, slot_id: str, day: dt.date,
                page_size: int = 1000):
    """The rows of one old partition, paged (an iterator of dicts)."""
    if old_table not in EVENT_TABLES:
        raise ValueError(old_table)
    columns = LEGACY_IMPRESSION_COLUMNS if old_table == "impressions" else LEGACY_CLICK_COLUMNS
    cql = (f"SELECT {', '.join(columns)} FROM {db.keyspace}.{old_table} "
           "WHERE tenant_id = %s AND slot_id = %s AND day = %s")
    return db.session().execute(SimpleStatement(cql, fetch_size=page_size), (tenant_id, slot_id, day))


def migrated_partitions(db: Database, old_table: str) -> set[tuple[str, str, dt.date]]:
    rows = db.execute("SELECT tenant_id, slot_id, day FROM {ks}.event_migration WHERE old_table = ?",
                      (old_table,))
    return {(r["tenant_id"], r["slot_id"], _as_date(r["day"])) for r in rows}


def mark_migrated(db: Database, old_table: str, tenant_id: str, slot_id: str, day: dt.date, rows: int) -> None:
    db.execute("INSERT INTO {ks}.event_migration (old_table, tenant_id, slot_id, day, rows, finished_at) "
               "VALUES (?, ?, ?, ?, ?, ?)", (old_table, tenant_id, slot_id, day, rows, utcnow()))
