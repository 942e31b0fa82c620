"""Write a sample history CSV for spark_jobs/import_history.py (plain Python, no Spark).

    python -m spark_jobs.sample_history --rows 100000 --out .run/history.csv [--bad-rows 5] [--seed 1]

The original system is modelled as rotating banners uniformly at random. Each banner has a slot-wide CTR;
each city's CTR for it is drawn from Beta(μ·κ, (1 − μ)·κ) (κ = ``--spread``: larger, more alike cities);
bigger cities get more traffic (Zipf weights) and a share of rows has no location. ``--bad-rows`` replaces
that many rows (at random places) by malformed ones to show the import's rejection report. Defaults write the demo
tenant's slot (``make run``), so ``make import-history`` + ``make priors`` work on the demo.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HEADER = ("time", "tenant", "slot", "banner", "location", "customer_id", "referrer_id", "clicked")

DEMO_CTR = {"summer-sale": 0.045, "free-shipping": 0.03, "new-arrivals": 0.025, "electronics-week": 0.02,
            "festive-offers": 0.06, "members-only": 0.015}
CITIES = ["Mumbai", "Delhi", "Bengaluru", "Hyderabad", "Ahmedabad", "Chennai", "Kolkata", "Pune", "Jaipur",
          "Surat", "Lucknow", "Kanpur", "Nagpur", "Indore", "Bhopal", "Patna", "Vadodara", "Ludhiana", "Agra",
          "Nashik"]
REFERRERS = ["", "newsletter", "search", "social", "partner"]
BAD_ROWS = [
    "not-a-time,{tenant},{slot},{banner},Pune,c1,,1",             # time
    "2026-10-01T10:00:00Z,{tenant},{slot},bad banner!,Pune,c1,,0",  # banner ID
    "2026-10-01T10:00:00Z,{tenant},{slot},{banner},Pune,c1,,maybe",  # clicked
    "2026-10-01T10:00:00Z,{tenant},{slot},{banner},Pune",            # too few fields
    "2026-10-01T10:00:00Z,,{slot},{banner},Pune,c1,,1",             # empty tenant
]


@dataclass
class SampleSpec:
    rows: int
    tenant: str = "demo"
    slot: str = "home-hero"
    ctr: dict[str, float] = field(default_factory=lambda: dict(DEMO_CTR))
    cities: list[str] = field(default_factory=lambda: list(CITIES))
    spread: float = 300.0            # κ
    no_location_share: float = 0.05
    days: int = 30
    end: dt.datetime | None = None    # default: now, UTC
    bad_rows: int = 0
    seed: int = 1


def city_ctr(spec: SampleSpec, rng: np.random.Generator) -> np.ndarray:
    """True CTRs, shape (cities, banners): θ ~ Beta(μκ, (1 − μ)κ) around each banner's slot-wide μ."""
    mu = np.array(list(spec.ctr.values()))
    return rng.beta(mu * spec.spread, (1 - mu) * spec.spread, size=(len(spec.cities), mu.shape[0]))


def generate(spec: SampleSpec, out: Path) -> np.ndarray:
    """Write the CSV; return the true city CTRs (cities × banners) it was drawn from."""
    rng = np.random.default_rng(spec.seed)
    banners = list(spec.ctr)
    theta = city_ctr(spec, rng)
    weights = 1.0 / np.arange(1, len(spec.cities) + 1)
    weights /= weights.sum()
    city = rng.choice(len(spec.cities), size=spec.rows, p=weights)
    banner = rng.integers(0, len(banners), size=spec.rows)
    clicked = rng.random(spec.rows) < theta[city, banner]
    no_location = rng.random(spec.rows) < spec.no_location_share
    end = spec.end or dt.datetime.now(dt.UTC)
    seconds = np.sort(rng.integers(0, spec.days * 86400, size=spec.rows))[::-1]
    customers = rng.integers(1, 50_000, size=spec.rows)
    referrers = rng.integers(0, len(REFERRERS), size=spec.rows)
    bad_at = sorted(rng.choice(spec.rows, size=min(spec.bad_rows, spec.rows), replace=False).tolist())
    bad_kind = {row: kind % len(BAD_ROWS) for kind, row in enumerate(bad_at)}
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        for i in range(spec.rows):
            if i in bad_kind:
                template = BAD_ROWS[bad_kind[i]]
                handle.write(template.format(tenant=spec.tenant, slot=spec.slot, banner=banners[0]) + "\n")
                continue
            when = end - dt.timedelta(seconds=int(seconds[i]))
            writer.writerow((when.strftime("%Y-%m-%dT%H:%M:%SZ"), spec.tenant, spec.slot, banners[banner[i]],
                             "" if no_location[i] else spec.cities[city[i]], f"c{customers[i]}",
                             REFERRERS[referrers[i]], int(clicked[i])))
    return theta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_jobs.sample_history", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path(".run/history.csv"))
    parser.add_argument("--tenant", default="demo")
    parser.add_argument("--slot", default="home-hero")
    parser.add_argument("--days", type=int, default=30, help="spread rows over the last N days")
    parser.add_argument("--spread", type=float, default=300.0, help="κ: how alike cities are (larger: more)")
    parser.add_argument("--bad-rows", type=int, default=0, help="malformed rows to include")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    spec = SampleSpec(rows=args.rows, tenant=args.tenant, slot=args.slot, days=args.days, spread=args.spread,
                      bad_rows=args.bad_rows, seed=args.seed)
    generate(spec, args.out)
    print(f"[sample] wrote {args.rows:,} rows ({args.bad_rows} malformed) for {args.tenant}/{args.slot} "
          f"to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
