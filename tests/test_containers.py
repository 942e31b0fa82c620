"""The container images and compose.yaml, for real: built from this checkout, the stack brought up, a click learned
across replicas, one Cassandra node stopped without a 5xx, everything torn down.

It installs what it needs (podman, runc, podman-compose and mmdebstrap from Debian, the containers.conf settings,
a base image built from the Debian mirror) through scripts/containers.sh, so it runs as root on a Debian host (CI);
elsewhere, without podman or docker, it is skipped. Builds take minutes on a clean machine: progress goes to the
terminal. Marked slow: `make test-unit` leaves it out.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.helpers import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "containers.sh"
LOCATION = "Mumbai"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def _can_run() -> str | None:
    if shutil.which("podman") or shutil.which("docker"):
        return None
    if os.geteuid() == 0 and shutil.which("apt-get"):
        return None
    return "needs podman or docker, or root on Debian to install podman"


class Stack:
    """The compose project of this test: its port, secrets, and calls through the published port."""

    def __init__(self, progress) -> None:
        self.progress = progress
        self.port = free_port()
        self.env = {**os.environ,
                    "BB_PROJECT": f"bbtest{uuid.uuid4().hex[:8]}", "BB_PORT": str(self.port),
                    "SECRET_KEY": secrets.token_urlsafe(32), "ADMIN_API_TOKEN": secrets.token_urlsafe(24)}
        self.base = f"http://127.0.0.1:{self.port}"

    def script(self, *args: str, timeout: float) -> None:
        self.progress(f"scripts/containers.sh {' '.join(args)}")
        started = time.monotonic()
        subprocess.run([str(SCRIPT), *args], env=self.env, check=True, timeout=timeout)
        self.progress(f"  done in {time.monotonic() - started:.0f} s")

    def compose(self, *args: str, timeout: float = 180) -> None:
        self.script("compose", *args, timeout=timeout)

    def request(self, method: str, path: str, body: dict | None = None, admin: bool = False
                ) -> tuple[int, dict, str]:
        """(status, JSON body, replica that answered: the proxy's X-Served-By)."""
        # A visitor's browser: the click filter drops clicks of bot-like agents (urllib's own is one).
        headers = {"Content-Type": "application/json", "User-Agent": BROWSER}
        if admin:
            headers["Authorization"] = f"Bearer {self.env['ADMIN_API_TOKEN']}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}"), response.headers["X-Served-By"]
        except urllib.error.HTTPError as error:
            payload = error.read()
            try:
                document = json.loads(payload)
            except ValueError:
                document = {"raw": payload[:200].decode(errors="replace")}
            return error.code, document, error.headers.get("X-Served-By", "")


@pytest.fixture(scope="module")
def stack(request, capsys_module_disabled):
    reason = _can_run()
    if reason:
        pytest.skip(reason)
    stack = Stack(capsys_module_disabled)
    failed_before = request.session.testsfailed
    try:
        stack.script("setup", timeout=900)
        stack.script("up", timeout=1800)          # builds the images (minutes from scratch), waits for /readyz
        yield stack
    finally:
        if request.session.testsfailed > failed_before or sys.exc_info()[0] is not None:
            stack.progress("the replicas' and the schema step's last log lines:")
            subprocess.run([str(SCRIPT), "compose", "logs", "--tail", "60", "app-1", "app-2"], env=stack.env,
                           timeout=120, check=False)
        stack.progress("tearing the stack down (containers and volumes)")
        stack.env["BB_DOWN_VOLUMES"] = "1"
        subprocess.run([str(SCRIPT), "down"], env=stack.env, timeout=300, check=False)


@pytest.fixture(scope="module")
def capsys_module_disabled(request):
    """A progress printer that reaches the terminal through pytest's capture (and the scripts' own output too)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def progress(message: str) -> None:
        with capture.global_and_fixture_disabled():
            print(f"[test_containers] {message}", flush=True)

    capture.suspend_global_capture(in_=True)      # the scripts' progress lines go to the terminal as they come
    try:
        yield progress
    finally:
        capture.resume_global_capture()


def _until(what: str, check, timeout: float = 180, every: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def test_click_learned_through_the_other_replica_and_one_node_down(stack):
    tenant, slot = f"t{uuid.uuid4().hex[:8]}", "hero"
    instant = {"min_delay_seconds": 0, "max_clicks_per_customer": 0, "max_clicks_per_ip": 0}
    assert stack.request("PUT", f"/v1/admin/tenants/{tenant}", {"name": tenant, "click_filter": instant},
                         admin=True)[0] == 201
    assert stack.request("PUT", f"/v1/admin/tenants/{tenant}/slots/{slot}", {"name": "Hero"}, admin=True)[0] == 201
    status, body, _ = stack.request(
        "PUT", f"/v1/admin/tenants/{tenant}/slots/{slot}/banners/only",
        {"image_url": "https://cdn.example.com/only.png", "target_url": "https://shop.example.com/only",
         "alt": "The only banner"}, admin=True)
    assert status == 201, body

    # Both replicas answer behind the one port (round robin: two calls, two replicas).
    serve_path = f"/v1/serve/{tenant}/{slot}?location={LOCATION}"
    replicas = {stack.request("GET", serve_path)[2] for _ in range(4)}
    assert replicas == {"app-1", "app-2"}

    # A serve, and its click recorded by one replica…
    status, served, _ = stack.request("GET", serve_path, admin=True)     # the platform token sees alpha, beta
    assert status == 200, served
    before = served["posterior"]
    status, clicked, clicked_on = stack.request("POST", "/v1/click", {"token": served["token"]})
    assert status == 200 and clicked["status"] == "recorded", clicked
    other = ({"app-1", "app-2"} - {clicked_on}).pop()
    stack.progress(f"clicked through {clicked_on}; posterior before: {before}")

    # … and learned by the other: its serves' posterior counts the click (its cache re-reads Cassandra's counters).
    def learned_by_other():
        status, served, replica = stack.request("GET", serve_path, admin=True)
        assert status == 200, served
        return served["posterior"] if replica == other and served["posterior"]["alpha"] >= before["alpha"] + 1 else None

    after = _until(f"the click learned by {other}", learned_by_other, timeout=120, every=0.2)
    stack.progress(f"{other} serves posterior {after}")
    status, stats, _ = stack.request("GET", f"/v1/admin/tenants/{tenant}/slots/{slot}/stats?location={LOCATION}",
                                     admin=True)
    assert status == 200 and stats["banners"][0]["clicks"] == 1, stats

    # One Cassandra node down: replication 3 at LOCAL_QUORUM still reads and writes. No 5xx, no lost click.
    stack.compose("stop", "-t", "30", "cassandra-2")
    statuses: dict[int, int] = {}
    clicks = 0
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        status, served, _ = stack.request("GET", serve_path)
        statuses[status] = statuses.get(status, 0) + 1
        if status == 200:
            click_status, _, _ = stack.request("POST", "/v1/click", {"token": served["token"]})
            statuses[click_status] = statuses.get(click_status, 0) + 1
            clicks += click_status == 200
        time.sleep(0.1)
    stack.progress(f"with cassandra-2 stopped: {statuses}")
    assert not [s for s in statuses if s >= 500], statuses
    assert statuses.get(200, 0) > 20, statuses
    _until("every click counted with a node down",
           lambda: stack.request("GET", f"/v1/admin/tenants/{tenant}/slots/{slot}/stats?location={LOCATION}",
                                 admin=True)[1]["banners"][0]["clicks"] == 1 + clicks, timeout=120)
