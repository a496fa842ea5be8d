"""MAX's warm-up to steady state (sonic.workloads.warmup): pool sizes, the length-biased pick,
start turns, the untimed pre-run and the expected reuse it primes; and end to end against the
sim: the pre-run loads each warm session's history, the measured run starts those sessions
mid-way and at t0, and the result says so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simproc import TOKENIZER, run_sonic, scrape, sim_process
from sonic.errors import SonicError
from sonic.workloads import warmup
from sonic.workloads.reuse import block_reuse, prerun_messages, turn_messages
from sonic.workloads.types import SESSIONS, Workload, WorkloadSession, WorkloadTurn


def _session(i: int, turns: int) -> WorkloadSession:
    return WorkloadSession(
        tuple(WorkloadTurn(f"s{i}u{k}", 4, f"s{i}a{k}") for k in range(turns)),
        None,
        f"s{i}",
    )


def _pool(turns: list[int]) -> Workload:
    return Workload(
        kind=SESSIONS,
        source="random",
        sessions=tuple(_session(i, t) for i, t in enumerate(turns)),
    )


def test_pool_sizes_follow_the_tool():
    assert warmup.pool_request(10, 4, 8) == 42
    assert warmup.pool_sizes(42, 10, 4, 8) == (32, 10, [])
    # A dataset short of sessions: both pools shrink in proportion, candidates never below M.
    c, main, warnings = warmup.pool_sizes(21, 10, 4, 8)
    assert (c, main) == (16, 5) and "not the 42 asked for" in warnings[0]
    # Factor 0: the first M are the candidates and the main pool loses M.
    assert warmup.pool_sizes(10, 10, 4, 0)[:2] == (4, 6)
    with pytest.raises(SonicError, match="at least 4 sessions"):
        warmup.pool_sizes(3, 10, 4, 8)


def test_systematic_pick_takes_heavy_sessions_outright_and_never_twice():
    rng = np.random.default_rng(0)
    picked, certain = warmup.systematic_pick(np.array([1, 1, 1, 1, 12.0]), 2, rng)
    assert 4 in picked and certain == 1 and len(set(picked)) == 2
    # Probability proportional to size: over many draws a 3-turn session is picked about 3x as
    # often as a 1-turn one.
    weights = np.array([1.0, 3.0] * 8)
    counts = np.zeros(len(weights))
    for seed in range(400):
        chosen, certain = warmup.systematic_pick(weights, 4, np.random.default_rng(seed))
        assert len(set(chosen)) == 4 and certain == 0
        counts[chosen] += 1
    ratio = counts[1::2].sum() / counts[0::2].sum()
    assert 2.5 < ratio < 3.5, ratio


def test_plan_puts_warm_sessions_first_then_the_main_pool():
    pool = _pool([1, 2, 3, 4, 5, 6] * 4 + [3] * 6)  # 24 candidates for M=3, then 6 main
    measured, plan = warmup.plan(pool, 6, 3, 8, seed=7)
    assert (plan.candidate_pool, plan.main_pool, plan.warm_sessions) == (24, 6, 3)
    full = np.array([1, 2, 3, 4, 5, 6] * 4 + [3] * 6, dtype=float)
    assert plan.mode == "turn_biased"
    assert plan.target_mean_turns == pytest.approx((full**2).sum() / full.sum())
    warm = measured.sessions[:3]
    assert measured.warm_started == 3
    assert all(s in pool.sessions[:24] or s.start_turn for s in warm)
    assert [s.start_turn for s in warm] == list(plan.start_turns)
    assert all(0 <= s.start_turn < s.num_turns for s in warm)
    assert measured.sessions[3:] == pool.sessions[24:30]
    assert measured.num_requests == sum(len(s.sent_turns) for s in measured.sessions)
    again, _ = warmup.plan(pool, 6, 3, 8, seed=7)
    assert again == measured, "the same seed gives the same warm-up"
    uniform, plan1 = warmup.plan(pool, 6, 3, 1, seed=7)
    assert plan1.mode == "uniform" and plan1.candidate_pool == 3


def test_prerun_sends_each_warm_session_its_history_once():
    pool = _pool([4] * 12)
    measured, plan = warmup.plan(pool, 4, 2, 4, seed=3)
    pre = warmup.prerun_sessions(measured.sessions, measured.warm_started)
    assert len(pre) == plan.prerun_requests == sum(k > 0 for k in plan.start_turns)
    for p in pre:
        warm = next(s for s in measured.sessions if s.session_id == p.session_id)
        assert p.turns == warm.turns[: warm.start_turn] and len(p.sent_turns) == 1
    # The pre-run's prompt is the history that the measured first turn carries.
    for msgs, first in zip(prerun_messages(measured), _first_measured(measured)):
        assert first[: len(msgs)] == msgs
    # A sent turn's messages never include turns before the session's start as requests.
    assert len(list(turn_messages(measured))) == measured.num_requests


def _first_measured(workload: Workload):
    seen = set()
    owners = [s for s in workload.sessions for _ in s.sent_turns]
    for owner, msgs in zip(owners, turn_messages(workload)):
        if owner.session_id not in seen and owner.start_turn > 0:
            seen.add(owner.session_id)
            yield msgs


def test_primed_blocks_count_as_reused():
    primed = [[1, 2, 3, 4]]
    assert block_reuse([[1, 2, 3, 4, 5, 6]], 2, primed).reused_tokens == 4
    assert block_reuse([[1, 2, 3, 4, 5, 6]], 2).reused_tokens == 0


# ------------------------------------------------------------------ end to end on the sim


def _run(url: str, out: Path, *extra: str, cap: tuple[str, ...] = ("--max-concurrency", "3")):
    return run_sonic(
        "--compat", "max-benchmark", "--base-url", url, "--model", "sonic-sim",
        "--tokenizer", str(TOKENIZER), "--dataset-name", "random",
        "--random-input-len", "40", "--random-output-len", "6", "--num-chat-sessions", "6",
        "--random-num-turns", "4", "--num-prompts", "200", *cap, "--request-rate", "50",
        "--save-detailed", "--result-filename", str(out / "r.json"),
        "--disable-tqdm", *extra, timeout=180,
    )  # fmt: skip


@pytest.fixture(scope="module")
def sim():
    with sim_process("--ttft-ms", "5", "--itl-ms", "1") as url:
        yield url


def test_a_max_benchmark_run_starts_at_steady_state(sim, tmp_path):
    before = scrape(sim)
    proc = _run(sim, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "r.json").read_text())
    plan = doc["sonic"]["warmup_to_steady_state"]
    assert plan["warm_sessions"] == 3 and plan["main_pool"] == 6
    assert "Warming up to steady state: 3 sessions" in proc.stdout
    starts = plan["start_turns"]
    lines = [
        json.loads(x) for x in next(tmp_path.glob("*.requests.jsonl")).read_text().splitlines()
    ]
    measured = sum(4 - k for k in starts) + 6 * 4
    assert len(lines) == measured == doc["completed"]
    first = {}
    for x in lines:
        first.setdefault(x["session_index"], x)
    # Warm sessions first, from their start turns, all due at t0; the main pool at turn 0 and
    # paced by the arrival process (50 req/s: later than t0).
    assert [first[s]["turn_index"] for s in range(3)] == starts
    assert all(first[s]["turn_index"] == 0 for s in range(3, 9))
    assert all(first[s]["intended_ns"] == 0 for s in range(3))
    assert all(first[s]["intended_ns"] > 0 for s in range(4, 9))
    # The pre-run went to the engine (untimed) and its history is what the first measured turn
    # of each warm session found cached.
    after = scrape(sim)
    done = "vllm:request_success_total"
    sent = after[done] - before[done]
    assert sent == measured + plan["prerun_requests"] + 1  # + the test prompt
    for s, k in enumerate(starts):
        if k > 0:
            assert first[s]["usage"]["cached_tokens"] > 0, first[s]


def test_off_and_without_a_cap_every_session_starts_at_turn_0(sim, tmp_path):
    for name, extra, cap in (
        ("off", ["--no-warmup-to-steady-state"], ("--max-concurrency", "3")),
        ("uncapped", [], ()),
    ):
        out = tmp_path / name
        out.mkdir()
        proc = _run(sim, out, *extra, cap=cap)
        assert proc.returncode == 0, proc.stderr[-3000:]
        doc = json.loads((out / "r.json").read_text())
        assert "warmup_to_steady_state" not in doc["sonic"], name
        assert doc["completed"] == 24, name
        assert "Warming up" not in proc.stdout
