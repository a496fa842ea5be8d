"""The steady-state detector on constructed runs: ramp, plateau, drain; growth; closed loop."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sonic.metrics.steady import (
    MODE_CLOSED,
    MODE_OPEN,
    detect_window,
    in_flight_at,
)


def open_loop(rate: float, n: int, latency) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evenly spaced arrivals sent on time; ``latency`` per request (array or scalar)."""
    intended = np.arange(n) / rate
    sent = intended.copy()
    return intended, sent, sent + np.broadcast_to(np.asarray(latency, float), (n,))


def fifo_server(intended: np.ndarray, service_s: float, slots: int) -> np.ndarray:
    """End times of a FIFO server with ``slots`` parallel slots (a queue when they are full)."""
    free = np.zeros(slots)
    end = np.empty(intended.size)
    for i, t in enumerate(intended):
        k = int(np.argmin(free))
        start = max(t, free[k])
        free[k] = end[i] = start + service_s
    return end


def test_in_flight_counts_half_open_intervals_and_unfinished_requests():
    sent = np.array([0.0, 1.0, 2.0, np.nan])
    end = np.array([1.0, 3.0, np.nan, np.nan])  # the third never ended; the fourth never left
    assert in_flight_at(sent, end, np.array([0.5, 1.0, 2.5, 100.0])).tolist() == [1, 1, 2, 1]


def test_ramp_plateau_drain_gives_the_plateau():
    """10 req/s for 30 s, 2 s each: in flight ramps to 20 over 2 s, holds, drains after 30 s."""
    intended, sent, end = open_loop(10.0, 300, 2.0)
    s = detect_window(intended, sent, end, rate=10.0, max_concurrency=None)
    assert s.detected and s.mode == MODE_OPEN and s.warning is None
    assert 2.0 <= s.start_s <= 3.0  # not before a request sent at t0 could have finished
    assert s.end_s == pytest.approx(29.9)  # the last arrival: after it the run only drains
    assert s.level == pytest.approx(20.0, abs=0.5)
    assert s.requests == int(((sent >= s.start_s) & (sent < s.end_s)).sum())
    mask = s.sent_mask(sent)
    assert mask.sum() == s.requests and not mask[:20].any()


def test_growing_backlog_has_no_steady_state():
    """Arrivals at 10/s, a server that completes 5/s: in flight grows for the whole run."""
    intended = np.arange(300) / 10.0
    end = fifo_server(intended, 0.4, 2)
    s = detect_window(intended, intended.copy(), end, rate=10.0, max_concurrency=None)
    assert not s.detected and s.mode == MODE_OPEN
    assert "never held steady" in s.warning  # in flight grew, or completions fell behind


def test_long_latency_relative_to_the_run_has_no_plateau():
    intended, sent, end = open_loop(10.0, 30, 5.0)  # 3 s of arrivals, 5 s per request
    s = detect_window(intended, sent, end, rate=10.0, max_concurrency=None)
    assert not s.detected and "ramp" in s.warning


def test_noisy_poisson_plateau_is_still_steady():
    rng = np.random.default_rng(1)
    intended = np.cumsum(rng.exponential(1 / 20.0, 600))
    lat = rng.gamma(4.0, 0.1, 600)  # mean 0.4 s
    s = detect_window(intended, intended.copy(), intended + lat, rate=20.0, max_concurrency=None)
    assert s.detected, s.warning
    assert s.level == pytest.approx(20.0 * 0.4, rel=0.25)  # Little's law


def test_closed_loop_window_spans_the_cap_plateau():
    """Cap 8 at rate inf, 1 s per request: 8 in flight from t0 until the last wave drains."""
    n, cap = 40, 8
    intended = np.zeros(n)
    sent = np.repeat(np.arange(n // cap, dtype=float), cap)  # waves at 0, 1, 2, ...
    end = sent + 1.0
    s = detect_window(intended, sent, end, rate=math.inf, max_concurrency=cap)
    assert s.detected and s.mode == MODE_CLOSED
    assert s.threshold == math.ceil(0.9 * cap)
    assert s.start_s == 0.0 and s.end_s == pytest.approx(5.0)
    assert s.requests == n and s.level == pytest.approx(8.0)


def test_closed_loop_never_filled_says_so():
    intended = np.zeros(3)
    sent = np.array([0.0, 1.0, 2.0])
    s = detect_window(intended, sent, sent + 0.5, rate=math.inf, max_concurrency=8)
    assert not s.detected and "never reached 8" in s.warning


def test_a_cap_that_never_binds_falls_back_to_the_open_loop_rule():
    intended, sent, end = open_loop(10.0, 300, 0.3)  # 3 in flight, cap 64
    s = detect_window(intended, sent, end, rate=10.0, max_concurrency=64)
    assert s.detected and s.mode == MODE_OPEN


def test_no_steady_state_when_every_request_is_due_at_t0_or_the_rate_ramps():
    intended, sent, end = open_loop(10.0, 50, 1.0)
    burst = detect_window(np.zeros(50), sent, end, rate=math.inf, max_concurrency=None)
    assert not burst.detected and burst.mode is None and "only drains" in burst.warning
    ramp = detect_window(intended, sent, end, rate=10.0, max_concurrency=None, ramp=True)
    assert not ramp.detected and "ramps" in ramp.warning
    d = ramp.to_dict()
    assert d["detected"] is False and d["duration_s"] is None and d["start_s"] is None
