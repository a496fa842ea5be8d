"""The server's CPU time over a run (MAX's --collect-cpu-stats) with real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from simproc import TOKENIZER, run_sonic
from sonic.compat.parser import parse_run_args
from sonic.errors import SonicError
from sonic.sim import SimProcess
from sonic.telemetry.cpu import CpuRecorder, is_local_host, pids_for_port

# Waits for a line on stdin, burns 0.6 s of CPU, says so, then idles until killed.
BUSY = """import sys, time
sys.stdin.readline()
t = time.process_time()
while time.process_time() - t < 0.6:
    pass
print("done", flush=True)
time.sleep(60)
"""


def test_user_time_of_a_busy_child_process():
    child = subprocess.Popen(
        [sys.executable, "-c", BUSY], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        rec = CpuRecorder(pids=[child.pid]).start()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "done"
        m = rec.stop()
    finally:
        child.kill()
        child.wait(30)
    assert m is not None and m.user + m.system >= 0.55 and m.elapsed >= 0.55
    assert m.user_percent == pytest.approx(m.user / m.elapsed * 100)
    assert rec.warnings == []


def test_pids_for_port_finds_the_listening_process_and_local_hosts():
    with SimProcess() as server:
        parts = urlsplit(server.url)
        assert server.proc.pid in pids_for_port(parts.port)
    assert is_local_host("127.0.0.1") and is_local_host("localhost") and is_local_host("[::1]")
    assert not is_local_host("203.0.113.7")  # TEST-NET-3: never this machine


def test_an_engine_inside_this_process_is_not_measured():
    import sonic.sim as sim

    handle = sim.start()
    try:
        port = urlsplit(handle.url).port
        rec = CpuRecorder(host="127.0.0.1", port=port).start()
    finally:
        handle.stop()
    assert rec.pids == [] and rec.stop() is None
    assert "inside this process" in rec.warnings[0]


def test_a_remote_server_is_a_warning_and_no_metrics():
    rec = CpuRecorder(host="203.0.113.7", port=8000).start()
    assert rec.pids == [] and rec.stop() is None
    assert "203.0.113.7:8000 is not on this machine" in rec.warnings[0]


def test_server_pids_flag():
    o = parse_run_args(["--model", "m", "--collect-cpu-stats", "--server-pids", "12", "34,12"])
    assert o.output.collect_cpu_stats and o.output.server_pids == (12, 34)
    # MAX's 2025 script collected no CPU stats unless asked.
    assert not parse_run_args(["--backend", "modular", "--model", "m"]).output.collect_cpu_stats
    assert not parse_run_args(["--model", "m"]).output.collect_cpu_stats  # vLLM: off
    with pytest.raises(SonicError, match="--server-pids: 'x1' is not a process id"):
        parse_run_args(["--model", "m", "--server-pids", "x1"])


def test_max_result_has_the_sims_cpu_metrics(tmp_path: Path):
    with SimProcess("--tokenizer", str(TOKENIZER), "--ttft-ms", "5", "--itl-ms", "1") as server:
        cp = run_sonic(
            "--backend", "modular", "--base-url", server.url, "--model", "sonic-sim",
            "--tokenizer", str(TOKENIZER), "--dataset-name", "random",
            "--random-input-len", "16", "--random-output-len", "64", "--num-prompts", "40",
            "--request-rate", "inf", "--no-collect-gpu-stats", "--disable-tqdm",
            "--collect-cpu-stats", "--result-dir", str(tmp_path), "--result-filename", "max.json",
        )  # fmt: skip
        sim_pid = server.proc.pid
    assert cp.returncode == 0, cp.stderr
    assert "CPU utilization user (%):" in cp.stdout
    doc = json.loads((tmp_path / "max.json").read_text())
    keys = list(doc)
    assert keys[keys.index("gpu_utilization") + 1] == "cpu_metrics"
    cpu = doc["cpu_metrics"]
    assert set(cpu) == {"user", "user_percent", "system", "system_percent", "elapsed"}
    assert cpu["user"] + cpu["system"] > 0  # the sim streamed 2,560 tokens
    assert sim_pid in doc["sonic"]["telemetry"]["server_cpu"]["pids"]
