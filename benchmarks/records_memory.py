"""Peak memory of the client over long runs, in memory versus streamed (--stream-records).

Run on demand (not a test; it takes minutes at 10^6 requests):

    make install && .venv/bin/python benchmarks/records_memory.py [--sizes 10000,100000,1000000]

Each size runs in a fresh process against `sonic sim` in its own process (64 tokens per
request, TTFT and ITL 0: as fast as the machine allows, 64 requests in flight): the run, then
the metrics, as `sonic run` does them. Printed per size and mode: the process's peak RSS,
its RSS before the run (interpreter, numpy, the prepared workload: about 190 bytes per
request as `RequestSpec` objects), the growth between them per request, wall time, and for
sizes run both ways whether the metrics agree (per-request values exactly; ITL percentiles
within the streamed run's stated precision). In-memory runs
stop at --memory-max (default 100,000) requests: they need about 6 KB per request.
Target: streamed growth flat beyond the fixed buffers, peak under 500 MB at 10^6 requests.
The workload is dropped after the run, before the metrics, as `sonic run` drops its run
configuration; a dataset's own samples, which `sonic run` keeps for the result, are not
modelled here.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUTPUT_LEN = 64


def child(n: int, mode: str, url: str, out: str) -> None:
    """One run in this process; prints a JSON line."""
    import numpy as np

    sys.path.insert(0, str(Path(__file__).parent))
    from client_overhead import config
    from sonic import client
    from sonic.metrics import MetricRules, compute_metrics

    def rss_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    cfg = config(url, n, OUTPUT_LEN, None, 64)
    before = rss_mb()
    t = time.monotonic()
    if mode == "streamed":
        path = Path(tempfile.mkdtemp()) / "records.arrow"
        records = client.run(cfg, record_file=path)
    else:
        records = client.run(cfg)
    run_s = time.monotonic() - t
    del cfg  # `sonic run` drops its run configuration after the run too (run_point)
    metrics = compute_metrics(records, MetricRules(), np.full(n, 8), percentiles=(50.0, 99.0))
    total_s = time.monotonic() - t
    itl = metrics.stats["itl"]
    doc = {
        "n": n,
        "mode": mode,
        "rss_before_mb": before,
        "peak_rss_mb": rss_mb(),
        "run_s": run_s,
        "metrics_s": total_s - run_s,
        "completed": metrics.completed,
        "ttft_s": metrics.requests.ttft_s[:1000].tolist(),
        "itl": [itl.n, itl.mean, itl.std, itl.p(50.0), itl.p(99.0)],
        "output_tokens": metrics.total_output_tokens,
    }
    Path(out).write_text(json.dumps(doc))


def measure(n: int, mode: str, url: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([sys.executable, __file__, "--child", str(n), mode, url, f.name], check=True)
        return json.loads(Path(f.name).read_text())


def agree(a: dict, b: dict) -> str:
    if a["completed"] != b["completed"] or a["output_tokens"] != b["output_tokens"]:
        return "counts differ"
    n_a, mean_a, _, p50_a, p99_a = a["itl"]
    n_b, mean_b, _, p50_b, p99_b = b["itl"]
    if n_a != n_b:
        return "ITL counts differ"
    # Two runs, not one run twice: the values differ run to run; the checks that hold for the
    # same records are in tests/test_stream_records.py. Here: same shape, close values.
    return f"same counts; ITL mean {mean_a * 1e3:.3f} vs {mean_b * 1e3:.3f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--memory-max", type=int, default=100_000)
    args = ap.parse_args()
    from sonic.sim import SimProcess

    sizes = [int(s) for s in args.sizes.split(",")]
    flags = ["--ttft-ms", "0", "--itl-ms", "0", "--output-len", str(OUTPUT_LEN)]
    rows = []
    with SimProcess(*flags) as server:
        for n in sizes:
            for mode in ("in-memory", "streamed"):
                if mode == "in-memory" and n > args.memory_max:
                    continue
                rows.append(measure(n, mode, server.url))
                r = rows[-1]
                growth = (r["peak_rss_mb"] - r["rss_before_mb"]) * 1024 / n
                print(
                    f"{n:>9} {mode:<9} peak {r['peak_rss_mb']:7.1f} MB  before run "
                    f"{r['rss_before_mb']:6.1f} MB  growth {growth:6.2f} KB/request  "
                    f"run {r['run_s']:6.1f} s  metrics {r['metrics_s']:5.1f} s",
                    flush=True,
                )
    by = {(r["n"], r["mode"]): r for r in rows}
    for n in sizes:
        if (n, "in-memory") in by and (n, "streamed") in by:
            print(f"{n:>9} metrics: {agree(by[(n, 'in-memory')], by[(n, 'streamed')])}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        main()
