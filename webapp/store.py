"""Every CQL statement of the service, in one place. Thin functions over a Database."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from cassandra.query import BatchStatement, BatchType

from webapp.cassandra import Database


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


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
    return created


def get_tenant(db: Database, tenant_id: str) -> dict[str, Any] | None:
    rows = db.execute("SELECT * FROM {ks}.tenants WHERE tenant_id = ?", (tenant_id,))
    return rows[0] if rows else None


def put_slot(db: Database, tenant_id: str, slot_id: str, name: str) -> bool:
    now = utcnow()
    created = db.execute(
        "INSERT INTO {ks}.slots (tenant_id, slot_id, name, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?) IF NOT EXISTS",
        (tenant_id, slot_id, name, now, now),
    )[0]["[applied]"]
    if not created:
        db.execute("UPDATE {ks}.slots SET name = ?, updated_at = ? WHERE tenant_id = ? AND slot_id = ?",
                   (name, now, tenant_id, slot_id))
    return created


def get_slot(db: Database, tenant_id: str, slot_id: str) -> dict[str, Any] | None:
    rows = db.execute("SELECT * FROM {ks}.slots WHERE tenant_id = ? AND slot_id = ?", (tenant_id, slot_id))
    return rows[0] if rows else None


@dataclass(frozen=True)
class BannerFields:
    image_url: str
    target_url: str
    alt: str
    active: bool


def put_banner(db: Database, tenant_id: str, slot_id: str, banner_id: str, fields: BannerFields) -> bool:
    now = utcnow()
    created = db.execute(
        "INSERT INTO {ks}.banners (tenant_id, slot_id, banner_id, image_url, target_url, alt, active, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS",
        (tenant_id, slot_id, banner_id, fields.image_url, fields.target_url, fields.alt, fields.active,
         now, now),
    )[0]["[applied]"]
    if not created:
        db.execute(
            "UPDATE {ks}.banners SET image_url = ?, target_url = ?, alt = ?, active = ?, updated_at = ? "
            "WHERE tenant_id = ? AND slot_id = ? AND banner_id = ?",
            (fields.image_url, fields.target_url, fields.alt, fields.active, now, tenant_id, slot_id,
             banner_id),
        )
    return created


def list_banners(db: Database, tenant_id: str, slot_id: str) -> list[dict[str, Any]]:
    return db.execute("SELECT * FROM {ks}.banners WHERE tenant_id = ? AND slot_id = ?", (tenant_id, slot_id))


def all_config(db: Database) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Every tenant's click filter, every slot and every banner (the serving cache's view)."""
    tenants = db.execute("SELECT tenant_id, click_filter FROM {ks}.tenants")
    slots = db.execute("SELECT tenant_id, slot_id FROM {ks}.slots")
    banners = db.execute(
        "SELECT tenant_id, slot_id, banner_id, image_url, target_url, alt, active FROM {ks}.banners")
    return tenants, slots, banners


# -- learned statistics ---------------------------------------------------------------------------------

def all_counts(db: Database) -> list[dict[str, Any]]:
    return db.execute("SELECT tenant_id, slot_id, location, banner_id, impressions, clicks "
                      "FROM {ks}.banner_counts")


def all_priors(db: Database) -> list[dict[str, Any]]:
    return db.execute("SELECT tenant_id, slot_id, location, banner_id, alpha, beta, source FROM {ks}.priors")


def slot_counts(db: Database, tenant_id: str, slot_id: str, location: str) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT banner_id, impressions, clicks, filtered_clicks FROM {ks}.banner_counts "
        "WHERE tenant_id = ? AND slot_id = ? AND location = ?", (tenant_id, slot_id, location))


def slot_priors(db: Database, tenant_id: str, slot_id: str) -> list[dict[str, Any]]:
    return db.execute("SELECT location, banner_id, alpha, beta, source FROM {ks}.priors "
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


def counter_batches(db: Database, deltas: dict[tuple[str, str, str, str], list[int]],
                    reasons: dict[tuple[str, str, str], int]) -> dict[tuple[str, str], BatchStatement]:
    """COUNTER batches of the aggregated deltas, one per (tenant, slot).

    deltas: (tenant, slot, location, banner) → [impressions, clicks, filtered clicks];
    reasons: (tenant, slot, reason) → filtered clicks.
    """
    statement = db.prepare(COUNTER_UPDATE)
    reason_statement = db.prepare(REASON_UPDATE)
    batches: dict[tuple[str, str], BatchStatement] = {}
    for (tenant_id, slot_id, reason), clicks in reasons.items():
        batch = batches.setdefault((tenant_id, slot_id), BatchStatement(batch_type=BatchType.COUNTER))
        batch.add(reason_statement, (clicks, tenant_id, slot_id, reason))
    for (tenant_id, slot_id, location, banner_id), (impressions, clicks, filtered) in deltas.items():
        batch = batches.setdefault((tenant_id, slot_id), BatchStatement(batch_type=BatchType.COUNTER))
        batch.add(statement, (impressions, clicks, filtered, tenant_id, slot_id, location, banner_id))
    return batches


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


# -- event log ----------------------------------------------------------------------------------------------

INSERT_IMPRESSION = (
    "INSERT INTO {ks}.impressions (tenant_id, slot_id, day, impression_id, served_at, banner_id, location, "
    "customer_id, referrer_id, posterior_scope, alpha, beta, prior_source, propensity) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

INSERT_CLICK = (
    "INSERT INTO {ks}.clicks (tenant_id, slot_id, day, impression_id, clicked_at, banner_id, location, "
    "customer_id, referrer_id, valid, invalid_reason, user_agent, ip) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
)


def count_events(db: Database, table: str, tenant_id: str, slot_id: str, day: dt.date) -> int:
    if table not in {"impressions", "clicks"}:
        raise ValueError(table)
    return db.execute(f"SELECT count(*) AS n FROM {{ks}}.{table} "
                      "WHERE tenant_id = ? AND slot_id = ? AND day = ?", (tenant_id, slot_id, day))[0]["n"]


def get_impression(db: Database, tenant_id: str, slot_id: str, day: dt.date,
                   impression_id: uuid.UUID) -> dict[str, Any] | None:
    rows = db.execute("SELECT * FROM {ks}.impressions WHERE tenant_id = ? AND slot_id = ? AND day = ? "
                      "AND impression_id = ?", (tenant_id, slot_id, day, impression_id))
    return rows[0] if rows else None


def get_click(db: Database, tenant_id: str, slot_id: str, day: dt.date,
              impression_id: uuid.UUID) -> dict[str, Any] | None:
    rows = db.execute("SELECT * FROM {ks}.clicks WHERE tenant_id = ? AND slot_id = ? AND day = ? "
                      "AND impression_id = ?", (tenant_id, slot_id, day, impression_id))
    return rows[0] if rows else None
