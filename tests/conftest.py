"""Fixtures: the project's real Cassandra (started or reused), a unique keyspace per run, the app."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from webapp import create_app
from webapp.serving import runtime

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "test-admin-token"


def _local_cassandra() -> bool:
    hosts = os.environ.get("CASSANDRA_HOSTS", "127.0.0.1")
    return all(h.strip() in {"127.0.0.1", "localhost"} for h in hosts.split(","))


@pytest.fixture(scope="session")
def cassandra() -> None:
    """Start the project's local Cassandra (or reuse a running one); a configured cluster is used as is."""
    if _local_cassandra():
        subprocess.run([str(ROOT / "scripts" / "cassandra.sh"), "start"], check=True)


@pytest.fixture(scope="session")
def keyspace(cassandra) -> str:
    """A keyspace of this test run's own, with the schema applied; dropped at the end."""
    name = f"bb_test_{uuid.uuid4().hex[:12]}"
    app = create_app({"CASSANDRA_KEYSPACE": name})
    db = app.extensions["cassandra"]
    db.apply_schema()
    yield name
    db.drop_keyspace()
    db.shutdown()


def make_config(keyspace: str, **overrides) -> dict:
    config = {
        "CASSANDRA_KEYSPACE": keyspace,
        "ADMIN_API_TOKEN": ADMIN_TOKEN,
        "SECRET_KEY": "test-secret",
        "BACKGROUND_THREADS": False,       # tests drive flush/refresh with sync()
        "RANDOM_SEED": 20261123,
        "RATELIMIT_SERVE": "1000000/minute",   # limits on but out of the way; tests/test_rate_limits.py
        "RATELIMIT_CLICK": "1000000/minute",   # sets small ones
        "TESTING": True,
    }
    config.update(overrides)
    return config


@pytest.fixture
def app_factory(keyspace, tmp_path):
    """Build apps on the test keyspace with config overrides; shut them down afterwards."""
    apps = []

    def build(**overrides):
        overrides.setdefault("SPOOL_DIR", str(tmp_path / f"spool-{len(apps)}"))
        app = create_app(make_config(keyspace, **overrides))
        apps.append(app)
        return app

    yield build
    for app in apps:
        rt = app.extensions.get("runtime")
        if rt is not None:
            rt.shutdown()
        app.extensions["cassandra"].shutdown()


@pytest.fixture
def app(app_factory):
    return app_factory()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def sync(app) -> None:
    """Write this process's counters and re-read the posterior cache (what the background loop does)."""
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
        banners = {b: True for b in banners}
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
