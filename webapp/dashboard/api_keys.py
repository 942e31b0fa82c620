"""Dashboard: a tenant's API keys (list, create, revoke), for its tenant admins and platform admins.

Access is checked by webapp.dashboard.guard (the URL names the tenant); every write goes through
webapp.management.services, as the management API's do. A new key is shown once, on the page that made it.
"""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectChoice, SelectMultipleField, StringField, widgets
from wtforms.validators import DataRequired, Length

from webapp.dashboard import bp
from webapp.management import services
from webapp.web import api_keys
from webapp.web.errors import DomainError


class ApiKeyForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=services.MAX_KEY_NAME_LENGTH)],
                       description="What uses the key, such as 'shop backend'.")
    scopes = SelectMultipleField(
        "Scopes", choices=[SelectChoice("read", "read: lists and statistics"),
                           SelectChoice("write", "write: configuration changes"),
                           SelectChoice("events", "events: server-side clicks")],
        option_widget=widgets.CheckboxInput(), widget=widgets.ListWidget(prefix_label=False))


class RevokeForm(FlaskForm):
    key_id = HiddenField(validators=[DataRequired(), Length(max=64)])


def _db():
    return current_app.extensions["cassandra"]


@bp.route("/tenants/<tenant>/api-keys", methods=["GET", "POST"])
def api_keys_page(tenant: str):
    found = services.require_tenant(_db(), tenant)
    form = ApiKeyForm()
    created = None
    if form.validate_on_submit():
        try:
            created = services.create_api_key(_db(), tenant, form.name.data, list(form.scopes.data or []))
        except DomainError as exc:
            form.form_errors.append(exc.message)
        else:
            form = ApiKeyForm(formdata=None)
    return render_template("admin/api_keys.html", tenant=tenant, info=found, form=form, created=created,
                           keys=services.list_api_keys(_db(), tenant), revoke_form=RevokeForm(formdata=None))


@bp.post("/tenants/<tenant>/api-keys/revoke")
def api_key_revoke(tenant: str):
    form = RevokeForm()
    if form.validate_on_submit():
        services.revoke_api_key(_db(), tenant, form.key_id.data)
        api_keys.forget(current_app._get_current_object(), form.key_id.data)  # type: ignore[attr-defined]
        flash("API key revoked; every server refuses it within a few seconds.", "success")
    return redirect(url_for("admin.api_keys_page", tenant=tenant))
