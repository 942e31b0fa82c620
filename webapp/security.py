"""Security headers (flask-talisman) on every response, and which proxy headers to trust.

Every page gets a Content-Security-Policy that allows scripts and styles only from our own static files
(no inline code), X-Content-Type-Options: nosniff, a Referrer-Policy, and may be framed only by this
origin (frame-ancestors 'self' and X-Frame-Options: SAMEORIGIN). The iframe embed page is the exception:
any site may frame it (frame-ancestors *, no X-Frame-Options), and its one inline <style> carries a
per-request nonce.
"""

from __future__ import annotations

from flask import Flask
from flask_talisman import SAMEORIGIN, Talisman
from werkzeug.middleware.proxy_fix import ProxyFix

talisman = Talisman()

# Banner images may live on any http(s) host (a publisher's CDN).
CONTENT_SECURITY_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' https: http: data:",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'self'",
}

EMBED_CONTENT_SECURITY_POLICY = {
    "default-src": "'none'",
    "style-src": "'self'",                 # + the nonce of the page's inline <style>
    "img-src": "'self' https: http: data:",
    "base-uri": "'none'",
    "form-action": "'none'",
    "frame-ancestors": "*",
}

# For views that any site may put in an <iframe>: use under the route decorator.
embeddable = talisman(frame_options=None, content_security_policy=EMBED_CONTENT_SECURITY_POLICY,
                      content_security_policy_nonce_in=["style-src"])


def init_app(app: Flask) -> None:
    if app.config["TRUSTED_PROXIES"] > 0:
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    talisman.init_app(
        app,
        force_https=False,                 # TLS is the reverse proxy's business; HSTS is still sent over https
        strict_transport_security_include_subdomains=False,
        content_security_policy=CONTENT_SECURITY_POLICY,
        frame_options=SAMEORIGIN,
        referrer_policy="strict-origin-when-cross-origin",
        # Leave the session cookie settings to the config instead of Talisman's own defaults.
        session_cookie_secure=False,
        session_cookie_samesite=app.config.get("SESSION_COOKIE_SAMESITE") or "Lax",
    )
