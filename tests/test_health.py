"""The probes an orchestrator uses: /healthz (liveness) and /readyz (readiness: Cassandra answers, schema there)."""

from __future__ import annotations

import time

from tests.helpers import free_port


def test_healthz_answers_without_a_database(app_factory):
    app = app_factory(CASSANDRA_HOSTS="127.0.0.1", CASSANDRA_PORT=free_port())     # nothing listens there
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_is_ready_with_cassandra_and_the_schema(app, keyspace):
    client = app.test_client()
    # The probe's own timeout is short (an orchestrator's is a few seconds): on a loaded machine one read may miss
    # it, so a few tries (a real probe tries again too).
    for _ in range(10):
        response = client.get("/readyz")
        if response.status_code == 200:
            break
        time.sleep(1)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "ready"
    assert body["keyspace"] == keyspace
    assert body["cassandra"].startswith("5.")
    assert body["consistency"] == app.config["CASSANDRA_CONSISTENCY"]


def test_readyz_is_503_when_cassandra_does_not_answer(app_factory):
    app = app_factory(CASSANDRA_HOSTS="127.0.0.1", CASSANDRA_PORT=free_port())
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert "Cassandra does not answer" in body["error"]


def test_readyz_is_503_before_the_schema_step(app_factory):
    app = app_factory(CASSANDRA_KEYSPACE="bb_test_never_created")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert "init-db" in response.get_json()["error"]


def test_readyz_is_503_when_too_few_replicas_answer(app_factory, keyspace):
    """On the single test node, a consistency the node alone cannot satisfy (TWO) is an unready ring."""
    app = app_factory(CASSANDRA_CONSISTENCY="TWO")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert "Unavailable" in response.get_json()["error"]
