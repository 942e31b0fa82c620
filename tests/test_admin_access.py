"""Who may open what in the dashboard: every /admin route is walked from the URL map, so a new route is
checked without anyone adding it here. Also CSRF on every form, safe next=, cookies and the login limit."""

from __future__ import annotations

import pytest

from tests.helpers import PASSWORD, csrf_token, gen_slot, gen_user, login, make_config, page_token
from webapp import create_app
from webapp.dashboard import accounts
from webapp.management import services

PUBLIC = {"admin.login"}
SESSION = {"admin.login", "admin.logout"}      # hold no tenant's data; walking them would end the session
OWN_ACCOUNT = {"admin.account_password"}        # any logged-in user's own account, no tenant's data


@pytest.fixture(scope="module")
def world(keyspace):
    """Tenant 'mine' (with a tenant admin) and tenant 'other', each with slot hero and banner b1; made once
    per module (password hashing is deliberately slow)."""
    app = create_app(make_config(keyspace))
    client = app.test_client()
    mine, _ = gen_slot(client, ["b1"])
    other, _ = gen_slot(client, ["b1"])
    yield {
        "mine": mine, "other": other,
        "platform": gen_user(app, accounts.ROLE_PLATFORM),
        "tenant_admin": gen_user(app, accounts.ROLE_TENANT, mine),
    }
    app.extensions["cassandra"].shutdown()


def admin_rules(app):
    rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("admin.")]
    assert len(rules) >= 15
    return rules


def url_for_rule(rule, tenant: str, username: str = "nobody") -> str:
    values = {"tenant": tenant, "slot": "hero", "banner": "b1", "username": username}
    _, path = rule.build({k: values[k] for k in rule.arguments})
    return path


def methods(rule) -> list[str]:
    return sorted(rule.methods & {"GET", "POST"})


def is_platform_only(app, rule) -> bool:
    return getattr(app.view_functions[rule.endpoint], "platform_only", False)


def test_every_route_but_login_needs_a_login(app, client, world):
    token = csrf_token(client.get("/admin/login").get_data(as_text=True))
    checked = 0
    for rule in admin_rules(app):
        if rule.endpoint in PUBLIC:
            continue
        path = url_for_rule(rule, world["mine"])
        for method in methods(rule):
            response = client.open(path, method=method, data={"csrf_token": token})
            assert response.status_code == 302, (method, path, response.status_code)
            assert response.headers["Location"].startswith("/admin/login?next="), (method, path)
            checked += 1
    assert checked >= 20


def test_a_tenant_admin_cannot_reach_another_tenant_on_any_route(app, client, world):
    assert login(client, world["tenant_admin"]).status_code == 302
    token = page_token(client)
    db = app.extensions["cassandra"]
    before = (services.require_tenant(db, world["other"]), services.list_banners(db, world["other"], "hero"))
    tenant_routes = 0
    for rule in admin_rules(app):
        if rule.endpoint in SESSION:
            continue
        for method in methods(rule):
            path = url_for_rule(rule, world["other"])
            response = client.open(path, method=method, data={"csrf_token": token, "active": "0", "name": "x"})
            if is_platform_only(app, rule):
                assert response.status_code == 403, (method, path, response.status_code)
            elif "tenant" in rule.arguments:
                assert response.status_code == 404, (method, path, response.status_code)
                tenant_routes += 1
            else:                                   # the home page redirects to the user's own tenant
                assert rule.endpoint in {"admin.index"} | OWN_ACCOUNT, rule.endpoint
    assert tenant_routes >= 14
    after = (services.require_tenant(db, world["other"]), services.list_banners(db, world["other"], "hero"))
    assert after == before                       # nothing of the other tenant was written


def test_a_tenant_admin_can_open_every_page_of_their_own_tenant(app, client, world):
    assert login(client, world["tenant_admin"]).status_code == 302
    opened = 0
    for rule in admin_rules(app):
        if "GET" in rule.methods and "tenant" in rule.arguments:
            path = url_for_rule(rule, world["mine"])
            if is_platform_only(app, rule):          # deleting the tenant itself: a platform admin's call
                assert client.get(path).status_code == 403, path
                continue
            assert client.get(path).status_code == 200, path
            opened += 1
    assert opened >= 8
    # ... and lands on it from the dashboard's home page
    response = client.get("/admin/")
    assert response.status_code == 302 and response.headers["Location"] == f"/admin/tenants/{world['mine']}"


def test_a_platform_admin_can_open_every_page(app, client, world):
    assert login(client, world["platform"]).status_code == 302
    for rule in admin_rules(app):
        if "GET" in rule.methods and rule.endpoint not in PUBLIC:
            path = url_for_rule(rule, world["other"], world["tenant_admin"])
            assert client.get(path).status_code == 200, path


def test_every_post_route_rejects_a_missing_or_wrong_csrf_token(app, client, world):
    assert login(client, world["platform"]).status_code == 302
    posts = 0
    for rule in admin_rules(app):
        if "POST" not in rule.methods or rule.endpoint == "admin.login":
            continue
        path = url_for_rule(rule, world["mine"])
        for data in ({}, {"csrf_token": "forged"}):
            response = client.post(path, data={**data, "active": "0", "name": "x"})
            assert response.status_code == 400, (path, data, response.status_code)
        posts += 1
    assert posts >= 8
    banners = services.list_banners(app.extensions["cassandra"], world["mine"], "hero")
    assert [b["active"] for b in banners] == [True]  # the pause without a token did nothing


def test_logout_needs_a_post_with_csrf_and_ends_the_session(client, world):
    assert login(client, world["platform"]).status_code == 302
    assert client.get("/admin/logout").status_code == 405
    assert client.post("/admin/logout", data={"csrf_token": page_token(client)}).status_code == 302
    assert client.get("/admin/").status_code == 302


@pytest.mark.parametrize("target", [
    "https://evil.example/admin/", "//evil.example/admin/", "/\\evil.example", "\\\\evil.example",
    "javascript:alert(1)", "http:/admin/", "/v1/serve/x/y", "/admin/login", "admin/", "/admin/%0d%0aSet-Cookie:x",
    # dot segments, plain or percent-encoded (a browser resolves %2e%2e as ..), encoded slashes and backslashes
    "/admin/../v1/click/x", "/admin/./../v1/serve/x/y", "/admin/tenants/../../v1/serve/x/y",
    "/admin/%252e%252e/v1/serve/x/y", "/admin/%252E./v1/serve/x/y", "/admin/..%252fv1/serve/x/y",
    "/admin/%255c..%255cv1", "/admin/..%255cv1/serve/x/y", "/admin/../admin/login",
])
def test_next_never_leaves_the_dashboard(client, world, target):
    response = login(client, world["platform"], next_url=target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"


def test_next_is_normalized_when_it_stays_in_the_dashboard(client, world):
    response = login(client, world["platform"], next_url=f"/admin/tenants/./{world['other']}/slots/x/../hero")
    assert response.headers["Location"] == f"/admin/tenants/{world['other']}/slots/hero"


def test_next_returns_to_the_page_asked_for(client, world):
    wanted = f"/admin/tenants/{world['other']}/slots/hero/results?location=goa"
    first = client.get(wanted)
    assert first.status_code == 302
    next_url = first.headers["Location"].split("next=", 1)[1]
    response = login(client, world["platform"], next_url=next_url)
    assert response.headers["Location"] == wanted


def test_session_cookie_is_httponly_and_samesite(client, world):
    response = login(client, world["platform"])
    cookie = next(v for k, v in response.headers.items() if k == "Set-Cookie" and v.startswith("session="))
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_wrong_password_and_unknown_user_fail_alike(client, world):
    for username, password in ((world["platform"], "wrong password!!"), ("nobody-here", PASSWORD)):
        response = login(client, username, password)
        assert response.status_code == 401
        assert "Wrong username or password." in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302


ATTACKER = {"REMOTE_ADDR": "10.0.1.66"}
REAL_USER = {"REMOTE_ADDR": "10.0.1.7"}


def assert_throttled(response) -> None:
    assert response.status_code == 429
    assert "Too many failed logins" in response.get_data(as_text=True)
    assert 1 <= int(response.headers["Retry-After"]) <= 61          # the window, rounded up


def test_failed_logins_for_a_user_throttle_that_user_at_that_address_only(app_factory):
    app = app_factory(LOGIN_RATE_LIMIT="3 per minute", LOGIN_ADDRESS_RATE_LIMIT="100 per minute")
    user = gen_user(app)
    attacker = app.test_client()
    for _ in range(3):
        assert login(attacker, user, "wrong password!!", environ_base=ATTACKER).status_code == 401
    assert_throttled(login(attacker, user, environ_base=ATTACKER))        # even the right password waits
    assert login(attacker, gen_user(app), environ_base=ATTACKER).status_code == 302   # another user is fine
    # The real user, at their own address, is not locked out by the attacker's failures.
    assert login(app.test_client(), user, environ_base=REAL_USER).status_code == 302


def test_failed_logins_from_an_address_throttle_that_address_whatever_the_username(app_factory):
    app = app_factory(LOGIN_RATE_LIMIT="100 per minute", LOGIN_ADDRESS_RATE_LIMIT="3 per minute")
    attacker = app.test_client()
    for name in ("alice", "bob", "carol"):                                  # password spraying
        assert login(attacker, name, "wrong password!!", environ_base=ATTACKER).status_code == 401
    user = gen_user(app)
    assert_throttled(login(attacker, user, environ_base=ATTACKER))
    assert login(app.test_client(), user, environ_base=REAL_USER).status_code == 302


def test_successful_logins_do_not_count_toward_the_limit(app_factory):
    app = app_factory(LOGIN_RATE_LIMIT="3 per minute")
    user = gen_user(app)
    for _ in range(5):
        assert login(app.test_client(), user).status_code == 302


def test_dashboard_pages_carry_a_strict_content_security_policy(client, world):
    login(client, world["platform"])
    response = client.get(f"/admin/tenants/{world['other']}/slots/hero/results")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
