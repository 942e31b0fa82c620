"""User management in a real browser (headless Debian Chromium driven by Playwright) against gunicorn with two
workers: a platform admin disables a logged-in user, and that user's session ends on whichever worker answers."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers import PASSWORD, gen_slot, gen_user
from tests.test_admin_browser import browser, direct_app, log_in, server  # noqa: F401 - fixtures
from webapp.dashboard import accounts

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.slow, pytest.mark.browser]
TIMEOUT_MS = 30_000


def new_page(browser):  # noqa: F811 - the fixture's value
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    return context, context.new_page()


def test_a_disabled_users_session_ends(browser, server, direct_app):  # noqa: F811 - fixtures
    base = server["base"]
    tenant, _ = gen_slot(direct_app.test_client(), ["b1"], tenant=f"shop{uuid.uuid4().hex[:6]}")
    admin = gen_user(direct_app)
    victim = gen_user(direct_app, accounts.ROLE_TENANT, tenant)
    admin_context, admin_page = new_page(browser)
    victim_context, victim_page = new_page(browser)
    try:
        log_in(victim_page, base, victim)
        assert victim_page.url == f"{base}/admin/tenants/{tenant}"
        log_in(admin_page, base, admin)

        admin_page.goto(f"{base}/admin/users")
        admin_page.locator(f'tr[data-user="{victim}"] a:has-text("Disable")').click()
        admin_page.wait_for_url(f"{base}/admin/users/{victim}/disable")
        assert f"Disable user {victim}?" in admin_page.inner_text("main")
        victim_page.reload()                                   # asking to confirm changed nothing
        assert victim_page.url == f"{base}/admin/tenants/{tenant}"
        with admin_page.expect_navigation():
            admin_page.click(f"button:has-text('Disable {victim}')")
        assert admin_page.url == f"{base}/admin/users"
        assert "disabled" in admin_page.locator(f'tr[data-user="{victim}"]').inner_text()

        for _ in range(4):                                     # two workers: each must refuse the session
            victim_page.goto(f"{base}/admin/tenants/{tenant}")
            assert "/admin/login" in victim_page.url
        victim_page.fill("#username", victim)
        victim_page.fill("#password", PASSWORD)
        with victim_page.expect_navigation():
            victim_page.click("button:has-text('Log in')")
        assert "Wrong username or password." in victim_page.inner_text("main")
    finally:
        admin_context.close()
        victim_context.close()
