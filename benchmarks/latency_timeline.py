#!/usr/bin/env python3
"""Put the slow requests of open-loop phases on a timeline (``make latency-timeline``).

Reads the per-request files ``make bench-serve`` keeps (``benchmarks/out/latencies/<phase>.tsv``: due offset,
latency and send lag in ns, status, ...) and prints, per file, the percentiles, the slow requests grouped into
clusters (slow requests less than ``--gap`` apart), each with its wall-clock time (UTC, to lay beside
Cassandra's ``system.log`` and ``gc.log``), and how far apart the clusters start: a cause on a timer shows as
one spacing over and over (the impression writes of IMPRESSION_WRITE_SECONDS did, docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections import Counter
from pathlib import Path

LATENCIES = Path(__file__).resolve().parent / "out" / "latencies"


def read(path: Path) -> tuple[float, list[tuple[float, float, float]]]:
    """(start in Unix seconds, [(due offset s, latency ms, send lag ms)]) of one openloop results file."""
    start = 0.0
    rows = []
    with path.open(errors="replace") as lines:
        for line in lines:
            if line.startswith("#"):
                start = int(line.split()[2]) / 1e9
                continue
            fields = line.split("\t", 5)
            rows.append((int(fields[0]) / 1e9, int(fields[1]) / 1e6, int(fields[2]) / 1e6))
    rows.sort()
    return start, rows


def clusters(rows: list[tuple[float, float, float]], slow_ms: float, gap_s: float) -> list[list[float]]:
    """[first due, last due, count, worst latency] of each run of slow requests less than gap_s apart."""
    found: list[list[float]] = []
    for due, latency, _lag in rows:
        if latency <= slow_ms:
            continue
        if found and due - found[-1][1] < gap_s:
            found[-1][1] = due
            found[-1][2] += 1
            found[-1][3] = max(found[-1][3], latency)
        else:
            found.append([due, due, 1, latency])
    return found


def report(path: Path, slow_ms: float, gap_s: float, limit: int) -> None:
    start, rows = read(path)
    if not rows:
        print(f"{path.name}: no requests")
        return
    latencies = sorted(r[1] for r in rows)
    lags = sorted(r[2] for r in rows)
    n = len(latencies)

    def pct(values: list[float], p: float) -> float:
        return values[min(n - 1, int(n * p))]

    print(f"{path.name}: {n} requests; latency p50 {pct(latencies, .5):.1f}, p99 {pct(latencies, .99):.1f}, "
          f"p99.9 {pct(latencies, .999):.1f}, max {latencies[-1]:.1f} ms; send lag p99 {pct(lags, .99):.2f}, "
          f"max {lags[-1]:.2f} ms")
    found = clusters(rows, slow_ms, gap_s)
    slow = sum(int(c[2]) for c in found)
    print(f"  {slow} requests over {slow_ms:g} ms in {len(found)} clusters (gap < {gap_s:g} s); the largest:")
    for first, last, count, worst in sorted(found, key=lambda c: -c[2])[:limit]:
        when = dt.datetime.fromtimestamp(start + first, dt.UTC).strftime("%H:%M:%S.%f")[:-3]
        print(f"    {when} UTC (+{first:6.2f} s)  {last - first:5.2f} s  {int(count):4d} requests  "
              f"worst {worst:6.1f} ms")
    spacing = Counter(round(b[0] - a[0], 1) for a, b in zip(found, found[1:]))
    if spacing:
        common = ", ".join(f"{gap:.1f} s ×{times}" for gap, times in spacing.most_common(5))
        print(f"  spacing of cluster starts, most common (0.1-s steps): {common}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path,
                        help="results files (default: the serve-rate-*.tsv of the last make bench-serve)")
    parser.add_argument("--slow", type=float, default=8.0, help="ms above which a request counts as slow")
    parser.add_argument("--gap", type=float, default=0.2, help="s between slow requests of one cluster")
    parser.add_argument("--top", type=int, default=8, help="clusters listed per file")
    args = parser.parse_args()
    files = args.files or sorted(LATENCIES.glob("serve-rate-*.tsv"))
    if not files:
        parser.error(f"no files given and none in {LATENCIES}; run make bench-serve first")
    for path in files:
        report(path, args.slow, args.gap, args.top)


if __name__ == "__main__":
    main()
