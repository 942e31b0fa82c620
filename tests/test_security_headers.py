"""Security headers on every page (CSP, nosniff, Referrer-Policy, frame options) and no open redirect."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest

from tests.helpers import gen_slot, sync
from webapp.storage import store


def csp(response) -> dict[str, str]:
    """The Content-Security-Policy header as {directive: sources}."""
    directives = (part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";"))
    return {d[0]: d[1] if len(d) > 1 else "" for d in directives}


class InlineCode(HTMLParser):
    """Collects what a strict CSP would block: inline <script>, <style>, style= and on…= attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.style_nonces: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script" and not attributes.get("src"):
            self.found.append("inline <script>")
        if tag == "style":
            if attributes.get("nonce"):
                self.style_nonces.append(attributes["nonce"])
            else:
                self.found.append("<style> without a nonce")
        self.found += [f"{name}= on <{tag}>" for name in attributes if name == "style" or name.startswith("on")]


def inline_code(html: str) -> InlineCode:
    parser = InlineCode()
    parser.feed(html)
    return parser


def assert_common_headers(response) -> None:
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert "Content-Security-Policy" in response.headers


def test_demo_page_has_a_strict_csp_and_no_inline_code(client):
    page = client.get("/")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    assert_common_headers(page)
    policy = csp(page)
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'self'"
    assert page.headers["X-Frame-Options"] == "SAMEORIGIN"
    parsed = inline_code(page.get_data(as_text=True))
    assert parsed.found == [] and parsed.style_nonces == []
    # Its script and style are static files of this origin.
    for asset in ("/static/demo.js", "/static/demo.css", "/static/embed.js"):
        assert asset in page.get_data(as_text=True)
        response = client.get(asset)
        assert response.status_code == 200
        response.close()


def test_embed_page_can_be_framed_by_any_site_and_its_style_has_a_fresh_nonce(app, client):
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    nonces = []
    for _ in range(2):
        page = client.get(f"/v1/embed/{tenant}/{slot}")
        assert page.status_code == 200
        assert_common_headers(page)
        assert "X-Frame-Options" not in page.headers
        policy = csp(page)
        assert policy["frame-ancestors"] == "*"
        assert policy["default-src"] == "'none'"
        assert "script-src" not in policy                 # falls back to default-src 'none': no script at all
        assert "https:" in policy["img-src"].split()      # banner images come from the publisher's CDN
        parsed = inline_code(page.get_data(as_text=True))
        assert parsed.found == []
        assert len(parsed.style_nonces) == 1
        assert re.fullmatch(rf"'self' 'nonce-{re.escape(parsed.style_nonces[0])}'", policy["style-src"])
        nonces.append(parsed.style_nonces[0])
    assert nonces[0] != nonces[1] and len(nonces[0]) >= 16


@pytest.mark.parametrize("path", ["/no-such-page", "/v1/serve/nobody/nothing", "/v1/ping", "/openapi.json"])
def test_every_response_gets_the_headers(client, path):
    response = client.get(path)
    assert_common_headers(response)
    assert csp(response)["frame-ancestors"] == "'self'"
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"


def test_hsts_only_over_https(client):
    assert "Strict-Transport-Security" not in client.get("/v1/ping").headers
    secure = client.get("/v1/ping", base_url="https://localhost")
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_headers_a_view_sets_itself_are_kept(app_factory):
    """E.g. a sandboxed policy on an uploaded image, or a page that must never be framed."""
    app = app_factory()

    @app.get("/own-headers")
    def own_headers():
        return "x", {"Content-Security-Policy": "default-src 'none'; sandbox", "X-Frame-Options": "DENY",
                     "Referrer-Policy": "no-referrer"}

    response = app.test_client().get("/own-headers")
    assert response.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"         # the ones it did not set are added


# -- redirects --------------------------------------------------------------------------------------------

EVIL = "https://evil.example/phish"
REDIRECT_PARAMETERS = ("next", "url", "redirect", "redirect_uri", "return_to", "target", "target_url", "to",
                       "dest", "continue", "r", "u")


def test_click_redirects_only_to_the_stored_target(app, client):
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    token = client.get(f"/v1/serve/{tenant}/{slot}").get_json()["token"]
    query = "&".join(f"{name}={EVIL}" for name in REDIRECT_PARAMETERS)
    response = client.get(f"/v1/click/{token}?{query}")
    assert response.status_code == 302
    assert response.headers["Location"] == "https://shop.example.com/a"


@pytest.mark.parametrize("stored", ["javascript:alert(1)", "//evil.example/", "data:text/html,hi", ""])
def test_click_does_not_redirect_to_a_stored_target_that_is_not_http(app, client, stored):
    """Should a non-http(s) target reach the table by another way than the API, the click still won't follow it."""
    tenant, slot = gen_slot(client, ["a"])
    store.put_banner(app.extensions["cassandra"], tenant, slot, "a", store.BannerFields(
        image_url="https://cdn.example.com/a.png", target_url=stored, alt="", active=True))
    sync(app)
    token = client.get(f"/v1/serve/{tenant}/{slot}").get_json()["token"]
    response = client.get(f"/v1/click/{token}")
    assert response.status_code == 404
    assert "Location" not in response.headers
    assert "target URL" in response.get_json()["error"] or "no longer exists" in response.get_json()["error"]


def test_no_route_redirects_to_a_url_from_the_request(app, client, admin_headers):
    tenant, slot = gen_slot(client, ["a"])
    sync(app)
    query = "&".join(f"{name}={EVIL}" for name in REDIRECT_PARAMETERS)
    values = {"tenant": tenant, "slot": slot, "banner": "a", "token": "evil.example", "filename": "embed.js"}
    paths = {"//evil.example/", "//evil.example/%2F..", "/\\evil.example/", "/%2F%2Fevil.example/",
             "/static//evil.example", "//v1/ping"}
    for rule in app.url_map.iter_rules():
        if "GET" in rule.methods:
            path = rule.rule
            for name, value in values.items():
                path = path.replace(f"<{name}>", value).replace(f"<path:{name}>", value)
            paths.add(path)
    for path in sorted(paths):
        response = client.get(f"{path}?{query}", headers={**admin_headers, "Referer": EVIL})
        location = response.headers.get("Location")
        if location is not None:           # e.g. Werkzeug's 308 from "//v1/ping" to "/v1/ping": same host
            assert urlsplit(urljoin("http://localhost/", location)).netloc == "localhost", (path, location)
        response.close()
