"""The dashboard in a real browser: headless Debian Chromium driven by Playwright, against gunicorn on the
test keyspace. `make test` installs Chromium when it is missing.

Set UPDATE_SCREENSHOTS=1 to write the results page screenshot to docs/ (README shows it).
"""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.helpers import ADMIN_TOKEN, PASSWORD, free_port, gen_user, make_config, simulate_history
from webapp import create_app
from webapp.dashboard import accounts
from webapp.management import services

playwright_api = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
XSS_ALT = "<script>window.__xss = 1</script>"
TIMEOUT_MS = 30_000
CLICK_DELAY_MS = 1500     # look before clicking: the click filter flags clicks within 0.5 s of the serve
pytestmark = [pytest.mark.slow, pytest.mark.browser]


def wait_in_page(page, expression: str, timeout: float = 30.0):
    """Poll a JavaScript expression from Python. Playwright's own wait_for_function polls by evaluating
    a string inside the page, which our Content-Security-Policy (no 'unsafe-eval') forbids; page.evaluate
    goes through the DevTools protocol and is not subject to it."""
    return wait_until(lambda: page.evaluate(expression), expression, timeout)


def wait_until(check, what: str, timeout: float = 30.0, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(every)


@pytest.fixture(scope="module")
def server(keyspace, tmp_path_factory):
    """gunicorn (2 workers, background refresh and flush on) on the test keyspace. Its log goes to a file:
    a pipe nobody reads would fill up and block the workers."""
    port = free_port()
    env = {**os.environ, "CASSANDRA_KEYSPACE": keyspace, "ADMIN_API_TOKEN": ADMIN_TOKEN, "PORT": str(port),
           "WEB_CONCURRENCY": "2", "SECRET_KEY": "browser-test",
           "SPOOL_DIR": str(tmp_path_factory.mktemp("gunicorn-spool"))}
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                                   cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited: {log_path.read_text()[-2000:]}")
        try:
            return requests.get(f"{base}/v1/ping", timeout=2).ok
        except requests.RequestException:
            return False

    try:
        wait_until(up, "gunicorn to answer", timeout=60)
        yield {"base": base, "env": env, "log": log_path}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    warnings = [line for line in log_path.read_text().splitlines() if " ERROR " in line or "Traceback" in line]
    assert not warnings, "\n".join(warnings[-20:])


@pytest.fixture(scope="module")
def publisher(tmp_path_factory):
    """A publisher's site on another origin: a static file server for the pages a test writes."""
    root = tmp_path_factory.mktemp("publisher")
    (root / "landing.html").write_text("<!doctype html><title>Landing</title><h1>Thanks for clicking</h1>")
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield {"root": root, "base": f"http://127.0.0.1:{httpd.server_address[1]}"}
    httpd.shutdown()
    httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server["base"])
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    dialogs: list[str] = []                    # an alert() from injected script would land here
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    errors: list[str] = []                     # CSP violations and script errors
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    yield page
    context.close()
    assert not dialogs
    assert not [e for e in errors if "Content Security Policy" in e or "Uncaught" in e], errors


@pytest.fixture(scope="module")
def direct_app(keyspace, tmp_path_factory):
    """An in-process app on the same keyspace, for setup the browser does not need to click through."""
    app = create_app(make_config(keyspace, SPOOL_DIR=str(tmp_path_factory.mktemp("spool"))))
    yield app
    rt = app.extensions.get("runtime")
    if rt is not None:
        rt.shutdown()
    app.extensions["cassandra"].shutdown()


def cli(server, *args: str, stdin: str = "") -> str:
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=server["env"],
                            input=stdin, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def log_in(page, base: str, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/admin/")
    assert "/admin/login?next=" in page.url
    page.fill("#username", username)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("button:has-text('Log in')")
    assert "/admin/login" not in page.url, page.inner_text("main")


def submit(page, button: str, expected_url: str) -> None:
    """Click a form's submit button and expect to land on ``expected_url`` (else show the page's errors)."""
    with page.expect_navigation():
        page.click(f"button:has-text('{button}')")
    assert page.url == expected_url, page.inner_text("main")


def results_row(page, base: str, tenant: str, slot: str, banner: str) -> tuple[int, int]:
    page.goto(f"{base}/admin/tenants/{tenant}/slots/{slot}/results")
    row = page.locator(f'tr[data-banner="{banner}"]')
    return int(row.locator(".impressions").inner_text()), int(row.locator(".clicks").inner_text())


def test_configure_embed_click_and_see_it_in_the_results(page, server, publisher, tmp_path):
    base = server["base"]
    admin = f"root{uuid.uuid4().hex[:6]}"
    assert "platform admin" in cli(server, "create-admin", admin, "--password-stdin", stdin=PASSWORD + "\n")
    log_in(page, base, admin)
    assert page.url == f"{base}/admin/"

    # A tenant, a slot, two banners: one image by URL (with a script for alt text), one uploaded.
    tenant = f"acme{uuid.uuid4().hex[:6]}"
    page.click("text=New tenant")
    page.fill("#tenant_id", tenant)
    page.fill("#name", "Acme Stores")
    page.select_option("#timezone", "Asia/Kolkata")
    submit(page, "Create tenant", f"{base}/admin/tenants/{tenant}")
    page.click("text=New slot")
    page.fill("#slot_id", "hero")
    page.fill("#name", "Home hero")
    page.fill("#size", "728x250")
    page.fill("#locations", "Mumbai\nPune")
    submit(page, "Create slot", f"{base}/admin/tenants/{tenant}/slots/hero")

    page.click("text=Add banner")
    page.fill("#banner_id", "summer")
    page.fill("#image_url", f"{base}/static/banners/summer-sale.svg")
    page.fill("#target_url", f"{publisher['base']}/landing.html?banner=summer")
    page.fill("#alt", XSS_ALT)
    page.check("#active")
    submit(page, "Add banner", f"{base}/admin/tenants/{tenant}/slots/hero")
    page.click("text=Add banner")
    page.fill("#banner_id", "shipping")
    page.set_input_files("#image_file", str(ROOT / "static" / "banners" / "free-shipping.svg"))
    page.fill("#target_url", f"{publisher['base']}/landing.html?banner=shipping")
    page.fill("#alt", "Free shipping")
    page.check("#active")
    submit(page, "Add banner", f"{base}/admin/tenants/{tenant}/slots/hero")

    rows = page.locator("table.banners tbody tr")
    assert rows.count() == 2
    assert page.locator('tr[data-banner="summer"] td.alt').inner_text() == XSS_ALT   # shown as text
    uploaded_src = page.locator('tr[data-banner="shipping"] img').get_attribute("src")
    assert uploaded_src.startswith(f"{base}/media/{tenant}/")
    wait_in_page(page, "document.querySelector('tr[data-banner=\"shipping\"] img').naturalWidth > 0")

    # Copy the JS tag from the embed page and paste it into a publisher page on another origin.
    page.click("text=Embed code")
    page.click("button[data-copy='snippet-js']")
    wait_until(lambda: page.inner_text("button[data-copy='snippet-js']") == "Copied", "the copy button")
    snippet = page.evaluate("navigator.clipboard.readText()")
    assert snippet == page.inner_text("#snippet-js")
    assert f'data-tenant="{tenant}" data-slot="hero"' in snippet and f'src="{base}/static/embed.js"' in snippet
    page.click("#preview-button")              # the live preview: a draw that records nothing
    previewed = page.locator("#preview-link[data-banner-id]").get_attribute("data-banner-id")
    assert previewed in {"summer", "shipping"}

    (publisher["root"] / "shop.html").write_text(
        f"<!doctype html><html><head><title>Acme</title></head><body><h1>Acme</h1>{snippet}</body></html>")
    page.goto(f"{publisher['base']}/shop.html")
    link = page.locator("[data-banner-bandit][data-bb-state='done'] a")
    link.wait_for()
    served_src = link.locator("img").get_attribute("src")
    served = "shipping" if "/media/" in served_src else "summer"
    assert page.evaluate("window.__xss") is None
    page.wait_for_timeout(CLICK_DELAY_MS)
    link.click()
    page.wait_for_url(f"{publisher['base']}/landing.html?banner={served}")

    # The results page shows the impression and the click (counters are flushed every 0.5 s per worker); the
    # preview is not counted.
    expected = (1, 1)
    wait_until(lambda: results_row(page, base, tenant, "hero", served) == expected,
               f"{expected} impressions and clicks of {served} on the results page")
    total_impressions = sum(int(x) for x in page.locator("td.impressions").all_inner_texts())
    assert total_impressions == 1              # the publisher page's serve only
    assert page.evaluate("window.__xss") is None
    data = json.loads(page.inner_text("#chart-data"))
    assert sum(data["clicks"][served]) == 1 and sum(sum(v) for v in data["impressions"].values()) == 1
    wait_in_page(page, "document.getElementById('chart-ctr').width > 0")      # Chart.js drew the charts

    # Pausing the served banner takes it out of serving within seconds.
    page.goto(f"{base}/admin/tenants/{tenant}/slots/hero")
    with page.expect_navigation():
        page.locator(f'tr[data-banner="{served}"] button:has-text("Pause")').click()
    assert "paused" in page.locator(f'tr[data-banner="{served}"]').inner_text()
    other = "summer" if served == "shipping" else "shipping"

    def serves_only_the_other() -> bool:       # 20 in a row: by chance, before the pause, p = 2⁻²⁰
        return all(requests.get(f"{base}/v1/serve/{tenant}/hero", timeout=10).json()["banner"]["id"] == other
                   for _ in range(20))

    wait_until(serves_only_the_other, f"{served} to leave serving after the pause")


def counts_of(db, tenant: str, slot: str) -> dict[str, tuple[int, int]]:
    return {r["banner_id"]: (r["impressions"] or 0, r["clicks"] or 0)
            for r in db.execute("SELECT banner_id, impressions, clicks FROM {ks}.banner_counts "
                                "WHERE tenant_id = ? AND slot_id = ? AND location = ''", (tenant, slot))}


def test_a_preview_click_stays_in_the_dashboard_and_counts_nothing(page, server, direct_app):
    db = direct_app.extensions["cassandra"]
    tenant = f"prev{uuid.uuid4().hex[:6]}"
    services.put_tenant(db, tenant, "Preview Co", None, "Asia/Kolkata")
    services.put_slot(db, tenant, "hero", "Hero", size="728x250")
    for banner in ("summer-sale", "free-shipping"):
        services.put_banner(db, tenant, "hero", banner, image_url=f"{server['base']}/static/banners/{banner}.svg",
                            target_url=f"{server['base']}/?landing={banner}", alt=banner, active=True)
    # One real serve and click first, so that the counts are there to stay unchanged.
    served = requests.get(f"{server['base']}/v1/serve/{tenant}/hero", timeout=10).json()
    time.sleep(CLICK_DELAY_MS / 1000)
    requests.post(f"{server['base']}/v1/click", json={"token": served["token"]}, timeout=10).raise_for_status()
    wait_until(lambda: counts_of(db, tenant, "hero") == {served["banner"]["id"]: (1, 1)}, "the real click counted")
    before = counts_of(db, tenant, "hero")

    log_in(page, server["base"], gen_user(direct_app))
    embed_url = f"{server['base']}/admin/tenants/{tenant}/slots/hero/embed"
    page.goto(embed_url)
    for _ in range(3):
        page.click("#preview-button")
        wait_in_page(page, "document.getElementById('preview-image').naturalWidth > 0")
        page.wait_for_timeout(CLICK_DELAY_MS)
        link = page.locator("#preview-link")
        assert link.get_attribute("target") == "_blank"
        with page.context.expect_page() as opened:
            link.click()
        landing = opened.value
        landing.wait_for_load_state()
        assert "landing=" in landing.url
        landing.close()
        assert page.url == embed_url               # the dashboard stayed where it was
    # Counters are flushed every 0.5 s: give a would-be count time to land, then check nothing moved.
    time.sleep(3)
    assert counts_of(db, tenant, "hero") == before
    assert results_row(page, server["base"], tenant, "hero", served["banner"]["id"]) == (1, 1)


def test_the_charts_draw_points_for_a_slot_with_one_hour_of_data(page, server, direct_app):
    db = direct_app.extensions["cassandra"]
    tenant = f"hour{uuid.uuid4().hex[:6]}"
    services.put_tenant(db, tenant, "New Slot Co", None, "UTC")     # the charts' hours are UTC hours
    services.put_slot(db, tenant, "hero", "Hero", size="728x250")
    for banner in ("summer-sale", "free-shipping"):
        services.put_banner(db, tenant, "hero", banner, image_url=f"{server['base']}/static/banners/{banner}.svg",
                            target_url="https://shop.example.com/", alt=banner, active=True)
    hour_end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    simulate_history(direct_app, tenant, "hero", {"summer-sale": 0.3, "free-shipping": 0.2}, hours=1,
                     serves_per_hour=25, seed=5, now=hour_end)          # all of it in the current hour
    log_in(page, server["base"], gen_user(direct_app))
    page.goto(f"{server['base']}/admin/tenants/{tenant}/slots/hero/results?days=1")
    data = json.loads(page.inner_text("#chart-data"))
    assert [sum(1 for v in data["ctr"][b] if v is not None) for b in data["banners"]] == [1, 1]
    for chart in ("chart-ctr", "chart-share"):
        # Every hour with data is drawn as a visible point (a lone point has no line to show it).
        drawn = wait_in_page(page, f"""(() => {{
            const chart = Chart.getChart(document.getElementById('{chart}'));
            if (!chart) return 0;
            return chart.data.datasets.reduce((n, ds, i) => n + chart.getDatasetMeta(i).data.filter(
                (p, k) => ds.data[k] !== null && !p.skip && p.options.radius > 0).length, 0);
        }})()""")
        assert drawn == 2, chart


def test_the_referrer_table_shows_the_clicks_sent(page, server, publisher, direct_app):
    """Two publisher pages tag their serves with different referrer IDs; the clicks from one show under it."""
    db = direct_app.extensions["cassandra"]
    base = server["base"]
    tenant = f"refs{uuid.uuid4().hex[:6]}"
    services.put_tenant(db, tenant, "Referrer Co", None, "Asia/Kolkata")
    services.put_slot(db, tenant, "hero", "Hero", size="728x250")
    services.put_banner(db, tenant, "hero", "summer-sale", image_url=f"{base}/static/banners/summer-sale.svg",
                        target_url=f"{publisher['base']}/landing.html", alt="Summer sale", active=True)
    for name, referrer in (("news.html", "newsletter"), ("search.html", "search-ads")):
        (publisher["root"] / name).write_text(
            f'<!doctype html><title>{name}</title><script src="{base}/static/embed.js" async></script>'
            f'<div data-banner-bandit data-tenant="{tenant}" data-slot="hero" data-location=""'
            f' data-customer-id="visitor-{referrer}" data-referrer-id="{referrer}"></div>')
    sent = {"newsletter": [0, 0], "search-ads": [0, 0]}
    for name, referrer, clicks in (("news.html", "newsletter", 2), ("search.html", "search-ads", 1),
                                   ("search.html", "search-ads", 0)):
        for k in range(max(clicks, 1)):
            page.goto(f"{publisher['base']}/{name}")
            link = page.locator("[data-banner-bandit][data-bb-state='done'] a")
            link.wait_for()
            sent[referrer][0] += 1
            if k < clicks:
                page.wait_for_timeout(CLICK_DELAY_MS)
                link.click()
                page.wait_for_url(f"{publisher['base']}/landing.html")
                sent[referrer][1] += 1
    log_in(page, base, gen_user(direct_app, accounts.ROLE_TENANT, tenant))

    def shown() -> dict[str, list[int]]:
        page.goto(f"{base}/admin/tenants/{tenant}/slots/hero/results?days=1")
        return {ref: [int(page.locator(f'#referrer-table tr[data-referrer="{ref}"] td.ref-{c}').inner_text())
                      for c in ("impressions", "clicks")]
                for ref in sent if page.locator(f'#referrer-table tr[data-referrer="{ref}"]').count()}

    wait_until(lambda: shown() == sent, f"the referrer table to show {sent}")
    assert page.locator("#referrer-table tbody tr").first.get_attribute("data-referrer") == "newsletter"
    assert page.inner_text("#unique-visitors") == "2"


def test_the_demo_publisher_page_click_shows_in_the_results(page, server, direct_app):
    base = server["base"]
    cli(server, "seed-demo", "--base-url", base)
    db = direct_app.extensions["cassandra"]
    before = {r["banner_id"]: (r["impressions"] or 0, r["clicks"] or 0)
              for r in db.execute("SELECT banner_id, impressions, clicks FROM {ks}.banner_counts "
                                  "WHERE tenant_id = 'demo' AND slot_id = 'home-hero' AND location = ''")}
    log_in(page, base, gen_user(direct_app, accounts.ROLE_TENANT, "demo"))
    page.goto(f"{base}/")

    def banner_shown() -> bool:
        # A worker knows the demo slot from its next cache refresh (every second) after seed-demo: until then
        # a serve is a 404 (nothing recorded) and the tag shows "error". Then the page is loaded again.
        state = page.locator("#hero-banner").get_attribute("data-bb-state")
        if state == "error":
            page.reload()
        return state == "done"

    wait_until(banner_shown, "the demo banner on the publisher page")
    link = page.locator("#hero-banner[data-bb-state='done'] a")
    served = re.search(r"/static/banners/([a-z-]+)\.svg", link.locator("img").get_attribute("src"))[1]
    page.wait_for_timeout(CLICK_DELAY_MS)
    link.click()
    page.wait_for_url(f"{base}/?clicked={served}")
    was = before.get(served, (0, 0))

    def counted() -> bool:
        # The page the click lands on (/?clicked=…) embeds the slot again: it may serve this banner once more.
        impressions, clicks = results_row(page, base, "demo", "home-hero", served)
        return clicks == was[1] + 1 and was[0] + 1 <= impressions <= was[0] + 2

    wait_until(counted, "the demo click on the results page")


def test_a_tenant_admin_cannot_reach_another_tenant(page, server, direct_app):
    db = direct_app.extensions["cassandra"]
    own, other = f"own{uuid.uuid4().hex[:6]}", f"other{uuid.uuid4().hex[:6]}"
    for tenant in (own, other):
        services.put_tenant(db, tenant, tenant.title(), None, "Asia/Kolkata")
        services.put_slot(db, tenant, "hero", "Hero")
    base = server["base"]
    log_in(page, base, gen_user(direct_app, accounts.ROLE_TENANT, own))
    assert page.url == f"{base}/admin/tenants/{own}"
    assert page.locator(f"text={other}").count() == 0
    for path in (f"/admin/tenants/{other}", f"/admin/tenants/{other}/slots/hero/results",
                 f"/admin/tenants/{other}/slots/hero/embed", f"/admin/tenants/{other}/new-slot"):
        response = page.goto(base + path)
        assert response.status == 404, path
        assert "There is no such page here." in page.inner_text("main")
    for path in ("/admin/users", "/admin/new-tenant"):
        assert page.goto(base + path).status == 403, path


def test_results_page_screenshot(page, server, direct_app, tmp_path):
    """A slot with three days of simulated traffic through the real sampler and event writer."""
    db = direct_app.extensions["cassandra"]
    tenant = f"bazaar{uuid.uuid4().hex[:6]}"
    services.put_tenant(db, tenant, "Bandit Bazaar", None, "Asia/Kolkata")
    services.put_slot(db, tenant, "home-hero", "Home page hero", size="728x250", locations="Mumbai, Delhi")
    true_ctr = {"summer-sale": 0.050, "free-shipping": 0.035, "new-arrivals": 0.030, "festive-offers": 0.020}
    for banner in true_ctr:
        services.put_banner(db, tenant, "home-hero", banner,
                            image_url=f"{server['base']}/static/banners/{banner}.svg",
                            target_url="https://shop.example.com/", alt=banner.replace("-", " ").title(),
                            active=True)
    simulate_history(direct_app, tenant, "home-hero", true_ctr, hours=72, serves_per_hour=100, seed=2026)
    log_in(page, server["base"], gen_user(direct_app))
    page.goto(f"{server['base']}/admin/tenants/{tenant}/slots/home-hero/results?days=3")
    wait_in_page(page, "document.getElementById('chart-density').width > 0")
    assert page.locator("table.results tbody tr").count() == 4
    target = ROOT / "docs" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    target.mkdir(exist_ok=True)
    page.screenshot(path=str(target / "dashboard-results.png"), full_page=True)
    assert (target / "dashboard-results.png").stat().st_size > 10_000
