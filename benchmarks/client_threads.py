"""How the client scales with its worker threads (`--client-threads`), against `sonic sim` in
exact mode in its own process.

Run on demand (not a test; timings on a shared machine are noisy):

    make install && .venv/bin/python benchmarks/client_threads.py [--quick] [--max-threads N]

For each thread count from 1 to N (default: the host's available cores, at least 2): SSE
chunks per client CPU-second and the TTFT error against the engine's configured TTFT at 64
and 256 concurrent streams, then the dispatch lag p99 at increasing request rates and the
highest rate whose lag p99 stays under 1 ms. The sim shares the host: on a machine with few
cores it competes with the client, and the table says so by its TTFT error.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace

import numpy as np

from client_overhead import ITL_MS, TTFT_MS, config, measure, sim

STREAMS = (64, 256)
RATES = (500.0, 1000.0, 2000.0, 5000.0, 10000.0)
LAG_BOUND_MS = 1.0


def main() -> int:
    cores = len(os.sched_getaffinity(0))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer requests per point")
    p.add_argument("--max-threads", type=int, default=max(cores, 2), help="highest thread count")
    ns = p.parse_args()
    scale = 0.25 if ns.quick else 1.0
    threads = range(1, ns.max_threads + 1)
    print(f"sonic client threads ({cores} available cores), sim exact mode TTFT {TTFT_MS} ms, "
          f"ITL {ITL_MS} ms")  # fmt: skip
    print(f"{'threads':>7} {'streams':>8} {'chunks/CPU-s':>13} {'TTFT err mean':>14} "
          f"{'TTFT err p99':>13} {'failed':>7}")  # fmt: skip
    output_len = 100
    for t in threads:
        for streams in STREAMS:
            n = max(streams, int(streams * 4 * scale))
            with sim(output_len) as url:
                m = measure(replace(config(url, n, output_len, None, streams), client_threads=t))
            err = m.ttft_err_ms
            print(f"{t:>7} {streams:>8} {m.chunks_per_cpu_s:>13,.0f} {err.mean():>11.3f} ms "
                  f"{np.percentile(err, 99):>10.3f} ms {m.failed:>7}")  # fmt: skip
    print()
    print(f"{'threads':>7} " + " ".join(f"{f'{r:.0f}/s p99':>13}" for r in RATES)
          + f" {'max rate, p99 < 1 ms':>22}")  # fmt: skip
    for t in threads:
        cells, best = [], None
        for rate in RATES:
            n = max(200, int(rate * 2 * scale))
            with sim(1, ttft_ms=1.0, itl_ms=1.0) as url:
                m = measure(replace(config(url, n, 1, rate, None), client_threads=t))
            p99 = float(np.percentile(m.lag_ms, 99))
            cells.append(f"{p99:>10.3f} ms")
            if p99 < LAG_BOUND_MS:
                best = rate
        best_text = "none" if best is None else f"{best:.0f} req/s"
        print(f"{t:>7} " + " ".join(cells) + f" {best_text:>22}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
