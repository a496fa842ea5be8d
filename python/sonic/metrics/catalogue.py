"""The metric catalogue: every quantity sonic reports across runs, once, with its unit and the
direction that is better. Results, the console, ``sonic.analysis``, the report and the plots
all name metrics from here; each dialect says under which key its documents carry them
(``Dialect.metric_keys`` and ``Dialect.latency_stems``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Metric:
    """One reported quantity: its normalised column, words, unit and better direction
    (``None``: a count, neither better high nor low)."""

    name: str
    label: str
    unit: str
    higher_is_better: bool | None
    # Where sonic's own section carries it, for dialects that have no key of their own.
    sonic_key: str | None = None

    @property
    def better_word(self) -> str:
        return {True: "higher", False: "lower", None: ""}[self.higher_is_better]


SCALARS: tuple[Metric, ...] = (
    Metric("completed", "completed requests", "", None, "completed"),
    Metric("failed", "failed requests", "", None, "failed"),
    Metric("duration_s", "benchmark duration", "s", None, "duration_s"),
    Metric("total_input_tokens", "total input tokens", "", None),
    Metric("total_output_tokens", "total output tokens", "", None),
    Metric("request_throughput", "request throughput", "req/s", True),
    Metric("output_throughput", "output throughput", "tok/s", True),
    Metric(
        "total_token_throughput", "total token throughput", "tok/s", True, "total_token_throughput"
    ),
    Metric("input_throughput", "input throughput", "tok/s", True, "input_throughput"),
    Metric("goodput", "request goodput", "req/s", True, "request_goodput"),
)
LATENCIES: tuple[Metric, ...] = (
    Metric("ttft", "TTFT", "ms", False),
    Metric("tpot", "TPOT", "ms", False),
    Metric("itl", "ITL", "ms", False),
    Metric("e2el", "E2EL", "ms", False),
)
LATENCY_STATS = ("mean", "median", "p90", "p95", "p99")
BY_NAME: dict[str, Metric] = {m.name: m for m in SCALARS + LATENCIES}
SCALAR_COLUMNS = tuple(m.name for m in SCALARS)
LATENCY_COLUMNS = tuple(f"{s}_{m.name}_ms" for m in LATENCIES for s in LATENCY_STATS)


def latency_column(stat: str, metric: str) -> str:
    return f"{stat}_{metric}_ms"


def _float(v: Any) -> float:
    if v is None or isinstance(v, bool):
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def read_columns(
    doc: Mapping[str, Any], keys: Mapping[str, str], stems: Mapping[str, str]
) -> dict[str, float]:
    """The catalogue's columns of one result document.

    ``keys`` maps scalar columns to the document's keys, ``stems`` latency metrics to the stem
    of ``{stat}_{stem}_ms``; what a dialect does not write comes from the ``sonic`` section
    (``latency_ms`` for statistics a dialect leaves out). An empty sample set is NaN, whatever
    the dialect writes for it (0, 0.0 or null).
    """
    sonic = doc.get("sonic") if isinstance(doc.get("sonic"), dict) else {}
    out: dict[str, float] = {}
    for m in SCALARS:
        if m.name in keys:
            out[m.name] = _float(doc.get(keys[m.name]))
        else:
            out[m.name] = _float(sonic.get(m.sonic_key or m.name))
    latency = sonic.get("latency_ms") if isinstance(sonic.get("latency_ms"), dict) else {}
    for m in LATENCIES:
        extra = latency.get(m.name) if isinstance(latency.get(m.name), dict) else {}
        empty = extra.get("n") == 0 or (not extra and out["completed"] == 0)
        stem = stems.get(m.name)
        for stat in LATENCY_STATS:
            key = f"{stat}_{stem}_ms" if stem else None
            value = doc[key] if key is not None and key in doc else extra.get(stat)
            out[latency_column(stat, m.name)] = math.nan if empty else _float(value)
    return out
