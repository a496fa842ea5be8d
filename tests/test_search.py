"""``sonic search``: SLO parsing, the probe plan, and searches against `sonic sim` processes.

The sim's batching model makes the capacity known in advance: with every request started
together (a concurrency search) each decode step costs base + per-sequence × concurrency, so
TPOT(c) = base + c × per_seq and the highest c within a TPOT bound is a closed form.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from simproc import TOKENIZER, run_sonic, sim_process
from sonic.errors import SonicError
from sonic.search.plan import (
    CAPPED,
    FOUND,
    LIMIT,
    NONE,
    SearchSpec,
    bracket,
    capacity_samples,
    next_step,
)
from sonic.search.slo import parse_slos

# ------------------------------------------------------------------ SLO parsing


def test_parse_slos_units_and_stats():
    slos = parse_slos("ttft:p99<=500ms, tpot:mean<0.05s,itl:p99.9<=800us,e2el:median<=2")
    assert [(s.metric, s.stat) for s in slos] == [
        ("ttft", "p99"),
        ("tpot", "mean"),
        ("itl", "p99.9"),
        ("e2el", "median"),
    ]
    assert [s.limit_s for s in slos] == pytest.approx([0.5, 0.05, 800e-6, 2e-3])
    assert parse_slos(["ttft<=1s"], attainment=True)[0].stat is None


@pytest.mark.parametrize(
    ("spec", "attainment", "words"),
    [
        ("", False, "at least one objective"),
        ("ttft:p99=500ms", False, "expected METRIC:STAT<=VALUE"),
        ("latency:p99<=5ms", False, "bad --slo metric 'latency'"),
        ("ttft:p100<=5ms", False, "between p0 and p100"),
        ("ttft<=5ms", False, "say which statistic"),
        ("ttft:p99<=5ms", True, "without a statistic"),
        ("ttft:p99<=0ms", False, "positive number"),
        ("ttft:p99<=5ms,ttft:p99<=6ms", False, "given twice"),
    ],
)
def test_parse_slos_errors(spec, attainment, words):
    with pytest.raises(SonicError, match=words):
        parse_slos(spec, attainment=attainment)


# ------------------------------------------------------------------ the plan (pure)


def _search(spec: SearchSpec, meets) -> tuple[list[float], object]:
    """Drive next_step with a verdict function until it concludes."""
    loads: list[float] = []
    met: list[bool] = []
    while True:
        step = next_step(spec, loads, met)
        if step.load is None:
            return loads, step
        loads.append(step.load)
        met.append(bool(meets(step.load, loads.count(step.load))))


@pytest.mark.parametrize("capacity", [0.3, 1.0, 7.77, 100.0, 900.0])
def test_rate_search_converges_within_resolution(capacity):
    spec = SearchSpec(start=4.0, minimum=0.1, maximum=1000.0, resolution=0.05, confirm_repeats=2)
    loads, step = _search(spec, lambda x, _: x <= capacity)
    assert step.status == FOUND
    assert step.capacity <= capacity < step.capacity * 1.05 * 1.0001
    assert loads.count(step.capacity) == 3  # found once, confirmed twice
    lo, hi = bracket(loads, [x <= capacity for x in loads])
    assert lo == step.capacity and hi is not None and hi <= lo * 1.05 * 1.0001


def test_concurrency_search_is_exact():
    spec = SearchSpec(over="concurrency", start=1, minimum=1, maximum=512, confirm_repeats=1)
    for capacity in (1, 2, 13, 64, 100):
        _, step = _search(spec, lambda x, _, c=capacity: x <= c)
        assert (step.status, step.capacity) == (FOUND, capacity)


def test_a_repeat_that_misses_sends_the_search_lower():
    """Noise at the edge: the first pass at 10 is not confirmed, so 10 counts as missed."""
    spec = SearchSpec(over="concurrency", start=8, minimum=1, maximum=64, confirm_repeats=2)
    loads, step = _search(spec, lambda x, k: x < 10 or (x == 10 and k == 1))
    assert step.status == FOUND and step.capacity == 9
    assert loads.count(10) == 2 and loads.count(9) == 3


def test_no_load_meets_and_every_load_meets_and_budget():
    spec = SearchSpec(start=1.0, minimum=1 / 16, maximum=8.0, confirm_repeats=1, max_probes=40)
    loads, step = _search(spec, lambda x, _: False)
    assert step.status == NONE and step.capacity is None
    assert loads == [1.0, 0.5, 0.25, 0.125, 0.0625]  # halving to --search-min, then an answer
    loads, step = _search(spec, lambda x, _: True)
    assert step.status == CAPPED and step.capacity == 8.0 and loads.count(8.0) == 2
    tight = SearchSpec(start=1.0, minimum=0.001, maximum=1e6, confirm_repeats=3, max_probes=5)
    loads, step = _search(tight, lambda x, _: x <= 300)
    assert step.status == LIMIT and len(loads) == 5 and step.capacity == 16.0


def test_capacity_samples_follow_the_bracket_rule():
    loads = [4.0, 8.0, 16.0, 8.0]
    flags = [
        np.array([True, True, True, True]),
        np.array([True, True, False, True]),
        np.array([False, True, False, False]),
        np.array([True, False, True, True]),
    ]
    # b0: 8 met twice, 16 missed -> 8; b1: the repeat of 8 missed -> 4; b2: 8 missed -> 4;
    # b3: 8 met, 16 missed -> 8.
    assert capacity_samples(loads, flags, 4).tolist() == [8.0, 4.0, 4.0, 8.0]


# ------------------------------------------------------------------ searches against the sim

BASE_MS, PER_SEQ_US = 2.0, 1000.0
SIM_FLAGS = (
    "--step-base-ms", str(BASE_MS),
    "--decode-us-per-seq", str(PER_SEQ_US),
    "--prefill-us-per-token", "1",
)  # fmt: skip
RUN = (
    "--backend", "vllm",
    "--dataset-name", "random",
    "--random-input-len", "32",
    "--random-output-len", "16",
    "--ignore-eos",
    "--tokenizer", str(TOKENIZER),
)  # fmt: skip


@pytest.fixture(scope="module")
def batching_sim():
    with sim_process(*SIM_FLAGS) as url:
        yield url


def _state(directory: Path) -> dict:
    return json.loads((directory / "search.json").read_text())


def test_concurrency_capacity_is_the_analytic_one(batching_sim, tmp_path):
    limit_ms = 10.5
    expected = math.floor((limit_ms - BASE_MS) / (PER_SEQ_US / 1000.0))  # TPOT(c) = 2 + c ms
    out = tmp_path / "s"
    proc = run_sonic(
        "search", "--base-url", batching_sim, *RUN, "--num-prompts", "40",
        "--slo", f"tpot:p50<={limit_ms}ms", "--search-over", "concurrency",
        "--max-concurrency", "4", "--confirm-repeats", "1", "--search-dir", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    state = _state(out)
    # Within the search's resolution (1) of the closed form: requests that join a step late
    # split a wave, and a split batch steps faster than the formula's full one.
    found = state["capacity"]
    assert state["status"] == FOUND and abs(found - expected) <= 1
    assert f"capacity: {found:g} concurrent requests" in proc.stdout
    lo, hi = state["capacity_ci"]
    assert lo <= found <= hi
    for p in state["probes"]:  # every probe kept as a parseable result file + its summary
        doc = json.loads((out / p["result_file"]).read_text())
        assert doc["max_concurrency"] == int(p["load"])
        assert (out / p["result_file"]).with_suffix(".txt").read_text().strip()
        tpot_ms = p["verdict"]["checks"][0]["value_s"] * 1e3
        assert BASE_MS + p["load"] - 1.5 <= tpot_ms <= BASE_MS + p["load"] + 0.5
    assert (out / "search.png").stat().st_size > 0


def test_rate_capacity_matches_littles_law(batching_sim, tmp_path):
    """Constant spacing at rate r keeps L = r × E2EL requests in flight, and a decode step
    costs 2 + L ms, so mean TPOT ≈ 2 + L: the SLO crossing is near L = 4, i.e. r ≈ 42 req/s
    (the fluid model ignores step granularity; 10 % is allowed)."""
    out = tmp_path / "s"
    proc = run_sonic(
        "search", "--base-url", batching_sim, *RUN, "--num-prompts", "100",
        "--burstiness", "inf", "--request-rate", "24", "--slo", "tpot:mean<=6ms",
        "--confirm-repeats", "1", "--search-resolution", "0.1", "--search-dir", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    state = _state(out)
    # L = r·16·(2+L)/1000 with L = 4  =>  r = 4 / (0.016 · 6)
    analytic = 4 / (0.016 * 6)
    assert state["status"] == FOUND
    assert state["capacity"] == pytest.approx(analytic, rel=0.1)
    met = {p["load"]: p["verdict"]["met"] for p in state["probes"]}
    above = min(x for x, ok in met.items() if not ok)
    assert above <= state["capacity"] * 1.1 * 1.0001  # bracket within the resolution


def test_an_slo_no_load_meets_gives_an_answer(batching_sim, tmp_path):
    out = tmp_path / "s"
    proc = run_sonic(
        "search", "--base-url", batching_sim, *RUN, "--num-prompts", "8",
        "--slo", "ttft:p50<=0.001ms", "--search-over", "concurrency", "--max-concurrency", "4",
        "--search-dir", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    state = _state(out)
    assert state["status"] == NONE and [p["load"] for p in state["probes"]] == [4.0, 2.0, 1.0]
    assert "no capacity: even 1 concurrent requests (--search-min) misses" in proc.stdout


def test_interrupted_search_resumes_where_it_stopped(batching_sim, tmp_path):
    out = tmp_path / "s"
    argv = [
        sys.executable, "-m", "sonic", "search", "--base-url", batching_sim, *RUN,
        "--num-prompts", "40", "--slo", "tpot:p50<=10.5ms", "--search-over", "concurrency",
        "--max-concurrency", "2", "--confirm-repeats", "1", "--search-dir", str(out),
    ]  # fmt: skip
    # SIGINT at its default in the child: a shell without job control starts background jobs
    # (such as this test run) with SIGINT ignored, and Python then never raises Ctrl-C.
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state_file = out / "search.json"
        if state_file.exists() and len(_state(out)["probes"]) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    kept = _state(out)["probes"]
    assert kept and _state(out)["status"] is None
    stamps = {p["result_file"]: (out / p["result_file"]).stat().st_mtime_ns for p in kept}

    again = subprocess.run(argv + ["--resume"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    state = _state(out)
    assert state["status"] == FOUND and state["capacity"] in (7, 8, 9)
    assert state["probes"][: len(kept)] == kept  # the finished probes were not rerun
    for name, stamp in stamps.items():
        assert (out / name).stat().st_mtime_ns == stamp
    assert again.stdout.count("(resumed)") == len(kept)

    fresh = run_sonic(*argv[3:])  # same directory without --resume: refused, not overwritten
    assert fresh.returncode == 2 and "pass --resume" in fresh.stderr


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ((), "needs --slo"),
        (("--slo", "ttft:p99<=5ms", "--request-rate", "1,2"), "one load at a time"),
        (
            ("--slo", "ttft:p99<=5ms", "--search-over", "concurrency", "--request-rate", "3"),
            "drop --request-rate",
        ),
        (("--slo", "ttft:p99<=5ms", "--search-min", "5", "--request-rate", "1"), "search-min"),
        (("--slo", "ttft:p99<=5ms", "--resume"), "--resume needs --search-dir"),
        (("--slo", "ttft:p99<=5ms", "--slo-attainment", "1.5"), "--slo-attainment must"),
    ],
)
def test_bad_search_flags_are_one_line_errors(extra, words):
    proc = run_sonic("search", "--base-url", "http://127.0.0.1:9", *RUN, *extra)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in proc.stderr


def test_search_help_explains():
    proc = run_sonic("search", "--help")
    assert proc.returncode == 0
    for words in ("--slo", "--slo-attainment", "--search-over", "--confirm-repeats", "--resume"):
        assert words in proc.stdout
