"""MAX's ``server_metrics`` object: one endpoint's Prometheus families over a run.

MAX's benchmark (MAX 2026) writes, for each scraped endpoint, the counters' increase over the run,
the gauges' values at its end and each histogram's increase (buckets, sum, count and mean),
keyed ``family{labels}`` with the family names its Prometheus parser gives (a counter's
without ``_total``). ``server_metrics`` is the first endpoint and
``server_metrics_by_endpoint`` every endpoint by label. From MAX's batch execution-time
histogram it also derives the prefill (``CE``) and decode (``TG``) batch means and counts.

Samples of untyped and summary families are left out, as MAX leaves them out. Where a
counter went backwards (the engine restarted) the increase is None, not a negative number.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sonic.telemetry.names import Sample, metric_key

BATCH_TIME_FAMILY = "maxserve_batch_execution_time_milliseconds"
BATCH_TYPES = (("CE", "prefill"), ("TG", "decode"))


@dataclass
class _Histogram:
    buckets: dict[str, float] = field(default_factory=dict)  # upper bound → cumulative count
    sum: float = 0.0
    count: float = 0.0


@dataclass
class _Families:
    counters: dict[str, float] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, _Histogram] = field(default_factory=dict)


def _families(samples: Iterable[Sample]) -> _Families:
    out = _Families()
    for s in samples:
        fam = s.family or s.name
        if s.kind == "counter":
            if s.name in (fam, fam + "_total"):  # not the OpenMetrics ``_created`` stamp
                out.counters[metric_key(fam, s.labels)] = s.value
        elif s.kind == "gauge":
            out.gauges[metric_key(fam, s.labels)] = s.value
        elif s.kind == "histogram":
            labels = {k: v for k, v in s.labels.items() if k != "le"}
            hist = out.histograms.setdefault(metric_key(fam, labels), _Histogram())
            if s.name == fam + "_bucket":
                hist.buckets[s.labels.get("le", "")] = s.value
            elif s.name == fam + "_sum":
                hist.sum = s.value
            elif s.name == fam + "_count":
                hist.count = s.value
    return out


def _increase(after: float, before: float) -> float | None:
    d = after - before
    return d if d >= 0 else None


def server_metrics_doc(before: Iterable[Sample], after: Iterable[Sample]) -> dict[str, Any]:
    """The object MAX writes under ``server_metrics`` for the interval between two scrapes."""
    a, b = _families(before), _families(after)
    histograms: dict[str, Any] = {}
    for key, hb in b.histograms.items():
        ha = a.histograms.get(key, _Histogram())
        total = _increase(hb.sum, ha.sum)
        count = _increase(hb.count, ha.count)
        buckets = [[le, _increase(n, ha.buckets.get(le, 0.0))] for le, n in hb.buckets.items()]
        histograms[key] = {
            "buckets": buckets,
            "sum": total,
            "count": count,
            "mean": (total / count if count else 0.0) if total is not None else None,
        }
    doc: dict[str, Any] = {
        "counters": {k: _increase(v, a.counters.get(k, 0.0)) for k, v in b.counters.items()},
        "gauges": dict(b.gauges),
        "histograms": histograms,
    }
    for batch_type, phase in BATCH_TYPES:
        hist = histograms.get(metric_key(BATCH_TIME_FAMILY, {"batch_type": batch_type}))
        if hist and hist["count"]:
            doc[f"{phase}_batch_execution_time_ms"] = hist["mean"]
            doc[f"{phase}_batch_count"] = hist["count"]
    return doc
