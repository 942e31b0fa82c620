"""Who sends a slot its traffic, and how many people it is: the referrer breakdown and the visitor estimate
of the results page, the CSV and the stats API.

Both read small views the event writer keeps (webapp/storage/events.py), never the event log: one
referrer_counts partition and one visitor_sketches partition per UTC day of the range. Referrers are the
publisher's ``referrer_id``; visitors are distinct ``customer_id`` values, estimated with HyperLogLog (no
visitor is listed or stored by ID in these views).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from datasketch import HyperLogLog

from webapp.storage import store
from webapp.storage.database import Database
from webapp.storage.events import VISITOR_SKETCH_P
from webapp.web.errors import InvalidInput

MAX_DAYS = 90               # the longest range a report reads (one partition per day and view)
TOP_REFERRERS = 25          # listed one by one; the rest are summed into one "other referrers" row
NO_REFERRER = ""            # referrer_id of events without one
OTHER = None                # the referrer of the row that sums the ones past TOP_REFERRERS
SKETCH_ERROR = 1.04 / np.sqrt(2 ** VISITOR_SKETCH_P)    # HyperLogLog's relative standard error
REGISTER_DTYPE = HyperLogLog(p=VISITOR_SKETCH_P).reg.dtype  # as the event writer stores them


def report_days(value: Any, default: int = 7) -> int:
    """The ``days`` of a report: a whole number 1..MAX_DAYS (``None`` → ``default``)."""
    if value is None or value == "":
        return default
    try:
        days = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"days must be a whole number from 1 to {MAX_DAYS}") from None
    if not 1 <= days <= MAX_DAYS or str(days) != str(value).strip():
        raise InvalidInput(f"days must be a whole number from 1 to {MAX_DAYS}")
    return days


def _ctr(clicks: int, impressions: int) -> float | None:
    return round(clicks / impressions, 6) if impressions else None


def referrer_report(db: Database, tenant_id: str, slot_id: str, days: int, banner_ids: list[str],
                    now: dt.datetime | None = None) -> dict[str, Any]:
    """Impressions, valid clicks and CTR per referrer (top TOP_REFERRERS by impressions, then the rest as one
    row), each split per banner, and the unique-visitor estimate, over the last ``days`` UTC days (today
    included). The caller checks that the slot exists; ``banner_ids`` orders the per-banner columns.

    A click counts under the referrer its click names (a served click URL carries the impression's).
    """
    now = (now or store.utcnow()).astimezone(dt.UTC)
    day_list = [now.date() - dt.timedelta(days=k) for k in range(days - 1, -1, -1)]
    per_referrer: dict[str, dict[str, list[int]]] = {}
    for row in store.referrer_rows(db, tenant_id, slot_id, day_list):
        banners = per_referrer.setdefault(row["referrer_id"] or NO_REFERRER, {})
        counts = banners.setdefault(row["banner_id"], [0, 0])
        counts[0] += int(row["impressions"] or 0)
        counts[1] += int(row["clicks"] or 0)

    def entry(referrer: str | None, banners: dict[str, list[int]]) -> dict[str, Any]:
        impressions = sum(c[0] for c in banners.values())
        clicks = sum(c[1] for c in banners.values())
        order = banner_ids + sorted(set(banners) - set(banner_ids))
        return {"referrer": referrer, "impressions": impressions, "clicks": clicks, "ctr": _ctr(clicks, impressions),
                "banners": [{"id": b, "impressions": banners[b][0], "clicks": banners[b][1],
                             "ctr": _ctr(banners[b][1], banners[b][0])} for b in order if b in banners]}

    ranked = sorted(per_referrer.items(), key=lambda item: (-sum(c[0] for c in item[1].values()),
                                                            -sum(c[1] for c in item[1].values()), item[0]))
    rows = [entry(referrer, banners) for referrer, banners in ranked[:TOP_REFERRERS]]
    if len(ranked) > TOP_REFERRERS:
        rest: dict[str, list[int]] = {}
        for _, banners in ranked[TOP_REFERRERS:]:
            for banner, (impressions, clicks) in banners.items():
                total = rest.setdefault(banner, [0, 0])
                total[0] += impressions
                total[1] += clicks
        rows.append(entry(OTHER, rest) | {"referrers": len(ranked) - TOP_REFERRERS})
    clicks = sum(r["clicks"] for r in rows)
    visitors = unique_visitors(db, tenant_id, slot_id, day_list)
    return {
        "days": days, "since": day_list[0].isoformat(),
        "referrers": rows, "referrer_count": len(ranked),
        "visitors": {
            "unique": visitors,
            "clicks_per_visitor": round(clicks / visitors, 4) if visitors else None,
            "relative_error": round(float(SKETCH_ERROR), 4),
        },
    }


def unique_visitors(db: Database, tenant_id: str, slot_id: str, days: list[dt.date]) -> int:
    """Distinct customer IDs of the slot's impressions in ``days``: the union of every writer's HyperLogLog
    sketch of those days (the register-wise maximum), estimated (relative standard error SKETCH_ERROR)."""
    registers = None
    for row in store.visitor_sketch_rows(db, tenant_id, slot_id, days):
        values = np.frombuffer(row["registers"], dtype=REGISTER_DTYPE)
        registers = values.copy() if registers is None else np.maximum(registers, values)
    if registers is None:
        return 0
    return int(round(HyperLogLog(p=VISITOR_SKETCH_P, reg=registers).count()))


CSV_EXTRA_COLUMNS = ["referrer"]


def csv_rows(audience: dict[str, Any], columns: list[str]) -> list[list[Any]]:
    """The referrer breakdown as rows of the results CSV (scope 'referrer'): per referrer, its total (banner
    '') then each banner; ``columns`` is the CSV's header, cells a referrer row has no value for stay empty.
    The summing row of the referrers past the top ones has referrer '*other*'."""
    out = []
    for r in audience["referrers"]:
        name = "*other*" if r["referrer"] is None else r["referrer"]
        for banner, counts in [("", r), *((b["id"], b) for b in r["banners"])]:
            row = {"scope": "referrer", "location": "", "banner": banner, "impressions": counts["impressions"],
                   "clicks": counts["clicks"], "ctr": "" if counts["ctr"] is None else counts["ctr"],
                   "referrer": name}
            out.append([row.get(column, "") for column in columns])
    return out
