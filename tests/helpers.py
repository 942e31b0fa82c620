"""Test helpers: configuration, test data made through the public API (``gen_*``), dashboard logins,
simulated traffic, a free port. Fixtures are in conftest.py; test modules import these explicitly."""

from __future__ import annotations

import datetime as dt
import re
import socket
import subprocess
import uuid
from pathlib import Path

import numpy as np
from cassandra.util import uuid_from_time

from bandits.policy import Context
from eventlog import counting
from webapp.dashboard import accounts
from webapp.serving import runtime
from webapp.storage.events import Click, Impression

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "test-admin-token"
# A serve answer shows posterior parameters (counts) only to a caller with the platform token.
COUNTS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PASSWORD = "correct horse battery staple"
_CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def recent(hours: float = 1.0) -> tuple[dt.datetime, dt.datetime]:
    """A time range holding every event a test has just made (the last hours, to a minute ahead): the
    event log is read by time range (store.count_events, store.logged_ids)."""
    now = dt.datetime.now(dt.UTC)
    return now - dt.timedelta(hours=hours), now + dt.timedelta(minutes=1)


def make_config(keyspace: str, **overrides) -> dict:
    """The app's configuration for a test on ``keyspace``: no background threads, a fixed seed, limits high."""
    config = {
        "CASSANDRA_KEYSPACE": keyspace,
        "ADMIN_API_TOKEN": ADMIN_TOKEN,
        "SECRET_KEY": "test-secret",
        "BACKGROUND_THREADS": False,       # tests drive flush/refresh with sync()
        "RANDOM_SEED": 20261123,
        "RATELIMIT_SERVE": "1000000/minute",   # limits on but out of the way; tests/test_rate_limits.py
        "RATELIMIT_CLICK": "1000000/minute",   # sets small ones
        "SLOT_LOAD_TIMEOUT_SECONDS": 10.0,     # a first serve on a loaded machine must not turn into a 503
        "TESTING": True,
    }
    config.update(overrides)
    return config


def sync(app) -> None:
    """Write this process's counters and re-read the slots its posterior cache holds (what the background loop
    does)."""
    with app.app_context():
        runtime.get(app).sync()


# Simulated visitors click at once and all from 127.0.0.1, as no real crowd would, so tests that learn
# from such clicks lift the click filter's delay and rate rules (the filter is tested in
# test_click_filter.py).
INSTANT_CLICKS = {"min_delay_seconds": 0, "max_clicks_per_customer": 0, "max_clicks_per_ip": 0}


def gen_slot(client, banners: dict[str, bool] | list[str], tenant: str | None = None,
             slot: str = "hero", click_filter: dict | None = INSTANT_CLICKS) -> tuple[str, str]:
    """Create a tenant with a unique ID, a slot and banners (id → active) through the management API."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    tenant = tenant or f"t{uuid.uuid4().hex[:10]}"
    if isinstance(banners, list):
        banners = dict.fromkeys(banners, True)
    body = {"name": tenant} if click_filter is None else {"name": tenant, "click_filter": click_filter}
    assert client.put(f"/v1/admin/tenants/{tenant}", json=body, headers=headers).status_code in (200, 201)
    assert client.put(f"/v1/admin/tenants/{tenant}/slots/{slot}", json={"name": "Hero"},
                      headers=headers).status_code in (200, 201)
    for banner, active in banners.items():
        response = client.put(f"/v1/admin/tenants/{tenant}/slots/{slot}/banners/{banner}", headers=headers,
                              json={"image_url": f"https://cdn.example.com/{banner}.png",
                                    "target_url": f"https://shop.example.com/{banner}",
                                    "alt": f"Banner {banner}", "active": active})
        assert response.status_code in (200, 201), response.get_json()
    return tenant, slot


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for a gunicorn the test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def ring_settings() -> dict[str, str]:
    """The CASSANDRA_* settings that point at the three-node ring of scripts/cluster.sh (its `env` command)."""
    out = subprocess.run([str(ROOT / "scripts" / "cluster.sh"), "env"], check=True, capture_output=True,
                         text=True).stdout
    return dict(line.split("=", 1) for line in out.split())


def gen_user(app, role: str = accounts.ROLE_PLATFORM, tenant: str = "", username: str | None = None) -> str:
    """A dashboard user with a unique name and PASSWORD; returns the username."""
    username = username or f"u{uuid.uuid4().hex[:10]}"
    written, _ = accounts.create_user(app.extensions["cassandra"], username, PASSWORD, role, tenant)
    assert written
    return username


def csrf_token(html: str) -> str:
    match = _CSRF_RE.search(html)
    assert match, "no CSRF token in the page"
    return match[1]


def login(client, username: str, password: str = PASSWORD, next_url: str | None = None, **kwargs):
    """Post the login form (with its CSRF token) and return the response, not followed."""
    path = "/admin/login" + (f"?next={next_url}" if next_url is not None else "")
    token = csrf_token(client.get(path).get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, "username": username, "password": password}, **kwargs)


def page_token(client, path: str = "/admin/") -> str:
    """A CSRF token of the logged-in session (from the logout form of a dashboard page)."""
    response = client.get(path, follow_redirects=True)
    assert response.status_code == 200, response.status_code
    return csrf_token(response.get_data(as_text=True))


def simulate_history(app, tenant: str, slot: str, true_ctr: dict[str, float], hours: int, serves_per_hour: int,
                     seed: int, now: dt.datetime | None = None, location: str = "") -> dict[str, list[int]]:
    """Serve ``serves_per_hour`` visitors an hour for the last ``hours`` hours through the app's own
    posterior cache, Thompson sampler and event writer, back-dated, with clicks drawn from ``true_ctr``.

    Returns banner → [impressions, clicks] as written.
    """
    rng = np.random.default_rng(seed)
    now = now or dt.datetime.now(dt.UTC)
    written: dict[str, list[int]] = {b: [0, 0] for b in true_ctr}
    with app.app_context():
        rt = runtime.get(app)
        rt.sync()
        for h in range(hours, 0, -1):
            hour_start = now - dt.timedelta(hours=h)
            state = rt.cache.slot(tenant, slot)
            for _ in range(serves_per_hour):
                served_at = hour_start + dt.timedelta(seconds=float(rng.uniform(0, 3600)))
                choice = rt.choose(state.policy, Context(location))
                banner = state.active[choice.arm].banner_id
                impression_id = uuid_from_time(served_at)
                rt.events.record_impression(Impression(
                    tenant_id=tenant, slot_id=slot, impression_id=impression_id, served_at=served_at,
                    banner_id=banner, location=location, customer_id="", referrer_id="simulated",
                    posterior_scope=choice.state["scope"], alpha=choice.state["alpha"],
                    beta=choice.state["beta"], prior_source=choice.state["prior"],
                    propensity=choice.propensity, policy=state.policy.name, policy_state=choice.state_json))
                written[banner][0] += 1
                if rng.random() < true_ctr[banner]:
                    rt.events.record_click(Click(       # what a token signed by serving carries (views.py)
                        tenant_id=tenant, slot_id=slot, impression_id=impression_id,
                        clicked_at=served_at + dt.timedelta(seconds=5), banner_id=banner, location=location,
                        customer_id="", referrer_id="simulated", serving_group=counting.POLICY_GROUP,
                        lift_shard=counting.lift_shard("", impression_id)))
                    written[banner][1] += 1
            rt.sync()           # the next hour is served from what this hour taught
    return written
