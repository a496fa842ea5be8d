"""The steady-state window of a run: the interval in which the load was stationary.

A run ramps up (the first requests meet an idle engine), may reach a plateau, and drains (the
last requests meet an emptying one). Latencies and throughputs are only comparable across
engines over the plateau, so each run reports them over the whole run *and* over this window.

Two regimes, two rules (both on the client's own timestamps, nothing scraped):

- **Closed loop** (``--max-concurrency`` caps the requests in flight, and the cap binds): the
  window runs from the moment the in-flight count first reaches ``CONCURRENCY_FRACTION`` of the
  cap to the moment it last falls below it, as vLLM's Rust client does. Event-exact.
- **Open loop** (a finite rate and no binding cap): in-flight requests are sampled on a time
  grid over the arrival period. The ramp is over once the in-flight count first reaches
  ``RAMP_FRACTION`` of its level in the second half of the arrivals, and not before the median
  request latency has elapsed (a request sent at t0 is still in flight until then); the window
  ends with the last arrival (after it the system only drains). The window is accepted when the
  in-flight level neither grew nor fell by more than ``LEVEL_TOLERANCE`` (plus Poisson noise)
  between its first and last thirds, and completions in it kept up with arrivals.

No steady state exists when every request is due at t0 (rate ``inf`` without a cap: the load
only drains) or when the offered rate ramps by design. MAX's `max benchmark` instead looks
for stable TTFT/TPOT by rolling MAD/median over requests; sonic's rule looks at the load
itself, which is what "stationary" means, and says so in the MAX dialect's
``steady_state_mode``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

NS = 1e9
CONCURRENCY_FRACTION = 0.9  # closed loop: in flight >= 90 % of the cap
RAMP_FRACTION = 0.8  # open loop: ramp over at 80 % of the plateau level
LEVEL_TOLERANCE = 0.25  # open loop: first vs last third of the window, relative
MIN_BINS = 10
MAX_BINS = 200
MODE_CLOSED = "concurrency_plateau"
MODE_OPEN = "in_flight_plateau"


@dataclass(frozen=True)
class SteadyState:
    """The detected window (seconds from the run's t0) or why there is none."""

    detected: bool
    mode: str | None  # MODE_CLOSED | MODE_OPEN | None (not applicable)
    start_s: float | None = None
    end_s: float | None = None
    requests: int = 0  # requests sent inside the window
    completions: int = 0  # requests that ended inside the window
    level: float | None = None  # mean requests in flight over the window
    threshold: float | None = None  # closed loop: in-flight count that defines the plateau
    growth: float | None = None  # open loop: in-flight change, last third minus first third
    warning: str | None = None

    @property
    def duration_s(self) -> float:
        if self.start_s is None or self.end_s is None:
            return 0.0
        return max(self.end_s - self.start_s, 0.0)

    def sent_mask(self, sent_s: np.ndarray) -> np.ndarray:
        """Requests sent inside the window (their latencies are the window's)."""
        s = np.asarray(sent_s, dtype=np.float64)
        if not self.detected or self.start_s is None or self.end_s is None:
            return np.zeros(s.shape, dtype=bool)
        with np.errstate(invalid="ignore"):
            return (s >= self.start_s) & (s < self.end_s)

    def to_dict(self) -> dict[str, Any]:
        return {
            "detected": self.detected,
            "mode": self.mode,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "duration_s": self.duration_s if self.detected else None,
            "requests": self.requests,
            "completions": self.completions,
            "in_flight_level": self.level,
            "threshold": self.threshold,
            "in_flight_growth": self.growth,
            "warning": self.warning,
        }


def _seconds(ns: Any) -> np.ndarray:
    """ns since t0 -> seconds, NaN where the core wrote -1 (never happened)."""
    a = np.asarray(ns, dtype=np.int64)
    return np.where(a >= 0, a / NS, np.nan)


def in_flight_at(sent_s: np.ndarray, end_s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Requests in flight ([sent, end)) at each time in ``t``; a sent request that never
    ended counts as in flight to the end (an over-saturated run leaves many such)."""
    sent = np.asarray(sent_s, dtype=np.float64)
    end = np.asarray(end_s, dtype=np.float64)
    ok = ~np.isnan(sent)
    starts = np.sort(sent[ok])
    ends = np.sort(np.where(np.isnan(end[ok]), np.inf, end[ok]))
    t = np.asarray(t, dtype=np.float64)
    return np.searchsorted(starts, t, side="right") - np.searchsorted(ends, t, side="right")


def detect(
    records: Any,
    *,
    rate: float,
    max_concurrency: int | None,
    ramp: bool = False,
    latency_s: np.ndarray | None = None,
) -> SteadyState:
    """The steady-state window of ``records`` (a RunRecords); ``latency_s`` (per request,
    NaN where undefined) sets the open-loop ramp length, end minus sent when not given."""
    return detect_window(
        _seconds(records.intended_ns),
        _seconds(records.sent_ns),
        _seconds(records.end_ns),
        rate=rate,
        max_concurrency=max_concurrency,
        ramp=ramp,
        latency_s=latency_s,
    )


def detect_window(
    intended_s: np.ndarray,
    sent_s: np.ndarray,
    end_s: np.ndarray,
    *,
    rate: float,
    max_concurrency: int | None,
    ramp: bool = False,
    latency_s: np.ndarray | None = None,
) -> SteadyState:
    """``detect`` on plain arrays (seconds from t0, NaN: never sent / never ended)."""
    intended = np.asarray(intended_s, dtype=np.float64)
    sent = np.asarray(sent_s, dtype=np.float64)
    end = np.asarray(end_s, dtype=np.float64)
    if ramp:
        return SteadyState(False, None, warning="the offered rate ramps by design")
    if int((~np.isnan(sent)).sum()) < 2:
        return SteadyState(False, None, warning="fewer than 2 requests were sent")
    if max_concurrency is not None:
        found = _closed_loop(sent, end, max_concurrency)
        if found.detected or math.isinf(rate):
            return found
        # A finite rate that never filled the cap: the cap did not bind, the loop is open.
    elif math.isinf(rate):
        return SteadyState(
            False,
            None,
            warning="every request was due at t0 (rate inf without --max-concurrency): the "
            "load only drains, it never holds steady",
        )
    if latency_s is None:
        latency_s = end - sent
    return _open_loop(intended, sent, end, np.asarray(latency_s, dtype=np.float64))


def _closed_loop(sent: np.ndarray, end: np.ndarray, cap: int) -> SteadyState:
    threshold = max(1, math.ceil(CONCURRENCY_FRACTION * cap))
    ok = ~np.isnan(sent)
    s = sent[ok]
    e = np.where(np.isnan(end[ok]), np.inf, end[ok])
    times = np.concatenate([s, e])
    delta = np.concatenate([np.ones(s.size, np.int64), -np.ones(e.size, np.int64)])
    order = np.lexsort((delta, times))  # at equal times an end comes before a start
    times, delta = times[order], delta[order]
    level = np.cumsum(delta)
    before = level - delta
    up = np.flatnonzero((before < threshold) & (level >= threshold))
    if up.size == 0:
        return SteadyState(
            False,
            MODE_CLOSED,
            threshold=float(threshold),
            warning=f"requests in flight never reached {threshold} "
            f"({CONCURRENCY_FRACTION:.0%} of --max-concurrency {cap})",
        )
    down = np.flatnonzero((before >= threshold) & (level < threshold))
    start = float(times[up[0]])
    stop = float(times[down[-1]]) if down.size else float(times[-1])
    if not math.isfinite(stop):
        stop = float(np.nanmax(np.concatenate([s, e[np.isfinite(e)]])))
    if stop <= start:
        return SteadyState(
            False, MODE_CLOSED, threshold=float(threshold), warning="the plateau has no length"
        )
    grid = np.linspace(start, stop, 200, endpoint=False) + (stop - start) / 400
    return _window(sent, end, start, stop, MODE_CLOSED, grid, threshold=float(threshold))


def _open_loop(
    intended: np.ndarray, sent: np.ndarray, end: np.ndarray, latency: np.ndarray
) -> SteadyState:
    due = intended[~np.isnan(intended) & ~np.isnan(sent)]  # a stopped run: what was sent
    a0, a1 = float(due.min()), float(due.max())
    if a1 <= a0:
        return SteadyState(False, MODE_OPEN, warning="every request was due at the same time")
    n_bins = int(np.clip(due.size // 5, MIN_BINS, MAX_BINS))
    edges = np.linspace(a0, a1, n_bins + 1)
    # Four samples per bin, averaged: the bin's in-flight level.
    sub = edges[:-1, None] + (np.arange(4)[None, :] + 0.5) / 4 * np.diff(edges)[:, None]
    level = in_flight_at(sent, end, sub.ravel()).reshape(sub.shape).mean(axis=1)
    mids = (edges[:-1] + edges[1:]) / 2
    plateau = float(np.median(level[n_bins // 2 :]))
    reached = np.flatnonzero(level >= RAMP_FRACTION * plateau)
    lat = latency[~np.isnan(latency)]
    settle = a0 + (float(np.median(lat)) if lat.size else 0.0)
    start = max(float(edges[reached[0]]) if reached.size else a1, settle)
    stop = a1
    if stop - start < 3 * (a1 - a0) / n_bins:
        return SteadyState(
            False,
            MODE_OPEN,
            level=plateau,
            warning=f"no plateau: the ramp (median latency {settle - a0:.3g} s) took the whole "
            f"arrival period ({a1 - a0:.3g} s)",
        )
    inside = (mids >= start) & (mids < stop)
    found = _window(sent, end, start, stop, MODE_OPEN, mids[inside])
    third = max(1, int(inside.sum()) // 3)
    lv = level[inside]
    first, last = float(lv[:third].mean()), float(lv[-third:].mean())
    growth = last - first
    ref = max(first, last, 1.0)
    tol = LEVEL_TOLERANCE * ref + 1.5 * math.sqrt(ref) + 0.5
    arrivals = int(((intended >= start) & (intended < stop)).sum())
    shortfall = arrivals - found.completions
    keep_up = max(0.1 * arrivals, 3.0 * math.sqrt(max(arrivals, 1)))
    warning = None
    if abs(growth) > tol:
        warning = (
            f"requests in flight {'grew' if growth > 0 else 'fell'} from {first:.1f} to "
            f"{last:.1f} over the candidate window: the load never held steady"
        )
    elif shortfall > keep_up:
        warning = (
            f"completions ({found.completions}) fell behind arrivals ({arrivals}) over the "
            "candidate window: the load never held steady"
        )
    if warning is not None:
        return SteadyState(False, MODE_OPEN, level=found.level, growth=growth, warning=warning)
    return SteadyState(
        True,
        MODE_OPEN,
        start_s=found.start_s,
        end_s=found.end_s,
        requests=found.requests,
        completions=found.completions,
        level=found.level,
        growth=growth,
    )


def _window(
    sent: np.ndarray,
    end: np.ndarray,
    start: float,
    stop: float,
    mode: str,
    grid: np.ndarray,
    threshold: float | None = None,
) -> SteadyState:
    with np.errstate(invalid="ignore"):
        requests = int(((sent >= start) & (sent < stop)).sum())
        completions = int(((end >= start) & (end < stop)).sum())
    level = float(in_flight_at(sent, end, grid).mean()) if grid.size else None
    return SteadyState(
        True,
        mode,
        start_s=start,
        end_s=stop,
        requests=requests,
        completions=completions,
        level=level,
        threshold=threshold,
    )


@dataclass(frozen=True)
class WindowMetrics:
    """Throughputs and latency statistics over the steady-state window."""

    duration_s: float
    completed: int  # successful requests that ended in the window
    request_throughput: float
    output_throughput: float  # output tokens that arrived in the window, per second
    stats: dict[str, Any]  # name -> Summary, over requests sent in the window


def window_metrics(
    state: SteadyState, req: Any, percentiles: list[float] | tuple[float, ...]
) -> WindowMetrics | None:
    """The run's metrics restricted to ``state``'s window (``req``: RequestMetrics)."""
    from dataclasses import replace

    from sonic.metrics.aggregate import _stats

    if not state.detected or state.start_s is None or state.end_s is None:
        return None
    a, b = state.start_s, state.end_s
    dur = max(b - a, 1e-9)
    sent = np.asarray(req.sent_s, dtype=np.float64)
    ends = sent + np.asarray(req.e2el_s, dtype=np.float64)
    ok = np.asarray(req.success, dtype=bool)
    with np.errstate(invalid="ignore"):
        completed = int((ok & (ends >= a) & (ends < b)).sum())
    out_tokens = req.chunks.tokens_between(ok, a, b)
    inside = replace(req, success=ok & state.sent_mask(sent))
    return WindowMetrics(
        duration_s=dur,
        completed=completed,
        request_throughput=completed / dur,
        output_throughput=out_tokens / dur,
        stats=_stats(inside, list(percentiles)),
    )
