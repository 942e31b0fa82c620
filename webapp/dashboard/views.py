"""Dashboard pages: tenants, slots, banners, embed code, results, users. Access is checked by
webapp.dashboard.guard before any of these runs; every write goes through webapp.management.services."""

from __future__ import annotations

import csv
import html
import io
import json
from typing import Any
from urllib.parse import quote, urlencode

import numpy as np
from flask import Response, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from wtforms import SelectChoice

from webapp.dashboard import accounts, bp, platform_only
from webapp.dashboard.forms import ActiveForm, BannerForm, EmptyForm, LoginForm, SlotForm, TenantForm, UserForm
from webapp.management import services
from webapp.serving import media
from webapp.web import security, validation
from webapp.web.errors import DomainError, InvalidInput, NotFound

RESULT_RANGES = {1: "last 24 hours", 3: "last 3 days", 7: "last 7 days", 30: "last 30 days"}
DEFAULT_RANGE_DAYS = 7


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
    return render_template("admin/login.html", form=form, next_url=None), 429


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


# -- slots ----------------------------------------------------------------------------------------------------

def _save_slot(form: SlotForm, tenant: str, slot: str) -> None:
    text = (form.decay_half_life_hours.data or "").strip()
    try:
        half_life: object = float(text) if text else None
    except ValueError:
        half_life = text            # not a number: put_slot says what it must be
    services.put_slot(_db(), tenant, slot, form.name.data, size=form.size.data,
                      locations=form.locations.data or "",
                      max_location_length=current_app.config["MAX_PARAM_LENGTH"],
                      decay_half_life_hours=half_life)


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
    return render_template("admin/slot.html", tenant=tenant, slot=slot, info=info,
                           banners=services.list_banners(_db(), tenant, slot), active_form=ActiveForm(),
                           refresh_seconds=current_app.config["CACHE_REFRESH_SECONDS"])


@bp.route("/tenants/<tenant>/slots/<slot>/edit", methods=["GET", "POST"])
def slot_edit(tenant: str, slot: str):
    info = services.get_slot(_db(), tenant, slot)
    half_life = info["decay_half_life_hours"]
    form = SlotForm(data={"slot_id": slot, "name": info["name"], "size": info["size"],
                          "locations": "\n".join(info["locations"]),
                          "decay_half_life_hours": f"{half_life:g}" if half_life else ""})
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
                        active=bool(form.active.data))


@bp.route("/tenants/<tenant>/slots/<slot>/new-banner", methods=["GET", "POST"])
def banner_new(tenant: str, slot: str):
    services.require_slot(_db(), tenant, slot)
    form = BannerForm()
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
    return render_template("admin/banner_form.html", form=form, tenant=tenant, slot=slot, banner=None)


@bp.route("/tenants/<tenant>/slots/<slot>/banners/<banner>/edit", methods=["GET", "POST"])
def banner_edit(tenant: str, slot: str, banner: str):
    current = services.get_banner(_db(), tenant, slot, banner)
    form = BannerForm(data={"banner_id": banner, "target_url": current["target_url"], "alt": current["alt"],
                            "active": current["active"]})
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
                           current=current)


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
    location = info["locations"][0].title() if info["locations"] else "Mumbai"
    # The snippets are pasted into other sites' HTML and shells: escape what a user typed for that context.
    snippets = {
        "js": (f'<script src="{base}/static/embed.js" async></script>\n'
               f'<div data-banner-bandit data-tenant="{tenant}" data-slot="{slot}"\n'
               f'     data-location="{html.escape(location)}"></div>'),
        "iframe": (f'<iframe src="{base}/v1/embed/{tenant}/{slot}" width="{info["width"]}" '
                   f'height="{info["height"]}"\n        style="border:0" loading="lazy" '
                   f'title="{html.escape(info["name"])}"></iframe>'),
        "curl": (f"curl '{base}/v1/serve/{tenant}/{slot}?"
                 f"{urlencode({'location': location, 'customer_id': 'c123'}, quote_via=quote)}'"),
    }
    preview_url = url_for("serving.embed", tenant=tenant, slot=slot, referrer_id="admin-preview")
    return render_template("admin/embed.html", tenant=tenant, slot=slot, info=info, snippets=snippets,
                           preview_url=preview_url)


# -- results --------------------------------------------------------------------------------------------------

def _results_query() -> tuple[str, int]:
    location = validation.normalize_location(request.args.get("location"), current_app.config["MAX_PARAM_LENGTH"])
    days = request.args.get("days", type=int)
    return location, days if days in RESULT_RANGES else DEFAULT_RANGE_DAYS


@bp.get("/tenants/<tenant>/slots/<slot>/results")
def results(tenant: str, slot: str):
    """Per banner: counts, CTR, posterior mean and 95% interval, P(best), traffic share; charts."""
    location, days = _results_query()
    rng = np.random.default_rng(current_app.config["RANDOM_SEED"])
    report = services.slot_results(_db(), tenant, slot, location, rng)
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
    return render_template("admin/results.html", tenant=tenant, slot=slot, report=report, charts=charts,
                           location=location, days=days, ranges=RESULT_RANGES, series=series,
                           tenant_info=tenant_info, winner_threshold=services.WINNER_P_BEST,
                           p_best_draws=services.P_BEST_DRAWS)


def _csv_cell(value: Any) -> Any:
    """Keep a spreadsheet from reading a text cell as a formula."""
    if isinstance(value, str) and value[:1] in {"=", "+", "-", "@", "\t", "\r"}:
        return "'" + value
    return value


@bp.get("/tenants/<tenant>/slots/<slot>/results.csv")
def results_csv(tenant: str, slot: str):
    """The per-banner, per-location table (slot-wide rows first)."""
    rng = np.random.default_rng(current_app.config["RANDOM_SEED"])
    table = services.results_table(_db(), tenant, slot, rng)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(services.CSV_COLUMNS)
    for row in table:
        writer.writerow([_csv_cell(v) for v in row])
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{tenant}-{slot}-results.csv"'})


# -- users ----------------------------------------------------------------------------------------------------

@bp.get("/users")
@platform_only
def users():
    return render_template("admin/users.html", users=accounts.list_users(_db()))


@bp.route("/new-user", methods=["GET", "POST"])
@platform_only
def user_new():
    form = UserForm()
    form.tenant_id.choices = [SelectChoice("", "—")] + [SelectChoice(t["id"], f"{t['id']} — {t['name']}")
                                                         for t in services.list_tenants(_db())]
    if form.validate_on_submit():
        try:
            written, user = accounts.create_user(_db(), form.username.data, form.password.data, form.role.data,
                                                 form.tenant_id.data or "")
            if not written:
                raise InvalidInput(f"user {user.username} already exists")
        except DomainError as exc:
            _fail(form, exc)
        else:
            flash(f"User {user.username} created.", "success")
            return redirect(url_for("admin.users"))
    return render_template("admin/user_form.html", form=form)
