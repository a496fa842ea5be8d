"""A run split across workers (sonic.workers): the split keeps the driver's schedule, record
ids and caps; shares started together at an agreed instant and merged give the run one process
gives; and on a real two-node Ray cluster (two local `ray start` processes, one CPU each, so
the two actors land on different nodes) against the exact-mode sim: the same schedule and
TTFT/TPOT as one process, a worker killed mid-run recorded and the run saved, and a suite with
`workers = 2` end to end."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from simproc import TOKENIZER, run_sonic, run_suite_text, sim_process
from sonic import client, workers
from sonic.errors import SonicError

TTFT_MS, ITL_MS = 20.0, 2.0
RAY = Path(sys.executable).with_name("ray")


@pytest.fixture(scope="module")
def exact_sim():
    with sim_process("--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS)) as url:
        yield url


def _config(url: str, n: int = 24, conc: int | None = 4, rate: float = 40.0) -> client.RunConfig:
    return client.RunConfig(
        base_url=url,
        endpoint="/v1/completions",
        api="completions",
        model="sonic-sim",
        requests=[client.RequestSpec(prompt=f"hello {i}", max_tokens=8) for i in range(n)],
        schedule=client.ScheduleSpec(request_rate=rate, burstiness=1.0, seed=5),
        max_concurrency=conc,
        request_id_prefix="run-",
        body=client.BodyOptions(ignore_eos=True),  # every answer 8 tokens
    )


def test_split_keeps_the_drivers_schedule_ids_and_caps():
    cfg = _config("http://127.0.0.1:9", n=10, conc=5)
    shares = workers.split(cfg, 2)
    whole = client.schedule_preview(cfg.schedule, 10)
    assert [list(s.records) for s in shares] == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
    assert [s.config.max_concurrency for s in shares] == [3, 2]
    for s in shares:
        assert s.config.record_ids == list(s.records)
        assert s.config.schedule.arrivals_s == pytest.approx(list(whole[s.records]))
        assert [r.prompt for r in s.config.requests] == [f"hello {i}" for i in s.records]
    with pytest.raises(SonicError, match="each worker needs one"):
        workers.split(_config("http://127.0.0.1:9", n=10, conc=1), 2)
    with pytest.raises(SonicError, match="only 1 requests"):
        workers.split(_config("http://127.0.0.1:9", n=1), 2)


def test_sessions_are_split_whole():
    turns = [client.Turn(f"t{k}", 2, f"a{k}") for k in range(3)]
    cfg = _config("http://127.0.0.1:9", n=0, conc=2)
    cfg = client.RunConfig(
        **{**cfg.__dict__, "requests": [], "sessions": [
            client.Session(turns, None, f"s{i}", start_turn=i % 2) for i in range(4)
        ]}
    )  # fmt: skip
    shares = workers.split(cfg, 2)
    # Records: s0 0-2, s1 3-4 (starts at turn 1), s2 5-7, s3 8-9.
    assert [list(s.records) for s in shares] == [[0, 1, 2, 5, 6, 7], [3, 4, 8, 9]]
    assert [x.session_id for x in shares[1].config.sessions] == ["s1", "s3"]


def test_strings_travel_as_one_column():
    packed = workers._pack_strings(["a", None, "ünï"])
    assert workers._unpack_strings(packed) == ["a", None, "ünï"]


def test_shares_started_together_merge_into_the_run_one_process_gives(exact_sim):
    """Without Ray: each share run by the core in a thread of its own, all taking t0 at one
    agreed instant, then merged."""
    from concurrent.futures import ThreadPoolExecutor

    cfg = _config(exact_sim)
    single = client.run(cfg)
    shares = workers.split(cfg, 2)
    start = time.time_ns() + 500_000_000
    with ThreadPoolExecutor(2) as pool:
        parts = list(
            pool.map(
                lambda s: client.run(
                    client.RunConfig(**{**s.config.__dict__, "start_at_unix_ns": start})
                ),
                shares,
            )
        )
    assert all(abs(p.t0_unix_ns - start) < 20_000_000 for p in parts)  # t0 at the instant
    merged = workers.merge(
        [(s.records, p, p.t0_unix_ns - start) for s, p in zip(shares, parts)], 24, start
    )
    workers.renumber_sessions(merged)
    assert merged.error == [None] * 24
    np.testing.assert_allclose(merged.intended_ns, single.intended_ns, atol=1_000)
    assert list(merged.session_index) == list(range(24))
    for i in range(24):
        # The sim's text depends on its arrival order, not on the prompt: compare the shape.
        assert len(merged.chunk_ns[merged.chunk_slice(i)]) == len(
            single.chunk_ns[single.chunk_slice(i)]
        )
        assert merged.completion_tokens[i] == single.completion_tokens[i]
        assert merged.generated_text(i).count(" ") == 8
        first = merged.chunk_ns[merged.chunk_slice(i)][0] - merged.sent_ns[i]
        assert abs(first / 1e6 - TTFT_MS) < 5.0, (i, first)


# ------------------------------------------------------------------ a real Ray cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """Head and one worker node, one CPU each, as two `ray start` processes."""
    if not RAY.exists():
        pytest.fail(f"Ray is not installed in this venv ({RAY}): make venv installs it")
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    common = ["--num-cpus", "1", "--object-store-memory", "100000000", "--disable-usage-stats"]
    subprocess.run([str(RAY), "stop", "--force"], env=env, capture_output=True, timeout=120)
    head = [str(RAY), "start", "--head", "--port", str(port), "--include-dashboard", "false",
            "--resources", '{"sonic_head": 1}', *common]  # fmt: skip
    node = [str(RAY), "start", "--address", f"127.0.0.1:{port}",
            "--resources", '{"sonic_node": 1}', *common]  # fmt: skip
    for argv in (head, node):
        cp = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        assert cp.returncode == 0, cp.stderr[-3000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(RAY), "stop", "--force"], env=env, capture_output=True, timeout=120)


def _run(url: str, out: Path, *extra: str, n: int = 40, rate: str = "20"):
    return run_sonic(
        "--base-url", url, "--model", "sonic-sim", "--tokenizer", str(TOKENIZER),
        "--dataset-name", "random", "--random-input-len", "32", "--random-output-len", "8",
        "--ignore-eos", "--num-prompts", str(n), "--request-rate", rate, "--seed", "3",
        "--max-concurrency", "8", "--save-result", "--save-detailed", "--result-dir", str(out),
        "--result-filename", "r.json", "--disable-tqdm", *extra, timeout=600,
    )  # fmt: skip


def _lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in next(out.glob("*.requests.jsonl")).read_text().splitlines()]


def test_two_workers_on_two_nodes_match_one_process(ray_cluster, exact_sim, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    cp1 = _run(exact_sim, one)
    assert cp1.returncode == 0, cp1.stderr[-3000:]
    cp2 = _run(exact_sim, two, "--workers", "2", "--ray-address", ray_cluster)
    assert cp2.returncode == 0, cp2.stderr[-3000:]
    a, b = (json.loads((d / "r.json").read_text()) for d in (one, two))
    info = b["sonic"]["workers"]
    assert len(info) == 2 and len({w["host"] for w in info}) == 2
    assert all(abs(w["clock_offset_ns"]) < 5_000_000 for w in info), info  # one host
    assert all("dispatch_lag_p99_ms" in w and w["cpu_s"] >= 0 for w in info), info
    assert b["completed"] == a["completed"] == 40
    la, lb = _lines(one), _lines(two)
    assert [x["intended_ns"] for x in la] == pytest.approx([x["intended_ns"] for x in lb], abs=1e3)
    for key, exact in (("mean_ttft_ms", TTFT_MS), ("mean_tpot_ms", ITL_MS)):
        assert abs(b[key] - exact) < 2.0, (key, b[key])
        assert abs(b[key] - a[key]) < 1.5, (key, a[key], b[key])


def test_a_worker_killed_mid_run_is_recorded_and_the_run_saves(ray_cluster, exact_sim, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "sonic", "--base-url", exact_sim, "--model", "sonic-sim",
         "--tokenizer", str(TOKENIZER), "--dataset-name", "random", "--random-input-len", "16",
         "--random-output-len", "8", "--ignore-eos", "--num-prompts", "80",
         "--request-rate", "10", "--max-concurrency", "8", "--save-result",
         "--result-dir", str(tmp_path), "--result-filename", "r.json", "--disable-tqdm",
         "--save-detailed", "--workers", "2", "--ray-address", ray_cluster],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:
        time.sleep(0.5)
        ps = subprocess.run(["pgrep", "-f", "SonicWorker.run"], capture_output=True, text=True)
        pids = [int(p) for p in ps.stdout.split()]
        if len(pids) == 2:
            time.sleep(3)  # mid-run (the run takes 8 s from the agreed start)
            victim = pids[0]
    assert victim is not None, "the workers never ran"
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert "Traceback" not in err, err[-3000:]
    doc = json.loads((tmp_path / "r.json").read_text())
    info = doc["sonic"]["workers"]
    (dead,) = [w for w in info if "error" in w]
    assert dead["error"].startswith(f"worker {dead['worker']} ("), dead
    lines = _lines(tmp_path)
    lost = [x for x in lines if (x["error"] or "").startswith("not measured: worker")]
    assert len(lost) == dead["records"] == 40
    assert doc["completed"] == 40 and all(x["success"] for x in lines if x not in lost)


def test_a_suite_with_two_workers(ray_cluster, exact_sim, tmp_path):
    text = f"""
[suite]
name = "workers"
tokenizer = "{TOKENIZER}"
model = "sonic-sim"
seed = 1

[settings]
workers = 2
ray_address = "{ray_cluster}"

[engines.sim]
external = true
preset = "sim"
base_url = "{exact_sim}"

[scenarios.short]
dataset = "random"
input_len = 16
output_len = 4
num_prompts = 12
request_rates = [20]
"""
    _, cp, root = run_suite_text(tmp_path, "w.toml", text)
    assert cp.returncode == 0, (cp.stdout + cp.stderr)[-4000:]
    (run,) = (root / "runs" / "sim" / "short").glob("rate-*_rep-1.json")
    doc = json.loads(run.read_text())
    assert len(doc["sonic"]["workers"]) == 2 and doc["completed"] == 12
    manifest = json.loads((root / "manifest.json").read_text())
    load = {"workers": 2, "ray_address": ray_cluster, "stream_records": False}
    assert manifest["config"]["load"] == load


def test_each_share_sends_the_runs_request_ids():
    """A logging HTTP server records each request's x-request-id: a share carries the global
    record numbers, so the ids are the one-process run's whatever the split."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []
    answer = json.dumps({"choices": [{"text": "ok", "finish_reason": "stop"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802 (stdlib naming)
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(self.headers["x-request-id"])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        cfg = _config(f"http://127.0.0.1:{srv.server_address[1]}", n=7, conc=3, rate=500.0)
        for share in workers.split(cfg, 3):
            seen.clear()
            records = client.run(share.config)
            assert records.error == [None] * len(share.records)
            assert sorted(seen) == sorted(f"run-{i}" for i in share.records)
    finally:
        srv.shutdown()
        srv.server_close()
