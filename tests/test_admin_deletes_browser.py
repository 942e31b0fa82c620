"""Deleting a banner in a real browser (headless Debian Chromium driven by Playwright) against gunicorn with two
workers: after the confirm page, the banner leaves the dashboard's list and every worker's serving."""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from tests.helpers import gen_slot, gen_user
from tests.test_admin_browser import browser, direct_app, log_in, page, server  # noqa: F401 - fixtures

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.slow, pytest.mark.browser]


def served_ids(base: str, tenant: str, serves: int = 40) -> set[str]:
    return {requests.get(f"{base}/v1/serve/{tenant}/hero", timeout=10).json()["banner"]["id"]
            for _ in range(serves)}


def test_a_deleted_banner_leaves_the_list_and_serving(page, server, direct_app):  # noqa: F811 - fixtures
    base = server["base"]
    tenant, _ = gen_slot(direct_app.test_client(), ["keep", "gone"], tenant=f"shop{uuid.uuid4().hex[:6]}")
    log_in(page, base, gen_user(direct_app))
    slot_url = f"{base}/admin/tenants/{tenant}/slots/hero"
    page.goto(slot_url)
    assert page.locator('tr[data-banner="gone"]').count() == 1
    page.locator('tr[data-banner="gone"] a:has-text("Delete")').click()
    page.wait_for_url(f"{slot_url}/banners/gone/delete")
    text = page.inner_text("main")
    assert "Delete banner gone?" in text and "event log" in text
    with page.expect_navigation():
        page.click("button:has-text('Delete banner gone')")
    assert page.url == slot_url
    assert "Banner gone is deleted" in page.inner_text("main")
    assert page.locator('tr[data-banner="gone"]').count() == 0
    assert page.locator('tr[data-banner="keep"]').count() == 1
    # Every worker drops it at its next refresh of the slot (CACHE_REFRESH_SECONDS): poll, generously.
    deadline = time.monotonic() + 60
    while served_ids(base, tenant) != {"keep"}:
        assert time.monotonic() < deadline, "the deleted banner is still served"
        time.sleep(0.5)
