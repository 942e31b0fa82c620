"""What a slot earned: the lift report of its holdout (GET /v1/admin/tenants/<t>/slots/<s>/lift and the
dashboard's "What it earned" panel: reads the window's lift_counts, one partition per UTC day, cql/014, then
evaluation/lift.py), and its latest off-policy evaluation (stored by spark_jobs/evaluate.py).

The counters hold quarter hours (eventlog.counting.traffic_bucket), so a window is widened to whole quarter
hours: ``since`` down to the start of its quarter hour, ``until`` up to the end of its own (a ``until`` on a
boundary stays); the answer's ``since`` and ``until`` are the window used, [since, until)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any
from zoneinfo import ZoneInfo

from evaluation import candidates as candidates_module
from evaluation import lift
from eventlog import counting
from webapp.management import services
from webapp.storage import store
from webapp.storage.database import Database
from webapp.web import validation
from webapp.web.errors import InvalidInput, NotFound

DEFAULT_DAYS = 7
MAX_DAYS = 31           # a window reads one lift_counts partition a UTC day (≤ 6,144 rows each, cql/014)
QUARTER = dt.timedelta(minutes=counting.BUCKET_MINUTES)
MIN_YEAR, MAX_YEAR = 2000, 9000


def parse_time(value: Any, what: str) -> dt.datetime | None:
    """An ISO 8601 time or date ('2026-12-01', '2026-12-01T10:00:00Z'); naive means UTC. None when absent."""
    if value is None or value == "":
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
        parsed = parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)
    except (TypeError, ValueError, OverflowError):
        parsed = None
    if parsed is None or not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise InvalidInput(f"{what} must be an ISO 8601 date or time from {MIN_YEAR} to {MAX_YEAR}, such as "
                           "2026-12-01 or 2026-12-01T10:00:00Z")
    return parsed


def window(since: Any, until: Any, now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """[since, until) in UTC, widened to whole quarter hours (module doc): until defaults to now, since to
    DEFAULT_DAYS before until; at most MAX_DAYS as asked."""
    end = parse_time(until, "until") or (now or dt.datetime.now(dt.UTC))
    start = parse_time(since, "since") or end - dt.timedelta(days=DEFAULT_DAYS)
    if start > end:
        raise InvalidInput("since must not be after until")
    if end - start > dt.timedelta(days=MAX_DAYS):
        raise InvalidInput(f"the window may span at most {MAX_DAYS} days")
    start = counting.traffic_bucket(start)
    widened = counting.traffic_bucket(end)
    return start, widened if widened == end and end > start else widened + QUARTER


def slot_lift(db: Database, tenant_id: str, slot_id: str, since: Any = None, until: Any = None,
              location: str | None = None) -> dict[str, Any]:
    """The slot's lift over [since, until] (module doc), for one location or all ('' / None), with a daily
    series in the tenant's time zone."""
    start, end = window(since, until)
    slot = services.require_slot(db, tenant_id, slot_id)
    tenant = store.get_tenant(db, tenant_id)
    zone = ZoneInfo(tenant["timezone"] or "UTC")
    rows = store.lift_rows(db, tenant_id, slot_id, location or counting.SLOT_WIDE, start, end)
    counted = [(r["serving_group"], r["shard"], r["impressions"] or 0, r["clicks"] or 0,
                r["holdout_share_micros"] or 0) for r in rows]
    report = lift.counted_report(lift.cells_of(counted), counting.LIFT_SHARDS)
    by_day: dict[dt.date, list] = defaultdict(list)
    for row, cell in zip(rows, counted):
        bucket = row["bucket"].replace(tzinfo=dt.UTC) if row["bucket"].tzinfo is None else row["bucket"]
        by_day[bucket.astimezone(zone).date()].append(cell)     # a quarter hour is in one local day
    daily = []
    for day in sorted(by_day):
        day_report = lift.counted_report(lift.cells_of(by_day[day]), counting.LIFT_SHARDS)
        daily.append({"day": day.isoformat(), "lift": day_report["lift"],
                      "extra_clicks": day_report["extra_clicks"]["estimate"],
                      "impressions": {g: v["impressions"] for g, v in day_report["groups"].items()}})
    return {"tenant": tenant_id, "slot": slot_id, "location": location or "",
            "since": start.isoformat(), "until": end.isoformat(), "timezone": zone.key,
            "holdout_percent": slot.get("holdout_percent") or 0,
            **report, "daily": daily,
            "method": f"delta method on ratios clustered by {counting.LIFT_SHARDS} visitor shards (Deng et al. 2018), "
                      f"95% Student t interval ({counting.LIFT_SHARDS - 1} df); SRM: holdout impressions against "
                      "their logged assignment probabilities, t test over the visitor shards"}


def location_param(value: str | None, max_length: int) -> str:
    return validation.normalize_location(value, max_length)


def latest_evaluation(db: Database, tenant_id: str, slot_id: str) -> tuple[dict[str, Any] | None, list[dict]]:
    """The slot's latest evaluation run (its first row, None without one) and per candidate its estimates by
    estimator, ESS, counts and flags."""
    services.require_slot(db, tenant_id, slot_id)
    rows = store.latest_evaluation(db, tenant_id, slot_id)
    by_candidate: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = by_candidate.setdefault(row["candidate"], {
            "candidate": row["candidate"], "estimates": {}, "ess": row["effective_sample_size"],
            "events": row["events"], "left_out": row["left_out"], "zero_support": row["zero_support"],
            "observed_ctr": row["observed_ctr"], "flags": sorted(row["flags"] or ())})
        entry["estimates"][row["estimator"]] = row
    return (rows[0] if rows else None), list(by_candidate.values())


def evaluation_document(db: Database, tenant_id: str, slot_id: str, candidate: str | None = None
                        ) -> dict[str, Any]:
    """The latest run as JSON: per candidate its estimates (``candidate``: that one only; a name no slot could
    have is a 400, one this run did not evaluate a 404)."""
    if candidate is not None:
        try:
            candidates_module.check(candidate)
        except candidates_module.UnknownCandidate as exc:
            raise InvalidInput(str(exc)) from None
    run, found = latest_evaluation(db, tenant_id, slot_id)
    if candidate is not None:
        found = [c for c in found if c["candidate"] == candidate]
        if not found:
            raise NotFound(f"the latest evaluation of {tenant_id}/{slot_id} has no candidate {candidate!r}")

    def when(value: dt.datetime) -> str:
        return (value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value).isoformat()

    return {"tenant": tenant_id, "slot": slot_id,
            "run_at": when(run["run_at"]) if run else None,
            "since": when(run["since"]) if run else None, "until": when(run["until"]) if run else None,
            "candidates": [{"candidate": c["candidate"], "effective_sample_size": c["ess"], "events": c["events"],
                            "left_out": c["left_out"], "zero_support": c["zero_support"],
                            "observed_ctr": c["observed_ctr"], "flags": c["flags"],
                            "estimates": {name: {"estimate": e["estimate"], "low": e["low"], "high": e["high"]}
                                          for name, e in c["estimates"].items()}}
                           for c in found]}
