"""Every metric of a run, defined once, as pure functions of the raw records (RunRecords).

``compute_metrics(records, MetricRules.for_compat("vllm"), prompt_lens, count_tokens)``
gives a BenchmarkMetrics; the result writers and the console only select and rename.
"""

from __future__ import annotations

from sonic.metrics.aggregate import BenchmarkMetrics, SkipRules, TokenDiscrepancy, compute_metrics
from sonic.metrics.requests import RequestMetrics, TokenCounter, compute_request_metrics
from sonic.metrics.rules import (
    PERCENTILE_METRICS,
    MetricRules,
    parse_goodput,
    parse_metric_percentiles,
    parse_percentile_metrics,
)
from sonic.metrics.stats import Summary, percentile_word, summarize
from sonic.metrics.tokens import token_counter

__all__ = [
    "SkipRules",
    "PERCENTILE_METRICS",
    "BenchmarkMetrics",
    "MetricRules",
    "RequestMetrics",
    "Summary",
    "TokenCounter",
    "TokenDiscrepancy",
    "compute_metrics",
    "compute_request_metrics",
    "parse_goodput",
    "parse_metric_percentiles",
    "parse_percentile_metrics",
    "percentile_word",
    "summarize",
    "token_counter",
]
