"""End-to-end mode: simulated visitors against the running HTTP service.

For every simulated visitor: ``GET /v1/serve/<tenant>/<slot>?location=<city>`` (the service chooses, with
its own posteriors in Cassandra), the environment decides with the visitor's true CTR whether she clicks,
and a click is sent as ``POST /v1/click {"token": …}`` with the token of *that* serve response. At the end
the management API's stats (``GET …/stats`` and ``…/stats?location=<city>``) must show, per banner,
exactly the impressions and clicks that were sent.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

from simulator.env import BannerSlotEnv
from simulator.scenario import Scenario

REPO = Path(__file__).resolve().parent.parent


class ServiceError(RuntimeError):
    """The service answered something the simulator cannot go on with."""


class ServiceClient:
    """The few calls of the public and management APIs the simulator needs."""

    def __init__(self, base_url: str, admin_token: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        self.admin_headers = {"Authorization": f"Bearer {admin_token}"}

    def _admin_put(self, path: str, body: dict) -> None:
        response = self.http.put(f"{self.base_url}/v1/admin/{path}", json=body, headers=self.admin_headers,
                                 timeout=self.timeout)
        if response.status_code not in (200, 201):
            raise ServiceError(f"PUT /v1/admin/{path} → {response.status_code}: {response.text[:300]}")

    def create_slot(self, tenant: str, slot: str, banners: tuple[str, ...]) -> None:
        """Tenant, slot and banners. Simulated time runs far faster than a visitor's: a click comes
        milliseconds after its impression and hundreds come from one IP, so the tenant's click filter keeps
        only its user-agent rule (the timing and rate rules would flag every simulated click)."""
        self._admin_put(f"tenants/{tenant}", {"name": f"simulator {tenant}", "click_filter": {
            "min_delay_seconds": 0, "max_clicks_per_customer": 0, "max_clicks_per_ip": 0}})
        self._admin_put(f"tenants/{tenant}/slots/{slot}", {"name": "simulated slot"})
        for banner in banners:
            self._admin_put(f"tenants/{tenant}/slots/{slot}/banners/{banner}", {
                "image_url": f"https://cdn.example.com/{banner}.png",
                "target_url": f"https://shop.example.com/{banner}", "alt": f"Banner {banner}"})

    def serve(self, tenant: str, slot: str, location: str, wait: float = 15.0) -> dict:
        """The serve document. 404 is retried for ``wait`` seconds: a worker whose cache has not yet seen a
        new slot answers 404, and a 404 records nothing."""
        deadline = time.monotonic() + wait
        while True:
            response = self.http.get(f"{self.base_url}/v1/serve/{tenant}/{slot}",
                                     params={"location": location}, timeout=self.timeout)
            if response.status_code == 200:
                return response.json()
            if response.status_code != 404 or time.monotonic() > deadline:
                raise ServiceError(f"serve → {response.status_code}: {response.text[:300]}")
            time.sleep(0.05)

    def click(self, token: str) -> str:
        response = self.http.post(f"{self.base_url}/v1/click", json={"token": token}, timeout=self.timeout)
        if response.status_code != 200:
            raise ServiceError(f"click → {response.status_code}: {response.text[:300]}")
        return response.json()["status"]

    def stats(self, tenant: str, slot: str, location: str = "") -> dict[str, tuple[int, int]]:
        """banner id → (impressions, clicks) for a location ('' = slot-wide); clicks the filter flagged
        are not clicks here (they never reach the posteriors)."""
        params = {"location": location} if location else {}
        response = self.http.get(f"{self.base_url}/v1/admin/tenants/{tenant}/slots/{slot}/stats",
                                 params=params, headers=self.admin_headers, timeout=self.timeout)
        if response.status_code != 200:
            raise ServiceError(f"stats → {response.status_code}: {response.text[:300]}")
        return {b["id"]: (int(b["impressions"]), int(b["clicks"])) for b in response.json()["banners"]}


@dataclass
class ServiceReport:
    """What the end-to-end run sent, what the stats API reported, and how the service learned."""

    tenant: str
    slot: str
    seed: int
    impressions: int
    clicks: int                                          # clicks sent
    click_outcomes: dict[str, int]                       # answer of POST /v1/click → how many
    seconds: float
    sent: dict[str, dict[str, tuple[int, int]]]          # location ('' = slot-wide) → banner → counts
    reported: dict[str, dict[str, tuple[int, int]]]
    mismatches: list[str] = field(default_factory=list)
    best_share_first_half: float = 0.0
    best_share_second_half: float = 0.0
    clicks_vs_oracle: float = 0.0

    @property
    def agrees(self) -> bool:
        return not self.mismatches

    def summary(self) -> str:
        lines = [
            f"end-to-end: tenant {self.tenant}, slot {self.slot}, seed {self.seed}: {self.impressions} serves, "
            f"{self.clicks} clicks sent in {self.seconds:.1f} s ({self.impressions / self.seconds:.0f} serves/s); "
            f"click answers {self.click_outcomes}",
            f"  share of each visitor's best banner: first half {self.best_share_first_half:.1%}, "
            f"second half {self.best_share_second_half:.1%}; clicks = {self.clicks_vs_oracle:.1%} of the oracle's",
        ]
        if self.agrees:
            lines.append(f"  stats API agrees with what was sent: slot-wide and {len(self.sent) - 1} locations, "
                         f"impressions and recorded clicks per banner")
        else:
            lines.append(f"  stats API DISAGREES ({len(self.mismatches)} differences):")
            lines.extend(f"    {m}" for m in self.mismatches[:20])
        return "\n".join(lines)


def run_service(scenario: Scenario, seed: int, client: ServiceClient, tenant: str | None = None,
                slot: str = "hero", settle_seconds: float = 20.0) -> ServiceReport:
    """Drive the service through one episode of ``scenario`` (every visitor is one serve request).

    Clicks are sent when the environment reveals them (at once, or after ``click_delay_seconds`` of
    simulated time). Afterwards the stats are polled until they match what was sent or ``settle_seconds``
    pass (the workers write their counters every COUNTER_FLUSH_SECONDS).
    """
    tenant = tenant or f"sim{uuid.uuid4().hex[:10]}"
    env = BannerSlotEnv(scenario)
    obs, _ = env.reset(seed=seed)
    cities, banners = scenario.cities, scenario.banners
    banner_index = {b: i for i, b in enumerate(banners)}
    client.create_slot(tenant, slot, banners)

    tokens: list[str] = []
    sent_n = np.zeros((scenario.n_cities, scenario.n_banners), dtype=np.int64)
    sent_c = np.zeros_like(sent_n)
    on_best = np.zeros(scenario.horizon, dtype=bool)
    clicks = oracle_clicks = 0
    outcomes: dict[str, int] = {}
    started = time.monotonic()
    truncated = False
    while not truncated:
        actions = np.empty(scenario.batch_size, dtype=np.int64)
        for i, city in enumerate(obs["city"]):
            document = client.serve(tenant, slot, cities[city])
            if document["location"] != cities[city]:
                raise ServiceError(f"served location {document['location']!r}, asked for {cities[city]!r}")
            actions[i] = banner_index[document["banner"]["id"]]
            tokens.append(document["token"])
        obs, _, _, truncated, info = env.step(actions)
        np.add.at(sent_n, (info["city"], actions), 1)
        on_best[info["t"]: info["t"] + actions.size] = actions == info["optimal_banner"]
        oracle_clicks += int(info["optimal_clicks"].sum())
        for impression in info["revealed_impressions"]:
            status = client.click(tokens[impression])
            outcomes[status] = outcomes.get(status, 0) + 1
            if status == "recorded":                     # a filtered click is stored, but is no click
                sent_c[env.city[impression], env.served[impression]] += 1
            clicks += 1
    elapsed = time.monotonic() - started

    sent: dict[str, dict[str, tuple[int, int]]] = {"": {
        b: (int(sent_n[:, k].sum()), int(sent_c[:, k].sum())) for k, b in enumerate(banners)}}
    for c, city in enumerate(cities):
        if sent_n[c].sum():
            sent[city] = {b: (int(sent_n[c, k]), int(sent_c[c, k])) for k, b in enumerate(banners)}
    deadline = time.monotonic() + settle_seconds
    while True:
        reported = {location: client.stats(tenant, slot, location) for location in sent}
        mismatches = [f"{location or '(slot-wide)'} {banner}: sent {counts} (impressions, clicks), "
                      f"stats {reported[location].get(banner)}"
                      for location, by_banner in sent.items() for banner, counts in by_banner.items()
                      if reported[location].get(banner) != counts]
        if not mismatches or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    half = scenario.horizon // 2
    return ServiceReport(
        tenant=tenant, slot=slot, seed=seed, impressions=int(sent_n.sum()), clicks=clicks,
        click_outcomes=outcomes, seconds=elapsed, sent=sent, reported=reported, mismatches=mismatches,
        best_share_first_half=float(on_best[:half].mean()), best_share_second_half=float(on_best[half:].mean()),
        clicks_vs_oracle=clicks / oracle_clicks if oracle_clicks else float("nan"),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def gunicorn(keyspace: str, admin_token: str, workers: int = 2, port: int | None = None,
             startup_seconds: float = 60.0) -> Iterator[str]:
    """Run ``gunicorn -c gunicorn.conf.py wsgi:app`` on a free port against ``keyspace``; yield its URL.

    The keyspace must have the schema (``flask --app wsgi init-db``). Stopped with SIGTERM on exit (the
    workers flush their counters on the way out).
    """
    port = port or free_port()
    environment = {**os.environ, "CASSANDRA_KEYSPACE": keyspace, "ADMIN_API_TOKEN": admin_token,
                   "PORT": str(port), "WEB_CONCURRENCY": str(workers),
                   "SECRET_KEY": os.environ.get("SECRET_KEY") or uuid.uuid4().hex}
    log = tempfile.TemporaryFile()  # noqa: SIM115 - open for the server's life; not a pipe, which would block its logging when full
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                               cwd=REPO, env=environment, stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + startup_seconds
    try:
        while True:
            try:
                requests.get(f"{base}/v1/ping", timeout=2)
                break
            except (requests.ConnectionError, requests.Timeout):
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    process.wait()
                    log.seek(0)
                    raise ServiceError("gunicorn did not start: "
                                       + log.read().decode(errors="replace")[-2000:]) from None
                time.sleep(0.2)
        yield base
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def init_schema(keyspace: str) -> None:
    """Create ``keyspace`` and its tables (``flask --app wsgi init-db``); harmless if they exist."""
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "init-db"], cwd=REPO, check=True,
                   env={**os.environ, "CASSANDRA_KEYSPACE": keyspace})
