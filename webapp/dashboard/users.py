"""Dashboard users: the platform admins' Users page (create, disable or enable, reset a password, delete), every
user's own password change, and a tenant admin's invite of a colleague to their tenant. Access is checked by
webapp.dashboard.guard before any of these runs; the rules live in webapp.dashboard.accounts.

Invites and resets hand out a one-time password, shown once to the admin who asked: its holder must choose
their own password before anything else (guard sends them to the password page)."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, url_for
from flask_login import current_user, login_user
from wtforms import SelectChoice

from webapp.dashboard import accounts, bp, platform_only
from webapp.dashboard.auth import DashboardUser
from webapp.dashboard.forms import EmptyForm, InviteForm, PasswordChangeForm, UserForm
from webapp.management import services
from webapp.web.errors import DomainError, InvalidInput


def _db():
    return current_app.extensions["cassandra"]


def _not_yourself(username: str, what: str) -> None:
    if username == current_user.username:
        raise InvalidInput(f"you cannot {what} yourself; ask another platform admin")


@bp.get("/users")
@platform_only
def users():
    return render_template("admin/users.html", users=accounts.list_users(_db()), action_form=EmptyForm())


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
            form.form_errors.append(exc.message)
        else:
            flash(f"User {user.username} created.", "success")
            return redirect(url_for("admin.users"))
    return render_template("admin/user_form.html", form=form)


# The actions below change or remove someone's account: each GET is a page asking to confirm, each POST (with
# its CSRF token) does it. Nothing changes on a GET.
CONFIRMATIONS = {
    "disable": ("Disable user {u}?", "{u} can no longer log in, and every open session of {u} ends now. You can "
                "enable the account again later.", "Disable {u}"),
    "delete": ("Delete user {u}?", "The account of {u} is removed and every open session of {u} ends now. "
               "Tenants, slots, banners and the event log are kept. This cannot be undone.", "Delete {u}"),
    "reset": ("Reset the password of {u}?", "The current password of {u} stops working and every open session "
              "of {u} ends. You get a one-time password to hand over; {u} chooses a new one at the next login.",
              "Reset the password"),
}


def _confirm(action: str, username: str, endpoint: str):
    user = accounts.require_user(_db(), username)
    title, message, button = (text.format(u=user.username) for text in CONFIRMATIONS[action])
    return render_template("admin/user_confirm.html", form=EmptyForm(), title=title, message=message,
                           button=button, action=url_for(endpoint, username=user.username),
                           danger=action != "reset")


def _refused(exc: DomainError):
    flash(exc.message, "error")
    return redirect(url_for("admin.users"))


@bp.route("/users/<username>/disable", methods=["GET", "POST"])
@platform_only
def user_disable(username: str):
    form = EmptyForm()
    if not form.validate_on_submit():
        return _confirm("disable", username, "admin.user_disable")
    try:
        _not_yourself(accounts.require_user(_db(), username).username, "disable")
        user = accounts.set_disabled(_db(), username, True)
    except DomainError as exc:
        return _refused(exc)
    flash(f"User {user.username} is disabled; their sessions have ended.", "success")
    return redirect(url_for("admin.users"))


@bp.post("/users/<username>/enable")
@platform_only
def user_enable(username: str):
    EmptyForm().validate_on_submit()                 # guard() has checked its CSRF token
    user = accounts.set_disabled(_db(), username, False)
    flash(f"User {user.username} is enabled.", "success")
    return redirect(url_for("admin.users"))


@bp.route("/users/<username>/delete", methods=["GET", "POST"])
@platform_only
def user_delete(username: str):
    form = EmptyForm()
    if not form.validate_on_submit():
        return _confirm("delete", username, "admin.user_delete")
    try:
        _not_yourself(accounts.require_user(_db(), username).username, "delete")
        user = accounts.delete_user(_db(), username)
    except DomainError as exc:
        return _refused(exc)
    flash(f"User {user.username} is deleted.", "success")
    return redirect(url_for("admin.users"))


@bp.route("/users/<username>/reset-password", methods=["GET", "POST"])
@platform_only
def user_reset_password(username: str):
    form = EmptyForm()
    if not form.validate_on_submit():
        return _confirm("reset", username, "admin.user_reset_password")
    try:
        _not_yourself(accounts.require_user(_db(), username).username, "reset the password of")
        user, password = accounts.reset_password(_db(), username)
    except DomainError as exc:
        return _refused(exc)
    return render_template("admin/one_time_password.html", username=user.username, password=password,
                           what="The password is reset.")


@bp.route("/account/password", methods=["GET", "POST"])
def account_password():
    """Any user's own password change; the first page after logging in with a one-time password."""
    form = PasswordChangeForm()
    if form.validate_on_submit():
        try:
            user = accounts.change_password(_db(), current_user.username, form.current_password.data,
                                            form.new_password.data)
        except DomainError as exc:
            form.form_errors.append(exc.message)
        else:
            login_user(DashboardUser(user))          # this session continues under the new epoch; others end
            flash("Your password is changed; your other sessions have ended.", "success")
            return redirect(url_for("admin.index"))
    return render_template("admin/account_password.html", form=form,
                           must_change=current_user.user.must_change_password)


@bp.route("/tenants/<tenant>/invite", methods=["GET", "POST"])
def tenant_invite(tenant: str):
    """Invite a colleague: a tenant admin of this tenant with a one-time password."""
    services.require_tenant(_db(), tenant)
    form = InviteForm()
    if form.validate_on_submit():
        try:
            user, password = accounts.invite_user(_db(), form.username.data, tenant)
        except DomainError as exc:
            form.form_errors.append(exc.message)
        else:
            return render_template("admin/one_time_password.html", username=user.username, password=password,
                                   tenant=tenant, what=f"{user.username} is invited as a tenant admin of {tenant}.")
    return render_template("admin/invite.html", form=form, tenant=tenant)
