"""Management JSON API: tenants, slots, banners, API keys and per-slot statistics.

Who may do what is decided in one place, :func:`authorize`, before every view: the caller is the platform
token or a tenant API key (webapp.web.api_keys); a tenant key works only under its own tenant (another
tenant's paths → 403), with scope ``read`` for GETs and ``write`` for changes; a view marked
:func:`platform_only` (creating, deleting or listing tenants) needs the platform token.

One update rule for every resource: PUT replaces the whole resource (a field left out takes its documented
default, and the answer shows it), PATCH (a JSON merge patch, RFC 7386) changes only the fields sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, current_app, g, jsonify, request
from marshmallow import Schema

from webapp.management import lift, referrers, schemas, services
from webapp.web import api_keys, validation
from webapp.web.errors import Forbidden

bp = Blueprint("api", __name__, url_prefix="/v1/admin")
View = TypeVar("View", bound=Callable)

# What a PUT stores for a field it leaves out, where the service would otherwise keep the stored value.
SLOT_DEFAULTS: dict[str, Any] = {"size": "728x250", "locations": [], "decay_half_life_hours": None,
                                 "policy": None, "holdout_percent": None, "context": None}


def _db():
    return current_app.extensions["cassandra"]


def platform_only(view: View) -> View:
    """Mark a view as for the platform token only (enforced by :func:`authorize`)."""
    view.platform_only = True  # type: ignore[attr-defined]
    return view


@bp.before_request
def authorize() -> None:
    """Authenticate the caller and apply the access rule (module doc); the principal is ``g.principal``."""
    principal = api_keys.authenticate(request)
    assert principal is not None
    g.principal = principal
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, "platform_only", False):
        principal.require("write", None)
        return
    tenant = (request.view_args or {}).get("tenant")
    principal.require("read" if request.method in ("GET", "HEAD") else "write", tenant)


def _body(allowed: set[str]) -> dict:
    return validation.json_body(request, allowed)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 §2, as written there: objects merge recursively, null removes a member, anything else
    replaces. (Eight lines; the PyPI implementations are unmaintained.)"""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


def _update_body(schema: type[Schema], current: Callable[[], dict[str, Any]],
                 defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The full body a PUT or PATCH stands for, over the fields of ``schema`` (the resource's body schema):
    PUT: the body, with ``defaults`` for fields left out; PATCH: the current document merged with the patch
    (so a field the patch does not name keeps its value, and a null takes it back to its default)."""
    allowed = set(schema._declared_fields)
    if request.method == "PATCH":
        patch = _body(allowed)
        stored = {name: value for name, value in current().items() if name in allowed}
        return {**(defaults or {}), **merge_patch(stored, patch)}     # a member the patch nulled: default
    return {**(defaults or {}), **_body(allowed)}


def _put_result(result: tuple[bool, dict]):
    created, document = result
    return jsonify(document), 201 if created else 200


@bp.get("/tenants")
@platform_only
def list_tenants():
    """Every tenant (platform token only).
    ---
    get:
      summary: List every tenant (platform token only)
      tags: [management]
      responses:
        200: {description: the tenants, content: {application/json: {schema: TenantList}}}
        401: Unauthorized
        403: Forbidden
    """
    return jsonify(tenants=[services.tenant_document(r["tenant_id"], r["name"], r["timezone"], r["click_filter"],
                                                     r.get("allowed_origins"))
                            for r in services.store.list_tenants(_db())])


@bp.put("/tenants/<tenant>")
@bp.patch("/tenants/<tenant>")
def put_tenant(tenant: str):
    """Create or replace a tenant; PATCH changes only the fields sent.
    ---
    put:
      summary: Create (201, platform token only) or replace (200) a tenant
      description: Replaces the whole tenant; `timezone` left out is Asia/Kolkata (DEFAULT_TIMEZONE),
        `click_filter` left out is the default filter.
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
        403: Forbidden
        404: NotFound
        413: PayloadTooLarge
    patch:
      summary: Change the fields sent (JSON merge patch, RFC 7386; null = back to the default)
      tags: [management]
      parameters:
        - tenant
      requestBody:
        required: true
        content:
          application/merge-patch+json:
            schema: TenantPatch
          application/json:
            schema: TenantPatch
      responses:
        200: {description: changed, content: {application/json: {schema: Tenant}}}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
        409: Conflict
        413: PayloadTooLarge
    """
    body = _update_body(schemas.TenantBody, lambda: services.get_tenant(_db(), tenant))
    if not g.principal.is_platform and services.store.get_tenant(_db(), tenant) is None:
        raise Forbidden("only the platform token may create a tenant")
    origins = body.get("allowed_origins") or []        # left out of a PUT, or null: any origin
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
        403: Forbidden
        404: NotFound
    """
    return jsonify(services.get_tenant(_db(), tenant))


@bp.delete("/tenants/<tenant>")
@platform_only
def delete_tenant(tenant: str):
    """Delete a tenant (platform token only).
    ---
    delete:
      summary: Delete a tenant with its slots, banners and API keys (platform token only)
      description: The configuration goes; the event log stays. Serving stops within seconds.
      tags: [management]
      parameters:
        - tenant
      responses:
        204: {description: deleted}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
    """
    services.delete_tenant(_db(), tenant)
    return "", 204


@bp.get("/tenants/<tenant>/slots")
def list_slots(tenant: str):
    """The slots of a tenant.
    ---
    get:
      summary: List a tenant's slots
      tags: [management]
      parameters:
        - tenant
      responses:
        200: {description: the slots, content: {application/json: {schema: SlotList}}}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
    """
    return jsonify(slots=services.list_slots(_db(), tenant))


@bp.get("/tenants/<tenant>/slots/<slot>")
def get_slot(tenant: str, slot: str):
    """A slot.
    ---
    get:
      summary: Read a slot
      tags: [management]
      parameters:
        - tenant
        - slot
      responses:
        200: {description: the slot, content: {application/json: {schema: Slot}}}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
    """
    return jsonify(services.get_slot(_db(), tenant, slot))


@bp.delete("/tenants/<tenant>/slots/<slot>")
def delete_slot(tenant: str, slot: str):
    """Delete a slot.
    ---
    delete:
      summary: Delete a slot with its banners
      description: The configuration goes; the event log stays. Serving stops within seconds.
      tags: [management]
      parameters:
        - tenant
        - slot
      responses:
        204: {description: deleted}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
    """
    services.delete_slot(_db(), tenant, slot)
    return "", 204


@bp.get("/tenants/<tenant>/slots/<slot>/banners/<banner>")
def get_banner(tenant: str, slot: str, banner: str):
    """A banner.
    ---
    get:
      summary: Read a banner
      tags: [management]
      parameters:
        - tenant
        - slot
        - banner
      responses:
        200: {description: the banner, content: {application/json: {schema: Banner}}}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
    """
    return jsonify(services.get_banner_document(_db(), tenant, slot, banner))


@bp.delete("/tenants/<tenant>/slots/<slot>/banners/<banner>")
def delete_banner(tenant: str, slot: str, banner: str):
    """Delete a banner.
    ---
    delete:
      summary: Delete a banner
      description: Never served again once each worker re-reads the slot (within CACHE_REFRESH_SECONDS);
        a click token issued before is then refused (404) and recorded nowhere. The event log stays.
      tags: [management]
      parameters:
        - tenant
        - slot
        - banner
      responses:
        204: {description: deleted}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
    """
    services.delete_banner(_db(), tenant, slot, banner)
    return "", 204


@bp.post("/tenants/<tenant>/api-keys")
def create_api_key(tenant: str):
    """Create an API key of a tenant; the key is in this answer only.
    ---
    post:
      summary: Create a tenant API key (the key is shown once)
      description: A tenant key with the write scope may create keys with its own scopes only.
      tags: [management]
      parameters:
        - tenant
      requestBody:
        required: true
        content:
          application/json:
            schema: ApiKeyBody
      responses:
        201: {description: created, content: {application/json: {schema: NewApiKey}}}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
        409: Conflict
        413: PayloadTooLarge
    """
    body = _body({"name", "scopes"})
    scopes = body.get("scopes")
    if not g.principal.is_platform and isinstance(scopes, list) and not set(scopes) <= g.principal.scopes:
        raise Forbidden("an API key can create keys with its own scopes only")
    return jsonify(services.create_api_key(_db(), tenant, body.get("name"), scopes)), 201


@bp.get("/tenants/<tenant>/api-keys")
def list_api_keys(tenant: str):
    """The API keys of a tenant (never their secrets).
    ---
    get:
      summary: List a tenant's API keys (without the secrets)
      tags: [management]
      parameters:
        - tenant
      responses:
        200: {description: the keys, content: {application/json: {schema: ApiKeyList}}}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
    """
    return jsonify(api_keys=services.list_api_keys(_db(), tenant))


@bp.delete("/tenants/<tenant>/api-keys/<key_id>")
def revoke_api_key(tenant: str, key_id: str):
    """Revoke an API key.
    ---
    delete:
      summary: Revoke a tenant API key (refused on every server within API_KEY_CACHE_SECONDS)
      tags: [management]
      parameters:
        - tenant
        - key_id
      responses:
        204: {description: revoked}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
    """
    services.revoke_api_key(_db(), tenant, key_id)
    api_keys.forget(current_app._get_current_object(), key_id)  # type: ignore[attr-defined]
    return "", 204


@bp.put("/tenants/<tenant>/slots/<slot>")
@bp.patch("/tenants/<tenant>/slots/<slot>")
def put_slot(tenant: str, slot: str):
    """Create or replace a slot of a tenant; PATCH changes only the fields sent.
    ---
    put:
      summary: Create (201) or replace (200) a banner slot
      description: Replaces the whole slot; fields left out take their defaults (size 728x250, no known
        locations, no decay, the default policy).
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
        403: Forbidden
        404: NotFound
        413: PayloadTooLarge
    patch:
      summary: Change the fields sent (JSON merge patch, RFC 7386; null = back to the default)
      tags: [management]
      parameters:
        - tenant
        - slot
      requestBody:
        required: true
        content:
          application/merge-patch+json:
            schema: SlotPatch
          application/json:
            schema: SlotPatch
      responses:
        200: {description: changed, content: {application/json: {schema: Slot}}}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
        409: Conflict
        413: PayloadTooLarge
    """
    body = _update_body(schemas.SlotBody, lambda: services.get_slot(_db(), tenant, slot), SLOT_DEFAULTS)
    return _put_result(services.put_slot(_db(), tenant, slot, body.get("name"), size=body.get("size"),
                                         locations=body.get("locations"),
                                         max_location_length=current_app.config["MAX_PARAM_LENGTH"],
                                         decay_half_life_hours=body.get("decay_half_life_hours",
                                                                        services.UNSET),
                                         policy=body.get("policy", services.UNSET),
                                         holdout=body.get("holdout_percent", services.UNSET),
                                         context=body.get("context", services.UNSET)))


@bp.put("/tenants/<tenant>/slots/<slot>/banners/<banner>")
@bp.patch("/tenants/<tenant>/slots/<slot>/banners/<banner>")
def put_banner(tenant: str, slot: str, banner: str):
    """Create or replace a banner of a slot; PATCH changes only the fields sent.
    ---
    put:
      summary: Create (201) or replace (200) a banner; a slot holds at most MAX_BANNERS_PER_SLOT
      description: Replaces the whole banner; fields left out take their defaults (alt "", active true,
        no schedule).
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
        403: Forbidden
        404: NotFound
        409: Conflict
        413: PayloadTooLarge
    patch:
      summary: Change the fields sent (JSON merge patch, RFC 7386; null = back to the default)
      tags: [management]
      parameters:
        - tenant
        - slot
        - banner
      requestBody:
        required: true
        content:
          application/merge-patch+json:
            schema: BannerPatch
          application/json:
            schema: BannerPatch
      responses:
        200: {description: changed, content: {application/json: {schema: Banner}}}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
        413: PayloadTooLarge
    """
    body = _update_body(schemas.BannerBody, lambda: services.get_banner(_db(), tenant, slot, banner))
    return _put_result(services.put_banner(
        _db(), tenant, slot, banner, image_url=body.get("image_url"), target_url=body.get("target_url"),
        alt=body.get("alt"), active=body.get("active"), starts_at=body.get("starts_at"),
        ends_at=body.get("ends_at"), max_banners=current_app.config["MAX_BANNERS_PER_SLOT"]))


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
        403: Forbidden
        404: NotFound
    """
    return jsonify(banners=services.list_banners(_db(), tenant, slot))


@bp.get("/tenants/<tenant>/slots/<slot>/stats")
def slot_stats(tenant: str, slot: str):
    """Per banner: counts, CTR, the posterior Beta(alpha, beta) for the location, P(best); per referrer over
    the last `days` days: impressions, clicks and CTR per banner; the unique-visitor estimate.
    ---
    get:
      summary: Statistics of a slot for a location (slot-wide without one)
      tags: [management]
      parameters:
        - tenant
        - slot
        - location
        - days
      responses:
        200: {description: per banner counts and posteriors, content: {application/json: {schema: SlotStats}}}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
    """
    location = validation.normalize_location(request.args.get("location"),
                                              current_app.config["MAX_PARAM_LENGTH"])
    days = referrers.report_days(request.args.get("days"))
    report = services.slot_report(_db(), tenant, slot, location)     # P(best) seeded by the snapshot
    # Who sent the traffic over the last `days` UTC days (all locations): referrers and unique visitors.
    report["audience"] = referrers.referrer_report(_db(), tenant, slot, days, [b["id"] for b in report["banners"]])
    return jsonify(report)


@bp.get("/tenants/<tenant>/slots/<slot>/lift")
def slot_lift(tenant: str, slot: str):
    """What the policy earned over the holdout (served uniformly at random), with 95% intervals and a
    sample-ratio check.
    ---
    get:
      summary: The policy's lift over the holdout group, extra clicks and sample-ratio mismatch check
      tags: [management]
      parameters:
        - tenant
        - slot
        - location
        - since
        - until
      responses:
        200: {description: per group counts and the lift, content: {application/json: {schema: SlotLift}}}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
    """
    location = lift.location_param(request.args.get("location"), current_app.config["MAX_PARAM_LENGTH"])
    return jsonify(lift.slot_lift(_db(), tenant, slot, request.args.get("since"), request.args.get("until"),
                                  location))


@bp.get("/tenants/<tenant>/slots/<slot>/evaluation")
def slot_evaluation(tenant: str, slot: str):
    """The slot's latest off-policy evaluation (spark_jobs/evaluate.py), optionally one candidate's.
    ---
    get:
      summary: What candidate policies would have earned on the slot's logged traffic (latest run)
      tags: [management]
      parameters:
        - tenant
        - slot
        - candidate
      responses:
        200: {description: the latest run's estimates, content: {application/json: {schema: SlotEvaluation}}}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
    """
    return jsonify(lift.evaluation_document(_db(), tenant, slot, request.args.get("candidate")))
