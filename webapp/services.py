"""The service layer shared by the management API and the dashboard: validated writes and slot reports.

Every function validates its arguments with the same rules (webapp.validation) whatever the caller, and
raises a DomainError on bad input or a missing parent, before anything is written.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from webapp import store, validation
from webapp.config import DEFAULTS
from webapp.bandits import UNIFORM_PRIOR, BetaPrior, beta_posterior, win_probabilities
from webapp.cassandra import Database
from webapp.clickfilter import ClickFilterSettings
from webapp.errors import Conflict, InvalidInput, NotFound
from webapp.events import SLOT_WIDE

P_BEST_DRAWS = 20_000


def require_tenant(db: Database, tenant_id: str) -> dict[str, Any]:
    validation.identifier(tenant_id, "tenant")
    found = store.get_tenant(db, tenant_id)
    if found is None:
        raise NotFound(f"unknown tenant {tenant_id}")
    return found


def require_slot(db: Database, tenant_id: str, slot_id: str) -> dict[str, Any]:
    require_tenant(db, tenant_id)
    validation.identifier(slot_id, "slot")
    found = store.get_slot(db, tenant_id, slot_id)
    if found is None:
        raise NotFound(f"unknown slot {tenant_id}/{slot_id}")
    return found


def put_tenant(db: Database, tenant_id: str, name: Any, timezone: Any, default_timezone: str,
               click_filter: Any = None) -> tuple[bool, dict[str, Any]]:
    """Create or replace a tenant; returns (created, document). click_filter: thresholds, None = defaults."""
    validation.identifier(tenant_id, "tenant")
    name = validation.short_text(name, "name", required=True)
    timezone = validation.timezone(timezone, default_timezone)
    try:
        settings = ClickFilterSettings.from_dict(click_filter)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"click_filter: {exc}") from None
    stored = json.dumps(settings.to_dict()) if click_filter is not None else None
    created = store.put_tenant(db, tenant_id, name, timezone, stored)
    return created, tenant_document(tenant_id, name, timezone, stored)


def tenant_document(tenant_id: str, name: str, timezone: str, click_filter: str | None) -> dict[str, Any]:
    settings = ClickFilterSettings.from_dict(json.loads(click_filter)) if click_filter else ClickFilterSettings()
    return {"id": tenant_id, "name": name, "timezone": timezone, "click_filter": settings.to_dict()}


def put_slot(db: Database, tenant_id: str, slot_id: str, name: Any) -> tuple[bool, dict[str, Any]]:
    validation.identifier(tenant_id, "tenant")
    validation.identifier(slot_id, "slot")
    name = validation.short_text(name, "name", required=True)
    require_tenant(db, tenant_id)
    created = store.put_slot(db, tenant_id, slot_id, name)
    return created, {"tenant": tenant_id, "id": slot_id, "name": name}


def put_banner(db: Database, tenant_id: str, slot_id: str, banner_id: str, *, image_url: Any,
               target_url: Any, alt: Any, active: Any,
               max_banners: int = DEFAULTS["MAX_BANNERS_PER_SLOT"]) -> tuple[bool, dict[str, Any]]:
    """Create or replace a banner; a slot holds at most ``max_banners`` (paused ones count too).

    Pass the app's MAX_BANNERS_PER_SLOT. The count is read before the write, so two creations racing for
    the last place can both succeed: the bound is soft by the number of concurrent creations.
    """
    for value, what in ((tenant_id, "tenant"), (slot_id, "slot"), (banner_id, "banner")):
        validation.identifier(value, what)
    fields = store.BannerFields(
        image_url=validation.http_url(image_url, "image_url"),
        target_url=validation.http_url(target_url, "target_url"),
        alt=validation.short_text(alt, "alt", required=False),
        active=validation.boolean(active, "active", default=True),
    )
    require_slot(db, tenant_id, slot_id)
    existing = {row["banner_id"] for row in store.list_banners(db, tenant_id, slot_id)}
    if banner_id not in existing and len(existing) >= max_banners:
        raise Conflict(f"slot {tenant_id}/{slot_id} already has {len(existing)} banners, the most allowed "
                       f"(MAX_BANNERS_PER_SLOT={max_banners}); replace an existing banner instead")
    created = store.put_banner(db, tenant_id, slot_id, banner_id, fields)
    return created, {"tenant": tenant_id, "slot": slot_id, "id": banner_id, **asdict(fields)}


def list_banners(db: Database, tenant_id: str, slot_id: str) -> list[dict[str, Any]]:
    require_slot(db, tenant_id, slot_id)
    return [{"id": r["banner_id"], "image_url": r["image_url"], "target_url": r["target_url"],
             "alt": r["alt"], "active": bool(r["active"])} for r in store.list_banners(db, tenant_id, slot_id)]


@dataclass(frozen=True)
class BannerReport:
    id: str
    active: bool
    impressions: int
    clicks: int               # valid clicks, the ones learned from
    filtered_clicks: int      # stored but flagged (bots, too fast, too many)
    ctr: float
    alpha: float              # posterior Beta(alpha, beta) for the report's location
    beta: float
    posterior_mean: float
    prior: dict[str, Any]
    p_best: float             # P(this banner has the highest CTR) among active banners


def slot_report(db: Database, tenant_id: str, slot_id: str, location: str,
                rng: np.random.Generator) -> dict[str, Any]:
    """Per banner of a slot, for one location ('' = slot-wide): counts, posterior and P(best).

    The posterior is Beta(α0 + clicks, β0 + impressions − clicks), with (α0, β0) the location's prior, else
    the slot-wide prior, else Beta(1, 1) — the same rule serving uses for a known location.
    """
    require_slot(db, tenant_id, slot_id)
    banners = store.list_banners(db, tenant_id, slot_id)
    rows = store.slot_counts(db, tenant_id, slot_id, location)
    counts = {r["banner_id"]: (int(r["impressions"] or 0), int(r["clicks"] or 0)) for r in rows}
    filtered = {r["banner_id"]: int(r["filtered_clicks"] or 0) for r in rows}
    priors: dict[str, dict[str, BetaPrior]] = {}
    for r in store.slot_priors(db, tenant_id, slot_id):
        priors.setdefault(r["location"], {})[r["banner_id"]] = BetaPrior(
            r["alpha"], r["beta"], "location" if r["location"] else "slot")
    chosen = [(priors.get(location, {}).get(b["banner_id"]) if location else None)
              or priors.get(SLOT_WIDE, {}).get(b["banner_id"]) or UNIFORM_PRIOR for b in banners]
    observed = np.array([counts.get(b["banner_id"], (0, 0)) for b in banners], dtype=np.float64)
    observed = observed.reshape(len(banners), 2)
    alpha, beta = beta_posterior([p.alpha for p in chosen], [p.beta for p in chosen],
                                 observed[:, 0], observed[:, 1])
    active = np.array([bool(b["active"]) for b in banners], dtype=bool)
    p_best = np.zeros(len(banners))
    if active.any():
        p_best[active] = win_probabilities(alpha[active], beta[active], rng, P_BEST_DRAWS)
    reports = []
    for i, banner in enumerate(banners):
        impressions, clicks = (int(x) for x in observed[i])
        reports.append(asdict(BannerReport(
            id=banner["banner_id"], active=bool(banner["active"]), impressions=impressions, clicks=clicks,
            filtered_clicks=filtered.get(banner["banner_id"], 0),
            ctr=clicks / impressions if impressions else 0.0, alpha=float(alpha[i]), beta=float(beta[i]),
            posterior_mean=float(alpha[i] / (alpha[i] + beta[i])),
            prior={"alpha": chosen[i].alpha, "beta": chosen[i].beta, "source": chosen[i].source},
            p_best=round(float(p_best[i]), 4),
        )))
    return {"tenant": tenant_id, "slot": slot_id, "location": location, "banners": reports,
            "locations": store.known_locations(db, tenant_id, slot_id),
            "filtered_clicks_by_reason": store.filtered_reasons(db, tenant_id, slot_id)}
