"""The end-of-run console summary, with the exact banners and labels of vLLM `bench serve`
and MAX benchmark_serving.py so that existing log scrapers keep working, followed by a short
sonic section (dispatch lag, latency from the intended send, token-count discrepancy)."""

from __future__ import annotations

import math
import sys
from typing import TextIO

from sonic.metrics import BenchmarkMetrics, Summary, percentile_word
from sonic.results.dialects import vllm_stat_metrics
from sonic.results.info import RunInfo
from sonic.results.policy import check_dialect, run_outcome

WIDTH = 50
BANNER = "{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=WIDTH, c="=")
SIMULATED_LABEL = "[SIMULATED ENGINE]"
MAX_ERRORS_SHOWN = 10

# metric -> (short name, section header), vLLM's wording
_VLLM_SECTIONS = {
    "ttft": ("TTFT", "Time to First Token"),
    "tpot": ("TPOT", "Time per Output Token (excl. 1st token)"),
    "itl": ("ITL", "Inter-token Latency"),
    "e2el": ("E2EL", "End-to-end Latency"),
    "client_queue_time": ("Client Queue Time", "Client-side Queueing"),
    "e2el_including_client_queue": (
        "E2EL incl. Client Queue",
        "Queue-inclusive End-to-end Latency",
    ),
}
_MAX_SECTIONS = (
    ("ttft", "TTFT", "Time to First Token"),
    ("tpot", "TPOT", "Time per Output Token (excl. 1st token)"),
    ("itl", "ITL", "Inter-token Latency"),
    ("e2el", "Request Latency", "Per-Request E2E Latency"),
)


def _section(title: str) -> str:
    return "{s:{c}^{n}}".format(s=title, n=WIDTH, c="-")


def _int(label: str, value: object) -> str:
    return f"{label:<40} {value:<10}"


def _flt(label: str, value: float | None, empty: float = math.nan) -> str:
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


def format_vllm(metrics: BenchmarkMetrics, info: RunInfo) -> list[str]:
    m = metrics
    out = [BANNER, _int("Successful requests:", m.completed), _int("Failed requests:", m.failed)]
    if info.max_concurrency is not None:
        out.append(_int("Maximum request concurrency:", info.max_concurrency))
    if not math.isinf(info.request_rate):
        out.append(_flt("Request rate configured (RPS):", info.request_rate))
    out += [
        _flt("Benchmark duration (s):", m.duration_s),
        _int("Total input tokens:", m.total_input_tokens),
        _int("Total generated tokens:", m.total_output_tokens),
        _flt("Request throughput (req/s):", m.request_throughput),
    ]
    if m.goodput_slos_ms:
        out.append(_flt("Request goodput (req/s):", m.request_goodput))
    out += [
        _flt("Output token throughput (tok/s):", m.output_throughput),
        _flt("Peak output token throughput (tok/s):", m.max_output_tokens_per_s),
        _flt("Peak concurrent requests:", m.max_concurrent_requests),
        _flt("Total token throughput (tok/s):", m.total_token_throughput),
    ]
    for name in vllm_stat_metrics(info):
        short, header = _VLLM_SECTIONS[name]
        s = m.stats[name].scaled(1000.0)
        out.append(_section(header))
        out.append(_flt(f"Mean {short} (ms):", s.mean, 0.0))
        out.append(_flt(f"Median {short} (ms):", s.median, 0.0))
        for p in info.metric_percentiles:
            out.append(_flt(f"P{percentile_word(p)} {short} (ms):", s.p(p), 0.0))
    out.append("=" * WIDTH)
    return out


def format_max(metrics: BenchmarkMetrics, info: RunInfo) -> list[str]:
    m = metrics
    out = [
        BANNER,
        _int("Successful requests:", m.completed),
        _int("Failed requests:", m.failed),
        _flt("Benchmark duration (s):", m.duration_s),
        _int("Total input tokens:", m.total_input_tokens),
        _int("Total generated tokens:", m.total_output_tokens),
        _int("Total nonempty serving response chunks:", m.nonempty_chunks),
        _flt("Request throughput (req/s):", m.request_throughput),
        _flt("Input token throughput (tok/s):", m.input_throughput),
        _flt("Output token throughput (tok/s):", m.output_throughput),
    ]
    for name, short, header in _MAX_SECTIONS:
        s = m.stats[name].scaled(1000.0)
        out.append(_section(header))
        out.append(_flt(f"Mean {short} (ms):", s.mean))
        out.append(_flt(f"Median {short} (ms):", s.median))
        out.append(_flt(f"P99 {short} (ms):", s.p(99.0)))
    out += [
        _section("Token Stats"),
        _int("Max input tokens:", m.max_input_tokens),
        _int("Max output tokens:", m.max_output_tokens),
        _int("Max total tokens:", m.max_total_tokens),
    ]
    if info.peak_gpu_memory_mib or info.available_gpu_memory_mib or info.gpu_utilization:
        out += [
            _section("GPU Stats"),
            _flt("GPU Utilization (%):", info.gpu_utilization),
            _flt("Peak GPU Memory Used (MiB):", info.peak_gpu_memory_mib),
            _flt("GPU Memory Available (MiB):", info.available_gpu_memory_mib),
        ]
    out.append("=" * WIDTH)
    return out


def _p(s: Summary, q: float) -> float | None:
    return s.scaled(1000.0).p(q)


def format_sonic(metrics: BenchmarkMetrics, info: RunInfo, dialect: str = "vllm") -> list[str]:
    """sonic's own short section: what the client itself cost and how tokens were counted."""
    m = metrics
    t = m.tokens
    title = "sonic-bench" + (f" {SIMULATED_LABEL}" if info.simulated else "")
    out = [
        _section(f" {title} "),
        _flt("Dispatch lag P99 (ms):", _p(m.stats["dispatch_lag"], 99.0)),
        _flt("Dispatch lag max (ms):", m.stats["dispatch_lag"].scaled(1000.0).max),
        _flt("Mean TTFT from intended send (ms):", m.stats["ttft_intended"].scaled(1000).mean),
        _flt("P99 TTFT from intended send (ms):", _p(m.stats["ttft_intended"], 99.0)),
        _flt(
            "P99 E2EL from intended send (ms):",
            _p(m.stats["e2el_including_client_queue"], 99.0),
        ),
        _int("Token count mode:", m.rules.token_count),
    ]
    if t.compared:
        rel = 100.0 * t.relative_diff if t.relative_diff is not None else None
        out.append(_flt("Output tokens re-tok vs usage (%):", rel))
        out.append(_int("Output token count max |diff|:", t.max_abs_diff))
    else:
        out.append(_int("Output tokens re-tok vs usage (%):", "n/a"))
    if t.requests_without_usage:
        out.append(_int("Responses without server usage:", t.requests_without_usage))
    outcome = run_outcome(dialect, m, info.num_prompts)
    if outcome.partial:
        out.append("Partial results: " + "; ".join(outcome.reasons))
    out.append("=" * WIDTH)
    return out


def format_summary(dialect: str, metrics: BenchmarkMetrics, info: RunInfo) -> str:
    """The whole end-of-run summary in ``dialect``'s format, then the sonic section."""
    lines: list[str] = []
    if info.simulated:
        lines.append(f"{SIMULATED_LABEL} results from `sonic sim`, not a real serving engine")
    errors = format_errors(metrics)
    if errors:
        lines.append(errors)
    if check_dialect(dialect) == "vllm":
        lines += format_vllm(metrics, info)
    else:
        lines += format_max(metrics, info)
    lines += format_sonic(metrics, info, dialect)
    return "\n".join(lines)


def print_summary(
    dialect: str, metrics: BenchmarkMetrics, info: RunInfo, file: TextIO | None = None
) -> None:
    print(format_summary(dialect, metrics, info), file=file or sys.stdout)
