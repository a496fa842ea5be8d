"""End to end: the /metrics of `sonic sim`, scraped during a real overloaded run, shows the
waiting queue grow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import sonic.sim as sim


@pytest.mark.slow
def test_waiting_queue_grows_under_overload(tmp_path: Path, tokenizer_dir: Path):
    handle = sim.start(max_num_seqs=2)
    try:
        cmd = [
            sys.executable, "-m", "sonic",
            "--base-url", handle.url, "--model", "sonic-sim", "--tokenizer", str(tokenizer_dir),
            "--dataset-name", "random", "--random-input-len", "32", "--random-output-len", "64",
            "--request-rate", "inf", "--num-prompts", "20",
            "--server-metrics-interval-s", "0.2",
            "--save-result", "--save-detailed", "--result-dir", str(tmp_path), "--disable-tqdm",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
    finally:
        handle.stop()
    results = [p for p in tmp_path.glob("*.json") if not p.name.endswith(".telemetry.json")]
    assert len(results) == 1 and len(list(tmp_path.glob("*.telemetry.json"))) == 1
    doc = json.loads(results[0].read_text())
    tel = doc["sonic"]["telemetry"]
    side = json.loads((tmp_path / tel["file"]).read_text())
    waiting = [v for v in side["server"]["series"]["waiting"] if v is not None]
    running = [v for v in side["server"]["series"].get("running", []) if v is not None]
    # 20 requests at once against 2 slots: the queue must build up, and drain at the end
    assert max(waiting) >= 10, waiting
    assert waiting[0] == 0 and waiting[-1] == 0
    assert max(running) <= 2
    assert tel["server_metrics"]["deltas"]["generation_tokens_total"] >= 20 * 64 * 0.9


def test_max_server_metrics_by_endpoint_from_two_labelled_urls(tmp_path: Path, tokenizer_dir: Path):
    """MAX's --metrics-urls.LABEL=URL: each endpoint scraped, MAX's server_metrics objects in
    the result (here both labels point at the same simulated engine, so they must agree)."""
    handle = sim.start()
    try:
        cmd = [
            sys.executable, "-m", "sonic", "--backend", "modular",
            "--base-url", handle.url, "--model", "sonic-sim", "--tokenizer", str(tokenizer_dir),
            "--dataset-name", "random", "--random-input-len", "16", "--random-output-len", "8",
            "--num-prompts", "6", "--no-collect-gpu-stats",
            f"--metrics-urls.prefill={handle.url}/metrics",
            "--metrics-urls.decode", f"{handle.url}/metrics",
            "--save-detailed", "--result-dir", str(tmp_path), "--result-filename", "max.json",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
    finally:
        handle.stop()
    assert "Engine /metrics prefill (vllm)" in proc.stdout
    assert "Engine /metrics decode (vllm)" in proc.stdout
    doc = json.loads((tmp_path / "max.json").read_text())
    by_ep = doc["server_metrics_by_endpoint"]
    assert list(by_ep) == ["prefill", "decode"] and doc["server_metrics"] == by_ep["prefill"]
    for ep in by_ep.values():
        tokens = [v for k, v in ep["counters"].items() if k.startswith("vllm:generation_tokens")]
        assert tokens == [6 * 8], ep["counters"]
        e2e = [h for k, h in ep["histograms"].items() if k.startswith("vllm:e2e_request_latency")]
        assert len(e2e) == 1 and e2e[0]["count"] == 6 and e2e[0]["mean"] > 0
        assert e2e[0]["buckets"][-1] == ["+Inf", 6.0]
    tel = doc["sonic"]["telemetry"]
    assert set(tel["server_metrics_by_endpoint"]) == {"prefill", "decode"}
    side = json.loads((tmp_path / tel["file"]).read_text())
    assert side["server"]["url"].endswith("/metrics") and list(side["server_by_endpoint"]) == [
        "decode"
    ]
