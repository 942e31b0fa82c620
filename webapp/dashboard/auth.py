"""Dashboard login and logout; the Flask-Login user; where a login may send the browser next."""

from __future__ import annotations

import hmac
import math
import posixpath
import time
from urllib.parse import quote, unquote, urlsplit

from flask import Response, current_app, flash, redirect, render_template, request, session, url_for
from flask_limiter.util import get_remote_address
from flask_login import UserMixin, current_user, login_user, logout_user

from webapp.dashboard import accounts, bp
from webapp.dashboard.forms import LoginForm
from webapp.web.rate_limits import limiter

SESSION_ID_SEPARATOR = "|"      # in neither usernames nor session epochs (URL-safe base64)


class DashboardUser(UserMixin):
    """The logged-in account as Flask-Login sees it: the session stores the username and the user's session
    epoch at login (see webapp.dashboard.accounts), so a replaced epoch ends the session."""

    def __init__(self, user: accounts.User) -> None:
        self.user = user
        self.username = user.username
        self.role = user.role
        self.tenant_id = user.tenant_id

    def get_id(self) -> str:
        return f"{self.username}{SESSION_ID_SEPARATOR}{self.user.session_epoch}"

    @property
    def is_platform_admin(self) -> bool:
        return self.user.is_platform_admin

    def can_manage(self, tenant_id: str) -> bool:
        return self.user.can_manage(tenant_id)


def load_user(session_id: str) -> DashboardUser | None:
    """Flask-Login's user loader: read the user on every request, so a changed role applies at once and a
    session ends when its user is deleted or disabled or its epoch was replaced (logout, password change)."""
    username, separator, epoch = session_id.partition(SESSION_ID_SEPARATOR)
    if not separator:
        return None                                     # a cookie from before session epochs
    user = accounts.get_user(current_app.extensions["cassandra"], username)
    if user is None or user.disabled or not hmac.compare_digest(user.session_epoch, epoch):
        return None
    return DashboardUser(user)


def safe_next(target: str | None) -> str | None:
    """``target`` when it is a path inside the dashboard on this site, with its path normalized; None for
    anything that could leave it: an absolute or scheme-relative URL, backslashes, control characters, and a
    path that leaves /admin/ once its percent-encoding is decoded and its dot segments resolved (as a
    browser or a proxy may)."""
    if not target or len(target) > 2048 or "\\" in target or any(ord(ch) < 32 for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or target.startswith("//"):
        return None
    path = unquote(parts.path)
    if "\\" in path or "//" in path or any(ord(ch) < 32 for ch in path):
        return None
    normalized = posixpath.normpath(path) + ("/" if path.endswith("/") else "")
    prefix = bp.url_prefix + "/"
    if not normalized.startswith(prefix) or normalized.startswith(bp.url_prefix + "/login"):
        return None
    return quote(normalized) + (f"?{parts.query}" if parts.query else "")


def login_failed(response: Response) -> bool:
    """Only failed login attempts count toward the login rate limit (a success redirects)."""
    return response.status_code != 302


def login_user_and_address() -> str:
    """Rate-limit key of the (username tried, client address) pair: failures for a user from one address
    do not lock that user out at another (the real user's) address."""
    return "user:" + (request.form.get("username") or "").strip().casefold()[:64] + "@" + get_remote_address()


def login_retry_after() -> str:
    """Seconds until the login limit that was hit resets: the Retry-After of a 429 (at least 1)."""
    current = limiter.current_limit
    return str(max(1, math.ceil(current.reset_at - time.time())) if current else 60)


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _login_address_limit() -> str:
    return current_app.config["LOGIN_ADDRESS_RATE_LIMIT"]


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_address_limit, methods=["POST"], deduct_when=login_failed, key_func=get_remote_address,
               error_message="Too many failed logins from your address; wait a minute.")
@limiter.limit(_login_limit, methods=["POST"], deduct_when=login_failed, key_func=login_user_and_address,
               error_message="Too many failed logins for this user from your address; wait a minute.")
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
    accounts.end_sessions(current_app.extensions["cassandra"], current_user.username)
    logout_user()
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("admin.login"))
