"""Management JSON API (bearer token): tenants, slots, banners, and per-slot statistics."""

from __future__ import annotations

import hmac

import numpy as np
from flask import Blueprint, current_app, jsonify, request

from webapp import store, validation
from webapp.bandits import UNIFORM_PRIOR, BetaPrior, beta_posterior, win_probabilities
from webapp.errors import NotFound, Unauthorized
from webapp.events import SLOT_WIDE

bp = Blueprint("api", __name__, url_prefix="/v1/admin")

P_BEST_DRAWS = 20_000


def _db():
    return current_app.extensions["cassandra"]


@bp.before_request
def require_token() -> None:
    expected = current_app.config["ADMIN_API_TOKEN"]
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if not expected:
        raise Unauthorized("the management API is disabled: set ADMIN_API_TOKEN")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <ADMIN_API_TOKEN>'")
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Unauthorized("wrong bearer token")


def _body(allowed: set[str]) -> dict:
    return validation.json_object(request.get_json(silent=True), allowed)


def _created(created: bool, document: dict):
    return jsonify(document), 201 if created else 200


def _require_tenant(tenant: str) -> dict:
    found = store.get_tenant(_db(), tenant)
    if found is None:
        raise NotFound(f"unknown tenant {tenant}")
    return found


def _require_slot(tenant: str, slot: str) -> dict:
    _require_tenant(tenant)
    found = store.get_slot(_db(), tenant, slot)
    if found is None:
        raise NotFound(f"unknown slot {tenant}/{slot}")
    return found


@bp.put("/tenants/<tenant>")
def put_tenant(tenant: str):
    validation.identifier(tenant, "tenant")
    body = _body({"name", "timezone"})
    name = validation.short_text(body.get("name"), "name", required=True)
    timezone = validation.timezone(body.get("timezone"), current_app.config["DEFAULT_TIMEZONE"])
    created = store.put_tenant(_db(), tenant, name, timezone)
    return _created(created, {"id": tenant, "name": name, "timezone": timezone})


@bp.get("/tenants/<tenant>")
def get_tenant(tenant: str):
    validation.identifier(tenant, "tenant")
    found = _require_tenant(tenant)
    return jsonify(id=tenant, name=found["name"], timezone=found["timezone"])


@bp.put("/tenants/<tenant>/slots/<slot>")
def put_slot(tenant: str, slot: str):
    validation.identifier(tenant, "tenant")
    validation.identifier(slot, "slot")
    body = _body({"name"})
    name = validation.short_text(body.get("name"), "name", required=True)
    _require_tenant(tenant)
    created = store.put_slot(_db(), tenant, slot, name)
    return _created(created, {"tenant": tenant, "id": slot, "name": name})


@bp.put("/tenants/<tenant>/slots/<slot>/banners/<banner>")
def put_banner(tenant: str, slot: str, banner: str):
    for value, what in ((tenant, "tenant"), (slot, "slot"), (banner, "banner")):
        validation.identifier(value, what)
    body = _body({"image_url", "target_url", "alt", "active"})
    fields = store.BannerFields(
        image_url=validation.http_url(body.get("image_url"), "image_url"),
        target_url=validation.http_url(body.get("target_url"), "target_url"),
        alt=validation.short_text(body.get("alt"), "alt", required=False),
        active=validation.boolean(body.get("active"), "active", default=True),
    )
    _require_slot(tenant, slot)
    created = store.put_banner(_db(), tenant, slot, banner, fields)
    return _created(created, {"tenant": tenant, "slot": slot, "id": banner, "image_url": fields.image_url,
                              "target_url": fields.target_url, "alt": fields.alt, "active": fields.active})


@bp.get("/tenants/<tenant>/slots/<slot>/banners")
def list_banners(tenant: str, slot: str):
    validation.identifier(tenant, "tenant")
    validation.identifier(slot, "slot")
    _require_slot(tenant, slot)
    rows = store.list_banners(_db(), tenant, slot)
    return jsonify(banners=[{"id": r["banner_id"], "image_url": r["image_url"], "target_url": r["target_url"],
                             "alt": r["alt"], "active": bool(r["active"])} for r in rows])


@bp.get("/tenants/<tenant>/slots/<slot>/stats")
def slot_stats(tenant: str, slot: str):
    """Per banner: counts, CTR, the posterior Beta(alpha, beta) for the location, P(best)."""
    validation.identifier(tenant, "tenant")
    validation.identifier(slot, "slot")
    location = validation.normalize_location(request.args.get("location"),
                                              current_app.config["MAX_PARAM_LENGTH"])
    _require_slot(tenant, slot)
    db = _db()
    banners = store.list_banners(db, tenant, slot)
    counts = {r["banner_id"]: (int(r["impressions"] or 0), int(r["clicks"] or 0))
              for r in store.slot_counts(db, tenant, slot, location)}
    priors: dict[str, dict[str, BetaPrior]] = {}
    for r in store.slot_priors(db, tenant, slot):
        priors.setdefault(r["location"], {})[r["banner_id"]] = BetaPrior(r["alpha"], r["beta"], r["source"])
    chosen = [priors.get(location, {}).get(b["banner_id"]) if location else None for b in banners]
    chosen = [c or priors.get(SLOT_WIDE, {}).get(b["banner_id"]) or UNIFORM_PRIOR
              for c, b in zip(chosen, banners)]
    observed = np.array([counts.get(b["banner_id"], (0, 0)) for b in banners], dtype=np.float64)
    observed = observed.reshape(len(banners), 2)
    alpha, beta = beta_posterior([p.alpha for p in chosen], [p.beta for p in chosen],
                                 observed[:, 0], observed[:, 1])
    active = np.array([bool(b["active"]) for b in banners])
    p_best = np.zeros(len(banners))
    if active.any():
        rng = np.random.default_rng(current_app.config["RANDOM_SEED"])
        p_best[active] = win_probabilities(alpha[active], beta[active], rng, P_BEST_DRAWS)
    result = []
    for i, banner in enumerate(banners):
        impressions, clicks = (int(x) for x in observed[i])
        result.append({
            "id": banner["banner_id"], "active": bool(banner["active"]),
            "impressions": impressions, "clicks": clicks,
            "ctr": clicks / impressions if impressions else 0.0,
            "alpha": float(alpha[i]), "beta": float(beta[i]),
            "posterior_mean": float(alpha[i] / (alpha[i] + beta[i])),
            "prior": {"alpha": chosen[i].alpha, "beta": chosen[i].beta, "source": chosen[i].source},
            "p_best": round(float(p_best[i]), 4),
        })
    return jsonify(tenant=tenant, slot=slot, location=location, banners=result,
                   locations=store.known_locations(db, tenant, slot))
