#!/usr/bin/env python3
"""How steady is this machine's CPU? (``make bench-cpu``)

Times one fixed piece of pure-Python work (a loop of multiplications, single thread, no I/O) ``--samples``
times, ``--pause`` seconds apart, and prints each time, their spread, and the machine's steal and busy time
meanwhile (from /proc/stat). Run it on an otherwise idle machine: on steady hardware every sample takes about
the same time; when the cores' speed changes under us (a host that shares them, frequency changes), the
samples spread, and every latency figure measured here spreads with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from bench_serve import machine_cpu_seconds as cpu_times  # this folder
from report import stamp, write_section


def work(iterations: int) -> float:
    """Seconds of one run of the fixed loop."""
    started = time.perf_counter()
    total = 0
    for value in range(iterations):
        total += value * value
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--pause", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("--iterations", type=int, default=600_000, help="loop length of one sample")
    args = parser.parse_args()

    print(f"[bench-cpu] {args.samples} samples of a {args.iterations:,}-step Python loop, {args.pause:g} s apart "
          f"(load average before: {' / '.join(f'{v:.2f}' for v in os.getloadavg())})", flush=True)
    busy0, steal0 = cpu_times()
    wall0 = time.monotonic()
    samples: list[float] = []
    for number in range(1, args.samples + 1):
        samples.append(work(args.iterations) * 1000)
        if number % 10 == 0:
            print(f"[bench-cpu] {number}/{args.samples}: last ten "
                  + " ".join(f"{s:.0f}" for s in samples[-10:]) + " ms", flush=True)
        time.sleep(args.pause)
    wall = time.monotonic() - wall0
    busy1, steal1 = cpu_times()
    ordered = sorted(samples)
    fastest, median, slowest = ordered[0], statistics.median(ordered), ordered[-1]
    block = "\n".join([
        f"- One sample: fastest {fastest:.0f} ms, median {median:.0f} ms, slowest {slowest:.0f} ms "
        f"(slowest / fastest = {slowest / fastest:.2f}); samples more than 25% above the fastest: "
        f"{sum(s > fastest * 1.25 for s in samples)} of {len(samples)}.",
        f"- Machine meanwhile: busy {(busy1 - busy0) / wall:.2f} cores (this probe included), "
        f"steal {(steal1 - steal0) / wall:.2f} cores, over {wall:.0f} s.",
        f"- Command: `make bench-cpu` (`benchmarks/bench_cpu.py --samples {args.samples} --pause {args.pause:g} "
        f"--iterations {args.iterations}`)."])
    print("\n" + block)
    write_section("cpu", f"{stamp('make bench-cpu')}\n\n{block}")


if __name__ == "__main__":
    main()
