"""Dashboard login and logout; the Flask-Login user; where a login may send the browser next."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Response, current_app, flash, redirect, render_template, request, session, url_for
from flask_limiter.util import get_remote_address
from flask_login import UserMixin, login_user, logout_user

from webapp.dashboard import accounts, bp
from webapp.dashboard.forms import LoginForm
from webapp.web.rate_limits import limiter


class DashboardUser(UserMixin):
    """The logged-in account as Flask-Login sees it; the session stores only the username."""

    def __init__(self, user: accounts.User) -> None:
        self.user = user
        self.username = user.username
        self.role = user.role
        self.tenant_id = user.tenant_id

    def get_id(self) -> str:
        return self.username

    @property
    def is_platform_admin(self) -> bool:
        return self.user.is_platform_admin

    def can_manage(self, tenant_id: str) -> bool:
        return self.user.can_manage(tenant_id)


def load_user(username: str) -> DashboardUser | None:
    """Flask-Login's user loader: read the user on every request, so a changed role applies at once."""
    user = accounts.get_user(current_app.extensions["cassandra"], username)
    return DashboardUser(user) if user else None


def safe_next(target: str | None) -> str | None:
    """``target`` when it is a path inside the dashboard on this site; None for anything that could leave
    it (an absolute or scheme-relative URL, backslashes, control characters)."""
    if not target or len(target) > 2048 or "\\" in target or any(ord(ch) < 32 for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(bp.url_prefix + "/"):
        return None
    if target.startswith("//") or parts.path.startswith(bp.url_prefix + "/login"):
        return None
    return target


def login_failed(response: Response) -> bool:
    """Only failed login attempts count toward the login rate limit (a success redirects)."""
    return response.status_code != 302


def login_username() -> str:
    """Rate-limit key of the username being tried, so one account is not guessed from many addresses."""
    return "user:" + (request.form.get("username") or "").strip().casefold()[:64]


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"], deduct_when=login_failed, key_func=get_remote_address,
               error_message="Too many failed logins from your address; wait a minute.")
@limiter.limit(_login_limit, methods=["POST"], deduct_when=login_failed, key_func=login_username,
               error_message="Too many failed logins for this user; wait a minute.")
def login():
    form = LoginForm()
    next_url = safe_next(request.args.get("next"))
    if form.validate_on_submit():
        user = accounts.authenticate(current_app.extensions["cassandra"], form.username.data,
                                     form.password.data)
        if user is not None:
            session.clear()
            session.permanent = True
            login_user(DashboardUser(user))
            return redirect(next_url or url_for("admin.index"))
        form.password.errors.append("Wrong username or password.")
    status = 200 if request.method == "GET" else 401
    return render_template("admin/login.html", form=form, next_url=next_url), status


@bp.post("/logout")
def logout():
    logout_user()
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("admin.login"))
