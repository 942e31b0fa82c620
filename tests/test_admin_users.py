"""Dashboard accounts: sessions that end (logout, password change or reset, disable, delete), the Users page's
actions behind confirmations, invites with one-time passwords, password strength, and the identifier rule."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers import ADMIN_TOKEN, PASSWORD, csrf_token, gen_slot, gen_user, login, make_config, page_token
from webapp import create_app
from webapp.dashboard import accounts
from webapp.management import services
from webapp.storage import store

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
NEW_PASSWORD = "purple otter juggles lanterns"


@pytest.fixture(scope="module")
def world(keyspace):
    """A tenant with slot hero and banner b1, and a platform admin; made once per module."""
    app = create_app(make_config(keyspace))
    tenant, _ = gen_slot(app.test_client(), ["b1"])
    yield {"tenant": tenant, "platform": gen_user(app)}
    app.extensions["cassandra"].shutdown()


def db_of(app):
    return app.extensions["cassandra"]


def logged_in(app, username: str, password: str = PASSWORD):
    client = app.test_client()
    assert login(client, username, password).status_code == 302
    return client


def submit(client, path: str, data: dict | None = None, **kwargs):
    """GET the page for its CSRF token, then POST ``data`` to it."""
    token = csrf_token(client.get(path).get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, **(data or {})}, **kwargs)


def replay(app, cookie: str):
    """A fresh browser that sends only ``cookie`` as its session cookie."""
    client = app.test_client()
    client.set_cookie("session", cookie)
    return client


def assert_logged_out(client, tenant: str) -> None:
    for path in ("/admin/", f"/admin/tenants/{tenant}", f"/admin/tenants/{tenant}/slots/hero/results.csv"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/admin/login"), path
    response = client.post(f"/admin/tenants/{tenant}/slots/hero/banners/b1/active",
                           data={"csrf_token": "x", "active": "0"})
    assert response.status_code in (302, 400)


def tenant_admin(app, tenant: str) -> str:
    return gen_user(app, accounts.ROLE_TENANT, tenant)


# -- sessions end ---------------------------------------------------------------------------------------------

def test_a_cookie_replayed_after_logout_is_refused(app, world):
    user = tenant_admin(app, world["tenant"])
    client = logged_in(app, user)
    cookie = client.get_cookie("session").value
    assert replay(app, cookie).get(f"/admin/tenants/{world['tenant']}").status_code == 200
    assert client.post("/admin/logout", data={"csrf_token": page_token(client)}).status_code == 302
    assert_logged_out(replay(app, cookie), world["tenant"])
    assert services.list_banners(db_of(app), world["tenant"], "hero")[0]["active"] is True


def test_a_password_reset_ends_the_users_sessions_and_hands_out_a_one_time_password(app, world):
    user = tenant_admin(app, world["tenant"])
    victim = logged_in(app, user)
    admin = logged_in(app, world["platform"])
    confirm = admin.get(f"/admin/users/{user}/reset-password")
    assert confirm.status_code == 200 and "Reset the password" in confirm.get_data(as_text=True)
    assert victim.get("/admin/").status_code == 302 and "tenants" in victim.get("/admin/").headers["Location"]
    shown = submit(admin, f"/admin/users/{user}/reset-password")
    assert shown.status_code == 200
    page = shown.get_data(as_text=True)
    one_time = page.split('id="one-time-password">', 1)[1].split("<", 1)[0]
    assert len(one_time) >= 16
    assert_logged_out(victim, world["tenant"])
    assert login(app.test_client(), user).status_code == 401                   # the old password is gone
    fresh = logged_in(app, user, one_time)
    forced = fresh.get(f"/admin/tenants/{world['tenant']}")
    assert forced.status_code == 302 and forced.headers["Location"] == "/admin/account/password"
    changed = submit(fresh, "/admin/account/password", {"current_password": one_time,
                                                         "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert changed.status_code == 302
    assert fresh.get(f"/admin/tenants/{world['tenant']}").status_code == 200  # this session goes on
    assert login(app.test_client(), user, one_time).status_code == 401        # one time only


def test_changing_your_password_ends_your_other_sessions(app, world):
    user = tenant_admin(app, world["tenant"])
    here, elsewhere = logged_in(app, user), logged_in(app, user)
    weak = submit(here, "/admin/account/password", {"current_password": PASSWORD, "new_password": "1234567890",
                                                    "confirm": "1234567890"})
    assert weak.status_code == 200 and "too easy to guess" in weak.get_data(as_text=True)
    assert elsewhere.get(f"/admin/tenants/{world['tenant']}").status_code == 200   # a refusal ends nothing
    wrong = submit(here, "/admin/account/password", {"current_password": "not my password", "new_password":
                                                     NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert "the current password is wrong" in wrong.get_data(as_text=True)
    response = submit(here, "/admin/account/password", {"current_password": PASSWORD,
                                                        "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 302
    assert here.get(f"/admin/tenants/{world['tenant']}").status_code == 200
    assert_logged_out(elsewhere, world["tenant"])
    assert login(app.test_client(), user, NEW_PASSWORD).status_code == 302


def test_disabling_a_user_asks_first_then_ends_their_sessions_and_logins(app, world):
    user = tenant_admin(app, world["tenant"])
    victim = logged_in(app, user)
    cookie = victim.get_cookie("session").value
    admin = logged_in(app, world["platform"])
    confirm = admin.get(f"/admin/users/{user}/disable")                       # a GET only asks
    assert confirm.status_code == 200 and f"Disable user {user}?" in confirm.get_data(as_text=True)
    assert victim.get(f"/admin/tenants/{world['tenant']}").status_code == 200
    assert submit(admin, f"/admin/users/{user}/disable").status_code == 302
    assert accounts.get_user(db_of(app), user).disabled
    assert_logged_out(victim, world["tenant"])
    assert_logged_out(replay(app, cookie), world["tenant"])
    assert login(app.test_client(), user).status_code == 401
    assert 'class="badge disabled"' in admin.get("/admin/users").get_data(as_text=True)
    enable = admin.post(f"/admin/users/{user}/enable", data={"csrf_token": page_token(admin, "/admin/users")})
    assert enable.status_code == 302
    assert login(app.test_client(), user).status_code == 302


def test_deleting_a_user_asks_first_then_ends_their_sessions(app, world):
    user = tenant_admin(app, world["tenant"])
    victim = logged_in(app, user)
    admin = logged_in(app, world["platform"])
    confirm = admin.get(f"/admin/users/{user}/delete")
    assert confirm.status_code == 200 and "This cannot be undone" in confirm.get_data(as_text=True)
    assert accounts.get_user(db_of(app), user) is not None
    assert submit(admin, f"/admin/users/{user}/delete").status_code == 302
    assert accounts.get_user(db_of(app), user) is None
    assert_logged_out(victim, world["tenant"])
    assert services.require_tenant(db_of(app), world["tenant"])                # the tenant stays
    assert admin.get("/admin/users/nobody-here/delete").status_code == 404


def test_a_platform_admin_cannot_disable_or_delete_themselves(app, world):
    me = gen_user(app)
    admin = logged_in(app, me)
    for action in ("disable", "delete", "reset-password"):
        response = submit(admin, f"/admin/users/{me}/{action}", follow_redirects=True)
        assert "ask another platform admin" in response.get_data(as_text=True)
    user = accounts.get_user(db_of(app), me)
    assert user is not None and not user.disabled
    assert admin.get("/admin/users").status_code == 200


def test_a_cookie_of_an_older_format_is_refused(app, world):
    """A session made before session epochs held only the username: it must not log anyone in."""
    user = tenant_admin(app, world["tenant"])
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = user
        session["_fresh"] = True
    assert client.get(f"/admin/tenants/{world['tenant']}").status_code == 302


# -- invites --------------------------------------------------------------------------------------------------

def test_a_tenant_admin_invites_a_colleague_to_their_own_tenant(app, world):
    inviter = logged_in(app, tenant_admin(app, world["tenant"]))
    colleague = f"c{uuid.uuid4().hex[:8]}@shop.example"
    shown = submit(inviter, f"/admin/tenants/{world['tenant']}/invite", {"username": colleague.upper()})
    assert shown.status_code == 200, shown.get_data(as_text=True)
    one_time = shown.get_data(as_text=True).split('id="one-time-password">', 1)[1].split("<", 1)[0]
    user = accounts.get_user(db_of(app), colleague)
    assert user == accounts.User(colleague, accounts.ROLE_TENANT, world["tenant"], must_change_password=True)
    again = submit(inviter, f"/admin/tenants/{world['tenant']}/invite", {"username": colleague})
    assert "already exists" in again.get_data(as_text=True)
    bad = submit(inviter, f"/admin/tenants/{world['tenant']}/invite", {"username": "bob..smith"})
    assert "single dots" in bad.get_data(as_text=True)
    newcomer = logged_in(app, colleague, one_time)
    assert newcomer.get("/admin/").headers["Location"] == "/admin/account/password"
    assert submit(newcomer, "/admin/account/password", {"current_password": one_time, "new_password": NEW_PASSWORD,
                                                        "confirm": NEW_PASSWORD}).status_code == 302
    assert newcomer.get(f"/admin/tenants/{world['tenant']}").status_code == 200


# -- passwords ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("password, message", [
    ("aaaaaaaaaa", "too easy to guess"),
    ("1234567890", "too easy to guess"),
    ("password123!", "too easy to guess"),
    ("{username}", "must not be the username"),
])
def test_weak_passwords_are_refused_with_a_form_error(app, world, password, message):
    admin = logged_in(app, world["platform"])
    username = f"w{uuid.uuid4().hex[:10]}"
    response = submit(admin, "/admin/new-user", {"username": username, "password": password.format(
        username=username), "role": "platform"})
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    assert accounts.get_user(db_of(app), username) is None


def test_the_create_admin_command_refuses_a_weak_password(app):
    username = f"w{uuid.uuid4().hex[:10]}"
    result = app.test_cli_runner().invoke(args=["create-admin", username, "--password-stdin"], input="1234567890\n")
    assert result.exit_code != 0 and "too easy to guess" in result.output
    assert accounts.get_user(db_of(app), username) is None


# -- identifiers ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["probe..", "probe.", "a..b", ".probe"])
def test_dot_runs_and_trailing_dots_are_not_identifiers(client, bad):
    response = client.put(f"/v1/admin/tenants/{bad}", json={"name": "x"}, headers=HEADERS)
    assert response.status_code in (400, 404)
    assert store.get_tenant(client.application.extensions["cassandra"], bad) is None


def test_new_identifiers_are_lower_case(client):
    tenant = f"Probe{uuid.uuid4().hex[:8]}"
    response = client.put(f"/v1/admin/tenants/{tenant}", json={"name": "x"}, headers=HEADERS)
    assert response.status_code == 400 and "lower-case" in response.get_json()["error"]
    assert store.get_tenant(client.application.extensions["cassandra"], tenant) is None
    lower, slot = gen_slot(client, ["b1"])
    for path in (f"/v1/admin/tenants/{lower}/slots/Hero2", f"/v1/admin/tenants/{lower}/slots/{slot}/banners/B2"):
        body = {"name": "x"} if "banners" not in path else {
            "image_url": "https://cdn.example.com/b.png", "target_url": "https://shop.example.com/"}
        response = client.put(path, json=body, headers=HEADERS)
        assert response.status_code == 400 and "lower-case" in response.get_json()["error"], path


def test_a_mixed_case_tenant_made_before_the_rule_stays_readable_and_has_no_twin(client):
    db = client.application.extensions["cassandra"]
    legacy = f"probeA{uuid.uuid4().hex[:6]}"
    assert store.put_tenant(db, legacy, "Legacy", "Asia/Kolkata")           # as an older version stored it
    gen_slot(client, ["b1"], tenant=legacy)                                 # replace it, add a slot and banner
    assert client.get(f"/v1/admin/tenants/{legacy}", headers=HEADERS).get_json()["name"] == legacy
    served = client.get(f"/v1/serve/{legacy}/hero?location=Delhi")
    assert served.status_code == 200 and served.get_json()["banner"]["id"] == "b1"
    twin = client.put(f"/v1/admin/tenants/{legacy.lower()}", json={"name": "Twin"}, headers=HEADERS)
    assert twin.status_code == 409 and "differ only by case" in twin.get_json()["error"]
    assert store.get_tenant(db, legacy.lower()) is None


def test_the_tenant_form_refuses_an_upper_case_id(app, world):
    admin = logged_in(app, world["platform"])
    tenant = f"Shop{uuid.uuid4().hex[:6]}"
    response = submit(admin, "/admin/new-tenant", {"tenant_id": tenant, "name": "Shop", "timezone": "UTC"})
    assert response.status_code == 200 and "lower-case" in response.get_data(as_text=True)
    assert store.get_tenant(db_of(app), tenant) is None
