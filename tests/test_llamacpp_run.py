"""``python -m sonic`` and ``sonic suite run`` against the real llama.cpp ``llama-server``
(SmolLM2-135M on CPU): both OpenAI endpoints, usage versus re-tokenization, timings versus the
server's own counters, batching, and a suite comparison of 1 slot versus 4."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest

from simproc import run_sonic

pytestmark = pytest.mark.llamacpp

COMMON = [
    "--dataset-name", "random",
    "--random-input-len", "48",
    "--random-output-len", "24",
    "--ignore-eos",
    "--disable-tqdm",
    "--seed", "5",
    "--save-result", "--save-detailed",
]  # fmt: skip


def _raw(result: Path) -> list[dict]:
    doc = json.loads(result.read_text())
    raw = result.parent / doc["sonic"]["raw_records"]
    return [json.loads(line) for line in raw.read_text().splitlines() if line.strip()]


def _metrics(url: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


@pytest.mark.parametrize(
    "backend, endpoint",
    [("llama.cpp", "/v1/completions"), ("openai-chat", "/v1/chat/completions")],
)
def test_run_counts_tokens_exactly_on_both_endpoints(
    backend, endpoint, llama_server, smollm2_tokenizer_dir, tmp_path
):
    cp = run_sonic(
        "--backend", backend, "--endpoint", endpoint, "--base-url", llama_server.url,
        "--tokenizer", str(smollm2_tokenizer_dir), *COMMON,
        "--num-prompts", "8", "--request-rate", "inf", "--max-concurrency", "4",
        # Greedy: the server's default temperature samples, and sampled text once re-tokenized
        # 6 % away from the server's count (the bound below is about tokenization, not luck).
        "--temperature", "0",
        "--result-dir", str(tmp_path), "--result-filename", "r.json",
    )  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["completed"] == 8 and doc["failed"] == 0, [e for e in doc["errors"] if e]
    assert doc["total_output_tokens"] == 8 * 24  # usage.completion_tokens, ignore_eos honoured
    assert "simulated" not in cp.stdout.lower()
    lines = _raw(tmp_path / "r.json")
    usage = sum(ln["usage"]["completion_tokens"] for ln in lines)
    retok = sum(ln["retokenized_output_len"] for ln in lines)
    # Re-tokenizing the whole text may merge a few tokens across boundaries; never many.
    assert usage == 8 * 24 and abs(retok - usage) <= 0.05 * usage, (usage, retok)
    # The prompt length the client computed equals what the server counted.
    assert all(ln["usage"]["prompt_tokens"] > 0 for ln in lines)


def test_timings_agree_with_the_servers_own_counters(
    start_llama_server, smollm2_tokenizer_dir, tmp_path
):
    server = start_llama_server(parallel=1, ctx=2048)
    try:
        before = _metrics(server.url)
        cp = run_sonic(
            "--backend", "llama.cpp", "--base-url", server.url,
            "--tokenizer", str(smollm2_tokenizer_dir), *COMMON, "--random-output-len", "32",
            "--num-prompts", "4", "--request-rate", "inf", "--max-concurrency", "1",
            "--skip-test-prompt", "--result-dir", str(tmp_path), "--result-filename", "t.json",
        )  # fmt: skip
        after = _metrics(server.url)
    finally:
        server.stop()
    assert cp.returncode == 0, cp.stderr
    doc = json.loads((tmp_path / "t.json").read_text())

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    tokens = delta("llamacpp:tokens_predicted_total")
    seconds = delta("llamacpp:tokens_predicted_seconds_total")
    assert tokens == 4 * 32
    server_tpot_ms = seconds / tokens * 1000  # the server's decode time per token
    # One stream at a time: the client's TPOT is the server's decode time per token plus
    # delivery; it can be neither much faster nor much slower.
    assert 0.8 * server_tpot_ms < doc["mean_tpot_ms"] < 1.5 * server_tpot_ms + 2, (
        doc["mean_tpot_ms"],
        server_tpot_ms,
    )
    prompt_ms = delta("llamacpp:prompt_seconds_total") * 1000 / 4
    assert doc["mean_ttft_ms"] >= 0.8 * prompt_ms  # TTFT includes the prompt's processing
    assert 1 < doc["mean_ttft_ms"] < 5000 and 1 < doc["mean_tpot_ms"] < 500


def test_four_way_concurrency_shows_batching(llama_server, smollm2_tokenizer_dir, tmp_path):
    def run(mc: int, attempt: int) -> dict:
        name = f"mc{mc}-{attempt}.json"
        cp = run_sonic(
            "--backend", "llama.cpp", "--base-url", llama_server.url,
            "--tokenizer", str(smollm2_tokenizer_dir), *COMMON, "--random-output-len", "32",
            "--num-prompts", "8", "--request-rate", "inf", "--max-concurrency", str(mc),
            "--server-metrics-interval-s", "0.1",
            "--result-dir", str(tmp_path), "--result-filename", name,
        )  # fmt: skip
        assert cp.returncode == 0, cp.stderr
        doc = json.loads((tmp_path / name).read_text())
        assert doc["max_concurrent_requests"] == mc
        return doc

    # Seen here: 1.1x-1.4x; one slot at a time could not exceed ~1.0x. Two cores shared with
    # other work make single runs noisy, so a pair below the bar is measured once more.
    for attempt in range(2):
        docs = {mc: run(mc, attempt) for mc in (1, 4)}
        throughput = {mc: d["output_throughput"] for mc, d in docs.items()}
        if throughput[4] > 1.1 * throughput[1]:
            break
    assert throughput[4] > 1.1 * throughput[1], throughput
    # The engine's own view: several slots were busy at once only with four in flight.
    running = {
        mc: d["sonic"]["telemetry"]["server_metrics"]["gauges"]["running"]["max"]
        for mc, d in docs.items()
    }
    assert running[1] <= 1 and running[4] >= 2, running


def test_suite_compares_one_slot_with_four(
    llama_server_bin, smollm2_gguf, smollm2_tokenizer_dir, tmp_path
):
    """The suite end to end on a real engine, with the llama.cpp preset: one slot against four
    at a rate one slot cannot keep up with; the report's winner follows the measurements and
    the engine's own gauge shows several slots busy only on the engine that has them."""
    suite = tmp_path / "llama.toml"
    suite.write_text(
        f"""
[suite]
name = "llama-slots"
model = "{smollm2_gguf}"
tokenizer = "{smollm2_tokenizer_dir}"
temperature = 0.0
ignore_eos = true

[settings]
max_model_len = 1024

[engines.slots-1]
preset = "llama.cpp"
settings = {{ max_num_seqs = 1 }}
args = ["-t", "2"]

[engines.slots-4]
preset = "llama.cpp"
settings = {{ max_num_seqs = 4 }}
args = ["-t", "2"]

[scenarios.burst]
dataset = "random"
input_len = 32
output_len = 32
request_rates = [16]
num_prompts = 12
"""
    )
    env = dict(os.environ, PATH=f"{llama_server_bin.parent}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "results"
    import subprocess
    import sys

    cp = subprocess.run(
        [sys.executable, "-m", "sonic", "suite", "run", str(suite), "--allow-unfair",
         "--output-dir", str(out)],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    assert cp.returncode == 0, cp.stdout + cp.stderr
    (d,) = [p for p in out.iterdir() if p.is_dir()]
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["status"] == "finished"
    assert {e["status"] for e in manifest["engines"].values()} == {"ok"}
    assert (d / "summary.md").is_file() and (d / "report.html").is_file()
    # The unequal slot count is reported, not hidden.
    assert manifest["fair"] is False

    from sonic.report.model import collect

    data = collect(d)
    win = data.winners
    tput = win[win["metric"] == "output_throughput"]
    # The winner is the engine with the higher measured throughput. Which one that is belongs
    # to llama.cpp on two shared cores (seen 1.1x-1.4x for 4 slots, once below 1x): the gain
    # itself is checked, with a retry, by test_four_way_concurrency_shows_batching.
    means = data.results.groupby("engine")["output_throughput"].mean()
    assert list(tput["winner"]) == [means.idxmax()], (tput.to_dict("records"), means.to_dict())
    # The engine's own view: four slots busy at once only on the engine that has four.
    running = {}
    for run in manifest["runs"]:
        doc = json.loads((d / run["file"]).read_text())
        gauges = doc["sonic"]["telemetry"]["server_metrics"]["gauges"]
        running[run["engine"]] = gauges["running"]["max"]
    assert running["slots-1"] <= 1 < running["slots-4"], running
    assert "slots-4" in (d / "summary.md").read_text()


def test_multi_turn_sessions_reuse_the_engines_prompt_cache(
    start_llama_server, smollm2_tokenizer_dir, tmp_path
):
    """Sessions on a real engine: one slot, one session at a time, so each turn finds the
    previous turn's prompt in llama.cpp's slot cache. A long first turn (10 × 24 tokens) and
    short later turns (24 new tokens on top of the cached history) make the later turns'
    TTFT lower, and the engine's own usage reports the cached prompt tokens."""
    server = start_llama_server(parallel=1, ctx=4096)
    try:
        cp = run_sonic(
            "--backend", "llama.cpp", "--base-url", server.url,
            "--tokenizer", str(smollm2_tokenizer_dir),
            "--dataset-name", "random", "--random-input-len", "24", "--random-output-len", "8",
            "--num-chat-sessions", "4", "--random-num-turns", "3",
            "--random-first-turn-ratio", "10", "--max-concurrent-conversations", "1",
            "--ignore-eos", "--temperature", "0", "--seed", "3", "--disable-tqdm",
            "--max-concurrency", "1", "--request-rate", "inf", "--cache-salt", "none",
            "--save-result", "--save-detailed",
            "--result-dir", str(tmp_path), "--result-filename", "s.json",
        )  # fmt: skip
    finally:
        server.stop()
    assert cp.returncode == 0, cp.stderr
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["completed"] == 12 and doc["failed"] == 0, [e for e in doc["errors"] if e]
    # Every turn of the sessions went out: not "partial" against the default --num-prompts.
    assert "Partial results" not in cp.stdout and not doc["sonic"].get("partial"), cp.stdout
    section = doc["sonic"]["workload"]
    by_turn = {t["turn"]: t for t in section["by_turn"]}
    assert set(by_turn) == {0, 1, 2} and all(t["completed"] == 4 for t in by_turn.values())
    first, later = by_turn[0]["ttft_mean_ms"], [by_turn[k]["ttft_mean_ms"] for k in (1, 2)]
    assert max(later) < first, (first, later)
    # The engine's own account of its cache: a share of the prompts was served from it.
    assert section["reported_cached_prompt_share"] is not None, cp.stdout
    assert section["reported_cached_prompt_share"] > 0.3, section
    assert section["expected_prefix_reuse"]["by_block_size"]
    lines = _raw(tmp_path / "s.json")
    assert any(ln["usage"].get("cached_tokens", 0) > 0 for ln in lines if ln["turn_index"] > 0)


def test_capacity_search_finds_the_engines_slot_count(
    start_llama_server, smollm2_tokenizer_dir, tmp_path
):
    """`sonic search` on a real engine: with 2 slots, a third request in flight waits for a
    whole answer before its first token. An SLO on p90 TTFT halfway between one prompt's
    processing and a whole answer therefore holds at concurrency 2 and fails above it."""
    server = start_llama_server(parallel=2, ctx=2048)
    flags = [
        "--backend", "llama.cpp", "--base-url", server.url,
        "--tokenizer", str(smollm2_tokenizer_dir), *COMMON[:-2], "--random-output-len", "32",
        "--temperature", "0", "--skip-test-prompt",
    ]  # fmt: skip
    try:
        cp = run_sonic(
            *flags, "--num-prompts", "6", "--request-rate", "inf", "--max-concurrency", "1",
            "--save-result", "--result-dir", str(tmp_path), "--result-filename", "c1.json",
        )  # fmt: skip
        assert cp.returncode == 0, cp.stderr
        one = json.loads((tmp_path / "c1.json").read_text())
        # Half of one answer's decoding (31 inter-token gaps) on top of one prompt's TTFT.
        limit_ms = one["median_ttft_ms"] + 0.5 * 31 * one["median_tpot_ms"]
        cp = run_sonic(
            "search", *flags, "--num-prompts", "24", "--max-concurrency", "1",
            "--search-over", "concurrency", "--slo", f"ttft:p90<={limit_ms:.1f}ms",
            "--confirm-repeats", "1", "--search-dir", str(tmp_path / "s"),
        )  # fmt: skip
    finally:
        server.stop()
    assert cp.returncode == 0, cp.stdout + cp.stderr
    state = json.loads((tmp_path / "s" / "search.json").read_text())
    assert state["status"] == "found" and state["capacity"] == 2, cp.stdout
    met = {p["load"]: p["verdict"]["met"] for p in state["probes"]}
    assert met[1.0] and met[2.0] and not met[4.0]
