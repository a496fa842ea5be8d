"""How the client scales with its worker threads (`--client-threads`), against `sonic sim` in
exact mode in its own process.

Run on demand (not a test; timings on a shared machine are noisy):

    make install && .venv/bin/python benchmarks/client_threads.py [--quick] [--max-threads N]

For each thread count from 1 to N (default: the host's available cores, at least 2): SSE
chunks per client CPU-second and the TTFT error against the engine's configured TTFT at 64,
256 and 1,000 concurrent streams; the dispatch lag p99 at increasing request rates (one-token
answers) and the highest rate whose lag p99 stays under 1 ms; then the same with answers
that stay open about a second (50 tokens, 20 ms apart), so that about as many streams are
open as requests arrive per second, and the most open streams at which the lag p99 stays
under 1 ms. The sim shares the host: on a machine with few cores it competes with the
client, and the table says so by its TTFT error. With ``--pin`` the sim's threads are
pinned to the last available core and the client to the others (thread counts then stop at
those cores), so the two no longer compete for a core.

Beside each TTFT error: the sim's own lateness (its first tokens' mean delay past arrival +
TTFT, from its /metrics), and, when built (``cargo build --release --example
floor_reader``), the error of the floor reader (raw TCP, no parsing) on the same engine and
cores: what this host allows any client. The client opens its connections before t0
(``warm_connections``, as ``--num-warmups`` does), and so does the floor: a first wave that
connects on the clock has each connect in its TTFT, which is real latency, not timing error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import urllib.request
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from client_overhead import ITL_MS, TTFT_MS, config, measure, sim_flags
from sonic.sim import SimProcess
from sonic.telemetry.names import parse_metrics

STREAMS = (64, 256, 1000)
RATES = (500.0, 1000.0, 2000.0, 5000.0, 10000.0)
# Arrival rates of the open-streams table: each answer is open about 1 s (TTFT + 49 x ITL).
OPEN_RATES = (100.0, 300.0, 1000.0, 2000.0)
OPEN_TOKENS, OPEN_ITL_MS = 50, 20.0
LAG_BOUND_MS = 1.0
FLOOR = Path(__file__).resolve().parents[1] / "target" / "release" / "examples" / "floor_reader"
LATENESS = "sonic_sim:exact_first_token_lateness_seconds"


def sim_lateness_ms(url: str) -> float:
    """The sim's mean first-token lateness so far (ms), from its own histogram."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        samples = {s.name: s.value for s in parse_metrics(resp.read().decode())}
    count = samples.get(LATENESS + "_count", 0.0)
    return samples.get(LATENESS + "_sum", 0.0) / count * 1e3 if count else float("nan")


def floor_ttft_err_ms(url: str, streams: int, n: int, output_len: int) -> np.ndarray:
    """The floor reader's TTFT error (ms) on the same engine: its connections opened first,
    then every stream's first request at once."""
    body = json.dumps({"model": "sonic-sim", "prompt": "the floor reads this stream",
                       "max_tokens": output_len, "ignore_eos": True, "stream": True})  # fmt: skip
    host = url.split("://", 1)[1]
    out = subprocess.run([str(FLOOR), host, str(streams), str(n), body], check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    return np.asarray(json.loads(out)["ttft_ns"], dtype=np.float64) / 1e6 - TTFT_MS


def main() -> int:
    cores = len(os.sched_getaffinity(0))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer requests per point")
    p.add_argument("--max-threads", type=int, default=max(cores, 2), help="highest thread count")
    p.add_argument(
        "--pin", action="store_true", help="the sim on the last core, the client on the rest"
    )
    ns = p.parse_args()
    scale = 0.25 if ns.quick else 1.0
    available = sorted(os.sched_getaffinity(0))
    if ns.pin and len(available) < 2:
        p.error("--pin needs at least two available cores")
    client_cores = set(available[:-1]) if ns.pin else set(available)
    max_threads = min(ns.max_threads, len(client_cores)) if ns.pin else ns.max_threads
    threads = range(1, max_threads + 1)

    @contextmanager
    def engine(output_len: int, ttft_ms: float = TTFT_MS, itl_ms: float = ITL_MS):
        """The sim in exact mode in its own process; with --pin its threads (all started by
        now) on the last core and this process on the others."""
        with SimProcess(*sim_flags(output_len, ttft_ms, itl_ms)) as server:
            url = server.url
            if ns.pin:
                for tid in os.listdir(f"/proc/{server.proc.pid}/task"):
                    os.sched_setaffinity(int(tid), {available[-1]})
                os.sched_setaffinity(0, client_cores)
            try:
                yield url
            finally:
                os.sched_setaffinity(0, set(available))

    pinned = f"; sim pinned to core {available[-1]}" if ns.pin else ""
    print(f"sonic client threads ({cores} available cores), sim exact mode TTFT {TTFT_MS} ms, "
          f"ITL {ITL_MS} ms{pinned}")  # fmt: skip
    print(f"{'threads':>7} {'streams':>8} {'chunks/CPU-s':>13} {'TTFT err mean':>14} "
          f"{'TTFT err p99':>13} {'sim late mean':>14} {'failed':>7}")  # fmt: skip
    output_len = 100
    for t in threads:
        for streams in STREAMS:
            n = max(streams, int(streams * 4 * scale))
            with engine(output_len) as url:
                cfg = config(url, n, output_len, None, streams)
                m = measure(replace(cfg, client_threads=t, warm_connections=streams))
                late = sim_lateness_ms(url)
            err = m.ttft_err_ms
            print(f"{t:>7} {streams:>8} {m.chunks_per_cpu_s:>13,.0f} {err.mean():>11.3f} ms "
                  f"{np.percentile(err, 99):>10.3f} ms {late:>11.3f} ms {m.failed:>7}")  # fmt: skip
    if FLOOR.exists():
        print(f"\nfloor reader on the same cores: {'streams':>8} {'TTFT err mean':>14} "
              f"{'TTFT err p99':>13} {'sim late mean':>14}")  # fmt: skip
        for streams in STREAMS:
            n = max(streams, int(streams * 4 * scale))
            with engine(output_len) as url:
                err = floor_ttft_err_ms(url, streams, n, output_len)
                late = sim_lateness_ms(url)
            print(f"{'':>31} {streams:>8} {err.mean():>11.3f} ms "
                  f"{np.percentile(err, 99):>10.3f} ms {late:>11.3f} ms")  # fmt: skip
    else:
        print("\nfloor reader: build it (cargo build --release --example floor_reader)")
    print()
    print(f"{'threads':>7} " + " ".join(f"{f'{r:.0f}/s p99':>13}" for r in RATES)
          + f" {'max rate, p99 < 1 ms':>22}")  # fmt: skip
    for t in threads:
        cells, best = [], None
        for rate in RATES:
            n = max(200, int(rate * 2 * scale))
            with engine(1, ttft_ms=1.0, itl_ms=1.0) as url:
                m = measure(replace(config(url, n, 1, rate, None), client_threads=t))
            p99 = float(np.percentile(m.lag_ms, 99))
            cells.append(f"{p99:>10.3f} ms")
            if p99 < LAG_BOUND_MS:
                best = rate
        best_text = "none" if best is None else f"{best:.0f} req/s"
        print(f"{t:>7} " + " ".join(cells) + f" {best_text:>22}")
    print()
    print(f"{'threads':>7} " + " ".join(f"{f'{r:.0f}/s':>20}" for r in OPEN_RATES)
          + f" {'most open, p99 < 1 ms':>22}")  # fmt: skip
    print(f"{'':>7} " + " ".join(f"{'lag p99 (streams)':>20}" for _ in OPEN_RATES))
    for t in threads:
        cells, best = [], None
        for rate in OPEN_RATES:
            n = max(100, int(rate * 3 * scale))
            with engine(OPEN_TOKENS, itl_ms=OPEN_ITL_MS) as url:
                m = measure(replace(config(url, n, OPEN_TOKENS, rate, None), client_threads=t))
            p99 = float(np.percentile(m.lag_ms, 99))
            cells.append(f"{f'{p99:.3f} ms ({m.peak_streams})':>20}")
            if p99 < LAG_BOUND_MS and m.failed == 0:
                best = max(best or 0, m.peak_streams)
        best_text = "none" if best is None else f"{best} streams"
        print(f"{t:>7} " + " ".join(cells) + f" {best_text:>22}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
