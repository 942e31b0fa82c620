"""Management JSON API (bearer token): tenants, slots, banners, and per-slot statistics."""

from __future__ import annotations

import hmac

import numpy as np
from flask import Blueprint, current_app, jsonify, request

from webapp import services, validation
from webapp.errors import Unauthorized

bp = Blueprint("api", __name__, url_prefix="/v1/admin")


def _db():
    return current_app.extensions["cassandra"]


@bp.before_request
def require_token() -> None:
    expected = current_app.config["ADMIN_API_TOKEN"]
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not expected:
        raise Unauthorized("the management API is disabled: set ADMIN_API_TOKEN")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <ADMIN_API_TOKEN>'")
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Unauthorized("wrong bearer token")


def _body(allowed: set[str]) -> dict:
    return validation.json_object(request.get_json(silent=True), allowed)


def _put_result(result: tuple[bool, dict]):
    created, document = result
    return jsonify(document), 201 if created else 200


@bp.put("/tenants/<tenant>")
def put_tenant(tenant: str):
    body = _body({"name", "timezone", "click_filter"})
    return _put_result(services.put_tenant(_db(), tenant, body.get("name"), body.get("timezone"),
                                           current_app.config["DEFAULT_TIMEZONE"], body.get("click_filter")))


@bp.get("/tenants/<tenant>")
def get_tenant(tenant: str):
    found = services.require_tenant(_db(), tenant)
    return jsonify(services.tenant_document(tenant, found["name"], found["timezone"], found["click_filter"]))


@bp.put("/tenants/<tenant>/slots/<slot>")
def put_slot(tenant: str, slot: str):
    body = _body({"name", "size", "locations"})
    return _put_result(services.put_slot(_db(), tenant, slot, body.get("name"), size=body.get("size"),
                                         locations=body.get("locations"),
                                         max_location_length=current_app.config["MAX_PARAM_LENGTH"]))


@bp.put("/tenants/<tenant>/slots/<slot>/banners/<banner>")
def put_banner(tenant: str, slot: str, banner: str):
    body = _body({"image_url", "target_url", "alt", "active"})
    return _put_result(services.put_banner(
        _db(), tenant, slot, banner, image_url=body.get("image_url"), target_url=body.get("target_url"),
        alt=body.get("alt"), active=body.get("active")))


@bp.get("/tenants/<tenant>/slots/<slot>/banners")
def list_banners(tenant: str, slot: str):
    return jsonify(banners=services.list_banners(_db(), tenant, slot))


@bp.get("/tenants/<tenant>/slots/<slot>/stats")
def slot_stats(tenant: str, slot: str):
    """Per banner: counts, CTR, the posterior Beta(alpha, beta) for the location, P(best)."""
    location = validation.normalize_location(request.args.get("location"),
                                              current_app.config["MAX_PARAM_LENGTH"])
    rng = np.random.default_rng(current_app.config["RANDOM_SEED"])
    return jsonify(services.slot_report(_db(), tenant, slot, location, rng))
