"""Dashboard pages: tenants, slots, banners, embed code, results, users. Access is checked by
webapp.dashboard.guard before any of these runs; every write goes through webapp.management.services."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
from typing import Any
from zoneinfo import ZoneInfo

from flask import Response, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from bandits.policy import Context
from webapp.dashboard import bp, platform_only
from webapp.dashboard import context as context_report
from webapp.dashboard.auth import login_retry_after
from webapp.dashboard.forms import (
    ActiveForm,
    BannerForm,
    ClickFilterForm,
    EmptyForm,
    LoginForm,
    SlotForm,
    TenantForm,
)
from webapp.learning.posteriors import SlotUnavailable
from webapp.management import lift, referrers, services
from webapp.serving import media, runtime
from webapp.serving.click_filter import REASONS
from webapp.storage import store
from webapp.web import security, validation
from webapp.web.errors import DomainError, InvalidInput, NotFound, ServiceUnavailable

RESULT_RANGES = {1: "last 24 hours", 3: "last 3 days", 7: "last 7 days", 30: "last 30 days"}
DEFAULT_RANGE_DAYS = 7
REASON_ORDER = (*REASONS, "invalid")     # the click filter page's columns, in the rules' order


def _db():
    return current_app.extensions["cassandra"]


def _fail(form: FlaskForm, exc: DomainError) -> None:
    form.form_errors.append(exc.message)


def _exists(lookup, *args) -> bool:
    try:
        lookup(_db(), *args)
    except NotFound:
        return False
    return True


@bp.app_context_processor
def dashboard_globals() -> dict[str, Any]:
    if request.blueprint != "admin":
        return {}
    return {"logout_form": EmptyForm(formdata=None), "user": current_user}


# -- errors (HTML here; the JSON API keeps its JSON handlers) -------------------------------------------------

@bp.errorhandler(DomainError)
def domain_error(exc: DomainError):
    return render_template("admin/error.html", status=exc.status, message=exc.message), exc.status


@bp.errorhandler(CSRFError)
def csrf_error(exc: CSRFError):
    message = f"{exc.description} Reload the page and try again."
    return render_template("admin/error.html", status=400, message=message), 400


@bp.errorhandler(429)
def too_many_logins(exc: HTTPException):
    form = LoginForm()
    form.form_errors.append(exc.description)
    return render_template("admin/login.html", form=form, next_url=None), 429, {"Retry-After": login_retry_after()}


@bp.errorhandler(403)
@bp.errorhandler(404)
@bp.errorhandler(413)
def http_error(exc: HTTPException):
    messages = {403: "Only a platform admin can open this page.", 404: "There is no such page here.",
                413: f"The upload is too large: images may be at most "
                     f"{current_app.config['MAX_IMAGE_BYTES']:,} bytes."}
    return render_template("admin/error.html", status=exc.code, message=messages[exc.code]), exc.code


# -- tenants --------------------------------------------------------------------------------------------------

@bp.get("/")
def index():
    """Platform admins see every tenant; a tenant admin goes straight to their tenant."""
    if not current_user.is_platform_admin:
        return redirect(url_for("admin.tenant", tenant=current_user.tenant_id))
    return render_template("admin/tenants.html", tenants=services.list_tenants(_db()))


@bp.route("/new-tenant", methods=["GET", "POST"])
@platform_only
def tenant_new():
    form = TenantForm()
    if form.validate_on_submit():
        tenant_id = form.tenant_id.data.strip()
        try:
            validation.identifier(tenant_id, "tenant")
            if _exists(services.require_tenant, tenant_id):
                raise InvalidInput(f"tenant {tenant_id} already exists")
            services.put_tenant(_db(), tenant_id, form.name.data, form.timezone.data,
                                current_app.config["DEFAULT_TIMEZONE"],
                                allowed_origins=form.allowed_origins.data or "")
        except DomainError as exc:
            _fail(form, exc)
        else:
            flash(f"Tenant {tenant_id} created.", "success")
            return redirect(url_for("admin.tenant", tenant=tenant_id))
    return render_template("admin/tenant_form.html", form=form, tenant=None)


@bp.get("/tenants/<tenant>")
def tenant(tenant: str):
    found = services.require_tenant(_db(), tenant)
    return render_template("admin/tenant.html", tenant=tenant, info=found,
                           slots=services.list_slots(_db(), tenant))


@bp.route("/tenants/<tenant>/edit", methods=["GET", "POST"])
def tenant_edit(tenant: str):
    found = services.require_tenant(_db(), tenant)
    form = TenantForm(data={"tenant_id": tenant, "name": found["name"], "timezone": found["timezone"],
                            "allowed_origins": "\n".join(sorted(found.get("allowed_origins") or ()))})
    form.tenant_id.data = tenant
    if form.validate_on_submit():
        try:
            # The dashboard does not edit the click filter: keep the tenant's settings as they are.
            click_filter = json.loads(found["click_filter"]) if found.get("click_filter") else None
            services.put_tenant(_db(), tenant, form.name.data, form.timezone.data,
                                current_app.config["DEFAULT_TIMEZONE"], click_filter,
                                allowed_origins=form.allowed_origins.data or "")
        except DomainError as exc:
            _fail(form, exc)
        else:
            flash(f"Tenant {tenant} saved.", "success")
            return redirect(url_for("admin.tenant", tenant=tenant))
    return render_template("admin/tenant_form.html", form=form, tenant=tenant)


def _click_filter_value(text: str | None, kind: type) -> object:
    """A form field's number, or the text as typed when it is not one (the service says what it must be)."""
    text = (text or "").strip()
    try:
        return kind(text)
    except ValueError:
        return text


@bp.route("/tenants/<tenant>/click-filter", methods=["GET", "POST"])
def click_filter(tenant: str):
    """The tenant's invalid-click thresholds, and what they filtered per slot and reason."""
    found = services.require_tenant(_db(), tenant)
    current = services.tenant_document(tenant, found["name"], found["timezone"], found.get("click_filter"))
    settings = current["click_filter"]
    form = ClickFilterForm(data={k: v if isinstance(v, bool) else str(v) if isinstance(v, int) else f"{v:g}"
                                 for k, v in settings.items()})
    if form.validate_on_submit():
        try:
            services.set_click_filter(_db(), tenant, {
                "enabled": bool(form.enabled.data),
                "min_delay_seconds": _click_filter_value(form.min_delay_seconds.data, float),
                "max_clicks_per_customer": _click_filter_value(form.max_clicks_per_customer.data, int),
                "max_clicks_per_ip": _click_filter_value(form.max_clicks_per_ip.data, int),
                "window_seconds": _click_filter_value(form.window_seconds.data, int),
                "block_bot_user_agents": bool(form.block_bot_user_agents.data)})
        except DomainError as exc:
            _fail(form, exc)
        else:
            flash(f"Click filter of {tenant} saved: serving applies it within "
                  f"{current_app.config['CACHE_REFRESH_SECONDS']:g} s.", "success")
            return redirect(url_for("admin.click_filter", tenant=tenant))
    # One small partition per slot (filtered_click_reasons): a tenant's slots, not its traffic.
    filtered = [(s["id"], counts) for s in services.list_slots(_db(), tenant)
                if (counts := store.filtered_reasons(_db(), tenant, s["id"]))]
    reasons = sorted({reason for _, counts in filtered for reason in counts},
                     key=lambda r: (REASON_ORDER.index(r) if r in REASON_ORDER else len(REASON_ORDER), r))
    return render_template("admin/click_filter.html", tenant=tenant, info=found, form=form, filtered=filtered,
                           reasons=reasons, refresh_seconds=current_app.config["CACHE_REFRESH_SECONDS"])


# -- slots ----------------------------------------------------------------------------------------------------

def _save_slot(form: SlotForm, tenant: str, slot: str) -> None:
    text = (form.decay_half_life_hours.data or "").strip()
    try:
        half_life: object = float(text) if text else None
    except ValueError:
        half_life = text            # not a number: put_slot says what it must be
    held = (form.holdout_percent.data or "").strip()
    services.put_slot(_db(), tenant, slot, form.name.data, size=form.size.data,
                      locations=form.locations.data or "",
                      max_location_length=current_app.config["MAX_PARAM_LENGTH"],
                      decay_half_life_hours=half_life,
                      holdout=(int(held) if held.isdigit() else held) if held else 0,
                      policy=form.policy.data or None, context=form.context.data or [])


@bp.route("/tenants/<tenant>/new-slot", methods=["GET", "POST"])
def slot_new(tenant: str):
    services.require_tenant(_db(), tenant)
    form = SlotForm()
    if form.validate_on_submit():
        slot = form.slot_id.data.strip()
        try:
            validation.identifier(slot, "slot")
            if _exists(services.require_slot, tenant, slot):
                raise InvalidInput(f"slot {slot} already exists")
            _save_slot(form, tenant, slot)
        except DomainError as exc:
            _fail(form, exc)
        else:
            flash(f"Slot {slot} created. Add its banners now.", "success")
            return redirect(url_for("admin.slot", tenant=tenant, slot=slot))
    return render_template("admin/slot_form.html", form=form, tenant=tenant, slot=None)


@bp.get("/tenants/<tenant>/slots/<slot>")
def slot(tenant: str, slot: str):
    info = services.get_slot(_db(), tenant, slot)
    zone = _tenant_zone(tenant)
    banners = services.list_banners(_db(), tenant, slot)
    for b in banners:
        b["schedule_text"] = _schedule_text(b, zone)
    return render_template("admin/slot.html", tenant=tenant, slot=slot, info=info, zone=zone,
                           banners=banners, active_form=ActiveForm(),
                           refresh_seconds=current_app.config["CACHE_REFRESH_SECONDS"])


@bp.route("/tenants/<tenant>/slots/<slot>/edit", methods=["GET", "POST"])
def slot_edit(tenant: str, slot: str):
    info = services.get_slot(_db(), tenant, slot)
    half_life = info["decay_half_life_hours"]
    form = SlotForm(data={"slot_id": slot, "name": info["name"], "size": info["size"],
                          "locations": "\n".join(info["locations"]),
                          "decay_half_life_hours": f"{half_life:g}" if half_life else "",
                          "holdout_percent": str(info["holdout_percent"] or ""),
                          "policy": info["policy"], "context": info["context"]})
    form.slot_id.data = slot
    if form.validate_on_submit():
        try:
            _save_slot(form, tenant, slot)
        except DomainError as exc:
            _fail(form, exc)
        else:
            flash(f"Slot {slot} saved.", "success")
            return redirect(url_for("admin.slot", tenant=tenant, slot=slot))
    return render_template("admin/slot_form.html", form=form, tenant=tenant, slot=slot)


# -- banners --------------------------------------------------------------------------------------------------

def _image_url(form: BannerForm, tenant: str, current: str | None) -> str:
    """The banner's image URL: a new upload (validated, stored), else the URL field, else ``current``."""
    upload = form.image_file.data
    if upload and getattr(upload, "filename", ""):
        limit = current_app.config["MAX_IMAGE_BYTES"]
        image_id = media.save_image(_db(), tenant, upload.read(limit + 1), limit)
        return media.image_url(tenant, image_id)
    url = (form.image_url.data or "").strip()
    if url:
        return validation.http_url(url, "image URL")
    if current:
        return current
    raise InvalidInput("give an image URL or upload an image file")


def _save_banner(form: BannerForm, tenant: str, slot: str, banner: str, current: dict | None) -> None:
    # Check the other fields first, so an upload is stored only for a banner that will be saved.
    validation.http_url((form.target_url.data or "").strip(), "target URL")
    validation.short_text(form.alt.data or "", "alt text", required=False)
    image_url = _image_url(form, tenant, current["image_url"] if current else None)
    services.put_banner(_db(), tenant, slot, banner, image_url=image_url,
                        target_url=form.target_url.data.strip(), alt=form.alt.data or "",
                        active=bool(form.active.data), starts_at=_schedule_iso(form.starts_at.data),
                        ends_at=_schedule_iso(form.ends_at.data))


def _tenant_zone(tenant: str) -> ZoneInfo:
    """The tenant's time zone, in which banner schedules are entered and shown."""
    return ZoneInfo(services.require_tenant(_db(), tenant)["timezone"])


def _schedule_iso(value: dt.datetime | None) -> str | None:
    """A form's aware date-time as the ISO 8601 text with offset the service takes (None: unbounded)."""
    return value.isoformat() if value is not None else None


def _schedule_time(iso: str | None) -> dt.datetime | None:
    """A banner document's UTC time ('…Z') as an aware datetime."""
    return dt.datetime.fromisoformat(iso) if iso else None


def _schedule_text(banner: dict[str, Any], zone: ZoneInfo) -> str:
    """The schedule in the tenant's wall-clock time, for the banners list: 'from … to …'."""
    parts = [f"{word} {_schedule_time(banner[key]).astimezone(zone):%Y-%m-%d %H:%M}"
             for word, key in (("from", "starts_at"), ("until", "ends_at")) if banner.get(key)]
    return " ".join(parts) if parts else "no schedule: served while active"


@bp.route("/tenants/<tenant>/slots/<slot>/new-banner", methods=["GET", "POST"])
def banner_new(tenant: str, slot: str):
    services.require_slot(_db(), tenant, slot)
    zone = _tenant_zone(tenant)
    form = BannerForm(zone=zone)
    if form.validate_on_submit():
        banner = form.banner_id.data.strip()
        try:
            validation.identifier(banner, "banner")
            if _exists(services.get_banner, tenant, slot, banner):
                raise InvalidInput(f"banner {banner} already exists")
            _save_banner(form, tenant, slot, banner, None)
        except DomainError as exc:
            _fail(form, exc)
        else:
            flash(f"Banner {banner} added.", "success")
            return redirect(url_for("admin.slot", tenant=tenant, slot=slot))
    return render_template("admin/banner_form.html", form=form, tenant=tenant, slot=slot, banner=None, zone=zone)


@bp.route("/tenants/<tenant>/slots/<slot>/banners/<banner>/edit", methods=["GET", "POST"])
def banner_edit(tenant: str, slot: str, banner: str):
    current = services.get_banner(_db(), tenant, slot, banner)
    zone = _tenant_zone(tenant)
    form = BannerForm(data={"banner_id": banner, "target_url": current["target_url"], "alt": current["alt"],
                            "active": current["active"], "starts_at": _schedule_time(current["starts_at"]),
                            "ends_at": _schedule_time(current["ends_at"])}, zone=zone)
    form.banner_id.data = banner
    if form.validate_on_submit():
        try:
            _save_banner(form, tenant, slot, banner, current)
        except DomainError as exc:
            _fail(form, exc)
        else:
            flash(f"Banner {banner} saved.", "success")
            return redirect(url_for("admin.slot", tenant=tenant, slot=slot))
    return render_template("admin/banner_form.html", form=form, tenant=tenant, slot=slot, banner=banner,
                           current=current, zone=zone)


@bp.post("/tenants/<tenant>/slots/<slot>/banners/<banner>/active")
def banner_active(tenant: str, slot: str, banner: str):
    """Pause or resume: serving picks the change up within one cache refresh."""
    form = ActiveForm()
    if not form.validate_on_submit() or form.active.data not in {"0", "1"}:
        raise InvalidInput("active must be 0 or 1")
    active = form.active.data == "1"
    services.set_banner_active(_db(), tenant, slot, banner, active)
    flash(f"Banner {banner} {'resumed' if active else 'paused'}: serving picks this up within "
          f"{current_app.config['CACHE_REFRESH_SECONDS']:g} s.", "success")
    return redirect(url_for("admin.slot", tenant=tenant, slot=slot))


# -- embed ----------------------------------------------------------------------------------------------------

def _public_base() -> str:
    return security.public_base_url()


@bp.get("/tenants/<tenant>/slots/<slot>/embed")
def embed(tenant: str, slot: str):
    info = services.get_slot(_db(), tenant, slot)
    base = _public_base()
    # No city is ever written into a snippet: pasted as-is, a fixed city would file every visitor under it.
    # The location is left empty (the slot-wide posterior) with a comment saying what to fill in.
    # The snippets are pasted into other sites' HTML and shells: escape what a user typed for that context.
    snippets = {
        "js": (f'<script src="{base}/static/embed.js" async></script>\n'
               f'<!-- data-location: the visitor\'s city, filled in per page view (e.g. "Mumbai"); empty serves\n'
               f'     from the slot-wide posterior. data-customer-id and data-referrer-id are optional. -->\n'
               f'<div data-banner-bandit data-tenant="{tenant}" data-slot="{slot}"\n'
               f'     data-location=""></div>'),
        "iframe": ("<!-- location=: the visitor's city, URL-encoded, filled in per page view (e.g. location=Mumbai);\n"
                   "     empty serves from the slot-wide posterior. -->\n"
                   f'<iframe src="{base}/v1/embed/{tenant}/{slot}?location=" width="{info["width"]}" '
                   f'height="{info["height"]}"\n        style="border:0" loading="lazy" '
                   f'title="{html.escape(info["name"])}"></iframe>'),
        "curl": ("# VISITOR_CITY: the visitor's city (empty: the slot-wide posterior); CUSTOMER_ID: optional\n"
                 f"curl -G '{base}/v1/serve/{tenant}/{slot}' \\\n"
                 '     --data-urlencode "location=$VISITOR_CITY" --data-urlencode "customer_id=$CUSTOMER_ID"'),
    }
    preview_url = url_for("admin.preview", tenant=tenant, slot=slot)
    return render_template("admin/embed.html", tenant=tenant, slot=slot, info=info, snippets=snippets,
                           preview_url=preview_url)


@bp.get("/tenants/<tenant>/slots/<slot>/preview")
def preview(tenant: str, slot: str):
    """A banner as serving would choose it now, for the embed page's live preview. Nothing is logged: no
    impression, no click URL (the link is the banner's target, opened in a new tab), so a preview never
    teaches the slot nor shows up as traffic. Only a dashboard session reaches it (the guard)."""
    services.require_slot(_db(), tenant, slot)
    location = validation.normalize_location(request.args.get("location"), current_app.config["MAX_PARAM_LENGTH"])
    return jsonify(preview_choice(tenant, slot, location))


def preview_choice(tenant: str, slot: str, location: str) -> dict[str, Any]:
    """Draw from this worker's posterior cache as /v1/serve does, without recording anything."""
    rt = runtime.get()
    try:
        state = rt.cache.slot(tenant, slot)
    except SlotUnavailable:
        raise ServiceUnavailable(f"slot {tenant}/{slot} cannot be loaded right now; try again shortly",
                                 retry_after=1) from None
    if state is None or not state.active:
        raise NotFound(f"slot {tenant}/{slot} has no active banner to preview")
    choice = rt.choose(state.policy, Context(location, "", "admin-preview"))
    banner = state.active[choice.arm]
    return {"banner": {"id": banner.banner_id, "image_url": banner.image_url, "alt": banner.alt},
            "target_url": banner.target_url, "location": location, "propensity": round(choice.propensity, 4),
            "recorded": False}


# -- results --------------------------------------------------------------------------------------------------

def _results_query() -> tuple[str, int]:
    location = validation.normalize_location(request.args.get("location"), current_app.config["MAX_PARAM_LENGTH"])
    days = request.args.get("days", type=int)
    return location, days if days in RESULT_RANGES else DEFAULT_RANGE_DAYS


@bp.get("/tenants/<tenant>/slots/<slot>/results")
def results(tenant: str, slot: str):
    """Per banner: counts, CTR, posterior mean and 95% interval, P(best), traffic share; charts."""
    location, days = _results_query()
    report = services.slot_results(_db(), tenant, slot, location)   # P(best) as the API and the CSV give it
    series = services.traffic_series(_db(), tenant, slot, location, hours=24 * days)
    for row in report["banners"]:
        row["share_last_24h"] = series["banners"].get(row["id"], {}).get("share_last_24h")
    charts = {
        "labels": series["labels"],
        "banners": [row["id"] for row in report["banners"]],
        "ctr": {b: s["ctr"] for b, s in series["banners"].items()},
        "share": {b: s["share"] for b, s in series["banners"].items()},
        "impressions": {b: s["impressions"] for b, s in series["banners"].items()},
        "clicks": {b: s["clicks"] for b, s in series["banners"].items()},
        "density": services.posterior_densities(report["banners"]),
    }
    tenant_info = services.require_tenant(_db(), tenant)
    # The lift reads the window's lift_counts (a partition a UTC day): a slot without a holdout skips that read.
    earned = None
    if services.get_slot(_db(), tenant, slot)["holdout_percent"]:
        since = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).isoformat()
        earned = lift.slot_lift(_db(), tenant, slot, since=since, location=location)
    audience = referrers.referrer_report(_db(), tenant, slot, days, [b["id"] for b in report["banners"]])
    # A contextual slot: per feature, a banner × level table and chart (webapp/dashboard/context.py)
    context_tables = context_report.context_tables(
        report["context"], store.context_counts(_db(), tenant, slot) if report["context"] else ())
    return render_template("admin/results.html", tenant=tenant, slot=slot, report=report, charts=charts,
                           earned=earned, audience=audience, context_tables=context_tables,
                           context_charts=context_report.chart_data(context_tables),
                           location=location, days=days, ranges=RESULT_RANGES, series=series,
                           tenant_info=tenant_info, winner_threshold=services.WINNER_P_BEST,
                           p_best_draws=services.P_BEST_DRAWS)


@bp.get("/tenants/<tenant>/slots/<slot>/evaluation")
def evaluation(tenant: str, slot: str):
    """The latest off-policy evaluation of the slot (spark_jobs/evaluate.py): each candidate's estimates."""
    info = services.get_slot(_db(), tenant, slot)
    run, candidates = lift.latest_evaluation(_db(), tenant, slot)
    return render_template("admin/evaluation.html", tenant=tenant, slot=slot, info=info, run=run,
                           candidates=candidates)


def _csv_cell(value: Any) -> Any:
    """Keep a spreadsheet from reading a text cell as a formula."""
    if isinstance(value, str) and value[:1] in {"=", "+", "-", "@", "\t", "\r"}:
        return "'" + value
    return value


@bp.get("/tenants/<tenant>/slots/<slot>/results.csv")
def results_csv(tenant: str, slot: str):
    """The per-banner, per-location table (slot-wide rows first), then the referrer rows of the last ``days``
    days (the results page's range)."""
    _, days = _results_query()
    table = services.results_table(_db(), tenant, slot)
    columns = services.CSV_COLUMNS + referrers.CSV_EXTRA_COLUMNS
    banner_ids = list(dict.fromkeys(row[services.CSV_COLUMNS.index("banner")] for row in table))
    audience = referrers.referrer_report(_db(), tenant, slot, days, banner_ids)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in table:
        writer.writerow([_csv_cell(v) for v in row] + [""] * len(referrers.CSV_EXTRA_COLUMNS))
    for row in referrers.csv_rows(audience, columns):
        writer.writerow([_csv_cell(v) for v in row])
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{tenant}-{slot}-results.csv"'})
