"""The service layer shared by the management API and the dashboard: validated writes and slot reports.

Every function validates its arguments with the same rules (webapp.web.validation) whatever the caller, and
raises a DomainError on bad input or a missing parent, before anything is written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from bandits import BetaPrior, beta_posterior, contextual, win_probabilities
from bandits.policy import SlotStatistics, prior_for
from bandits.registry import DEFAULT_POLICY, POLICIES
from eventlog.counting import SLOT_WIDE
from webapp.learning import decay
from webapp.serving import holdout, provenance, schedules
from webapp.serving.click_filter import ClickFilterSettings
from webapp.storage import store
from webapp.storage.database import Database
from webapp.web import api_keys, config, validation
from webapp.web.errors import Conflict, InvalidInput, NotFound

P_BEST_DRAWS = 20_000
WINNER_P_BEST = 0.95          # a banner this likely to be best is marked the winner
CREDIBLE_MASS = 0.95          # equal-tailed credible interval of the posterior CTR
DEFAULT_SLOT_SIZE = (728, 250)
MAX_SLOT_SIDE = 4000
MAX_LOCATIONS = 200
SIZE_RE = re.compile(r"^\s*(\d{1,5})\s*[x×]\s*(\d{1,5})\s*$")


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


def new_identifier(value: str, what: str, existing: Iterable[str]) -> str:
    """``value`` as the ID of something being created beside ``existing`` IDs: lower-case
    (validation.new_identifier), and not one that an existing, older mixed-case ID equals but for case."""
    validation.new_identifier(value, what)
    clash = next((other for other in existing if other != value and other.casefold() == value), None)
    if clash is not None:
        raise Conflict(f"{what} {clash} already exists; IDs that differ only by case are not allowed")
    return value


def put_tenant(db: Database, tenant_id: str, name: Any, timezone: Any, default_timezone: str,
               click_filter: Any = None, allowed_origins: Any = None) -> tuple[bool, dict[str, Any]]:
    """Create or replace a tenant; returns (created, document). click_filter: thresholds, None = defaults.
    allowed_origins: a list of origins ([] = any origin), None = kept as stored. An existing tenant is
    replaced under its ID as stored; a new one follows :func:`new_identifier`."""
    validation.identifier(tenant_id, "tenant")
    if store.get_tenant(db, tenant_id) is None:        # the scan of tenants is on creation only
        new_identifier(tenant_id, "tenant", (t["tenant_id"] for t in store.list_tenants(db)))
    name = validation.short_text(name, "name", required=True)
    timezone = validation.timezone(timezone, default_timezone)
    try:
        settings = ClickFilterSettings.from_dict(click_filter)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"click_filter: {exc}") from None
    origins = allowed_origins_of(allowed_origins) if allowed_origins is not None else None
    stored = json.dumps(settings.to_dict()) if click_filter is not None else None
    created = store.put_tenant(db, tenant_id, name, timezone, stored)
    if origins is not None:
        store.set_allowed_origins(db, tenant_id, origins)
    else:
        origins = sorted((store.get_tenant(db, tenant_id) or {}).get("allowed_origins") or ())
    return created, tenant_document(tenant_id, name, timezone, stored, origins)


def set_click_filter(db: Database, tenant_id: str, click_filter: Any) -> dict[str, Any]:
    """Validate and store the tenant's click filter thresholds alone (a partial dict: the rest keep their
    stored values); returns the settings stored. Serving picks them up within one cache refresh."""
    found = require_tenant(db, tenant_id)
    try:
        stored = json.loads(found["click_filter"]) if found.get("click_filter") else {}
        settings = ClickFilterSettings.from_dict({**stored, **click_filter})
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"click_filter: {exc}") from None
    store.set_click_filter(db, tenant_id, json.dumps(settings.to_dict()))
    return settings.to_dict()


def allowed_origins_of(value: Any) -> list[str]:
    """A tenant's allowed origins, validated and normalized (https://shop.example; [] = any origin)."""
    try:
        return provenance.normalize_origins(value)
    except provenance.InvalidOrigin as exc:
        raise InvalidInput(f"allowed_origins: {exc}") from None


def tenant_document(tenant_id: str, name: str, timezone: str, click_filter: str | None,
                    allowed_origins: Any = ()) -> dict[str, Any]:
    settings = ClickFilterSettings.from_dict(json.loads(click_filter)) if click_filter else ClickFilterSettings()
    return {"id": tenant_id, "name": name, "timezone": timezone, "click_filter": settings.to_dict(),
            "allowed_origins": sorted(allowed_origins or ())}


def list_tenants(db: Database) -> list[dict[str, Any]]:
    return [{"id": r["tenant_id"], "name": r["name"], "timezone": r["timezone"]} for r in store.list_tenants(db)]


def get_tenant(db: Database, tenant_id: str) -> dict[str, Any]:
    found = require_tenant(db, tenant_id)
    return tenant_document(tenant_id, found["name"], found["timezone"], found["click_filter"],
                           found.get("allowed_origins"))


def slot_size(value: Any) -> tuple[int, int]:
    """'728x250' → (728, 250): width × height in pixels, each 1..MAX_SLOT_SIDE."""
    match = SIZE_RE.match(value) if isinstance(value, str) else None
    if not match:
        raise InvalidInput("size must be WIDTHxHEIGHT in pixels, such as 728x250")
    width, height = int(match[1]), int(match[2])
    if not (0 < width <= MAX_SLOT_SIDE and 0 < height <= MAX_SLOT_SIDE):
        raise InvalidInput(f"size must be between 1x1 and {MAX_SLOT_SIDE}x{MAX_SLOT_SIDE} pixels")
    return width, height


def slot_locations(value: Any, max_length: int) -> frozenset[str]:
    """Known locations as a list of names or one comma/newline-separated string; normalized like serving
    normalizes a request's location."""
    if isinstance(value, str):
        value = re.split(r"[,\r\n]", value)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput("locations must be a list of location names")
    locations = frozenset(n for n in (validation.normalize_location(v, max_length) for v in value) if n)
    if len(locations) > MAX_LOCATIONS:
        raise InvalidInput(f"at most {MAX_LOCATIONS} known locations per slot")
    return locations


UNSET = object()     # a PUT body field left out: keep what is stored


def decay_half_life(value: Any) -> float:
    """A slot's decay half-life in hours, or store.NO_DECAY for null (cumulative counts, no decay)."""
    if value is None:
        return store.NO_DECAY
    # The range check also refuses NaN and infinities, and compares ints of any size exactly (no OverflowError).
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not decay.MIN_HALF_LIFE_HOURS <= value <= decay.MAX_HALF_LIFE_HOURS:
        raise InvalidInput(f"decay_half_life_hours must be a number of hours from {decay.MIN_HALF_LIFE_HOURS:g} "
                           f"to {decay.MAX_HALF_LIFE_HOURS:g}, or null for no decay")
    return float(value)


def policy_name(value: Any) -> str:
    """A slot's policy: a name of bandits.registry.POLICIES (None = the default)."""
    if value is None:
        return DEFAULT_POLICY
    if not isinstance(value, str) or value not in POLICIES:
        raise InvalidInput(f"policy must be one of {', '.join(sorted(POLICIES))}, or null for the default "
                           f"({DEFAULT_POLICY})")
    return value


def holdout_percent(value: Any) -> int:
    """A slot's holdout share in whole percent, 0..50 (None = 0: no holdout)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= holdout.MAX_HOLDOUT_PERCENT:
        raise InvalidInput(f"holdout_percent must be a whole number from 0 to {holdout.MAX_HOLDOUT_PERCENT} "
                           "(the share of visitors served uniformly at random), or null for 0")
    return value


def slot_context(value: Any) -> tuple[str, ...]:
    """A slot's context features (bandits.contextual.FEATURES), in canonical order; None = none named."""
    if value is None:
        return ()
    try:
        return contextual.context_features(value)
    except contextual.InvalidContext as exc:
        raise InvalidInput(str(exc)) from None


def _slot_document(row: dict[str, Any]) -> dict[str, Any]:
    width, height = (row.get("width"), row.get("height"))
    if not width or not height:
        width, height = DEFAULT_SLOT_SIZE
    return {"tenant": row["tenant_id"], "id": row["slot_id"], "name": row["name"],
            "size": f"{width}x{height}", "width": width, "height": height,
            "locations": sorted(row.get("locations") or ()),
            "decay_half_life_hours": row.get("decay_half_life_hours") or None,
            "policy": row.get("policy") or DEFAULT_POLICY,
            "holdout_percent": row.get("holdout_percent") or 0,
            "context": list(row.get("context") or ())}


def put_slot(db: Database, tenant_id: str, slot_id: str, name: Any, *, size: Any = None,
             locations: Any = None, max_location_length: int = 128,
             decay_half_life_hours: Any = UNSET, policy: Any = UNSET,
             holdout: Any = UNSET, context: Any = UNSET) -> tuple[bool, dict[str, Any]]:
    """Create or replace a slot. ``size`` ('728x250') and ``locations`` are kept as stored when None, the
    decay half-life, the policy and the context features when UNSET (None turns decay off, sets the default
    policy and clears the features)."""
    validation.identifier(tenant_id, "tenant")
    validation.identifier(slot_id, "slot")
    name = validation.short_text(name, "name", required=True)
    width, height = slot_size(size) if size is not None else (None, None)
    known = slot_locations(locations, max_location_length) if locations is not None else None
    half_life = None if decay_half_life_hours is UNSET else decay_half_life(decay_half_life_hours)
    chosen = None if policy is UNSET else policy_name(policy)
    held = None if holdout is UNSET else holdout_percent(holdout)
    features = None if context is UNSET else slot_context(context)
    require_tenant(db, tenant_id)
    if store.get_slot(db, tenant_id, slot_id) is None:
        new_identifier(slot_id, "slot", (r["slot_id"] for r in store.list_slots(db, tenant_id)))
    created = store.put_slot(db, tenant_id, slot_id, name, store.SlotLayout(width, height, known),
                             store.SlotLearning(half_life, chosen, held, features))
    return created, get_slot(db, tenant_id, slot_id)


def get_slot(db: Database, tenant_id: str, slot_id: str) -> dict[str, Any]:
    return _slot_document(require_slot(db, tenant_id, slot_id))


def list_slots(db: Database, tenant_id: str) -> list[dict[str, Any]]:
    require_tenant(db, tenant_id)
    return [_slot_document(r) for r in store.list_slots(db, tenant_id)]


MAX_SCHEDULE_YEAR = 9999


def schedule_time(value: Any, what: str) -> dt.datetime | None:
    """An ISO 8601 date-time with a UTC offset ('2026-12-24T00:00:00+05:30'), as UTC to the millisecond
    (what Cassandra keeps); None stays None."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise InvalidInput(f"{what} must be an ISO 8601 date-time with an offset, such as "
                           "2026-12-24T00:00:00+05:30, or null")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{what} is not an ISO 8601 date-time: {value!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise InvalidInput(f"{what} needs a UTC offset (such as +05:30 or Z): {value!r}")
    try:
        utc = parsed.astimezone(dt.UTC)
    except OverflowError:
        raise InvalidInput(f"{what} is out of range") from None
    if not 1970 <= utc.year <= MAX_SCHEDULE_YEAR:
        raise InvalidInput(f"{what} must fall between 1970 and {MAX_SCHEDULE_YEAR}")
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def put_banner(db: Database, tenant_id: str, slot_id: str, banner_id: str, *, image_url: Any,
               target_url: Any, alt: Any, active: Any, starts_at: Any = None, ends_at: Any = None,
               max_banners: int = config.default("MAX_BANNERS_PER_SLOT")) -> tuple[bool, dict[str, Any]]:
    """Create or replace a banner; a slot holds at most ``max_banners`` (paused ones count too).
    ``starts_at`` / ``ends_at``: ISO 8601 strings with an offset (or datetimes), None = unbounded.

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
        starts_at=starts_at if isinstance(starts_at, dt.datetime) else schedule_time(starts_at, "starts_at"),
        ends_at=ends_at if isinstance(ends_at, dt.datetime) else schedule_time(ends_at, "ends_at"),
    )
    if fields.starts_at is not None and fields.ends_at is not None and fields.ends_at <= fields.starts_at:
        raise InvalidInput("ends_at must be after starts_at")
    require_slot(db, tenant_id, slot_id)
    existing = {row["banner_id"] for row in store.list_banners(db, tenant_id, slot_id)}
    if banner_id not in existing:
        new_identifier(banner_id, "banner", existing)
    if banner_id not in existing and len(existing) >= max_banners:
        raise Conflict(f"slot {tenant_id}/{slot_id} already has {len(existing)} banners, the most allowed "
                       f"(MAX_BANNERS_PER_SLOT={max_banners}); replace an existing banner instead")
    created = store.put_banner(db, tenant_id, slot_id, banner_id, fields)
    return created, {"tenant": tenant_id, "slot": slot_id, **_banner_document({"banner_id": banner_id,
                                                                                **asdict(fields)})}


def _banner_document(r: dict[str, Any]) -> dict[str, Any]:
    return {"id": r["banner_id"], "image_url": r["image_url"], "target_url": r["target_url"],
            "alt": r["alt"] or "", "active": bool(r["active"]),
            "starts_at": _iso(r.get("starts_at")), "ends_at": _iso(r.get("ends_at")),
            "schedule": schedules.status(r.get("starts_at"), r.get("ends_at"), store.utcnow())}


def list_banners(db: Database, tenant_id: str, slot_id: str) -> list[dict[str, Any]]:
    require_slot(db, tenant_id, slot_id)
    return [_banner_document(r) for r in store.list_banners(db, tenant_id, slot_id)]


def get_banner(db: Database, tenant_id: str, slot_id: str, banner_id: str) -> dict[str, Any]:
    require_slot(db, tenant_id, slot_id)
    validation.identifier(banner_id, "banner")
    found = store.get_banner(db, tenant_id, slot_id, banner_id)
    if found is None:
        raise NotFound(f"unknown banner {tenant_id}/{slot_id}/{banner_id}")
    return _banner_document(found)


def set_banner_active(db: Database, tenant_id: str, slot_id: str, banner_id: str, active: bool
                      ) -> dict[str, Any]:
    """Pause (False) or resume (True) a banner; serving stops or starts choosing it within one cache
    refresh (CACHE_REFRESH_SECONDS: store.put_banner names the slot in the change feed)."""
    banner = get_banner(db, tenant_id, slot_id, banner_id)
    _, document = put_banner(db, tenant_id, slot_id, banner_id, image_url=banner["image_url"],
                             target_url=banner["target_url"], alt=banner["alt"], active=active,
                             starts_at=banner["starts_at"], ends_at=banner["ends_at"])
    return document


def get_banner_document(db: Database, tenant_id: str, slot_id: str, banner_id: str) -> dict[str, Any]:
    """A banner as the API shows it: with its tenant and slot."""
    return {"tenant": tenant_id, "slot": slot_id, **get_banner(db, tenant_id, slot_id, banner_id)}


# -- deletes: every removal goes through these (the API and the dashboard), so a change feed can be written
# in one place. Configuration goes; the event log, counters and priors stay (store.delete_* say why). A
# worker drops a deleted slot or banner at its next refresh of the slot (CACHE_REFRESH_SECONDS).

def delete_tenant(db: Database, tenant_id: str) -> None:
    require_tenant(db, tenant_id)
    store.delete_tenant(db, tenant_id)


def delete_slot(db: Database, tenant_id: str, slot_id: str) -> None:
    require_slot(db, tenant_id, slot_id)
    store.delete_slot(db, tenant_id, slot_id)


def delete_banner(db: Database, tenant_id: str, slot_id: str, banner_id: str) -> None:
    get_banner(db, tenant_id, slot_id, banner_id)
    store.delete_banner(db, tenant_id, slot_id, banner_id)


# -- tenant API keys ------------------------------------------------------------------------------------------

MAX_KEY_NAME_LENGTH = 100
MAX_KEYS_PER_TENANT = 100


def api_key_scopes(value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"scopes must be a non-empty list of: {', '.join(api_keys.SCOPES)}")
    unknown = sorted(set(value) - set(api_keys.SCOPES))
    if unknown:
        raise InvalidInput(f"unknown scope(s): {', '.join(unknown)}; scopes are {', '.join(api_keys.SCOPES)}")
    return frozenset(value)


def _api_key_document(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["key_id"], "name": row["name"],
            "scopes": [s for s in api_keys.SCOPES if s in (row["scopes"] or ())],
            "created_at": _iso(row["created_at"]), "last_used_at": _iso(row.get("last_used_at"))}


def create_api_key(db: Database, tenant_id: str, name: Any, scopes: Any) -> dict[str, Any]:
    """A new key of the tenant: its document plus ``key``, the secret, shown this once."""
    name = validation.short_text(name, "name", required=True, max_length=MAX_KEY_NAME_LENGTH)
    chosen = api_key_scopes(scopes)
    require_tenant(db, tenant_id)
    if len(store.tenant_api_key_ids(db, tenant_id)) >= MAX_KEYS_PER_TENANT:
        raise Conflict(f"tenant {tenant_id} already has {MAX_KEYS_PER_TENANT} API keys; revoke one first")
    key_id, key, hashed = api_keys.new_key()
    created_at = store.utcnow().replace(microsecond=0)
    store.put_api_key(db, tenant_id, key_id, name, chosen, hashed, created_at)
    row = {"key_id": key_id, "name": name, "scopes": chosen, "created_at": created_at}
    document = _api_key_document(row)
    del document["last_used_at"]
    return {**document, "key": key}


def list_api_keys(db: Database, tenant_id: str) -> list[dict[str, Any]]:
    require_tenant(db, tenant_id)
    return [_api_key_document(r) for r in store.list_api_keys(db, tenant_id)]


def revoke_api_key(db: Database, tenant_id: str, key_id: Any) -> None:
    """Delete the key; every server stops accepting it within API_KEY_CACHE_SECONDS."""
    require_tenant(db, tenant_id)
    row = store.get_api_key(db, key_id) if isinstance(key_id, str) and len(key_id) <= 64 else None
    if row is None or row["tenant_id"] != tenant_id:
        raise NotFound(f"unknown API key {key_id} of tenant {tenant_id}")
    store.delete_api_key(db, tenant_id, key_id)


@dataclass(frozen=True)
class BannerReport:
    id: str
    active: bool
    schedule: str             # 'scheduled', 'live' or 'ended' (webapp.serving.schedules)
    impressions: int
    clicks: int               # valid clicks, the ones learned from
    filtered_clicks: int      # stored but flagged (bots, too fast, too many)
    ctr: float
    weighted_impressions: float   # what the posterior learned from: = impressions unless the slot decays
    weighted_clicks: float
    alpha: float              # posterior Beta(alpha, beta) for the report's location
    beta: float
    posterior_mean: float
    prior: dict[str, Any]
    p_best: float             # P(this banner has the highest CTR) among active banners


CTR_INTERVAL_Z = 1.96      # the context report's 95% intervals: mean ± 1.96 sd of the model's score


def context_report(db: Database, slot: dict[str, Any], banners: list[dict[str, Any]],
                   priors: dict[str, dict[str, BetaPrior]]) -> dict[str, Any]:
    """A contextual slot's model as serving builds it (bandits/contextual.py): its features, and per banner
    the estimated CTR at each fitted level of each feature (the other features at ``other``) with a 95%
    interval — the dashboard's banner × level table. Cumulative counts per cell (context_counts)."""
    cells: dict[str, dict[str, tuple[int, int]]] = {}
    for row in store.context_counts(db, slot["tenant_id"], slot["slot_id"]):
        cells.setdefault(row["cell"], {})[row["banner_id"]] = (int(row["impressions"] or 0),
                                                               int(row["clicks"] or 0))
    arms = tuple(b["banner_id"] for b in banners)
    features = tuple(f for f in slot.get("context") or () if f in contextual.FEATURES)
    model = contextual.ContextualThompson(arms, SlotStatistics(priors=priors, context_features=features,
                                                               context_counts=cells))
    by_banner = {}
    for arm, banner_id in enumerate(arms):
        levels = {}
        for level, (mean, sd) in model.level_rates(arm).items():
            levels[level] = {"ctr": round(mean, 6), "low": round(max(0.0, mean - CTR_INTERVAL_Z * sd), 6),
                             "high": round(min(1.0, mean + CTR_INTERVAL_Z * sd), 6)}
        by_banner[banner_id] = levels
    return {"features": list(model.features), "levels": list(model.feature_names), "by_banner": by_banner}


def snapshot_rng(tenant_id: str, slot_id: str, location: str, banner_ids: list[str], alpha: np.ndarray,
                 beta: np.ndarray) -> np.random.Generator:
    """A generator seeded by the posterior snapshot itself: every report of the same posteriors (the API, the
    results page, the CSV, in any process and order) draws the same P(best); it changes only when the
    posteriors do. Shapes: alpha, beta (K,) for banner_ids (K)."""
    snapshot = json.dumps([tenant_id, slot_id, location, banner_ids, [float(a).hex() for a in alpha],
                           [float(b).hex() for b in beta]], separators=(",", ":"))
    return np.random.default_rng(int.from_bytes(hashlib.sha256(snapshot.encode()).digest()[:16], "big"))


def slot_report(db: Database, tenant_id: str, slot_id: str, location: str,
                rng: np.random.Generator | None = None) -> dict[str, Any]:
    """Per banner of a slot, for one location ('' = slot-wide): counts, posterior and P(best).

    The posterior is Beta(α0 + clicks, β0 + impressions − clicks), with (α0, β0) the location's prior, else
    the slot-wide prior, else Beta(1, 1) — the same rule serving uses for a known location. A slot with a
    decay half-life uses the time-decayed counts (webapp.learning.decay) as serving does; impressions and clicks stay
    the cumulative counts.

    P(best) is a Monte Carlo estimate over P_BEST_DRAWS joint draws (standard error at most
    0.5 / sqrt(P_BEST_DRAWS) ≈ 0.0035), drawn with :func:`snapshot_rng` unless ``rng`` is given: the same
    posteriors give the same P(best) in every report.
    """
    slot = require_slot(db, tenant_id, slot_id)
    half_life = slot.get("decay_half_life_hours") or None
    banners = store.list_banners(db, tenant_id, slot_id)
    rows = store.slot_counts(db, tenant_id, slot_id, location)
    counts = {r["banner_id"]: (int(r["impressions"] or 0), int(r["clicks"] or 0)) for r in rows}
    filtered = {r["banner_id"]: int(r["filtered_clicks"] or 0) for r in rows}
    learned: dict[str, tuple[float, float]] = dict(counts)
    if half_life:
        learned = dict(decay.read_decayed_counts(db, tenant_id, slot_id, half_life).get(location, {}))
    priors: dict[str, dict[str, BetaPrior]] = {}
    for r in store.slot_priors(db, tenant_id, slot_id):
        priors.setdefault(r["location"], {})[r["banner_id"]] = BetaPrior(
            r["alpha"], r["beta"], "location" if r["location"] else "slot")
    chosen = [prior_for(priors, location, b["banner_id"]) for b in banners]
    observed = np.array([learned.get(b["banner_id"], (0, 0)) for b in banners], dtype=np.float64)
    observed = observed.reshape(len(banners), 2)
    alpha, beta = beta_posterior([p.alpha for p in chosen], [p.beta for p in chosen],
                                 observed[:, 0], observed[:, 1])
    now = store.utcnow()
    status = [schedules.status(b.get("starts_at"), b.get("ends_at"), now) for b in banners]
    # P(best) among the banners served now: active and inside their schedule
    active = np.array([bool(b["active"]) and status[i] == schedules.LIVE for i, b in enumerate(banners)],
                      dtype=bool)
    p_best = np.zeros(len(banners))
    if active.any():
        if rng is None:
            rng = snapshot_rng(tenant_id, slot_id, location, [b["banner_id"] for b in banners], alpha, beta)
        p_best[active] = win_probabilities(alpha[active], beta[active], rng, P_BEST_DRAWS)
    reports = []
    for i, banner in enumerate(banners):
        impressions, clicks = counts.get(banner["banner_id"], (0, 0))
        reports.append(asdict(BannerReport(
            id=banner["banner_id"], active=bool(banner["active"]),
            schedule=status[i],
            impressions=impressions, clicks=clicks,
            filtered_clicks=filtered.get(banner["banner_id"], 0),
            ctr=clicks / impressions if impressions else 0.0,
            weighted_impressions=float(observed[i, 0]), weighted_clicks=float(observed[i, 1]),
            alpha=float(alpha[i]), beta=float(beta[i]),
            posterior_mean=float(alpha[i] / (alpha[i] + beta[i])),
            prior={"alpha": chosen[i].alpha, "beta": chosen[i].beta, "source": chosen[i].source},
            p_best=round(float(p_best[i]), 4),
        )))
    policy = slot.get("policy") or DEFAULT_POLICY
    return {"tenant": tenant_id, "slot": slot_id, "location": location, "decay_half_life_hours": half_life,
            "policy": policy,
            "context": context_report(db, slot, banners, priors) if policy == contextual.ContextualThompson.name
            else None,
            "banners": reports,
            "locations": store.known_locations(db, tenant_id, slot_id),
            "filtered_clicks_by_reason": store.filtered_reasons(db, tenant_id, slot_id)}


# -- reports for the dashboard ------------------------------------------------------------------------------

def credible_interval(alpha: np.ndarray, beta: np.ndarray, mass: float = CREDIBLE_MASS
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed interval of Beta(alpha, beta): the (1−mass)/2 and (1+mass)/2 quantiles; shapes (K,)."""
    from scipy import stats  # here, not at the top: serving workers need not pay its second of import

    tail = (1.0 - mass) / 2.0
    return stats.beta.ppf(tail, alpha, beta), stats.beta.ppf(1.0 - tail, alpha, beta)


def slot_results(db: Database, tenant_id: str, slot_id: str, location: str,
                 rng: np.random.Generator | None = None) -> dict[str, Any]:
    """:func:`slot_report` plus what the results page shows: the 95% credible interval of each banner's
    CTR, the winner (P(best) ≥ WINNER_P_BEST), the slot's configured and observed locations."""
    report = slot_report(db, tenant_id, slot_id, location, rng)
    slot = get_slot(db, tenant_id, slot_id)
    banners = {b["id"]: b for b in list_banners(db, tenant_id, slot_id)}
    rows = report["banners"]
    if rows:
        low, high = credible_interval(np.array([r["alpha"] for r in rows]), np.array([r["beta"] for r in rows]))
    for i, row in enumerate(rows):
        row["ci_low"], row["ci_high"] = float(low[i]), float(high[i])
        row["winner"] = row["active"] and row["p_best"] >= WINNER_P_BEST
        row["alt"] = banners[row["id"]]["alt"]
        row["image_url"] = banners[row["id"]]["image_url"]
    report["winner"] = next((r["id"] for r in rows if r["winner"]), None)
    report["locations"] = sorted(set(report["locations"]) | set(slot["locations"]))
    report["slot"] = slot
    return report


def posterior_densities(rows: list[dict[str, Any]], points: int = 201) -> dict[str, Any]:
    """Beta pdf of each banner's posterior CTR on one grid 0..x_max, where x_max covers 99.9% of every
    posterior: {"x": [points], "banners": {id: [points]}}."""
    from scipy import stats

    if not rows:
        return {"x": [], "banners": {}}
    alpha = np.array([r["alpha"] for r in rows])
    beta = np.array([r["beta"] for r in rows])
    x_max = float(min(1.0, max(stats.beta.ppf(0.9995, alpha, beta).max() * 1.05, 1e-3)))
    x = np.linspace(0.0, x_max, points)
    return {"x": [round(float(v), 6) for v in x],
            "banners": {r["id"]: [round(float(v), 4) for v in stats.beta.pdf(x, r["alpha"], r["beta"])]
                        for r in rows}}


def traffic_series(db: Database, tenant_id: str, slot_id: str, location: str, hours: int,
                   now: dt.datetime | None = None) -> dict[str, Any]:
    """Hourly impressions, clicks, CTR and share of traffic per banner over the last ``hours`` whole hours
    of the tenant's time zone (the current hour included), from traffic_counts.

    Reads only the UTC-day partitions that overlap the range. CTR of an hour = clicks of the impressions
    served that hour / impressions (None with no impressions); share = banner's impressions / all.
    """
    tenant = require_tenant(db, tenant_id)
    require_slot(db, tenant_id, slot_id)
    zone = ZoneInfo(tenant["timezone"] or "UTC")
    now = (now or store.utcnow()).astimezone(zone)
    hour = dt.timedelta(hours=1)
    end = (now.replace(minute=0, second=0, microsecond=0) + hour).astimezone(dt.UTC)
    start = end - hours * hour
    banner_ids = sorted(b["id"] for b in list_banners(db, tenant_id, slot_id))
    rows = [r for r in store.traffic(db, tenant_id, slot_id, location, start, end)
            if r["banner_id"] in banner_ids]              # a deleted banner's traffic stays in the log only
    index = {b: i for i, b in enumerate(banner_ids)}
    impressions = np.zeros((len(banner_ids), hours), dtype=np.int64)
    clicks = np.zeros_like(impressions)
    for row in rows:
        bucket = row["bucket"].replace(tzinfo=dt.UTC)
        h = int((bucket - start) // hour)
        impressions[index[row["banner_id"]], h] += int(row["impressions"] or 0)
        clicks[index[row["banner_id"]], h] += int(row["clicks"] or 0)
    total = impressions.sum(axis=0)
    last_day = slice(max(0, hours - 24), hours)
    last_day_total = int(total[last_day].sum())
    series = {}
    for b, i in index.items():
        series[b] = {
            "impressions": impressions[i].tolist(),
            "clicks": clicks[i].tolist(),
            "ctr": [round(c / n, 5) if n else None for c, n in zip(clicks[i].tolist(), impressions[i].tolist())],
            "share": [round(n / t, 4) if t else None for n, t in zip(impressions[i].tolist(), total.tolist())],
            "share_last_24h": (int(impressions[i, last_day].sum()) / last_day_total) if last_day_total else None,
        }
    labels = [(start + k * hour).astimezone(zone).strftime("%d %b %H:%M") for k in range(hours)]
    return {"timezone": str(zone), "start": start.isoformat(), "end": end.isoformat(), "hours": hours,
            "labels": labels, "banners": series}


CSV_COLUMNS = ["scope", "location", "banner", "active", "impressions", "clicks", "filtered_clicks", "ctr",
               "prior_alpha", "prior_beta", "prior_source", "posterior_alpha", "posterior_beta", "posterior_mean",
               "ci95_low", "ci95_high", "p_best"]


def results_table(db: Database, tenant_id: str, slot_id: str, rng: np.random.Generator | None = None
                  ) -> list[list[Any]]:
    """One row per (location, banner) with counts, the slot-wide rows (scope 'slot', location '') first, with
    the posterior and P(best) for that location as :func:`slot_report` computes them; columns CSV_COLUMNS."""
    require_slot(db, tenant_id, slot_id)
    locations = sorted({r["location"] for r in store.slot_counts_by_location(db, tenant_id, slot_id)}
                       | {SLOT_WIDE})
    table = []
    for location in locations:
        report = slot_report(db, tenant_id, slot_id, location, rng)
        rows = report["banners"]
        if not rows:
            continue
        low, high = credible_interval(np.array([r["alpha"] for r in rows]), np.array([r["beta"] for r in rows]))
        for i, r in enumerate(rows):
            prior = r["prior"]
            table.append(["location" if location else "slot", location, r["id"], r["active"], r["impressions"],
                          r["clicks"], r["filtered_clicks"], round(r["ctr"], 6), prior["alpha"], prior["beta"],
                          prior["source"], r["alpha"], r["beta"], round(r["posterior_mean"], 6),
                          round(float(low[i]), 6), round(float(high[i]), 6), r["p_best"]])
    return table
