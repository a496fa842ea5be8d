"""The 2026 MAX dialect (`max benchmark`): defaults, skips, confidence intervals, the result
document and what it refuses. The key lists are checked against the real tool's output in
test_dialect_golden.py; here each rule is checked on its own."""

from __future__ import annotations

import json
import math

import pytest

from simproc import TOKENIZER, run_sonic, sim_process
from sonic import dialects
from sonic.compat import parse_run_args
from sonic.dialects.max_benchmark import MAX_BENCHMARK, STEADY_STATE_NOTE, confidence
from sonic.errors import SonicError


def parse(*argv: str):
    return parse_run_args(["--compat", "max-benchmark", "--model", "m", *argv])


def test_defaults_are_the_tools():
    args = parse()
    assert args.dialect is MAX_BENCHMARK and dialects.get("max-2026") is MAX_BENCHMARK
    assert args.target.endpoint == "/v1/chat/completions" and args.target.api == "chat"
    assert args.target.backend == "modular"  # the backend keeps its name on a chat endpoint
    assert args.dataset.seed == 24301 and args.dataset.name == "sharegpt"
    assert args.sampling.temperature is None and "temperature" not in args.static_body()
    assert args.sampling.ignore_eos is True
    assert args.static_body()["stream_options"] == {"include_usage": True}
    assert args.max_tokens_field == "max_tokens"
    assert args.output.collect_gpu_stats and args.output.collect_cpu_stats
    assert args.traffic.flush_prefix_cache and args.traffic.test_prompt
    # Neither --num-prompts nor a duration: 1000 prompts capped at 300 s.
    assert args.dataset.num_prompts == 1000 and args.traffic.max_benchmark_duration_s == 300.0
    assert parse("--num-prompts", "10").traffic.max_benchmark_duration_s is None
    assert parse("--disable-ignore-eos").sampling.ignore_eos is False
    completions = parse("--endpoint", "/v1/completions").static_body()
    assert completions["best_of"] == 1 and "stream_options" not in completions


def test_skips_default_to_the_concurrency_at_an_unbounded_rate():
    d = MAX_BENCHMARK
    assert d.resolve_skip(None, math.inf, 8) == 8
    assert d.resolve_skip(None, math.inf, 1) == 0
    assert d.resolve_skip(None, 4.0, 8) == 0
    assert d.resolve_skip(None, math.inf, None) == 0
    assert d.resolve_skip(2, math.inf, 8) == 2
    assert dialects.get("vllm").resolve_skip(None, math.inf, 8) == 0


def test_refused_flags_say_why():
    with pytest.raises(SonicError, match="--metric-percentiles is not supported with --compat"):
        parse("--metric-percentiles", "50")
    with pytest.raises(SonicError, match="--ttft-skip-requests is not supported"):
        parse("--ttft-skip-requests", "2")
    # multi-turn sessions are implemented (sonic.workloads): the flag parses
    assert parse("--num-chat-sessions", "4").dataset.num_chat_sessions == 4


def test_confidence_interval_matches_the_tools_numbers():
    """Means, population stds and sample sizes from a real `max benchmark` 26.7 result, and the
    interval it wrote for them (t for 31 degrees of freedom; 1.96 from 120 on)."""
    ci = confidence(68.66275446874681, 1.6942926327004597, 32)
    assert ci["ci_lower"] == pytest.approx(68.04136582323025, rel=1e-12)
    assert ci["ci_upper"] == pytest.approx(69.28414311426337, rel=1e-12)
    assert ci["confidence"] == "high" and ci["sample_size"] == 32
    itl = confidence(2.6504297458335673, 0.2937870151494099, 480)
    assert itl["ci_lower"] == pytest.approx(2.6241197419916773, rel=1e-12)
    wide = confidence(2799.063270663687, 1039.7678727462899, 32)
    assert wide["ci_relative_width"] == pytest.approx(0.2724761945897622, rel=1e-9)
    assert wide["confidence"] == "low"
    assert confidence(1.0, 0.1, 4)["confidence"] == "insufficient_data"
    assert confidence(1.0, 0.0, 1) is None and confidence(0.0, 1.0, 10) is None


def test_a_run_writes_the_tools_document(tmp_path):
    """Against the simulated engine: measured counts, skips, CI keys, request records,
    result_groups, and the steady-state keys from sonic's window."""
    with sim_process("--ttft-ms", "10", "--itl-ms", "2", "--output-len", "8") as url:
        cp = run_sonic(
            "--compat", "max-benchmark", "--base-url", url, "--model", "sonic-sim",
            "--tokenizer", str(TOKENIZER), "--dataset-name", "random",
            "--random-input-len", "16", "--random-output-len", "8", "--num-prompts", "24",
            "--max-concurrency", "4", "--no-collect-gpu-stats", "--disable-tqdm",
            "--result-dir", str(tmp_path), "--result-filename", "mb.json",
        )  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    assert "Step TPOT" in cp.stdout and "Max Concurrency:" in cp.stdout
    doc = json.loads((tmp_path / "mb.json").read_text())
    assert doc["skip_first_n_requests"] == doc["skip_last_n_requests"] == 4
    assert doc["completed"] == doc["num_prompts"] == 16 and doc["excluded_successful"] == 8
    assert doc["failures"] == 0 and doc["max_concurrency"] == 4
    assert doc["request_rate"] == "inf" and doc["client_args"]["request_rate"] == "inf"
    records = doc["request_records"]
    assert len(records) == 24 and sum(r["measured"] for r in records) == 16
    assert doc["ttft_ms_sample_size"] == 16 and doc["ttft_ms_confidence"] in (
        "high",
        "medium",
        "low",
    )
    assert doc["ttft_ms_ci_lower"] <= doc["mean_ttft_ms"] <= doc["ttft_ms_ci_upper"]
    # Timing on a shared 2-core host: the exact values are checked in the differential test.
    # Nothing arrives before the sim's schedule: the first token 10 ms after arrival, the last
    # 10 + 7 × 2 ms (a late first token shortens TPOT, since later tokens keep their deadlines).
    assert doc["mean_ttft_ms"] >= 10.0 and doc["mean_latency_ms"] >= 24.0
    assert doc["mean_tpot_ms"] > 0
    groups = doc["result_groups"]
    assert list(groups) == [
        "summary", "request_mix", "gpu_stats", "latency_stats", "throughput_stats",
        "cache_stats", "diagnostics",
    ]  # fmt: skip
    assert groups["latency_stats"]["ttft_ms"]["p50"] == doc["median_ttft_ms"]
    assert groups["diagnostics"] is None
    # sonic's steady-state window fills the tool's keys (4 in flight from the start to the
    # drain: a closed-loop plateau); the window's own metrics are under sonic.steady_state.
    window = doc["sonic"]["steady_state"]["window"]
    assert doc["steady_state_detected"] is window["detected"] is True
    assert doc["steady_state_mode"] == "concurrency_plateau"
    assert doc["steady_state_window_count"] == window["requests"] > 0
    assert "sonic.steady_state" in doc["steady_state_warning"] != STEADY_STATE_NOTE
    assert list(doc)[-2:] == ["result_groups", "sonic"]
    assert doc["sonic"]["rules"]["duration_start"] == "measured_window"


def test_failed_runs_are_held_back_as_the_tool_does(tmp_path):
    with sim_process(
        "--ttft-ms", "2", "--itl-ms", "1", "--output-len", "4", "--fail-500", "1"
    ) as u:
        cp = run_sonic(
            "--compat", "max-benchmark", "--base-url", u, "--model", "sonic-sim",
            "--tokenizer", str(TOKENIZER), "--dataset-name", "random", "--endpoint",
            "/v1/completions", "--random-input-len", "8", "--random-output-len", "4",
            "--num-prompts", "4", "--skip-test-prompt", "--no-flush-prefix-cache",
            "--no-collect-gpu-stats", "--disable-tqdm", "--result-dir", str(tmp_path),
            "--result-filename", "mb.json",
        )  # fmt: skip
    assert cp.returncode == 1 and "Traceback" not in cp.stderr
    assert not (tmp_path / "mb.json").exists()
    doc = json.loads((tmp_path / "mb.json.partial").read_text())
    assert doc["failures"] == 4 and doc["result_groups"]["diagnostics"]["errors"]
    assert "mean_ttft_ms" not in doc  # statistics of empty sample sets are omitted
