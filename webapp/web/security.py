"""Security headers on every response, and which proxy headers to trust.

Every page gets a Content-Security-Policy that allows scripts and styles only from our own static files
(no inline code), X-Content-Type-Options: nosniff, a Referrer-Policy, and may be framed only by this
origin (frame-ancestors 'self' and X-Frame-Options: SAMEORIGIN); HSTS over https. A header that a view or
a blueprint already set is left as it is, so a part of the app with stricter needs (a sandboxed uploaded
image, a dashboard that must never be framed) keeps its own. Views that any site may put in an <iframe>
are decorated with :func:`embeddable`: frame-ancestors *, no X-Frame-Options, and a per-request nonce
for their inline <style> (``nonce="{{ csp_nonce() }}"`` in the template).

Why not flask-talisman: it assigns its headers after every blueprint's and view's own, overwriting them.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, make_response, request
from werkzeug.middleware.proxy_fix import ProxyFix

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' https: http: data:",        # banner images may live on any http(s) host (a CDN)
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'self'",
])

EMBED_CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "style-src 'self' 'nonce-{nonce}'",
    "img-src 'self' https: http: data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors *",
])

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}
HSTS = "max-age=31536000"


def csp_nonce() -> str:
    """This request's CSP nonce (made on first use); a Jinja global."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(18)
    return g.csp_nonce


def embeddable(view: Callable[..., Any]) -> Callable[..., Any]:
    """For views that any site may frame: their own CSP (frame-ancestors *, style nonce), no X-Frame-Options."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        g.frameable = True
        response = make_response(view(*args, **kwargs))
        response.headers["Content-Security-Policy"] = EMBED_CONTENT_SECURITY_POLICY.format(nonce=csp_nonce())
        return response

    return wrapper


def security_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        if name == "X-Frame-Options" and g.get("frameable"):
            continue
        response.headers.setdefault(name, value)
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    return response


def init_app(app: Flask) -> None:
    if app.config["TRUSTED_PROXIES"] > 0:
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    app.jinja_env.globals["csp_nonce"] = csp_nonce
    app.after_request(security_headers)
