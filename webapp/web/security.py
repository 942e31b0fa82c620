"""Security headers on every response, and which proxy headers to trust.

Every page gets a Content-Security-Policy that allows scripts and styles only from our own static files
(no inline code), X-Content-Type-Options: nosniff, a Referrer-Policy, and may be framed only by this
origin (frame-ancestors 'self' and X-Frame-Options: SAMEORIGIN); HSTS over https. A header that a view or
a blueprint already set is left as it is, so a part of the app with stricter needs (a sandboxed uploaded
image, a dashboard that must never be framed) keeps its own. Views that any site may put in an <iframe>
are decorated with :func:`embeddable`: frame-ancestors *, no X-Frame-Options, and a per-request nonce
for their inline <style> (``nonce="{{ csp_nonce() }}"`` in the template).

Why not flask-talisman: it assigns its headers after every blueprint's and view's own, overwriting them.

Hosts and proxies: Flask answers 400 to a ``Host`` not in ALLOWED_HOSTS (its TRUSTED_HOSTS, with the loopback
names and PUBLIC_BASE_URL's host); public URLs are built from PUBLIC_BASE_URL when it is set; forwarded
headers are honoured only through ProxyFix, for TRUSTED_PROXIES hops (gunicorn.conf.py trusts none itself).
"""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Request, Response, current_app, g, make_response, request
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
    "frame-ancestors {ancestors}",
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
        response.headers["Content-Security-Policy"] = EMBED_CONTENT_SECURITY_POLICY.format(
            nonce=csp_nonce(), ancestors=g.get("frame_ancestors") or "*")   # a tenant's allowed origins
        return response

    return wrapper


def bearer_token(req: Request) -> str:
    """The request's ``Authorization: Bearer <token>``, or ''."""
    scheme, _, token = (req.headers.get("Authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison; an unset (empty) expected token matches nothing."""
    return bool(expected) and bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def may_read_counts(req: Request, tenant_id: str) -> bool:
    """Whether this request may see a tenant's counts and posterior parameters (alpha, beta) in a public
    answer: a caller with the platform token (ADMIN_API_TOKEN), or with that tenant's own API key of scope
    ``read`` (webapp.web.api_keys). Anyone else, a wrong or revoked key included, gets the public answer."""
    if token_matches(bearer_token(req), current_app.config["ADMIN_API_TOKEN"]):
        return True
    if not bearer_token(req):
        return False
    from webapp.web import api_keys  # a tenant key: looked up (and cached) as the management API does
    try:
        principal = api_keys.authenticate(req, required=False)
    except Exception:  # noqa: BLE001 - a wrong or revoked key, or Cassandra away: the public answer
        return False
    return principal is not None and principal.tenant_id == tenant_id and "read" in principal.scopes


def public_base_url() -> str:
    """The base of public URLs (click URLs, embed snippets, uploaded images), without a trailing '/':
    PUBLIC_BASE_URL, else this request's own scheme, host (one of ALLOWED_HOSTS) and script root."""
    configured = current_app.config["PUBLIC_BASE_URL"]
    if configured:
        return configured.rstrip("/")
    return f"{request.scheme}://{request.host}{request.script_root}"


# Werkzeug 3.1 cannot match an IPv6 literal Host ("[::1]:8000") against a trusted list: reach the server by a
# name or an IPv4 address.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1")


def trusted_hosts(config: dict[str, Any]) -> list[str]:
    """Flask's TRUSTED_HOSTS from ALLOWED_HOSTS: the loopback names, PUBLIC_BASE_URL's host and the
    configured names (a leading '.' matches subdomains)."""
    hosts = [*LOOPBACK_HOSTS]
    base_host = urlsplit(config.get("PUBLIC_BASE_URL") or "").hostname
    if base_host:
        hosts.append(base_host)
    hosts += [h.strip().strip("[]").lower() for h in (config.get("ALLOWED_HOSTS") or "").split(",") if h.strip()]
    return list(dict.fromkeys(hosts))


def security_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        if name == "X-Frame-Options" and g.get("frameable"):
            continue
        response.headers.setdefault(name, value)
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    return response


def init_app(app: Flask) -> None:
    app.config["TRUSTED_HOSTS"] = trusted_hosts(app.config)
    if app.config["TRUSTED_PROXIES"] > 0:
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    app.jinja_env.globals["csp_nonce"] = csp_nonce
    app.after_request(security_headers)
