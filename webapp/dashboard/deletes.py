"""Dashboard deletes of tenants (platform admins only), slots and banners. Each GET is a page saying what
will go and that the event log stays; the POST (with its CSRF token, checked by guard) deletes through
webapp.management.services, which writes the change feed, then goes back to the parent page. Nothing changes
on a GET."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, url_for

from webapp.dashboard import bp, platform_only
from webapp.dashboard.forms import EmptyForm
from webapp.management import services

KEPT = ("The event log, counters and results history are kept: a slot or banner created again under the "
        "same ID finds them. This cannot be undone.")


def _db():
    return current_app.extensions["cassandra"]


def _confirm(title: str, message: str, button: str, action: str, cancel: str):
    return render_template("admin/confirm.html", form=EmptyForm(), title=title, message=message, kept=KEPT,
                           button=button, action=action, cancel_url=cancel, danger=True)


def _refresh_note() -> str:
    return f"serving stops within {current_app.config['CACHE_REFRESH_SECONDS']:g} s"


@bp.route("/tenants/<tenant>/delete", methods=["GET", "POST"])
@platform_only
def tenant_delete(tenant: str):
    info = services.require_tenant(_db(), tenant)
    if not EmptyForm().validate_on_submit():
        slots = services.list_slots(_db(), tenant)
        return _confirm(f"Delete tenant {tenant}?",
                        f"Tenant {tenant} ({info['name']}) its {len(slots)} slot(s) with their banners and its "
                        "API keys are removed, and its banners stop being served.",
                        f"Delete tenant {tenant}", url_for("admin.tenant_delete", tenant=tenant),
                        url_for("admin.tenant", tenant=tenant))
    services.delete_tenant(_db(), tenant)
    flash(f"Tenant {tenant} is deleted; {_refresh_note()}.", "success")
    return redirect(url_for("admin.index"))


@bp.route("/tenants/<tenant>/slots/<slot>/delete", methods=["GET", "POST"])
def slot_delete(tenant: str, slot: str):
    info = services.get_slot(_db(), tenant, slot)
    if not EmptyForm().validate_on_submit():
        banners = services.list_banners(_db(), tenant, slot)
        return _confirm(f"Delete slot {slot}?",
                        f"Slot {slot} ({info['name']}) and its {len(banners)} banner(s) are removed; pages "
                        "that embed it get no banner.",
                        f"Delete slot {slot}", url_for("admin.slot_delete", tenant=tenant, slot=slot),
                        url_for("admin.slot", tenant=tenant, slot=slot))
    services.delete_slot(_db(), tenant, slot)
    flash(f"Slot {slot} is deleted; {_refresh_note()}.", "success")
    return redirect(url_for("admin.tenant", tenant=tenant))


@bp.route("/tenants/<tenant>/slots/<slot>/banners/<banner>/delete", methods=["GET", "POST"])
def banner_delete(tenant: str, slot: str, banner: str):
    services.get_banner(_db(), tenant, slot, banner)
    if not EmptyForm().validate_on_submit():
        return _confirm(f"Delete banner {banner}?",
                        f"Banner {banner} is removed from slot {slot}; the slot's other banners keep serving. "
                        "To stop it for a while only, pause it instead.",
                        f"Delete banner {banner}",
                        url_for("admin.banner_delete", tenant=tenant, slot=slot, banner=banner),
                        url_for("admin.slot", tenant=tenant, slot=slot))
    services.delete_banner(_db(), tenant, slot, banner)
    flash(f"Banner {banner} is deleted; {_refresh_note()}.", "success")
    return redirect(url_for("admin.slot", tenant=tenant, slot=slot))
