"""Public blueprint: serve a banner, track its click, the embed page and the demo publisher page."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import json
import os
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, g, jsonify, redirect, render_template, request, url_for

from bandits.policy import Choice, Context
from eventlog import counting
from eventlog.timeuuids import timeuuid
from webapp.learning.posteriors import SlotState, SlotUnavailable
from webapp.serving import click_filter, provenance, runtime
from webapp.serving.context import device_class, local_hour_and_weekday
from webapp.serving.holdout import HOLDOUT
from webapp.serving.tokens import ClickClaim
from webapp.storage import store
from webapp.storage.events import UNREACHABLE, Click, Impression
from webapp.storage.spool import SpoolFull
from webapp.web import api_keys, metrics, validation
from webapp.web.errors import DomainError, Forbidden, InvalidInput, NotFound, ServiceUnavailable
from webapp.web.rate_limits import click_limit, serve_limit
from webapp.web.security import embeddable, may_read_counts, public_base_url

bp = Blueprint("serving", __name__)
_SERVED = metrics.SERVES.labels(status="200")     # the labelled child, looked up once


@bp.after_request
def cors(response: Response) -> Response:
    """Serving is public: any publisher origin may call it from the browser, unless the tenant lists its
    allowed origins (``g.allowed_origins``, set once the request's tenant is known): then only those, echoed
    with ``Vary: Origin``, may read the answer."""
    if request.path.startswith("/v1/"):
        allowed = g.get("allowed_origins")
        if allowed:
            response.vary.add("Origin")
            origin = provenance.request_origin(request.headers)
            if origin is not None and origin in allowed:
                response.headers["Access-Control-Allow-Origin"] = origin
        else:
            response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Max-Age"] = "86400"
    return response


def click_url(token: str) -> str:
    """The absolute URL of GET /v1/click/<token> under the public base URL (PUBLIC_BASE_URL; else this
    request's own, whose host is one of ALLOWED_HOSTS). Tokens are URL-safe (letters, digits, '_', '-',
    '.'): nothing to quote."""
    return f"{public_base_url()}/v1/click/{token}"


def own_origins() -> frozenset[str]:
    """The origins of this service's own pages (the embed frame, the dashboard's preview, the demo page),
    always allowed: PUBLIC_BASE_URL's and this request's (its host one of ALLOWED_HOSTS)."""
    return frozenset(filter(None, (provenance.origin_of(public_base_url()), provenance.origin_of(request.host_url))))


def _judge_origin(rt, tenant_id: str, *, navigation: bool) -> tuple[str | None, bool]:
    """The request's origin and whether the tenant allows it; sets ``g.allowed_origins`` for CORS."""
    allowed = rt.cache.allowed_origins(tenant_id)
    if not allowed:
        return provenance.request_origin(request.headers, navigation=navigation), True
    own = own_origins()
    g.allowed_origins = allowed | own
    origin = provenance.request_origin(request.headers, navigation=navigation)
    if origin is None and navigation and request.headers.get("Sec-Fetch-Site") == "same-origin":
        origin = next(iter(sorted(own)), None)    # a link in our own page whose Referer was withheld
    return origin, provenance.is_allowed(origin, allowed, own)


def _slot_state(rt, tenant: str, slot: str) -> SlotState | None:
    """The slot's state from this worker's cache; a slot it does not hold is read now (bounded), and a 503
    with Retry-After says when that cannot be done."""
    try:
        return rt.cache.slot(tenant, slot)
    except SlotUnavailable:
        raise ServiceUnavailable(f"slot {tenant}/{slot} cannot be loaded right now (database unreachable); "
                                 "try again shortly", retry_after=1) from None


def _choose(tenant: str, slot: str) -> tuple[dict[str, Any], SlotState]:
    """Pick a banner for this request, log the impression; return the serve document and the slot's state."""
    validation.identifier(tenant, "tenant")
    validation.identifier(slot, "slot")
    limit = current_app.config["MAX_PARAM_LENGTH"]
    args = request.args
    location = validation.normalize_location(args.get("location"), limit)
    customer_id = validation.text_param(args.get("customer_id"), "customer_id", limit)
    referrer_id = validation.text_param(args.get("referrer_id"), "referrer_id", limit)
    segment = validation.text_param(args.get("segment"), "segment", limit)

    rt = runtime.get()
    state = _slot_state(rt, tenant, slot)
    if state is None:
        raise NotFound(f"unknown tenant/slot {tenant}/{slot}")
    if not state.active:
        raise NotFound(f"slot {tenant}/{slot} has no active banner")
    origin, allowed = _judge_origin(rt, tenant, navigation=request.endpoint == "serving.embed")
    if not allowed:
        raise Forbidden(f"origin {origin} is not one of tenant {tenant}'s allowed origins")
    policy = state.policy
    served_at = dt.datetime.now(dt.UTC)
    hour, weekday = local_hour_and_weekday(served_at, rt.cache.timezone(tenant))
    # The User-Agent is parsed only for a slot that learns from the device (parsing costs milliseconds).
    device = device_class(request.headers.get("User-Agent") or "") \
        if "device" in getattr(policy, "features", ()) else ""
    # The holdout (webapp/serving/holdout.py) wraps the slot's policy: its visitors get a uniform draw.
    assignment, held_arm = rt.holdout(tenant, slot, customer_id, state.holdout_percent, len(state.active))
    if held_arm is None:
        choice = rt.choose(policy, Context(location, customer_id, referrer_id, hour, weekday, device, segment))
    else:
        choice = holdout_choice(held_arm, len(state.active))
    banner = state.active[choice.arm]
    logged = choice.state           # the Thompson columns stay written; null for a policy without them
    propensity = choice.propensity
    cell = logged.get("cell")       # the contextual policy's context cell (None for other policies)

    impression = Impression(
        tenant_id=tenant, slot_id=slot, impression_id=timeuuid(),
        served_at=served_at,
        banner_id=banner.banner_id, location=location, customer_id=customer_id, referrer_id=referrer_id,
        posterior_scope=logged.get("scope"), alpha=logged.get("alpha"), beta=logged.get("beta"),
        prior_source=logged.get("prior"), propensity=propensity,
        policy=policy.name, policy_state=choice.state_json,
        serving_group=assignment.group, holdout_share=assignment.share,
        segment=segment, device=device, hour=hour, weekday=weekday, context_cell=cell,
        origin=origin or "", ip_hash=rt.clients.ip(request.remote_addr or ""),
        ua_hash=rt.clients.user_agent((request.headers.get("User-Agent") or "")[:512]),
    )
    try:
        rt.events.record_impression(impression)
    except SpoolFull:
        raise ServiceUnavailable("cannot record impressions right now (event spool full); try later") from None
    token = rt.tokens.sign(ClickClaim(impression.impression_id, tenant, slot, banner.banner_id, location,
                                      cell=cell, ip_hash=impression.ip_hash, ua_hash=impression.ua_hash,
                                      serving_group=assignment.group,
                                      lift_shard=counting.lift_shard(customer_id, impression.impression_id)))
    # What a page needs, and what tells nothing of the tenant's counts: the scope and source of the posterior
    # and the chosen banner's propensity (a page that logs its own decisions needs it; anyone can estimate it
    # by serving repeatedly anyway). Alpha and beta are 1 + clicks and 1 + impressions - clicks: only for a
    # caller that may read counts.
    posterior = {"scope": impression.posterior_scope, "prior": impression.prior_source,
                 "propensity": round(propensity, 4)}
    if may_read_counts(request, tenant):
        posterior = {"scope": impression.posterior_scope, "alpha": impression.alpha, "beta": impression.beta,
                     **posterior}
    document = {
        "impression_id": str(impression.impression_id),
        "location": location,
        "banner": {"id": banner.banner_id, "image_url": banner.image_url, "alt": banner.alt},
        # The click names the impression's referrer, so it counts under it (eventlog.counting, rule 7).
        "click_url": click_url(token) + (f"?{urlencode({'referrer_id': referrer_id})}" if referrer_id else ""),
        "token": token,
        "posterior": posterior,
        "policy": policy.name,
        "group": assignment.group,
    }
    if cell is not None:        # what moved the chosen banner most: feature=level names, no counts
        document["features"] = logged.get("top", [])
    return document, state


def holdout_choice(arm: int, arms: int) -> Choice:
    """The holdout's decision: ``arm`` drawn uniformly among ``arms``, propensity 1/arms, no posterior."""
    state = {"scope": HOLDOUT, "prior": "uniform"}
    return Choice(arm, 1.0 / arms, state, json.dumps(state, separators=(",", ":")))


@bp.get("/v1/serve/<tenant>/<slot>")
@serve_limit
def serve(tenant: str, slot: str):
    """Pick a banner for this visitor and log the impression.
    ---
    get:
      summary: Serve a banner (Thompson sampling over the slot's posteriors)
      tags: [serving]
      parameters:
        - tenant
        - slot
        - location
        - customer_id
        - referrer_id
        - segment
      responses:
        200:
          description: The chosen banner, its click URL and the posterior it was drawn from.
          content:
            application/json:
              schema: ServeDocument
        400: BadRequest
        403: Forbidden
        404: NotFound
        429: TooManyRequests
        503: ServiceUnavailable
    """
    try:
        document, state = _choose(tenant, slot)
    except DomainError as exc:
        metrics.SERVES.labels(status=str(exc.status)).inc()
        raise
    _SERVED.inc()
    # json.dumps as it is (C encoder): jsonify's provider sorts the keys of every answer first.
    response = current_app.response_class(json.dumps(document, separators=(",", ":")) + "\n",
                                          mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Banner-Bandit-Worker"] = str(os.getpid())
    _flag_stale(response, state)
    return response


def _flag_stale(response: Response, state: SlotState) -> None:
    """Say so when the slot's posteriors are older than they should be (Cassandra unreachable)."""
    age = state.age()
    if age > current_app.config["STALE_AFTER_SECONDS"]:
        response.headers["X-Banner-Bandit-Stale"] = f"{age:.1f}"
        metrics.STALE_SERVES.inc()


@bp.get("/v1/embed/<tenant>/<slot>")
@embeddable
@serve_limit
def embed(tenant: str, slot: str):
    """An HTML page with one banner, for an <iframe>.
    ---
    get:
      summary: Serve a banner as an HTML page for an iframe (any site may frame it)
      tags: [serving]
      parameters:
        - tenant
        - slot
        - location
        - customer_id
        - referrer_id
        - segment
      responses:
        200:
          description: A page with the chosen banner linking to its click URL.
          content:
            text/html:
              schema: {type: string}
        400: BadRequest
        403: Forbidden
        404: NotFound
        429: TooManyRequests
        503: ServiceUnavailable
    """
    document, _ = _choose(tenant, slot)
    allowed = g.get("allowed_origins")
    if allowed:     # only the tenant's own sites may frame it (embeddable's CSP frame-ancestors)
        g.frame_ancestors = " ".join(sorted(allowed))
    html = render_template("serving/embed.html", banner=document["banner"], click_url=document["click_url"],
                           impression_id=document["impression_id"], tenant=tenant, slot=slot)
    return Response(html, headers={"Cache-Control": "no-store"}, mimetype="text/html")


def _click_rate(rt, tenant_id: str, kind: str, key: str, bucket: int) -> int | None:
    """Clicks of this customer/IP in the window, this one included; None when it cannot be known."""
    if not key:
        return None
    try:
        return store.count_click_rate(rt.db, tenant_id, kind, key, bucket)
    except UNREACHABLE:
        return None         # Cassandra away: the timing and user-agent rules still apply


MAX_USER_AGENT_LENGTH = 512


@dataclasses.dataclass(frozen=True)
class Visitor:
    """Whom the click filter judges: the caller (a browser), or the visitor a tenant's backend vouches for
    (None = not given: the rules that need it are not applied)."""

    ip: str | None
    user_agent: str | None


def vouched_visitor(body: dict[str, Any]) -> Visitor:
    """visitor_ip / user_agent of a server-side click, validated."""
    ip = body.get("visitor_ip")
    if ip is not None:
        if not isinstance(ip, str) or len(ip) > 64:
            raise InvalidInput("visitor_ip must be an IPv4 or IPv6 address as a string")
        try:
            ip = str(ipaddress.ip_address(ip.strip()))
        except ValueError:
            raise InvalidInput(f"visitor_ip {ip!r} is not an IPv4 or IPv6 address") from None
    user_agent = body.get("user_agent")
    if user_agent is not None:
        user_agent = validation.short_text(user_agent, "user_agent", required=False,
                                           max_length=MAX_USER_AGENT_LENGTH)
    return Visitor(ip, user_agent)


def _click_banner(rt, claim: ClickClaim):
    """The banner a click names, as this worker holds it; a click on a deleted slot or banner is refused
    (404) and recorded nowhere."""
    state = _slot_state(rt, claim.tenant_id, claim.slot_id)
    banner = state.banners.get(claim.banner_id) if state else None
    if banner is None:
        raise NotFound("the banner of this click no longer exists")
    return banner


def _record_click(token: str | None, customer_id: Any, referrer_id: Any, *, visitor: Visitor | None = None,
                  principal: api_keys.Principal | None = None) -> tuple[bool, ClickClaim, str | None, Any]:
    """Record a click (once); (recorded, claim, the filter's reason or None, the banner). ``visitor``: whom
    to judge (None: the caller); ``principal``: the tenant key of a server-side click, which must be the
    token's tenant's (else 403, nothing recorded)."""
    rt = runtime.get()
    claim = rt.tokens.verify(token)
    if principal is not None:
        principal.require("events", claim.tenant_id)
    limit = current_app.config["MAX_PARAM_LENGTH"]
    if customer_id is not None and not isinstance(customer_id, str):
        raise InvalidInput("customer_id must be a string")
    if referrer_id is not None and not isinstance(referrer_id, str):
        raise InvalidInput("referrer_id must be a string")
    customer_id = validation.text_param(customer_id, "customer_id", limit)
    referrer_id = validation.text_param(referrer_id, "referrer_id", limit)
    banner = _click_banner(rt, claim)
    now = dt.datetime.now(dt.UTC)
    if visitor is None:
        visitor = Visitor(request.remote_addr or "", (request.headers.get("User-Agent") or "")[:512])
    user_agent, ip = visitor.user_agent or "", visitor.ip or ""
    settings = rt.cache.click_filter(claim.tenant_id)
    if visitor.user_agent is None:         # a backend that does not know it: no user-agent rule
        settings = dataclasses.replace(settings, block_bot_user_agents=False)
    bucket = click_filter.window_bucket(now.timestamp(), settings)
    origin, origin_allowed = _judge_origin(rt, claim.tenant_id, navigation=request.method == "GET")
    reason = None
    if not origin_allowed:
        reason = "foreign_origin"       # stored, counted as filtered, never learned from (docs/api.md)
    elif settings.enabled:
        reason = click_filter.classify(
            settings, delay_seconds=now.timestamp() - claim.served_epoch, user_agent=user_agent,
            customer_clicks=_click_rate(rt, claim.tenant_id, "customer", customer_id, bucket)
            if settings.max_clicks_per_customer else None,
            ip_clicks=_click_rate(rt, claim.tenant_id, "ip", ip, bucket) if settings.max_clicks_per_ip else None,
            same_user_agent=rt.clients.user_agent(user_agent) == claim.ua_hash
            if claim.ua_hash and visitor.user_agent is not None else None,
            same_ip=rt.clients.ip(ip) == claim.ip_hash if claim.ip_hash and visitor.ip else None)
    click = Click(
        tenant_id=claim.tenant_id, slot_id=claim.slot_id, impression_id=claim.impression_id,
        clicked_at=now, banner_id=claim.banner_id, location=claim.location,
        customer_id=customer_id, referrer_id=referrer_id,
        valid=reason is None, invalid_reason=reason, user_agent=user_agent, ip=ip, legacy_day=claim.day,
        cell=claim.cell, serving_group=claim.serving_group, lift_shard=claim.lift_shard,
        origin=origin or "",
    )
    try:
        recorded = rt.events.record_click(click)
    except SpoolFull:
        raise ServiceUnavailable("cannot record clicks right now (event spool full); try later") from None
    outcome = ("recorded" if reason is None else f"filtered_{reason}") if recorded else "duplicate"
    metrics.CLICKS.labels(outcome=outcome).inc()
    return recorded, claim, reason, banner


@bp.get("/v1/click/<token>")
@click_limit
def click_redirect(token: str):
    """Record the click (once) and send the visitor to the banner's target.
    ---
    get:
      summary: Record a click and redirect to the banner's target URL
      tags: [clicks]
      parameters:
        - token
        - customer_id
        - referrer_id
      responses:
        302:
          description: The click is recorded (once per impression); Location is the banner's target URL.
          headers:
            Location:
              description: the banner's stored http(s) target URL
              schema: {type: string, format: uri}
        400: BadRequest
        404: NotFound
        429: TooManyRequests
        503: ServiceUnavailable
    """
    _, _, _, banner = _record_click(token, request.args.get("customer_id"), request.args.get("referrer_id"))
    if not banner.target_url:
        raise NotFound("the banner of this click no longer exists")
    # Redirect only to what the management API stored for this banner, and only if it is http(s): the
    # URL never comes from the request.
    try:
        target = validation.http_url(banner.target_url, "target_url")
    except InvalidInput:
        raise NotFound("the banner of this click has no valid http(s) target URL") from None
    return redirect(target, code=302)


@bp.post("/v1/click")
@click_limit
def click_post():
    """Record a click from the publisher's page, or from its server with a tenant API key.
    ---
    post:
      summary: Record a click (once per impression)
      description: >-
        Without credentials (a browser): the click filter judges the caller's address and user agent, and
        the answer says only recorded or duplicate. With `Authorization: Bearer <tenant API key>` (scope
        `events`, the token's tenant): the body may carry the visitor's `visitor_ip` and `user_agent`, which
        the filter judges instead (one left out: the rule that needs it is skipped), and the answer says
        whether the click counts for learning and why not.
      tags: [clicks]
      security: [{}, {bearerAuth: []}]
      requestBody:
        required: true
        content:
          application/json:
            schema: ClickBody
      responses:
        200:
          description: recorded the first time, duplicate after.
          content:
            application/json:
              schema: ClickResult
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
        413: PayloadTooLarge
        429: TooManyRequests
        503: ServiceUnavailable
    """
    body = validation.json_body(request, {"token", "customer_id", "referrer_id", "visitor_ip", "user_agent"})
    principal = api_keys.authenticate(request, required=False)
    visitor = None
    if principal is None:
        if "visitor_ip" in body or "user_agent" in body:
            raise InvalidInput("visitor_ip and user_agent are accepted only from a tenant's server: send "
                               "'Authorization: Bearer <API key>' with the events scope")
    else:
        visitor = vouched_visitor(body)
    recorded, _, reason, _ = _record_click(body.get("token"), body.get("customer_id"), body.get("referrer_id"),
                                           visitor=visitor, principal=principal)
    if principal is None:
        return jsonify(status="recorded" if recorded else "duplicate")
    if not recorded:
        return jsonify(status="duplicate", counted=False, reason="duplicate")
    return jsonify(status="recorded", counted=reason is None, reason=reason)


@bp.get("/v1/ping")
def ping():
    """A trivial endpoint (no database), the baseline of the serving benchmark.
    ---
    get:
      summary: Liveness (touches no database)
      tags: [serving]
      responses:
        200:
          description: the process answers
          content:
            application/json:
              schema: Ping
    """
    return jsonify(ok=True)


@bp.get("/")
def demo():
    """The demo publisher page: the demo tenant's hero slot, embedded with the JS tag."""
    return render_template("demo/index.html", tenant="demo", slot="home-hero",
                           embed_js_url=url_for("static", filename="embed.js"),
                           api_base=request.url_root.rstrip("/"))
