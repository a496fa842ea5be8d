"""Multi-turn workloads in a suite: two `sonic sim` engines get byte-identical sessions
(dataset history), each turn is recorded with its session and turn index, and the engine's
prefix cache is measured on later turns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simproc import run_suite_text

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "tests" / "fixtures" / "tokenizer"
TRACE = ROOT / "tests" / "fixtures" / "trace_sessions.jsonl"

SUITE = f"""
[suite]
name = "chats"
tokenizer = "{TOKENIZER}"
temperature = 0.0
ignore_eos = true

[engines.decode]
preset = "sim"
profile = "fast-decode"
reset_prefix_cache = true

[engines.prefill]
preset = "sim"
profile = "fast-prefill"
reset_prefix_cache = true

# MAX's synthetic chats: 6 sessions of 3 turns, a shared system prompt, 5 ms think time.
[scenarios.chat]
dataset = "random"
input_len = 64
output_len = 8
num_chat_sessions = 6
num_turns = 3
think_time_ms = 5
max_concurrent_sessions = 3
request_rates = [inf]
num_prompts = 18

# A recorded multi-turn trace replayed ten times faster.
[scenarios.trace]
dataset = "trace"
dataset_path = "{TRACE}"
trace_block_size = 16
trace_speedup = 10.0
request_rates = [inf]
num_prompts = 100
"""


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    _, cp, d = run_suite_text(tmp_path_factory.mktemp("suite-sessions"), "chats.toml", SUITE)
    return cp, d


def _turns(d: Path, run: dict) -> list[tuple[int, int, int]]:
    """(session, turn, prompt tokens) of every request of a run, in session/turn order."""
    rows = []
    with (d / run["raw_file"]).open() as fh:
        for line in fh:
            r = json.loads(line)
            rows.append((r["session_index"], r["turn_index"], r["input_len"]))
    return sorted(rows)


def test_both_engines_get_identical_sessions(suite):
    cp, d = suite
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert "Traceback" not in cp.stderr and d is not None
    doc = json.loads((d / "manifest.json").read_text())
    for scenario in ("chat", "trace"):
        fps = doc["workloads"][scenario]["fingerprints"]
        assert set(fps) == {"decode", "prefill"} and len(set(fps.values())) == 1, fps
    validation = json.loads((d / "validation.json").read_text())
    checks = {c["name"]: c for c in validation["checks"]}
    assert checks["workload.chat"]["status"] == "pass"
    assert checks["fairness.chat.client"]["status"] == "pass"
    runs = {(r["engine"], r["scenario"]): r for r in doc["runs"]}
    assert all(r["status"] == "ok" for r in runs.values()), runs
    for scenario in ("chat", "trace"):
        a, b = (_turns(d, runs[(e, scenario)]) for e in ("decode", "prefill"))
        assert a == b and len({s for s, _, _ in a}) > 1 and max(t for _, t, _ in a) >= 1


def test_each_run_reports_its_sessions_and_prefix_reuse(suite):
    cp, d = suite
    assert cp.returncode == 0 and d is not None
    doc = json.loads((d / "manifest.json").read_text())
    for run in doc["runs"]:
        result = json.loads((d / run["file"]).read_text())
        section = result["sonic"]["workload"]
        assert section["history"] == "dataset"
        expected = section["expected_prefix_reuse"]["by_block_size"]["16"]["share"]
        assert expected > 0.2
        # Later turns repeat the earlier ones: the sim's own counters (16-token blocks, an
        # empty cache at the start of every run) see exactly the reuse the workload implies.
        assert section["measured_prefix_cache_hit_rate"] == pytest.approx(expected, abs=0.01)
        turns = {t["turn"]: t for t in section["by_turn"]}
        assert 0 in turns and 1 in turns and turns[0]["completed"] > 0
        assert section["session_stats"]["completed"] == section["session_stats"]["sessions"]


def test_report_and_load_results_show_reuse_and_turns(suite):
    from sonic.analysis import load_results

    cp, d = suite
    assert cp.returncode == 0 and d is not None
    df = load_results(d)
    assert len(df) == 4
    assert (df["expected_prefix_reuse"] > 0.2).all()
    assert ((df["measured_prefix_cache_hit_rate"] - df["expected_prefix_reuse"]).abs() < 0.01).all()
    # The sim reports cached tokens in usage too: the same share from the responses.
    assert ((df["reported_cached_prompt_share"] - df["expected_prefix_reuse"]).abs() < 0.01).all()
    assert df["first_turn_ttft_ms"].notna().all() and df["later_turns_ttft_ms"].notna().all()
    summary = (d / "summary.md").read_text()
    assert "## Multi-turn and prefix reuse" in summary
    section = summary.split("## Multi-turn and prefix reuse", 1)[1].split("\n## ", 1)[0]
    assert section.count("| chat |") == 2 and section.count("| trace |") == 2
    assert "Multi-turn and prefix reuse" in (d / "report.html").read_text()
