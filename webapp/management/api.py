"""Management JSON API (bearer token): tenants, slots, banners, and per-slot statistics."""

from __future__ import annotations

import hmac

import numpy as np
from flask import Blueprint, current_app, jsonify, request

from webapp.management import services
from webapp.web import validation
from webapp.web.errors import Unauthorized

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
    return validation.json_body(request, allowed)


def _put_result(result: tuple[bool, dict]):
    created, document = result
    return jsonify(document), 201 if created else 200


@bp.put("/tenants/<tenant>")
def put_tenant(tenant: str):
    """Create or replace a tenant.
    ---
    put:
      summary: Create (201) or replace (200) a tenant
      tags: [management]
      parameters:
        - tenant
      requestBody:
        required: true
        content:
          application/json:
            schema: TenantBody
      responses:
        200: {description: replaced, content: {application/json: {schema: Tenant}}}
        201: {description: created, content: {application/json: {schema: Tenant}}}
        400: BadRequest
        401: Unauthorized
        404: NotFound
        413: PayloadTooLarge
    """
    body = _body({"name", "timezone", "click_filter", "allowed_origins"})
    # allowed_origins left out: kept as stored; null or []: any origin.
    origins = body.get("allowed_origins", None) if "allowed_origins" in body else None
    if "allowed_origins" in body and origins is None:
        origins = []
    return _put_result(services.put_tenant(_db(), tenant, body.get("name"), body.get("timezone"),
                                           current_app.config["DEFAULT_TIMEZONE"], body.get("click_filter"),
                                           origins))


@bp.get("/tenants/<tenant>")
def get_tenant(tenant: str):
    """A tenant.
    ---
    get:
      summary: Read a tenant
      tags: [management]
      parameters:
        - tenant
      responses:
        200: {description: the tenant, content: {application/json: {schema: Tenant}}}
        400: BadRequest
        401: Unauthorized
        404: NotFound
    """
    found = services.require_tenant(_db(), tenant)
    return jsonify(services.tenant_document(tenant, found["name"], found["timezone"], found["click_filter"],
                                            found.get("allowed_origins")))


@bp.put("/tenants/<tenant>/slots/<slot>")
def put_slot(tenant: str, slot: str):
    """Create or replace a slot of a tenant.
    ---
    put:
      summary: Create (201) or replace (200) a banner slot
      tags: [management]
      parameters:
        - tenant
        - slot
      requestBody:
        required: true
        content:
          application/json:
            schema: SlotBody
      responses:
        200: {description: replaced, content: {application/json: {schema: Slot}}}
        201: {description: created, content: {application/json: {schema: Slot}}}
        400: BadRequest
        401: Unauthorized
        404: NotFound
        413: PayloadTooLarge
    """
    body = _body({"name", "size", "locations", "decay_half_life_hours", "policy"})
    return _put_result(services.put_slot(_db(), tenant, slot, body.get("name"), size=body.get("size"),
                                         locations=body.get("locations"),
                                         max_location_length=current_app.config["MAX_PARAM_LENGTH"],
                                         decay_half_life_hours=body.get("decay_half_life_hours",
                                                                        services.UNSET),
                                         policy=body.get("policy", services.UNSET)))


@bp.put("/tenants/<tenant>/slots/<slot>/banners/<banner>")
def put_banner(tenant: str, slot: str, banner: str):
    """Create or replace a banner of a slot.
    ---
    put:
      summary: Create (201) or replace (200) a banner; a slot holds at most MAX_BANNERS_PER_SLOT
      tags: [management]
      parameters:
        - tenant
        - slot
        - banner
      requestBody:
        required: true
        content:
          application/json:
            schema: BannerBody
      responses:
        200: {description: replaced, content: {application/json: {schema: Banner}}}
        201: {description: created, content: {application/json: {schema: Banner}}}
        400: BadRequest
        401: Unauthorized
        404: NotFound
        409: Conflict
        413: PayloadTooLarge
    """
    body = _body({"image_url", "target_url", "alt", "active"})
    return _put_result(services.put_banner(
        _db(), tenant, slot, banner, image_url=body.get("image_url"), target_url=body.get("target_url"),
        alt=body.get("alt"), active=body.get("active"),
        max_banners=current_app.config["MAX_BANNERS_PER_SLOT"]))


@bp.get("/tenants/<tenant>/slots/<slot>/banners")
def list_banners(tenant: str, slot: str):
    """The banners of a slot.
    ---
    get:
      summary: List a slot's banners
      tags: [management]
      parameters:
        - tenant
        - slot
      responses:
        200: {description: the banners, content: {application/json: {schema: BannerList}}}
        400: BadRequest
        401: Unauthorized
        404: NotFound
    """
    return jsonify(banners=services.list_banners(_db(), tenant, slot))


@bp.get("/tenants/<tenant>/slots/<slot>/stats")
def slot_stats(tenant: str, slot: str):
    """Per banner: counts, CTR, the posterior Beta(alpha, beta) for the location, P(best).
    ---
    get:
      summary: Statistics of a slot for a location (slot-wide without one)
      tags: [management]
      parameters:
        - tenant
        - slot
        - location
      responses:
        200: {description: per banner counts and posteriors, content: {application/json: {schema: SlotStats}}}
        400: BadRequest
        401: Unauthorized
        404: NotFound
    """
    location = validation.normalize_location(request.args.get("location"),
                                              current_app.config["MAX_PARAM_LENGTH"])
    rng = np.random.default_rng(current_app.config["RANDOM_SEED"])
    return jsonify(services.slot_report(_db(), tenant, slot, location, rng))
