"""The admin dashboard at /admin: Flask-Login sessions, Flask-WTF forms with CSRF, Flask-Limiter on login.

Access is decided in one place, :func:`guard`, before every dashboard view:

* every request that changes state carries a valid CSRF token;
* every view except the login page needs a logged-in user (whose session has not been ended: see
  webapp.dashboard.auth.load_user); a user holding a one-time password goes to the password page first;
* a view marked :func:`platform_only` needs a platform admin (else 403);
* a view whose URL names a ``tenant`` needs a user who can manage that tenant (else 404, so a tenant admin
  cannot even learn which other tenants exist).

Views never check roles themselves; ``tests/test_admin_access.py`` walks the URL map so a new route is
covered without anyone remembering to add it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import Blueprint, Flask, Response, abort, current_app, redirect, request, url_for
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFProtect
from limits import parse_many

bp = Blueprint("admin", __name__, url_prefix="/admin")
csrf = CSRFProtect()

PUBLIC_ENDPOINTS = {"admin.login"}
PASSWORD_CHANGE_ENDPOINTS = {"admin.account_password", "admin.logout"}
UPLOAD_ENDPOINTS = {"admin.banner_new", "admin.banner_edit"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
UPLOAD_FORM_OVERHEAD = 64 * 1024       # bytes of form fields besides the image in an upload request

# Dashboard pages load scripts, styles and charts from this origin only; banner images may come from any
# http(s) host; the live preview frames this origin's embed page.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' http: https: data:; "
    "frame-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)

View = TypeVar("View", bound=Callable)


def platform_only(view: View) -> View:
    """Mark a view as for platform admins only (enforced by :func:`guard`)."""
    view.platform_only = True  # type: ignore[attr-defined]
    return view


@bp.before_request
def guard() -> Response | None:
    """CSRF, login and role checks for every dashboard request (see the module docstring)."""
    if request.endpoint in UPLOAD_ENDPOINTS:
        request.max_content_length = current_app.config["MAX_IMAGE_BYTES"] + UPLOAD_FORM_OVERHEAD
    if request.method not in SAFE_METHODS:
        csrf.protect()
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
    if current_user.user.must_change_password and request.endpoint not in PASSWORD_CHANGE_ENDPOINTS:
        return redirect(url_for("admin.account_password"))     # a one-time password: choose your own first
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, "platform_only", False) and not current_user.is_platform_admin:
        abort(403)
    tenant = (request.view_args or {}).get("tenant")
    if tenant is not None and not current_user.can_manage(tenant):
        abort(404)
    return None


@bp.after_request
def security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def init_app(app: Flask) -> None:
    """Sessions, CSRF and login for ``app``; registers the blueprint. The login rate limit (webapp.web.rate_limits'
    limiter, initialized before) is a decorator of the login view."""
    for key in ("LOGIN_RATE_LIMIT", "LOGIN_ADDRESS_RATE_LIMIT"):
        try:
            parse_many(app.config[key])
        except ValueError:
            raise ValueError(f"{key}={app.config[key]!r} is not a rate limit such as '10/minute'") from None
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)   # guard() checks the dashboard's requests
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)       # a token lives as long as the session
    csrf.init_app(app)

    login_manager = LoginManager(app)
    login_manager.login_view = "admin.login"

    from webapp.dashboard import api_keys, auth, deletes, users, views  # noqa: F401 - registers the routes on bp

    login_manager.user_loader(auth.load_user)
    app.register_blueprint(bp)
