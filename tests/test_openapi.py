"""The OpenAPI document (/openapi.json) and a schemathesis run against a real gunicorn on the test keyspace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import ADMIN_TOKEN, free_port

ROOT = Path(__file__).resolve().parent.parent

PUBLIC_OPERATIONS = {
    ("get", "/v1/serve/{tenant}/{slot}"),
    ("get", "/v1/embed/{tenant}/{slot}"),
    ("get", "/v1/click/{token}"),
    ("post", "/v1/click"),
    ("get", "/v1/ping"),
}
ADMIN_OPERATIONS = {
    ("put", "/v1/admin/tenants/{tenant}"),
    ("get", "/v1/admin/tenants/{tenant}"),
    ("put", "/v1/admin/tenants/{tenant}/slots/{slot}"),
    ("put", "/v1/admin/tenants/{tenant}/slots/{slot}/banners/{banner}"),
    ("get", "/v1/admin/tenants/{tenant}/slots/{slot}/banners"),
    ("get", "/v1/admin/tenants/{tenant}/slots/{slot}/stats"),
    # issue 25: read back, merge-patch and delete everything writable; tenant API keys
    ("get", "/v1/admin/tenants"),
    ("patch", "/v1/admin/tenants/{tenant}"),
    ("delete", "/v1/admin/tenants/{tenant}"),
    ("get", "/v1/admin/tenants/{tenant}/slots"),
    ("get", "/v1/admin/tenants/{tenant}/slots/{slot}"),
    ("patch", "/v1/admin/tenants/{tenant}/slots/{slot}"),
    ("delete", "/v1/admin/tenants/{tenant}/slots/{slot}"),
    ("get", "/v1/admin/tenants/{tenant}/slots/{slot}/banners/{banner}"),
    ("patch", "/v1/admin/tenants/{tenant}/slots/{slot}/banners/{banner}"),
    ("delete", "/v1/admin/tenants/{tenant}/slots/{slot}/banners/{banner}"),
    ("post", "/v1/admin/tenants/{tenant}/api-keys"),
    ("get", "/v1/admin/tenants/{tenant}/api-keys"),
    ("delete", "/v1/admin/tenants/{tenant}/api-keys/{key_id}"),
    ("get", "/v1/admin/tenants/{tenant}/slots/{slot}/lift"),
    ("get", "/v1/admin/tenants/{tenant}/slots/{slot}/evaluation"),
}

# Bounds of the schemathesis run: examples per operation and phase, and the wall clock of the whole run.
MAX_EXAMPLES = 30
WALL_CLOCK_SECONDS = 600
SEED = 6
CHECKS = ("not_a_server_error", "status_code_conformance", "response_schema_conformance",
          "content_type_conformance", "unsupported_method")


def operations(document: dict) -> dict[tuple[str, str], dict]:
    return {(method, path): operation for path, item in document["paths"].items()
            for method, operation in item.items()}


def resolve(document: dict, node: dict) -> dict:
    while "$ref" in node:
        *_, kind, name = node["$ref"].split("/")
        node = document["components"][kind][name]
    return node


def test_openapi_document_covers_the_public_contract(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.")
    ops = operations(document)
    assert set(ops) == PUBLIC_OPERATIONS | ADMIN_OPERATIONS

    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer",
        "description": "Authorization: Bearer <ADMIN_API_TOKEN or tenant API key>"}
    for key in ADMIN_OPERATIONS:
        assert ops[key]["security"] == [{"bearerAuth": []}], key
        assert "401" in ops[key]["responses"], key
        assert "403" in ops[key]["responses"], key
    for key in PUBLIC_OPERATIONS - {("post", "/v1/click")}:
        assert "security" not in ops[key], key
    # a browser posts a click anonymously, a tenant's backend with its key
    assert ops[("post", "/v1/click")]["security"] == [{}, {"bearerAuth": []}]

    error_ref = {"$ref": "#/components/schemas/Error"}
    for key, operation in ops.items():
        for status, answer in operation["responses"].items():
            if status.startswith("4"):
                assert resolve(document, answer)["content"] == {"application/json": {"schema": error_ref}}, key
    assert document["components"]["schemas"]["Error"]["required"] == ["error"]

    assert set(ops[("get", "/v1/embed/{tenant}/{slot}")]["responses"]["200"]["content"]) == {"text/html"}
    assert "Location" in ops[("get", "/v1/click/{token}")]["responses"]["302"]["headers"]
    for key in {("put", "/v1/admin/tenants/{tenant}"), ("put", "/v1/admin/tenants/{tenant}/slots/{slot}"),
                ("put", "/v1/admin/tenants/{tenant}/slots/{slot}/banners/{banner}")}:
        assert {"200", "201"} <= set(ops[key]["responses"]), key
    assert "409" in ops[("put", "/v1/admin/tenants/{tenant}/slots/{slot}/banners/{banner}")]["responses"]
    for key in PUBLIC_OPERATIONS - {("get", "/v1/ping")}:
        assert "429" in ops[key]["responses"], key


def test_openapi_limits_follow_the_config(app_factory):
    document = app_factory(MAX_PARAM_LENGTH=40).test_client().get("/openapi.json").get_json()
    assert document["components"]["parameters"]["location"]["schema"]["maxLength"] == 40
    assert document["components"]["schemas"]["ClickBody"]["properties"]["customer_id"]["maxLength"] == 40
    assert document["components"]["parameters"]["tenant"]["schema"]["pattern"].startswith("^[A-Za-z0-9]")


@pytest.fixture
def gunicorn_server(keyspace):
    """gunicorn (2 workers) on the test keyspace, rate limits on but far above what the run sends."""
    port = free_port()
    env = {**os.environ, "CASSANDRA_KEYSPACE": keyspace, "ADMIN_API_TOKEN": ADMIN_TOKEN, "PORT": str(port),
           "WEB_CONCURRENCY": "2", "SECRET_KEY": "schemathesis-test", "RATELIMIT_SERVE": "100000/minute",
           "RATELIMIT_CLICK": "100000/minute"}
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{base}/v1/ping", timeout=5)
                break
            except requests.RequestException:      # not listening yet, or workers still booting
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail(f"gunicorn did not start: {process.stderr.read().decode()[-2000:]}")
                time.sleep(0.2)
        yield base
    finally:                                       # whatever happened, no server outlives the test
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def seed_examples(base: str) -> None:
    """The document's example IDs (demo/home-hero/summer-sale) exist, so serve paths can answer 200.

    Target URLs point back at this server: nothing in the run may leave the machine.
    """
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    requests.put(f"{base}/v1/admin/tenants/demo", json={"name": "Demo"}, headers=auth).raise_for_status()
    requests.put(f"{base}/v1/admin/tenants/demo/slots/home-hero", json={"name": "Hero"}, headers=auth
                 ).raise_for_status()
    for banner in ("summer-sale", "free-shipping", "new-arrivals"):
        requests.put(f"{base}/v1/admin/tenants/demo/slots/home-hero/banners/{banner}", headers=auth, json={
            "image_url": f"{base}/static/banners/{banner}.svg", "target_url": f"{base}/?clicked={banner}",
            "alt": banner}).raise_for_status()
    deadline = time.monotonic() + 30
    while requests.get(f"{base}/v1/serve/demo/home-hero", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "the seeded slot never became servable"
        time.sleep(0.2)


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_undocumented_response(gunicorn_server, tmp_path, capsys):
    base = gunicorn_server
    seed_examples(base)
    report = tmp_path / "schemathesis.json"
    command = [sys.executable, "-m", "schemathesis.cli", "run", f"{base}/openapi.json",
               "--header", f"Authorization: Bearer {ADMIN_TOKEN}",
               "--checks", ",".join(CHECKS), "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
               # One worker: with two threads, hypothesis's lambda descriptions call ast.parse concurrently,
               # and CPython 3.11.7's AST validator keeps its recursion depth in shared state (a CPython bug
               # fixed in later releases): "SystemError: AST constructor recursion depth mismatch" failed CI.
               "--workers", "1", "--max-redirects", "0", "--request-timeout", "30",
               "--generation-database", "none", "--no-color",
               "--report", "json", "--report-json-path", str(report)]
    try:
        run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=WALL_CLOCK_SECONDS)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"schemathesis did not finish within {WALL_CLOCK_SECONDS} s: {str(exc.stdout)[-3000:]}")
    summary = json.loads(report.read_text())
    cases = summary["test_cases"]
    phases = ", ".join(f"{name}={phase['status']}" for name, phase in summary["phases"].items())
    with capsys.disabled():                # the figures of docs/BENCHMARKS.md, shown by `make test` too
        print(f"\nschemathesis {summary['schemathesis_version']}: {summary['operations']['tested']} operations, "
              f"{cases['generated']} test cases, {cases['with_failures']} with failures "
              f"({cases['unique_failures']} unique), {cases['errored']} errored, "
              f"{summary['running_time']:.1f} s, seed {summary['seed']}, phases {phases}")
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert summary["failures"] == [] and summary["errors"] == []
    assert summary["operations"]["tested"] == len(PUBLIC_OPERATIONS | ADMIN_OPERATIONS)
    assert cases["generated"] >= 10 * len(PUBLIC_OPERATIONS | ADMIN_OPERATIONS)
