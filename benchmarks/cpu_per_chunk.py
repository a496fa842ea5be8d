"""Client CPU per streamed chunk: sonic by phase, vLLM's Rust `vllm-bench`, and a floor.

Run on demand (not a test; timings on a shared machine are noisy):

    make install && cargo build --release --example floor_reader
    .venv/bin/python benchmarks/cpu_per_chunk.py --vllm-bench PATH/TO/vllm-bench \\
        [--loads 1:200,64:1200,256:2400] [--repeat 5] [--side-by-side]

The engine is `sonic sim` in exact mode in its own process (TTFT 20 ms, ITL 2 ms, 48 tokens
per request, ignore_eos), so its CPU is nobody's client's. Each load (streams:requests) is run
by three clients, each in a process of its own whose CPU (user + system, every thread) is read
from the kernel when it exits:

- the floor (`benchmarks/floor_reader.rs`): one connection per stream, a fixed POST, SSE
  events counted with memchr, nothing parsed or kept: what reading these streams costs here;
- when built (`cargo build --release --example reqwest_reader`), the same reader through
  sonic's HTTP stack (`benchmarks/reqwest_reader.rs`: reqwest, hyper, tokio): what the HTTP
  library costs above the floor;
- `vllm-bench` (the Rust port of `vllm bench serve`, now in the vLLM repository), random
  prompts from the same fixture tokenizer; its start-up (tokenizer, prompt generation, the
  /tokenize check) is subtracted by running it once more with one request per stream;
- sonic's client through the Python API, with CPU read at each phase boundary: the run (the
  hot loop: dispatcher, streams, SSE parsing, recording), metrics from the records,
  re-tokenization as `sonic run` does it by default (`--retokenize 100`: the answers the count
  needs, none here since the sim sends usage, plus 100 spread over the run), and the result
  file (vLLM dialect) written. Its imports and the workload's building are outside every
  phase, and its start-up (a run's fixed costs: runtime, HTTP clients, threads, the records'
  hand-over) is subtracted phase by phase the same way as vllm-bench's, by a run of one
  request per stream. Re-tokenizing every answer (`--retokenize all`) is timed too and
  printed apart.

Both start-ups are printed: they hold different things (vllm-bench's a whole process with its
tokenizer and prompts, sonic's the run alone), so they are not compared.

Each load is run in ``--repeat`` rounds, each round running every client once, so that the
machine's drift reaches them alike. Printed per load, medians over the rounds: CPU per chunk
(µs) of each, sonic's phases, ratios against vllm-bench (and each round's own ratio) and the
floor, and each client's TTFT error against the sim's 20 ms (mean, p99). The chunk count is
the floor's SSE events per request x requests (the same sim, the same answers).

Rounds in turn still see the host change between one client's run and the next (on a shared
VM, by up to a third at one stream). ``--side-by-side`` adds rounds that run sonic and
vllm-bench at the same time on the same sim, each at the load, and prints each round's ratio:
the drift then reaches both at once, but the two share the cores (each client's CPU per chunk
rises by about half), so it is a second view, not a replacement.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "tests" / "fixtures" / "tokenizer"
FLOOR = ROOT / "target" / "release" / "examples" / "floor_reader"
REQWEST = ROOT / "target" / "release" / "examples" / "reqwest_reader"
TTFT_MS, ITL_MS, OUTPUT_LEN, INPUT_LEN = 20.0, 2.0, 48, 32


def cpu_of(cmd: list[str], **kw) -> tuple[float, str]:
    """(CPU seconds of the child and everything it waited for, its stdout). getrusage counts
    in microseconds; ``os.times`` in clock ticks (10 ms), too coarse for a run of 0.1 s."""

    def children() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    before = children()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout
    return children() - before, out


def floor(url: str, streams: int, requests: int, binary: Path = FLOOR) -> dict:
    host = url.split("://", 1)[1]
    body = json.dumps(
        {
            "model": "sonic-sim",
            "prompt": "the floor reads this stream",
            "max_tokens": OUTPUT_LEN,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    cpu, out = cpu_of([str(binary), host, str(streams), str(requests), body])
    doc = json.loads(out)
    return {"cpu_s": cpu, "events": doc["events"], "wall_s": doc["wall_s"]}


def vllm_cmd(binary: str, url: str, streams: int, n: int, result_dir: str) -> list[str]:
    """vllm-bench for ``n`` random prompts at ``streams`` concurrency, its result saved."""
    return [
        binary,
        "--backend", "vllm",
        "--base-url", url,
        "--endpoint", "/v1/completions",
        "--model", "sonic-sim",
        "--tokenizer", str(TOKENIZER),
        "--dataset-name", "random",
        "--random-input-len", str(INPUT_LEN),
        "--random-output-len", str(OUTPUT_LEN),
        "--ignore-eos",
        "--num-prompts", str(n),
        "--max-concurrency", str(streams),
        "--disable-tqdm",
        "--seed", "0",
        "--save-result",
        "--result-dir", result_dir,
        "--result-filename", f"r{n}.json",
    ]  # fmt: skip


def vllm_bench(binary: str, url: str, streams: int, requests: int) -> dict:
    with tempfile.TemporaryDirectory() as d:

        def once(n: int) -> tuple[float, dict]:
            cpu, _ = cpu_of(vllm_cmd(binary, url, streams, n, d))
            return cpu, json.loads((Path(d) / f"r{n}.json").read_text())

        small_cpu, _ = once(streams)
        cpu, doc = once(requests)
    return {
        "cpu_s": cpu - small_cpu,
        "startup_s": small_cpu,
        "requests": requests - streams,
        "ttft_ms": (doc["mean_ttft_ms"], doc["p99_ttft_ms"]),
    }


def child_cmd(url: str, streams: int, n: int, out: str | Path) -> list[str]:
    """This script as sonic's child: one run, its CPU per phase written to ``out``."""
    return [sys.executable, __file__, "--child", url, str(streams), str(n), str(out)]


def side_by_side(binary: str, url: str, streams: int, requests: int) -> float:
    """sonic's run ÷ vllm-bench's CPU with both running at once on the same sim (start-ups
    subtracted by a pair of one-request-per-stream runs): whatever the machine does during
    the run reaches the two alike, at the price of their sharing its cores."""

    def pair(n: int) -> tuple[float, float]:
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "sonic.json"
            # sonic's imports take a second: vllm-bench starts when sonic's run is about to.
            so = subprocess.Popen(
                [*child_cmd(url, streams, n, out), "--sync"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            so.stdout.readline()
            vb = subprocess.Popen(
                vllm_cmd(binary, url, streams, n, d),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            so.stdin.write("go\n")
            so.stdin.close()
            _, status, usage = os.wait4(vb.pid, 0)
            vb.returncode = os.waitstatus_to_exitcode(status)
            if so.wait() != 0 or vb.returncode != 0:
                sys.exit(f"side by side: sonic exited {so.returncode}, vllm-bench {vb.returncode}")
            return json.loads(out.read_text())["run_s"], usage.ru_utime + usage.ru_stime

    (s_big, v_big), (s_small, v_small) = pair(requests), pair(streams)
    return (s_big - s_small) / (v_big - v_small)


def sonic_child(url: str, streams: int, requests: int, out: str, sync: bool = False) -> None:
    """One sonic run in this process, CPU read at each phase boundary. With ``sync`` it says
    "ready" on stdout once imported and waits for a line on stdin before the run."""
    sys.path.insert(0, str(Path(__file__).parent))
    import numpy as np

    from client_overhead import config
    from sonic import client, results
    from sonic.metrics import MetricRules, Retokenize, compute_metrics, token_counter
    from sonic.results.info import RunInfo
    from sonic.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(str(TOKENIZER))
    cfg = config(url, requests, OUTPUT_LEN, None, streams)
    lens = np.full(requests, INPUT_LEN)
    if sync:
        print("ready", flush=True)
        sys.stdin.readline()
    marks = [time.process_time()]
    records = client.run(cfg)
    marks.append(time.process_time())
    metrics = compute_metrics(records, MetricRules(), lens)
    marks.append(time.process_time())
    count = token_counter(tokenizer)
    compute_metrics(records, MetricRules(), lens, count_tokens=count)  # sonic run's default
    retok = time.process_time() - marks[-1] - (marks[2] - marks[1])  # the counting alone
    marks.append(time.process_time())
    compute_metrics(records, MetricRules(), lens, count_tokens=count, retokenize=Retokenize(None))
    retok_all = time.process_time() - marks[-1] - (marks[2] - marks[1])
    marks[-1] = time.process_time()  # the result's phase starts here
    doc = results.build_result("vllm", metrics, RunInfo("vllm", "sonic-sim", requests))
    with tempfile.NamedTemporaryFile("w", suffix=".json") as fh:
        fh.write(results.files.dumps(doc))
    marks.append(time.process_time())
    ttft = metrics.stats["ttft"]
    Path(out).write_text(
        json.dumps(
            {
                "run_s": marks[1] - marks[0],
                "metrics_s": marks[2] - marks[1],
                "retokenize_s": max(retok, 0.0),
                "retokenize_all_s": max(retok_all, 0.0),
                "result_s": marks[4] - marks[3],
                "chunks": int(records.chunk_ns.shape[0]),
                "ttft_ms": (ttft.mean * 1e3, ttft.p(99.0) * 1e3),
            }
        )
    )


PHASES = ("run", "metrics", "retokenize", "retokenize_all", "result")


def sonic(url: str, streams: int, requests: int) -> dict:
    """sonic's CPU per phase for ``requests - streams`` requests: a run of one request per
    stream is subtracted phase by phase, as vllm-bench's start-up is (the fixed cost of a run:
    runtime, HTTP clients, threads, the records' hand-over), and kept as ``startup_s``."""

    def once(n: int) -> dict:
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            subprocess.run(child_cmd(url, streams, n, f.name), check=True)
            return json.loads(Path(f.name).read_text())

    small, big = once(streams), once(requests)
    out = dict(big, requests=requests - streams)
    for k in PHASES:
        out[f"{k}_s"] = max(big[f"{k}_s"] - small[f"{k}_s"], 0.0)
    out["startup_s"] = sum(small[f"{k}_s"] for k in ("run", "metrics", "retokenize", "result"))
    return out


def _median(runs: list[dict]) -> dict:
    """Each number the median over the runs (pairs element-wise); the machine is shared."""
    import numpy as np

    out = dict(runs[0])
    for k, v in out.items():
        if isinstance(v, (int, float)):
            out[k] = type(v)(np.median([r[k] for r in runs]))
        elif isinstance(v, (list, tuple)):
            out[k] = tuple(float(np.median([r[k][i] for r in runs])) for i in range(len(v)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vllm-bench", help="path to the vllm-bench binary (omit: not compared)")
    # One stream streams a chunk every 2 ms: 200 requests (23 s a run) so that a round's
    # ratio is not one stretch of the host's drift; 100 gave rounds from 0.72 to 1.16.
    ap.add_argument("--loads", default="1:200,64:1200,256:2400", help="STREAMS:REQUESTS,...")
    ap.add_argument("--repeat", type=int, default=5, help="runs per client; medians printed")
    ap.add_argument(
        "--side-by-side",
        action="store_true",
        help="also run sonic and vllm-bench at once, --repeat pairs a load (needs --vllm-bench)",
    )
    args = ap.parse_args()
    if args.side_by_side and not args.vllm_bench:
        sys.exit("--side-by-side compares with vllm-bench: give --vllm-bench PATH")
    import numpy as np

    if not FLOOR.is_file():
        sys.exit("build the floor first: cargo build --release --example floor_reader")
    from sonic.sim import SimProcess

    flags = ["--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS), "--output-len", str(OUTPUT_LEN)]
    with SimProcess("--tokenizer", str(TOKENIZER), *flags) as server:
        for load in args.loads.split(","):
            streams, requests = (int(x) for x in load.split(":"))
            # Round-robin: each round runs every client once, so the machine's drift over the
            # minutes a load takes reaches them all alike; ratios are taken within a round.
            rounds: list[dict] = []
            for _ in range(args.repeat):
                r = {"floor": floor(server.url, streams, requests)}
                if REQWEST.is_file():
                    r["reqwest"] = floor(server.url, streams, requests, REQWEST)
                r["sonic"] = sonic(server.url, streams, requests)
                if args.vllm_bench:
                    r["vllm"] = vllm_bench(args.vllm_bench, server.url, streams, requests)
                rounds.append(r)
            fl = _median([r["floor"] for r in rounds])
            per_request = fl["events"] / requests

            def us(cpu: float, n: int, per_request: float = per_request) -> float:
                return 1e6 * cpu / (per_request * n)

            rq = _median([r["reqwest"] for r in rounds]) if REQWEST.is_file() else None
            so = _median([r["sonic"] for r in rounds])
            n = so["requests"]
            hot = us(so["run_s"], n)
            after = {k: us(so[f"{k}_s"], n) for k in ("metrics", "retokenize", "result")}
            line = (
                f"{streams:>4} streams {requests:>5} req  {per_request:.0f} events/req | "
                f"floor {us(fl['cpu_s'], requests):5.2f} µs | "
                + (f"reqwest reader {us(rq['cpu_s'], requests):5.2f} µs | " if rq else "")
                + f"sonic run {hot:5.2f} µs + "
                + " + ".join(f"{k} {v:.2f}" for k, v in after.items())
                + f" = {hot + sum(after.values()):5.2f} µs"
                + f" (re-tokenize all {us(so['retokenize_all_s'], n):.2f}; start-up "
                + f"{so['startup_s'] * 1e3:.0f} ms); TTFT err "
                f"{so['ttft_ms'][0] - TTFT_MS:+.2f}/{so['ttft_ms'][1] - TTFT_MS:+.2f} ms"
            )
            if args.vllm_bench:
                vb = _median([r["vllm"] for r in rounds])
                vb_us = us(vb["cpu_s"], vb["requests"])

                def total(r: dict) -> float:
                    s = r["sonic"]
                    return sum(s[f"{k}_s"] for k in ("run", "metrics", "retokenize", "result"))

                def per_request(cpu: float, n: int) -> float:
                    return cpu / n

                ratios = [
                    per_request(total(r), r["sonic"]["requests"])
                    / per_request(r["vllm"]["cpu_s"], r["vllm"]["requests"])
                    for r in rounds
                ]
                line += (
                    f" | vllm-bench {vb_us:5.2f} µs (start-up {vb['startup_s'] * 1e3:.0f} ms; "
                    f"TTFT err {vb['ttft_ms'][0] - TTFT_MS:+.2f}"
                    f"/{vb['ttft_ms'][1] - TTFT_MS:+.2f} ms) | sonic run ÷ vllm-bench "
                    f"{hot / vb_us:.2f}, sonic total ÷ vllm-bench "
                    f"{(hot + sum(after.values())) / vb_us:.2f} (per round: "
                    + ", ".join(f"{x:.2f}" for x in ratios)
                    + f"; median {float(np.median(ratios)):.2f}), "
                    f"sonic run ÷ floor {hot / us(fl['cpu_s'], requests):.2f}"
                )
            print(line, flush=True)
            if args.side_by_side:
                pairs = [
                    side_by_side(args.vllm_bench, server.url, streams, requests)
                    for _ in range(args.repeat)
                ]
                print(
                    f"{streams:>4} streams side by side: sonic run ÷ vllm-bench per round "
                    + ", ".join(f"{x:.2f}" for x in pairs)
                    + f"; median {float(np.median(pairs)):.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sync = sys.argv[6:] == ["--sync"]
        sonic_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sync)
    else:
        main()
