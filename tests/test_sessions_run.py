"""`sonic run` with multi-turn workloads, end to end against `sonic sim` processes in exact mode:
turn order and think times from the saved records, per-turn and per-session metrics in the
result, the history mode recorded, byte-identical workloads for two engines, MAX's
--ignore-first-turn-stats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simproc import TOKENIZER, run_sonic, sim_process

TTFT_MS, ITL_MS = 10.0, 2.0
DELAY_MS = 40.0


@pytest.fixture(scope="module")
def exact_sims():
    with (
        sim_process("--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS)) as a,
        sim_process("--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS)) as b,
    ):
        yield a, b


def _synthetic(url: str, out: Path, *extra: str):
    return run_sonic(
        "--compat", "max-benchmark", "--base-url", url, "--model", "sonic-sim",
        "--backend", "openai-chat", "--endpoint", "/v1/chat/completions",
        "--tokenizer", str(TOKENIZER), "--dataset-name", "random",
        "--random-input-len", "24", "--random-output-len", "6", "--num-chat-sessions", "5",
        "--random-num-turns", "3", "--num-prompts", "15", "--request-rate", "20",
        "--delay-between-chat-turns", str(int(DELAY_MS)), "--save-result", "--save-detailed",
        "--result-dir", str(out), *extra, timeout=180,
    )  # fmt: skip


def _result(directory: Path) -> dict:
    path = next(p for p in directory.glob("*.json") if not p.name.endswith((".telemetry.json",)))
    return json.loads(path.read_text())


def _lines(directory: Path) -> list[dict]:
    path = next(directory.glob("*.requests.jsonl"))
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_turns_follow_each_other_with_their_think_time(exact_sims, tmp_path):
    proc = _synthetic(exact_sims[0], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Sessions: 5 with 15 turns, history dataset" in proc.stdout
    assert "Mean TTFT by turn (ms): 0:" in proc.stdout
    lines = _lines(tmp_path)
    assert len(lines) == 15 and all(x["success"] for x in lines)
    by_session: dict[int, list[dict]] = {}
    for x in lines:
        by_session.setdefault(x["session_index"], []).append(x)
    assert len(by_session) == 5
    for turns in by_session.values():
        assert [t["turn_index"] for t in turns] == [0, 1, 2]
        for prev, nxt in zip(turns, turns[1:]):
            # Due exactly at the previous turn's last byte plus the think time (MAX's
            # --delay-between-chat-turns), and not sent before it.
            assert nxt["intended_ns"] - prev["end_ns"] == pytest.approx(DELAY_MS * 1e6, abs=1e3)
            assert nxt["sent_ns"] >= nxt["intended_ns"]
        # Later turns carry the history: their prompts are longer.
        prompts = [t["usage"]["prompt_tokens"] for t in turns]
        assert prompts == sorted(prompts) and prompts[0] < prompts[-1]
    wl = _result(tmp_path)["sonic"]["workload"]
    assert wl["kind"] == "sessions" and wl["history"] == "dataset"
    assert [t["turn"] for t in wl["by_turn"]] == [0, 1, 2]
    assert all(t["completed"] == 5 for t in wl["by_turn"])
    for t in wl["by_turn"]:  # exact mode: TTFT = 10 ms whatever the turn
        assert TTFT_MS - 0.5 < t["ttft_mean_ms"] < TTFT_MS + 30
    st = wl["session_stats"]
    assert st["sessions"] == 5 and st["completed"] == 5
    # Three turns of ~TTFT + 5 ITL each plus two think times.
    assert st["duration_mean_s"] >= (3 * (TTFT_MS + 5 * ITL_MS) + 2 * DELAY_MS) / 1e3
    assert wl["expected_prefix_reuse"]["by_block_size"]["16"]["share"] > 0.2


def test_two_engines_get_the_same_workload_and_live_history_is_recorded(exact_sims, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _synthetic(exact_sims[0], a).returncode == 0
    assert _synthetic(exact_sims[1], b).returncode == 0
    wa, wb = _result(a)["sonic"]["workload"], _result(b)["sonic"]["workload"]
    assert wa["fingerprint"] == wb["fingerprint"]
    assert wa["expected_prefix_reuse"] == wb["expected_prefix_reuse"]
    live = tmp_path / "live"
    proc = _synthetic(exact_sims[0], live, "--history", "live")
    assert proc.returncode == 0, proc.stderr
    assert _result(live)["sonic"]["workload"]["history"] == "live"
    assert "history live" in proc.stdout


def test_ignore_first_turn_stats_leaves_first_turns_out(exact_sims, tmp_path):
    proc = _synthetic(exact_sims[0], tmp_path, "--ignore-first-turn-stats")
    assert proc.returncode == 0, proc.stderr
    doc = _result(tmp_path)
    assert len(_lines(tmp_path)) == 15
    # 15 turns sent, the 5 first turns left out of the aggregates.
    assert doc["completed"] == 10


def test_bad_history_is_a_one_line_error():
    proc = run_sonic("--base-url", "http://127.0.0.1:9", "--model", "m", "--history", "remembered")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "sonic run: error: --history: expected one of dataset, live, got 'remembered'"
    ]


def test_max_benchmark_keys_carry_cached_token_rates_and_sessions(exact_sims, tmp_path):
    """MAX's cache keys from the engine's usage, computed as the tool computes them: a first
    turn hits nothing (each session's prompt is its own), later turns hit their history;
    request records name their session and turn."""
    proc = _synthetic(exact_sims[1], tmp_path, "--cache-salt", "none")
    assert proc.returncode == 0, proc.stderr
    doc = _result(tmp_path)
    lines = _lines(tmp_path)
    cached = [x["usage"]["cached_tokens"] for x in lines]
    prompt = [x["usage"]["prompt_tokens"] for x in lines]
    assert doc["global_cached_token_rate"] == pytest.approx(sum(cached) / doc["total_input_tokens"])
    # One rate per request ("turn"): 0 on first turns, most of the prompt on later ones.
    rates = sorted(doc["per_turn_cached_token_rates"])
    assert rates == pytest.approx(sorted(c / p for c, p in zip(cached, prompt)))
    # (MAX's untimed test prompt, the first session's first turn, leaves that one cached.)
    first = [c for c, x in zip(cached, lines) if x["turn_index"] == 0]
    assert sorted(first)[:4] == [0] * 4 and rates[-1] > 0.5
    assert doc["mean_per_turn_cached_token_rate"] == pytest.approx(100 * sum(rates) / len(rates))
    assert doc["per_turn_cached_token_rate_sample_size"] == 15
    group = doc["result_groups"]["cache_stats"]["per_turn_cached_token_rate"]
    assert group["unit"] == "%" and group["confidence_info"]["sample_size"] == 15
    assert sorted(s["cached_tokens"] for s in doc["aggregate_server_stats"]) == sorted(cached)
    records = doc["request_records"]
    assert {(r["session_id"], r["turn_index"]) for r in records} == {
        (str(x["session_index"]), x["turn_index"]) for x in lines
    }
