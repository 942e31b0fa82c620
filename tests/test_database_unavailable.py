"""Cassandra unreachable: the management API and the dashboard answer 503 with Retry-After, never a 500."""

from __future__ import annotations

from tests.helpers import ADMIN_TOKEN, free_port, login
from webapp import create_app


def closed_port_app(tmp_path, **overrides):
    port = free_port()      # nothing listens there: every connection attempt is refused at once
    return create_app({**overrides, "CASSANDRA_PORT": port, "ADMIN_API_TOKEN": ADMIN_TOKEN, "SECRET_KEY": "test-secret",
                       "BACKGROUND_THREADS": False, "SPOOL_DIR": str(tmp_path / "spool"),
                       "SLOT_LOAD_TIMEOUT_SECONDS": 0.5})


def test_management_api_answers_503_with_retry_after(tmp_path):
    app = closed_port_app(tmp_path)
    client = app.test_client()
    response = client.put("/v1/admin/tenants/acme", json={"name": "Acme"},
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "database is unavailable" in response.get_json()["error"]
    response = client.get("/v1/admin/tenants/acme/slots/hero/stats", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 503
    assert response.is_json


def test_dashboard_login_answers_503_page(tmp_path):
    app = closed_port_app(tmp_path)
    response = login(app.test_client(), "someone", "x" * 12)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
