"""Fixtures: the project's real Cassandra (started or reused), a unique keyspace per run, the app; and the
markers that say what a test needs. Helpers that tests call themselves are in tests/helpers.py."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.helpers import ADMIN_TOKEN, make_config, port_open, ring_settings
from webapp import create_app

ROOT = Path(__file__).resolve().parent.parent

# A test that uses one of these fixtures, directly or through another fixture, gets the marker:
# `make test-unit` deselects them (tests that need a browser are marked in their module).
FIXTURE_MARKERS = {
    "cassandra": {"cassandra", "keyspace", "ring"},
    "spark": {"spark", "spark_cluster"},        # the Spark test modules' session fixture, the standalone cluster
    "ring": {"ring"},
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        needed = set(getattr(item, "fixturenames", ()))     # the closure: fixtures of fixtures included
        for marker, fixtures in FIXTURE_MARKERS.items():
            if needed & fixtures:
                item.add_marker(marker)


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


@pytest.fixture(scope="session")
def ring() -> dict:
    """The three-node ring of scripts/cluster.sh (started, or reused when running); its CASSANDRA_* settings.

    Stopped at the end only if this run started it.
    """
    settings = ring_settings()
    hosts = settings["CASSANDRA_HOSTS"].split(",")
    started = not all(port_open(host, int(settings["CASSANDRA_PORT"])) for host in hosts)
    if started:
        subprocess.run([str(ROOT / "scripts" / "cluster.sh"), "start"], check=True)
    yield settings
    if started:
        subprocess.run([str(ROOT / "scripts" / "cluster.sh"), "stop"], check=False)


@pytest.fixture(scope="session")
def spark_cluster() -> str:
    """A Spark standalone master and worker (scripts/cluster.sh spark-start, or reused); stopped at the end only
    if this run started them. Its value: the master's URL."""
    script = str(ROOT / "scripts" / "cluster.sh")
    started = subprocess.run([script, "spark-status"], check=False, capture_output=True).returncode != 0
    if started:
        subprocess.run([script, "spark-start"], check=True)
    yield "spark://127.0.0.1:7177"
    if started:
        subprocess.run([script, "spark-stop"], check=False)
