"""The validity verdict of a run: each failure mode flagged with its reason code, a valid run
not flagged; on constructed records for the client's own lag, and end to end against
``sonic sim`` (a real process, real HTTP) for saturation, sample counts and the result files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from simproc import TOKENIZER, run_sonic, sim_process
from sonic import dialects
from sonic.metrics import compute_metrics
from sonic.metrics import validity as v
from sonic.metrics.oversat import OverSaturationMonitor
from sonic.metrics.steady import detect
from sonic.records import CHUNK_DONE, CHUNK_TEXT, RunRecords


def make_records(intended_s, sent_s, end_s, ttft_s=0.01) -> RunRecords:
    """Requests with one text chunk ``ttft_s`` after the send and ``[DONE]`` at the end."""
    n = len(intended_s)

    def ns(a):
        return np.round(np.asarray(a, float) * 1e9).astype(np.int64)

    sent, end = ns(sent_s), ns(end_s)
    chunk_ns = np.empty(2 * n, np.int64)
    chunk_ns[0::2] = sent + ns(np.broadcast_to(ttft_s, (n,)))
    chunk_ns[1::2] = end
    text_off = np.zeros(2 * n + 1, np.int64)
    text_off[1::2] = text_off[2::2] = np.arange(1, n + 1)
    return RunRecords(
        t0_unix_ns=0,
        t0_mono_ns=0,
        cancelled=False,
        intended_ns=ns(intended_s),
        sent_ns=sent,
        end_ns=end,
        http_status=np.full(n, 200, np.int32),
        prompt_tokens=np.full(n, 10, np.int64),
        completion_tokens=np.full(n, 1, np.int64),
        error=[None] * n,
        finish_reason=["length"] * n,
        chunk_offsets=np.arange(0, 2 * n + 1, 2, dtype=np.int64),
        chunk_ns=chunk_ns,
        chunk_kind=np.tile(np.array([CHUNK_TEXT, CHUNK_DONE], np.uint8), n),
        chunk_text_offsets=text_off,
        text=b"x" * n,
    )


def assess(records, rate, cap=None, **kw):
    metrics = compute_metrics(
        records,
        dialects.get("vllm").metric_rules,
        [10] * records.n,
        count_tokens=lambda texts: [len(t) for t in texts],
    )
    state = detect(records, rate=rate, max_concurrency=cap, latency_s=metrics.requests.e2el_s)
    kw.setdefault("warmup_requests", 1)
    return v.assess(records, metrics, state, rate=rate, max_concurrency=cap, **kw)


def codes(validity) -> set[str]:
    return {r.code for r in validity.reasons}


def test_a_client_that_sends_late_is_flagged_client_bound():
    """Every request left 200 ms after its intended time: the client fell behind, and with
    a 10 ms TTFT the latencies it reports are mostly its own delay."""
    t = np.arange(200) / 20.0
    late = assess(make_records(t, t + 0.2, t + 0.5), 20.0)
    assert late.verdict == v.INVALID and v.CLIENT_BEHIND in codes(late)
    assert late.figures.client_lag_p99_ms == pytest.approx(200.0, abs=1.0)
    assert late.figures.client_lag_kind == "intended"
    on_time = assess(make_records(t, t + 0.0005, t + 0.3), 20.0)
    assert on_time.verdict == v.VALID and not on_time.reasons, on_time.reasons


def test_waiting_for_a_concurrency_slot_is_not_the_clients_lag():
    """Cap 2, all due at t0, 1 s per request: sends wait up to 4.5 s for a slot, yet each
    goes 0.1 ms after its slot freed, so the client kept up."""
    n, cap = 10, 2
    sent = np.repeat(np.arange(n // cap, dtype=float), cap) + 0.0001
    capped = assess(make_records(np.zeros(n), sent, sent + 1.0), math.inf, cap)
    assert v.CLIENT_BEHIND not in codes(capped)
    assert capped.figures.client_lag_kind == "slot"
    assert capped.figures.client_lag_p99_ms < 1.0
    waves = np.repeat(np.arange(n // cap) * 1.05, cap)  # each wave 50 ms after a slot freed
    lag, _ = v.client_lag_s(make_records(np.zeros(n), waves, waves + 1.0), cap)
    assert np.allclose(lag[cap:], 0.05, atol=1e-6)  # late refills are the client's


def test_a_cpu_bound_client_is_warned_about():
    t = np.arange(200) / 20.0
    busy = assess(make_records(t, t, t + 0.3), 20.0, client_cpu_percent=195.0, cpu_count=2)
    assert busy.verdict == v.WARN and v.CLIENT_CPU in codes(busy)


def test_percentiles_need_enough_requests():
    """p99 from 40 requests is flagged and scoped to the p99 statistics only; p90 is fine."""
    t = np.arange(40) / 20.0
    few = assess(make_records(t, t, t + 0.3), 20.0, percentiles=(90.0, 99.0))
    assert few.verdict == v.WARN and codes(few) == {v.TOO_FEW_SAMPLES}
    assert not few.valid_for("p99_ttft_ms") and few.valid_for("p90_ttft_ms")
    assert few.valid_for("median_ttft_ms") and few.valid
    assert "p99 needs at least 100 requests" in few.reasons[0].message
    # One-token answers: TPOT and ITL have no samples at all, so nothing of theirs is reported.
    assert few.to_dict()["invalid_metrics"] == ["p99_e2el_ms", "p99_ttft_ms"]


def test_an_over_saturated_constructed_run_is_flagged():
    intended = np.arange(300) / 10.0
    end = np.empty(300)
    free = 0.0
    for i, t in enumerate(intended):  # one slot, 0.2 s each: 5 req/s against 10 offered
        free = end[i] = max(t, free) + 0.2
    ttft = end - 0.2 - intended + 0.01  # the first token comes once service starts
    sat = assess(make_records(intended, intended, end, ttft), 10.0)
    assert sat.verdict == v.INVALID
    assert {v.OVER_SATURATED, v.RATE_NOT_REACHED} <= codes(sat)
    assert sat.figures.oldest_wait_late_s > sat.figures.oldest_wait_mid_s


def test_monitor_stops_only_a_backlog_that_keeps_growing():
    due = np.arange(2000) / 50.0
    mon = OverSaturationMonitor(due, window_s=2.0)
    said = None
    for k in range(1, 200):  # completions at 10/s against 50/s arriving
        t = k * 0.1
        p = {"elapsed_s": t, "dispatched": int(t * 50), "completed": int(t * 10), "failed": 0}
        said = said or mon({**p, "in_flight": p["dispatched"] - p["completed"]})
    assert said is not None and "--stop-over-saturated" in said
    calm = OverSaturationMonitor(due, window_s=2.0)
    for k in range(1, 200):  # keeps up, 0.5 s behind
        t = k * 0.1
        done = max(0, int((t - 0.5) * 50))
        p = {"elapsed_s": t, "dispatched": int(t * 50), "completed": done, "failed": 0}
        assert calm({**p, "in_flight": p["dispatched"] - done}) is None


# ------------------------------------------------------------------ end to end on the sim


def _run(url, tmp_path, *extra, name="r.json"):
    cp = run_sonic(
        "--base-url", url, "--model", "sonic-sim", "--tokenizer", str(TOKENIZER),
        "--dataset-name", "random", "--random-input-len", "16", "--disable-tqdm",
        "--save-result", "--result-dir", str(tmp_path), "--result-filename", name, *extra,
    )  # fmt: skip
    path = tmp_path / name
    doc = json.loads(path.read_text()) if path.exists() else None
    return cp, doc


def _codes(doc) -> set[str]:
    return {r["code"] for r in doc["sonic"]["validity"]["reasons"]}


def test_a_valid_run_is_not_flagged_and_reports_its_window(tmp_path):
    with sim_process("--ttft-ms", "100", "--itl-ms", "5", "--output-len", "8") as url:
        cp, doc = _run(
            url, tmp_path, "--random-output-len", "8", "--num-prompts", "150",
            "--request-rate", "30", "--num-warmups", "2",
        )  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    validity = doc["sonic"]["validity"]
    # A loaded 2-core host may delay a send by a few ms (a warning); nothing else may show.
    assert _codes(doc) <= {v.CLIENT_BEHIND}, validity["reasons"]
    assert validity["verdict"] in (v.VALID, v.WARN) and validity["invalid_metrics"] == []
    assert validity["figures"]["warmup_requests"] == 2 and validity["warmup_excluded"]
    assert validity["figures"]["achieved_rate"] == pytest.approx(30.0, rel=0.15)
    steady = doc["sonic"]["steady_state"]
    assert steady["window"]["detected"] and steady["window"]["mode"] == "in_flight_plateau"
    assert steady["metrics"]["latency_ms"]["ttft"]["median"] == pytest.approx(100.0, abs=10)
    assert steady["metrics"]["request_throughput"] == pytest.approx(30.0, rel=0.15)
    assert "Run validity" in cp.stdout and "Steady-state window (s):" in cp.stdout


def test_over_saturated_and_too_few_samples_are_flagged(tmp_path):
    """2 sequences at a time, 10 ms steps, 10 tokens each: about 18 req/s against 100."""
    with sim_process("--max-num-seqs", "2", "--step-base-ms", "10") as url:
        cp, doc = _run(
            url, tmp_path, "--random-output-len", "10", "--ignore-eos", "--num-prompts", "150",
            "--request-rate", "100", "--max-benchmark-duration-s", "4", "--num-warmups", "1",
            "--always-save-result",
        )  # fmt: skip
    assert doc is not None, cp.stderr
    validity = doc["sonic"]["validity"]
    assert validity["verdict"] == v.INVALID
    assert {v.OVER_SATURATED, v.RATE_NOT_REACHED, v.NO_STEADY_STATE} <= _codes(doc)
    assert validity["figures"]["backlog_growth"] > 10
    assert "Verdict:" in cp.stdout and "INVALID" in cp.stdout and "over_saturated" in cp.stdout


def test_too_few_samples_on_a_short_run(tmp_path):
    with sim_process("--ttft-ms", "50", "--itl-ms", "5", "--output-len", "4") as url:
        cp, doc = _run(
            url, tmp_path, "--random-output-len", "4", "--num-prompts", "30",
            "--request-rate", "20", "--num-warmups", "1",
        )  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    validity = doc["sonic"]["validity"]
    # Too few samples marks the p99s, not the run (the verdict may still be invalid for another
    # reason: a loaded host can put the client behind its schedule).
    (few,) = [r for r in validity["reasons"] if r["code"] == v.TOO_FEW_SAMPLES]
    assert few["affects"], few  # scoped to the percentiles it cannot support
    whole = [r for r in validity["reasons"] if r["severity"] == v.INVALID and not r["affects"]]
    assert (validity["verdict"] == v.INVALID) == bool(whole), validity
    assert "p99_ttft_ms" in validity["invalid_metrics"]
    assert validity["figures"]["samples"]["ttft"] == 30


def test_stop_over_saturated_ends_the_run_early(tmp_path):
    with sim_process("--max-num-seqs", "2", "--step-base-ms", "10") as url:
        cp, doc = _run(
            url, tmp_path, "--random-output-len", "10", "--ignore-eos", "--num-prompts",
            "2000", "--request-rate", "60", "--stop-over-saturated", "--always-save-result",
        )  # fmt: skip
    assert cp.returncode == 1 and "Traceback" not in cp.stderr, cp.stderr
    validity = doc["sonic"]["validity"]
    assert validity["figures"]["stopped_early"].startswith("stopped early")
    assert v.OVER_SATURATED in _codes(doc) and validity["verdict"] == v.INVALID
    assert doc["sonic"]["cancelled"] and doc["sonic"]["not_sent"] > 1000  # stopped near 10 s


# ------------------------------------------------------------------ the suite's winner table


def _runs(validity_b: str, because_b: str = "", invalid_metrics_b: str = ""):
    import pandas as pd

    rows = []
    for engine, tput, p99 in (("alpha", 100.0, 50.0), ("beta", 150.0, 40.0)):
        for rep in range(3):
            invalid = engine == "beta"
            rows.append(
                {
                    "engine": engine,
                    "scenario": "s",
                    "request_rate": 4.0,
                    "max_concurrency": None,
                    "repeat": rep,
                    "status": "ok",
                    "interrupted": False,
                    "output_throughput": tput + rep,
                    "p99_ttft_ms": p99 + rep,
                    "validity": validity_b if invalid else "valid",
                    "invalid_because": because_b if invalid else "",
                    "invalid_metrics": invalid_metrics_b if invalid else "",
                }
            )
    df = pd.DataFrame(rows)
    df["max_concurrency"] = df["max_concurrency"].astype("Int64")
    return df


def test_the_winner_table_never_calls_an_invalid_run_significant():
    from sonic.report import stats, summary

    metrics = [stats.METRICS_BY_COLUMN["output_throughput"], stats.METRICS_BY_COLUMN["p99_ttft_ms"]]

    def table(df):
        comp = stats.compare_engines(df, None, metrics=metrics)
        return comp.set_index("metric"), stats.winners(comp, metrics)

    comp, _ = table(_runs("valid"))
    assert comp.loc["output_throughput", "significant"] == True  # noqa: E712 (numpy bool)
    assert comp.loc["p99_ttft_ms", "significant"] == True and not comp["invalid"].any()  # noqa: E712

    comp, win = table(_runs("invalid", "over_saturated"))
    assert not comp["significant"].any()
    assert comp.loc["output_throughput", "invalid"] == "beta: over_saturated"
    verdicts = stats.scenario_verdicts(win)
    assert {x["state"] for x in verdicts} == {"invalid"}
    row = win.iloc[0].to_dict()
    assert summary.significance(row) == "not comparable (beta: over_saturated)"

    # Too few samples invalidates the p99 statistic only; the throughput stays significant.
    comp, _ = table(_runs("warn", "", "p99_ttft_ms"))
    assert comp.loc["output_throughput", "significant"] == True  # noqa: E712 (numpy bool)
    assert comp.loc["p99_ttft_ms", "significant"] == False  # noqa: E712
    assert comp.loc["p99_ttft_ms", "invalid"] == "beta: too_few_samples"
