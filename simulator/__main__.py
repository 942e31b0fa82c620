"""Command line: ``python -m simulator run …`` (one policy in-process) or ``python -m simulator service …``
(simulated visitors against the HTTP service). ``python -m simulator --help`` lists the options."""

from __future__ import annotations

import argparse
import secrets
import sys

from simulator.policies import POLICIES
from simulator.runner import run
from simulator.scenario import PRESETS, Scenario
from simulator.service import ServiceClient, ServiceError, gunicorn, init_schema, run_service


def _run(args: argparse.Namespace) -> int:
    scenario = PRESETS[args.scenario]
    if args.horizon:
        scenario = scenario.with_(horizon=args.horizon)
    if args.reversed_city is not None:
        scenario = scenario.with_(reversed_city=args.reversed_city)
    print(scenario.describe())
    for policy in args.policy:
        result = run(scenario, policy, args.seed)
        print(f"{policy:22s} regret {result.regret:9.1f}  clicks {result.clicks:6d} = "
              f"{result.clicks_vs_oracle:6.1%} of the oracle's  90 % on the best after "
              f"{result.to_share[0.9] or '—'}  ({result.seconds:.1f} s)")
    return 0


def _service(args: argparse.Namespace) -> int:
    scenario = Scenario(name="service", n_banners=args.banners, n_cities=args.cities, horizon=args.steps,
                        batch_size=args.batch, base_ctr=args.base_ctr, banner_spread=args.banner_spread,
                        click_delay_seconds=args.click_delay, impressions_per_hour=args.impressions_per_hour)
    print(scenario.describe())
    try:
        if args.base_url:
            if not args.admin_token:
                print("--admin-token (the service's ADMIN_API_TOKEN) is required with --base-url", file=sys.stderr)
                return 2
            report = run_service(scenario, args.seed, ServiceClient(args.base_url, args.admin_token))
        else:
            token = secrets.token_urlsafe(16)
            init_schema(args.keyspace)
            with gunicorn(args.keyspace, token, workers=args.workers) as base_url:
                print(f"gunicorn ({args.workers} workers) on {base_url}, keyspace {args.keyspace}")
                report = run_service(scenario, args.seed, ServiceClient(base_url, token))
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0 if report.agrees else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    one = commands.add_parser("run", help="run policies through a preset scenario in-process")
    one.add_argument("--scenario", choices=sorted(PRESETS), default="stationary")
    one.add_argument("--policy", nargs="+", choices=["oracle", *POLICIES], default=["uniform", "thompson"])
    one.add_argument("--seed", type=int, default=0)
    one.add_argument("--horizon", type=int, default=0, help="impressions (default: the preset's)")
    one.add_argument("--reversed-city", type=int, metavar="N",
                     help="city N (0 = largest) likes what the slot dislikes: its ranking is reversed")
    one.set_defaults(handler=_run)

    e2e = commands.add_parser("service", help="drive the HTTP service and check its stats")
    e2e.add_argument("--base-url", help="a running service; default: start gunicorn on a free port")
    e2e.add_argument("--admin-token", help="its ADMIN_API_TOKEN (with --base-url)")
    e2e.add_argument("--keyspace", default="bb_simulator", help="keyspace for the started gunicorn")
    e2e.add_argument("--workers", type=int, default=2, help="gunicorn workers to start")
    e2e.add_argument("--steps", type=int, default=2000, help="visitors (serve requests)")
    e2e.add_argument("--batch", type=int, default=50, help="visitors per environment step")
    e2e.add_argument("--banners", type=int, default=4)
    e2e.add_argument("--cities", type=int, default=3)
    e2e.add_argument("--base-ctr", type=float, default=0.1)
    e2e.add_argument("--banner-spread", type=float, default=0.8)
    e2e.add_argument("--click-delay", type=float, default=0.0, help="mean click delay, simulated seconds")
    e2e.add_argument("--impressions-per-hour", type=float, default=2500.0)
    e2e.add_argument("--seed", type=int, default=0)
    e2e.set_defaults(handler=_service)

    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
