"""Is this run valid? A verdict on every run, with typed reasons and the figures behind them.

A benchmark number means what its label says only when the run delivered the load it names,
the client kept its schedule, the engine was not drowning, and each percentile rests on enough
requests. Each check below gives a ``Reason`` (a stable code, a severity, one line); the
verdict is ``invalid`` when a reason invalidates the whole run, ``warn`` when some reason holds
(including one that invalidates only some statistics, e.g. a p99 from 12 requests), else
``valid``. Reports never call a difference significant on an invalid run or statistic.

Checks (thresholds are module constants, stated in the messages):

- ``rate_not_reached``: over the steady-state window (the arrival period when none was found),
  completions fell short of the arrivals the schedule offered by more than ``RATE_TOLERANCE``
  (widened to 3 sigma of Poisson counting noise on short runs). n/a at rate inf or under a ramp.
- ``client_behind_schedule``: the client's own dispatch lag (sent minus the moment it could
  send: the intended time, or under ``--max-concurrency`` the later of that and the moment a
  slot freed) has a p99 above ``LAG_OK_MS`` (warn) or above 10 % of the median TTFT as well
  (invalid: latencies carry client delay). ``client_cpu_saturated``: the benchmark process
  used nearly every core during the run.
- ``over_saturated``: at a finite rate, the backlog (requests due but not finished) kept
  growing to the end of the arrivals while latency from the intended send rose: the engine
  took work more slowly than it arrived, so every statistic depends on the run's length.
  Also when ``--stop-over-saturated`` stopped the run.
- ``too_few_samples``: a reported percentile p needs n >= 1/(1 - p) requests (p99: 100); the
  statistics below that are invalid (scoped to them, the run itself is ``warn``).
- ``no_steady_state`` (warn): no stationary window was found; only whole-run metrics exist.
- ``no_warmup`` (warn): no untimed request preceded the run. Warm-up requests are always sent
  before t0 and never timed: they are excluded by construction.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sonic.metrics.lag import LAG_OK_MS
from sonic.metrics.stats import percentile_word
from sonic.metrics.steady import NS, SteadyState, in_flight_at

VALID, WARN, INVALID = "valid", "warn", "invalid"
RATE_NOT_REACHED = "rate_not_reached"
CLIENT_BEHIND = "client_behind_schedule"
CLIENT_CPU = "client_cpu_saturated"
OVER_SATURATED = "over_saturated"
TOO_FEW_SAMPLES = "too_few_samples"
NO_STEADY_STATE = "no_steady_state"
NO_WARMUP = "no_warmup"

RATE_TOLERANCE = 0.10
LAG_TTFT_FRACTION = 0.10  # client lag p99 above this share of the median TTFT: invalid
CPU_BUSY_FRACTION = 0.90  # of all cores
SATURATION_WAIT_GROWTH = 1.5  # oldest wait, last third of the arrivals vs the middle third
SATURATION_GRID = 30
SATURATION_MIN_REQUESTS = 20
PERCENTILE_METRICS = ("ttft", "tpot", "itl", "e2el")
# Percentiles the report compares (catalogue.LATENCY_STATS); sonic's p99.9 is informative only.
REPORTED_PERCENTILES = (90.0, 95.0, 99.0)


@dataclass(frozen=True)
class Reason:
    """One finding. ``affects``: the metric columns it invalidates (empty: the whole run)."""

    code: str
    severity: str  # INVALID | WARN
    message: str
    affects: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "affects": list(self.affects),
        }


@dataclass(frozen=True)
class Figures:
    """The measured quantities the checks used (None: not applicable / not measured)."""

    offered_rate: float | None = None  # the nominal --request-rate (None: inf)
    rate_tolerance: float = RATE_TOLERANCE
    window_offered_rate: float | None = None  # arrivals the schedule offered per s
    achieved_rate: float | None = None  # completions per s, same interval
    dispatch_rate: float | None = None  # sends per s, same interval
    rate_interval: str | None = None  # "steady_state" | "arrivals"
    client_lag_kind: str | None = None  # "intended" | "slot" (sent minus slot freed)
    client_lag_p50_ms: float | None = None
    client_lag_p99_ms: float | None = None
    client_lag_bound_ms: float = LAG_OK_MS
    client_cpu_percent: float | None = None  # 100 = one core busy for the whole run
    cpu_count: int | None = None
    backlog_growth: int | None = None  # requests due but unfinished: end minus 2/3 of arrivals
    oldest_wait_mid_s: float | None = None  # oldest unserved request's wait, middle third
    oldest_wait_late_s: float | None = None  # same, last third of the arrivals
    engine_waiting_start: float | None = None  # scraped waiting queue, first / last third
    engine_waiting_end: float | None = None
    samples: dict[str, int] = field(default_factory=dict)  # metric -> requests measured
    percentiles: tuple[float, ...] = ()
    warmup_requests: int = 0  # untimed, sent before t0
    stopped_early: str | None = None


@dataclass(frozen=True)
class Validity:
    verdict: str
    reasons: tuple[Reason, ...]
    figures: Figures
    steady_state: SteadyState

    @property
    def valid(self) -> bool:
        return self.verdict != INVALID

    def valid_for(self, column: str) -> bool:
        """Whether statistic ``column`` (e.g. ``p99_ttft_ms``) may be compared."""
        return self.valid and not any(column in r.affects for r in self.reasons)

    def invalid_columns(self) -> list[str]:
        return sorted({c for r in self.reasons if r.severity == INVALID for c in r.affects})

    def summary(self) -> str:
        """``valid`` / ``invalid: over_saturated, too_few_samples``."""
        codes = list(dict.fromkeys(r.code for r in self.reasons))
        return self.verdict + (f": {', '.join(codes)}" if codes else "")

    def to_dict(self) -> dict[str, Any]:
        figures = {
            k: (None if isinstance(x, float) and not math.isfinite(x) else x)
            for k, x in asdict(self.figures).items()
        }
        figures["percentiles"] = list(self.figures.percentiles)
        return {
            "verdict": self.verdict,
            "reasons": [r.to_dict() for r in self.reasons],
            "invalid_metrics": self.invalid_columns(),
            "figures": figures,
            "warmup_excluded": True,
            "warmup_note": "warm-up requests are sent before t0 and never timed",
        }

    def console_lines(self) -> list[str]:
        lines = [f"Run validity: {self.verdict.upper()}"]
        lines += [f"  [{r.severity}] {r.code}: {r.message}" for r in self.reasons]
        return lines


def from_dict(doc: Any) -> tuple[str, list[Reason]] | None:
    """(verdict, reasons) from a result's ``sonic.validity`` (None when absent)."""
    if not isinstance(doc, dict) or doc.get("verdict") not in (VALID, WARN, INVALID):
        return None
    reasons = []
    for r in doc.get("reasons") or []:
        if isinstance(r, dict) and isinstance(r.get("code"), str):
            reasons.append(
                Reason(
                    r["code"],
                    str(r.get("severity", WARN)),
                    str(r.get("message", "")),
                    tuple(str(c) for c in r.get("affects") or ()),
                )
            )
    return str(doc["verdict"]), reasons


# ------------------------------------------------------------------ the checks


def _s(ns: Any) -> np.ndarray:
    a = np.asarray(ns, dtype=np.int64)
    return np.where(a >= 0, a / NS, np.nan)


def client_lag_s(records: Any, max_concurrency: int | None) -> tuple[np.ndarray, str]:
    """The client's own delay per sent request, and which yardstick it used.

    Without a cap: sent minus intended. Under ``--max-concurrency`` a request may not go
    before a slot is free, so its yardstick is the later of its intended time and the last
    moment the in-flight count fell below the cap: waiting for a slot is the engine's time,
    not the client's."""
    intended, sent, end = _s(records.intended_ns), _s(records.sent_ns), _s(records.end_ns)
    ok = ~np.isnan(sent)
    if max_concurrency is None:
        return sent[ok] - intended[ok], "intended"
    idx = np.flatnonzero(ok)
    e = np.where(np.isnan(end[idx]), np.inf, end[idx])
    times = np.concatenate([sent[idx], e])
    kind = np.concatenate([np.ones(idx.size, np.int64), -np.ones(idx.size, np.int64)])
    who = np.concatenate([idx, idx])
    order = np.lexsort((kind, times))  # ends before sends at the same instant
    level, free_since = 0, 0.0
    lag = np.empty(idx.size)
    pos = {int(i): k for k, i in enumerate(idx)}
    for t, d, i in zip(times[order], kind[order], who[order]):
        if d < 0:
            if level == max_concurrency:
                free_since = float(t)
            level -= 1
        else:
            lag[pos[int(i)]] = float(t) - max(float(intended[i]), free_since)
            level += 1
    return lag, "slot"


def _rate_check(
    records: Any, state: SteadyState, rate: float, ramp: bool
) -> tuple[Reason | None, dict[str, Any]]:
    if math.isinf(rate) or ramp:
        return None, {}
    intended, sent, end = _s(records.intended_ns), _s(records.sent_ns), _s(records.end_ns)
    ok = np.array([e is None for e in records.error], dtype=bool)
    if state.detected and state.start_s is not None and state.end_s is not None:
        a, b, where = state.start_s, state.end_s, "steady_state"
    else:
        due = intended[~np.isnan(intended) & ~np.isnan(sent)]
        if due.size < 2:
            return None, {}
        a, b, where = float(due.min()), float(due.max()), "arrivals"
    if b <= a:
        return None, {}
    with np.errstate(invalid="ignore"):
        arrivals = int(((intended >= a) & (intended < b)).sum())
        sends = int(((sent >= a) & (sent < b)).sum())
        done = int((ok & (end >= a) & (end < b)).sum())
    dur = b - a
    figures = {
        "window_offered_rate": arrivals / dur,
        "achieved_rate": done / dur,
        "dispatch_rate": sends / dur,
        "rate_interval": where,
    }
    if arrivals == 0:
        return None, figures
    tol = max(RATE_TOLERANCE, 3.0 / math.sqrt(arrivals))
    worst = min(done, sends)
    if worst >= (1.0 - tol) * arrivals:
        return None, figures
    which = "dispatched" if sends < done else "completed"
    return (
        Reason(
            RATE_NOT_REACHED,
            INVALID,
            f"{which} {worst / dur:.3g} req/s against {arrivals / dur:.3g} req/s offered over "
            f"the {where.replace('_', '-')} interval ({worst / arrivals:.0%}; tolerance "
            f"{tol:.0%}): the run did not carry the load it is labelled with",
        ),
        figures,
    )


def _lag_check(
    records: Any, rate: float, max_concurrency: int | None, ttft_median_s: float | None
) -> tuple[Reason | None, dict[str, Any]]:
    if math.isinf(rate) and max_concurrency is None:
        return None, {}  # every request due at t0: the burst is the test, not client delay
    lag, kind = client_lag_s(records, max_concurrency)
    if lag.size == 0:
        return None, {}
    p50, p99 = (float(x) * 1000.0 for x in np.percentile(lag, [50, 99]))
    figures = {"client_lag_kind": kind, "client_lag_p50_ms": p50, "client_lag_p99_ms": p99}
    if p99 <= LAG_OK_MS:
        return None, figures
    bound = LAG_OK_MS
    severity = WARN
    if ttft_median_s is not None and p99 > max(LAG_OK_MS, LAG_TTFT_FRACTION * ttft_median_s * 1e3):
        severity = INVALID
        bound = max(LAG_OK_MS, LAG_TTFT_FRACTION * ttft_median_s * 1e3)
    what = "its schedule" if kind == "intended" else "the free concurrency slots"
    return (
        Reason(
            CLIENT_BEHIND,
            severity,
            f"client dispatch lag p99 {p99:.1f} ms (p50 {p50:.2f} ms) behind {what}, above "
            f"{bound:.1f} ms: the client could not keep up on this machine"
            + ("; latencies include client delay" if severity == INVALID else ""),
        ),
        figures,
    )


def oldest_wait_s(intended_s: np.ndarray, served_s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """At each time in ``t``, how long the oldest request that was due but not yet served
    (no first token) had waited; 0 when none was waiting. Unserved requests never stop
    waiting, so a deadline that cuts them off does not hide the queue."""
    due = np.asarray(intended_s, dtype=np.float64)
    served = np.where(np.isnan(served_s), np.inf, served_s)
    out = np.zeros(len(t))
    for k, now in enumerate(t):
        waiting = (due <= now) & (served > now)
        out[k] = now - float(due[waiting].min()) if waiting.any() else 0.0
    return out


def _saturation_check(
    records: Any,
    rate: float,
    ramp: bool,
    served_s: np.ndarray,
    waiting: tuple[float, float] | None,
) -> tuple[Reason | None, dict[str, Any]]:
    if math.isinf(rate) or ramp:
        return None, {}
    intended, end = _s(records.intended_ns), _s(records.end_ns)
    sent = _s(records.sent_ns)
    due = intended[~np.isnan(intended) & ~np.isnan(sent)]  # a stopped run: what was sent
    if due.size < SATURATION_MIN_REQUESTS:
        return None, {}
    a0, a1 = float(due.min()), float(due.max())
    if a1 <= a0:
        return None, {}
    grid = np.linspace(a0, a1, SATURATION_GRID + 1)[1:]
    age = oldest_wait_s(intended, served_s, grid)
    third = SATURATION_GRID // 3
    mid = float(age[third : 2 * third].mean())
    late = float(age[2 * third :].mean())
    t_mid = a0 + 2.0 * (a1 - a0) / 3.0

    def backlog(t: float) -> int:
        return int((intended <= t).sum()) - int((end <= t).sum())

    growth = backlog(a1) - backlog(t_mid)
    arrivals = int(((intended > t_mid) & (intended <= a1)).sum())
    figures: dict[str, Any] = {
        "backlog_growth": growth,
        "oldest_wait_mid_s": mid,
        "oldest_wait_late_s": late,
    }
    if waiting is not None:
        figures["engine_waiting_start"], figures["engine_waiting_end"] = waiting
    grew = growth > max(0.1 * arrivals, 3.0 * math.sqrt(max(arrivals, 1)), 2.0)
    slower = late > SATURATION_WAIT_GROWTH * mid and late - mid > 0.01
    if not (grew and slower):
        return None, figures
    in_flight = int(in_flight_at(sent, end, np.array([a1]))[0])
    queue = (
        f"; the engine's waiting queue went from {waiting[0]:.1f} to {waiting[1]:.1f}"
        if waiting is not None
        else ""
    )
    return (
        Reason(
            OVER_SATURATED,
            INVALID,
            f"the backlog grew by {growth} requests over the last third of "
            f"the arrivals ({in_flight} in flight at the last arrival) and the oldest waiting "
            f"request's wait rose from {mid:.3g} s to {late:.3g} s (mean over the middle and "
            f"last thirds){queue}: the engine could not keep up with the offered rate, so "
            "every statistic depends on the run's length",
        ),
        figures,
    )


def _sample_check(samples: dict[str, int], percentiles: tuple[float, ...]) -> list[Reason]:
    out = []
    for p in sorted(set(percentiles)):
        if p <= 50.0 or p >= 100.0:
            continue
        need = math.ceil(1.0 / (1.0 - p / 100.0) - 1e-9)
        short = {m: n for m, n in samples.items() if 0 < n < need}  # 0: nothing reported
        if not short:
            continue
        word = percentile_word(p)
        names = ", ".join(f"{m.upper()} ({n})" for m, n in short.items())
        out.append(
            Reason(
                TOO_FEW_SAMPLES,
                INVALID,
                f"p{word} needs at least {need} requests; measured: {names}",
                tuple(f"p{word}_{m}_ms" for m in short),
            )
        )
    return out


def assess(
    records: Any,
    metrics: Any,
    state: SteadyState,
    *,
    rate: float,
    max_concurrency: int | None,
    ramp: bool = False,
    percentile_metrics: tuple[str, ...] = PERCENTILE_METRICS,
    percentiles: tuple[float, ...] = (99.0,),
    warmup_requests: int = 0,
    client_cpu_percent: float | None = None,
    cpu_count: int | None = None,
    engine_waiting: tuple[float, float] | None = None,
    stopped_early: str | None = None,
) -> Validity:
    """The verdict on one run (``metrics``: its BenchmarkMetrics; ``state``: its window)."""
    reasons: list[Reason] = []
    fig: dict[str, Any] = {
        "offered_rate": None if math.isinf(rate) else float(rate),
        "percentiles": tuple(float(p) for p in percentiles),
        "warmup_requests": int(warmup_requests),
        "client_cpu_percent": client_cpu_percent,
        "cpu_count": cpu_count,
        "stopped_early": stopped_early,
    }
    ttft = metrics.stats["ttft"]
    ttft_median = ttft.median if ttft.n else metrics.stats["e2el"].median

    r, f = _rate_check(records, state, rate, ramp)
    fig.update(f)
    reasons += [r] if r else []
    r, f = _lag_check(records, rate, max_concurrency, ttft_median)
    fig.update(f)
    reasons += [r] if r else []
    if client_cpu_percent is not None and cpu_count:
        if client_cpu_percent >= CPU_BUSY_FRACTION * 100.0 * cpu_count:
            reasons.append(
                Reason(
                    CLIENT_CPU,
                    WARN,
                    f"the benchmark process used {client_cpu_percent:.0f} % CPU over the run "
                    f"({cpu_count} cores here): the client may have been CPU-bound",
                )
            )
    r, f = _saturation_check(records, rate, ramp, served_s(records, metrics), engine_waiting)
    fig.update(f)
    if stopped_early and r is None:
        r = Reason(OVER_SATURATED, INVALID, stopped_early)
    elif stopped_early and r is not None:
        r = Reason(OVER_SATURATED, INVALID, f"{stopped_early}; {r.message}")
    reasons += [r] if r else []
    samples = _samples(metrics, percentile_metrics)
    fig["samples"] = samples
    reasons += _sample_check(samples, fig["percentiles"])
    if not state.detected and not ramp and not (math.isinf(rate) and max_concurrency is None):
        reasons.append(
            Reason(
                NO_STEADY_STATE,
                WARN,
                f"no steady-state window: {state.warning or 'not found'}; only whole-run "
                "metrics are reported",
            )
        )
    if warmup_requests == 0:
        reasons.append(
            Reason(
                NO_WARMUP,
                WARN,
                "no untimed warm-up request preceded the run (--num-warmups 0, no test "
                "prompt): the first requests may carry cold-start costs",
            )
        )
    whole = [x for x in reasons if x.severity == INVALID and not x.affects]
    verdict = INVALID if whole else WARN if reasons else VALID
    return Validity(verdict, tuple(reasons), Figures(**fig), state)


def served_s(records: Any, metrics: Any) -> np.ndarray:
    """When each request was served (seconds from t0): its first token, else its end when it
    succeeded, else NaN (still waiting, or given up)."""
    req = metrics.requests
    intended = _s(records.intended_ns)
    first = intended + np.asarray(req.ttft_intended_s, dtype=np.float64)
    ended = np.where(np.asarray(req.success, dtype=bool), _s(records.end_ns), np.nan)
    return np.where(np.isnan(first), ended, first)


def _samples(metrics: Any, names: tuple[str, ...]) -> dict[str, int]:
    """Requests behind each percentile metric (ITL: requests with a gap, as its gaps are
    correlated within a request)."""
    out = {}
    req = metrics.requests
    for name in names:
        if name == "itl":
            gaps = np.asarray(req.chunks.itl_counts)
            measured = metrics.measured if metrics.measured.size == gaps.size else req.success
            out[name] = int((np.asarray(measured, dtype=bool) & (gaps > 0)).sum())
        elif name in metrics.stats:
            out[name] = int(metrics.stats[name].n)
    return out


# ------------------------------------------------------------------ one run, from its args


def engine_waiting(telemetry: Any, records: Any) -> tuple[float, float] | None:
    """The engine's scraped waiting queue (``num_requests_waiting``), mean over the first and
    the last third of the arrivals; None without at least three scrapes inside them."""
    ep = getattr(telemetry, "primary", None)
    if ep is None:
        return None
    intended = _s(records.intended_ns)
    if np.isnan(intended).all():
        return None
    a0, a1 = float(np.nanmin(intended)), float(np.nanmax(intended))
    pts = [
        ((s.t_ns - int(records.t0_mono_ns)) / NS, float(s.values["waiting"]))
        for s in ep.scrapes
        if s.ok and "waiting" in s.values and math.isfinite(s.values["waiting"])
    ]
    pts = [(t, v) for t, v in pts if a0 <= t <= a1]
    if len(pts) < 3 or a1 <= a0:
        return None
    span = (a1 - a0) / 3.0
    first = [v for t, v in pts if t <= a0 + span] or [pts[0][1]]
    last = [v for t, v in pts if t >= a1 - span] or [pts[-1][1]]
    return float(np.mean(first)), float(np.mean(last))


def assess_run(
    args: Any,
    records: Any,
    metrics: Any,
    *,
    telemetry: Any = None,
    client_cpu_percent: float | None = None,
    stopped_early: str | None = None,
) -> Validity:
    """``assess`` for a ``sonic run`` point (``args``: its RunArgs), steady state included."""
    import os

    from sonic.benchmark import warm_connections
    from sonic.metrics import steady

    tr, m = args.traffic, args.metrics
    ramp = bool(tr.ramp_up_strategy)
    state = steady.detect(
        records,
        rate=tr.request_rate,
        max_concurrency=tr.max_concurrency,
        ramp=ramp,
        latency_s=metrics.requests.e2el_s,
    )
    return assess(
        records,
        metrics,
        state,
        rate=tr.request_rate,
        max_concurrency=tr.max_concurrency,
        ramp=ramp,
        # Every latency's p90/p95/p99 is reported somewhere (the sonic section, the report's
        # tables), whatever the dialect prints; plus the dialect's own percentiles.
        percentile_metrics=PERCENTILE_METRICS,
        percentiles=tuple(sorted(set(m.metric_percentiles) | set(REPORTED_PERCENTILES))),
        warmup_requests=warm_connections(args),
        client_cpu_percent=client_cpu_percent,
        cpu_count=os.cpu_count(),
        engine_waiting=None if telemetry is None else engine_waiting(telemetry, records),
        stopped_early=stopped_early,
    )


def steady_section(validity: Validity, metrics: Any) -> dict[str, Any]:
    """``sonic.steady_state``: the window and the run's metrics over it (ms, req/s, tok/s)."""
    from sonic.metrics import catalogue
    from sonic.metrics.steady import window_metrics
    from sonic.results.document import stats_ms

    state = validity.steady_state
    out: dict[str, Any] = {"window": state.to_dict(), "metrics": None}
    w = window_metrics(state, metrics.requests, metrics.percentiles or [99.0])
    if w is not None:
        out["metrics"] = {
            "duration_s": w.duration_s,
            "completed": w.completed,
            "request_throughput": w.request_throughput,
            "output_throughput": w.output_throughput,
            "latency_ms": {x.name: stats_ms(w.stats[x.name]) for x in catalogue.LATENCIES},
        }
    return out
