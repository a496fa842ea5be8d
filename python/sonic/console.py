"""The end-of-run console summary: the dialect's own block (the exact banners and labels of the
tool, so that existing log scrapers keep working; ``Dialect.console_lines``) followed by a
short sonic section (dispatch lag, latency from the intended send, token-count discrepancy).
The line helpers here are shared by the dialects."""

from __future__ import annotations

import math
import sys
from typing import Any, TextIO

from sonic.metrics import BenchmarkMetrics, Summary
from sonic.results.info import RunInfo

WIDTH = 50
BANNER = "{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=WIDTH, c="=")
SIMULATED_LABEL = "[SIMULATED ENGINE]"
MAX_ERRORS_SHOWN = 10


def section(title: str) -> str:
    return "{s:{c}^{n}}".format(s=title, n=WIDTH, c="-")


def integer(label: str, value: object) -> str:
    return f"{label:<40} {value:<10}"


def flt(label: str, value: float | None, empty: float = math.nan) -> str:
    v = empty if value is None else value
    return f"{label:<40} {v:<10.2f}"


def format_errors(metrics: BenchmarkMetrics, limit: int = MAX_ERRORS_SHOWN) -> str:
    """The first ``limit`` errors of failed requests (empty string when none failed)."""
    errs = metrics.errors(limit)
    if not errs:
        return ""
    lines = [f"Failed requests during benchmark run detected (capping to {limit}):"]
    lines += [f"Error {k}: request {i}: {e}" for k, (i, e) in enumerate(errs)]
    return "\n".join(lines)


def _p(s: Summary, q: float) -> float | None:
    return s.scaled(1000.0).p(q)


def format_sonic(metrics: BenchmarkMetrics, info: RunInfo, dialect: Any = "vllm") -> list[str]:
    """sonic's own short section: what the client itself cost and how tokens were counted."""
    m = metrics
    t = m.tokens
    title = "sonic-bench" + (f" {SIMULATED_LABEL}" if info.simulated else "")
    out = [
        section(f" {title} "),
        flt("Dispatch lag P99 (ms):", _p(m.stats["dispatch_lag"], 99.0)),
        flt("Dispatch lag max (ms):", m.stats["dispatch_lag"].scaled(1000.0).max),
        flt("Mean TTFT from intended send (ms):", m.stats["ttft_intended"].scaled(1000).mean),
        flt("P99 TTFT from intended send (ms):", _p(m.stats["ttft_intended"], 99.0)),
        flt(
            "P99 E2EL from intended send (ms):",
            _p(m.stats["e2el_including_client_queue"], 99.0),
        ),
        integer("Token count mode:", m.rules.token_count),
    ]
    if t.compared:
        rel = 100.0 * t.relative_diff if t.relative_diff is not None else None
        out.append(flt("Output tokens re-tok vs usage (%):", rel))
        out.append(integer("Output token count max |diff|:", t.max_abs_diff))
        out.append(integer("Answers compared (re-tok vs usage):", t.compared))
    else:
        out.append(integer("Output tokens re-tok vs usage (%):", "n/a"))
    if t.requests_without_usage:
        out.append(integer("Responses without server usage:", t.requests_without_usage))
    from sonic import dialects

    outcome = dialects.get(dialect).outcome(m, info.expected_requests or info.num_prompts)
    if outcome.partial:
        out.append("Partial results: " + "; ".join(outcome.reasons))
    out.append("=" * WIDTH)
    return out


def format_summary(dialect: Any, metrics: BenchmarkMetrics, info: RunInfo) -> str:
    """The whole end-of-run summary in ``dialect``'s format, then the sonic section."""
    lines: list[str] = []
    if info.simulated:
        lines.append(f"{SIMULATED_LABEL} results from `sonic sim`, not a real serving engine")
    errors = format_errors(metrics)
    if errors:
        lines.append(errors)
    from sonic import dialects

    d = dialects.get(dialect)
    lines += d.console_lines(metrics, info)
    lines += format_sonic(metrics, info, d)
    return "\n".join(lines)


def print_summary(
    dialect: Any, metrics: BenchmarkMetrics, info: RunInfo, file: TextIO | None = None
) -> None:
    print(format_summary(dialect, metrics, info), file=file or sys.stdout)


def format_validity(validity: Any) -> list[str]:
    """The run's validity verdict (``sonic.metrics.validity``) and the steady-state window,
    after the summary: one line per reason, then the window's figures."""
    f = validity.figures
    out = [section(" Run validity "), integer("Verdict:", validity.verdict.upper())]
    out += [f"[{r.severity}] {r.code}: {r.message}" for r in validity.reasons]
    if f.offered_rate is not None and f.achieved_rate is not None:
        out.append(flt("Offered rate in window (req/s):", f.window_offered_rate))
        out.append(flt("Achieved rate in window (req/s):", f.achieved_rate))
    if f.client_lag_p99_ms is not None:
        out.append(flt(f"Client lag P99 vs {f.client_lag_kind} (ms):", f.client_lag_p99_ms))
    s = validity.steady_state
    if s.detected:
        out.append(integer("Steady-state window (s):", f"{s.start_s:.2f}-{s.end_s:.2f} ({s.mode})"))
        out.append(integer("Requests sent in window:", s.requests))
    else:
        out.append(integer("Steady-state window:", "none"))
    out.append(integer("Warm-up requests (untimed):", f.warmup_requests))
    out.append("=" * WIDTH)
    return out


def print_validity(validity: Any, file: TextIO | None = None) -> None:
    print("\n".join(format_validity(validity)), file=file or sys.stdout)
