"""Every metric of a run, defined once, as pure functions of the raw records (RunRecords).

``compute_metrics(records, dialect.metric_rules, prompt_lens, count_tokens)`` gives a
BenchmarkMetrics; the dialects' result writers and console only select and rename. The names
below load their module on first use, so that the rules and the catalogue (stdlib only) can be
imported by `sonic run --help` without numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "BenchmarkMetrics": "aggregate",
    "SkipRules": "aggregate",
    "TokenDiscrepancy": "aggregate",
    "compute_metrics": "aggregate",
    "RequestMetrics": "requests",
    "TokenCounter": "requests",
    "compute_request_metrics": "requests",
    "PERCENTILE_METRICS": "rules",
    "Retokenize": "retok",
    "MetricRules": "rules",
    "parse_goodput": "rules",
    "parse_metric_percentiles": "rules",
    "parse_percentile_metrics": "rules",
    "Summary": "stats",
    "percentile_word": "stats",
    "summarize": "stats",
    "token_counter": "tokens",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'sonic.metrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"sonic.metrics.{module}"), name)
    globals()[name] = value
    return value
