"""Engine Prometheus names → one schema across vLLM, MAX, SGLang, TGI and llama.cpp.

Each normalised field lists where each engine keeps it, first match wins. Names are the
engines' documented ones (sample names as they appear on ``/metrics``, counters with their
``_total``):

- vLLM (V1; V0 names as fallbacks): ``vllm:num_requests_running|waiting``,
  ``vllm:kv_cache_usage_perc`` (V0 ``vllm:gpu_cache_usage_perc``), ``vllm:prefix_cache_hits_total``
  / ``vllm:prefix_cache_queries_total`` (V0 gauge ``vllm:gpu_prefix_cache_hit_rate``),
  ``vllm:prompt_tokens_total``, ``vllm:generation_tokens_total``, ``vllm:num_preemptions_total``,
  ``vllm:spec_decode_num_drafts_total|num_draft_tokens_total|num_accepted_tokens_total``.
- MAX serve: ``maxserve_num_requests_running|queued``, ``maxserve_cache_used_kv_pct_percent``
  (histogram, %), ``maxserve_cache_hits_tokens_total`` / ``maxserve_cache_misses_tokens_total``,
  ``maxserve_num_input_tokens_total``, ``maxserve_num_output_tokens_total``,
  ``maxserve_cache_preemption_count_total``, ``maxserve_spec_decode_avg_acceptance_length``
  (histogram). MAX publishes batch-level metrics only in its DETAILED recording level.
- SGLang: ``sglang:num_running_reqs``, ``sglang:num_queue_reqs``, ``sglang:token_usage``,
  ``sglang:cache_hit_rate``, ``sglang:prompt_tokens_total``, ``sglang:generation_tokens_total``,
  ``sglang:spec_accept_length``.
- TGI: ``tgi_batch_current_size``, ``tgi_queue_size``, ``tgi_request_input_length`` and
  ``tgi_request_generated_tokens`` (histograms: their ``_sum`` counts tokens).
- llama.cpp (``--metrics``): ``llamacpp:requests_processing``, ``llamacpp:requests_deferred``,
  ``llamacpp:kv_cache_usage_ratio``, ``llamacpp:prompt_tokens_total``,
  ``llamacpp:tokens_predicted_total``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

# Normalised fields. Gauges are instantaneous; counters are cumulative since engine start.
GAUGES = ("running", "waiting", "kv_cache_usage", "prefix_cache_hit_rate", "spec_acceptance_length")
COUNTERS = (
    "prompt_tokens_total",
    "generation_tokens_total",
    "preemptions_total",
    "prefix_cache_hits_total",
    "prefix_cache_queries_total",
    "spec_drafts_total",
    "spec_draft_tokens_total",
    "spec_accepted_tokens_total",
)
FIELDS = GAUGES + COUNTERS
ENGINES = ("vllm", "max", "sglang", "tgi", "llamacpp")
PREFIXES = {
    "vllm": "vllm:",
    "max": "maxserve_",
    "sglang": "sglang:",
    "tgi": "tgi_",
    "llamacpp": "llamacpp:",
}


@dataclass(frozen=True)
class Sample:
    """One Prometheus sample, with its family's name and type (``counter``, ``gauge``,
    ``histogram``, ``summary``, ``untyped``...) as the exposition declared them."""

    name: str
    labels: Mapping[str, str]
    value: float
    family: str = ""
    kind: str = "untyped"

    def as_json(self) -> list:
        return [self.name, dict(self.labels), _finite(self.value)]


def metric_key(name: str, labels: Mapping[str, str]) -> str:
    """``name{a="x",b="y"}`` with labels sorted (``name`` alone without labels), as the
    Prometheus exposition writes a series and as MAX keys its ``server_metrics``."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


@dataclass(frozen=True)
class Src:
    """Where a field lives: ``sum`` adds every sample of ``name`` (all label sets);
    ``hist_mean`` is ``name_sum / name_count`` (over an interval when a previous scrape is
    given); ``sum_of`` adds several names (e.g. hits + misses = queries). ``scale``
    multiplies (percent → fraction)."""

    kind: str
    names: tuple[str, ...]
    scale: float = 1.0


def _s(*names: str, scale: float = 1.0) -> Src:
    return Src("sum", names, scale)


def _h(name: str, scale: float = 1.0) -> Src:
    return Src("hist_mean", (name,), scale)


def _sum_of(*names: str) -> Src:
    return Src("sum_of", names)


NAME_MAPS: dict[str, dict[str, tuple[Src, ...]]] = {
    "vllm": {
        "running": (_s("vllm:num_requests_running"),),
        "waiting": (_s("vllm:num_requests_waiting"),),
        "kv_cache_usage": (_s("vllm:kv_cache_usage_perc"), _s("vllm:gpu_cache_usage_perc")),
        "prefix_cache_hit_rate": (_s("vllm:gpu_prefix_cache_hit_rate"),),
        "prefix_cache_hits_total": (_s("vllm:prefix_cache_hits_total"),),
        "prefix_cache_queries_total": (_s("vllm:prefix_cache_queries_total"),),
        "prompt_tokens_total": (_s("vllm:prompt_tokens_total"),),
        "generation_tokens_total": (_s("vllm:generation_tokens_total"),),
        "preemptions_total": (_s("vllm:num_preemptions_total"),),
        "spec_drafts_total": (_s("vllm:spec_decode_num_drafts_total"),),
        "spec_draft_tokens_total": (_s("vllm:spec_decode_num_draft_tokens_total"),),
        "spec_accepted_tokens_total": (_s("vllm:spec_decode_num_accepted_tokens_total"),),
    },
    "max": {
        "running": (_s("maxserve_num_requests_running"),),
        "waiting": (_s("maxserve_num_requests_queued"), _s("maxserve_reqs_queued")),
        "kv_cache_usage": (
            _s("maxserve_cache_used_kv_pct_percent", scale=0.01),
            _h("maxserve_cache_used_kv_pct_percent", scale=0.01),
        ),
        "prefix_cache_hit_rate": (_h("maxserve_cache_hit_rate"),),
        "prefix_cache_hits_total": (_s("maxserve_cache_hits_tokens_total"),),
        "prefix_cache_queries_total": (
            _sum_of("maxserve_cache_hits_tokens_total", "maxserve_cache_misses_tokens_total"),
        ),
        "prompt_tokens_total": (_s("maxserve_num_input_tokens_total"),),
        "generation_tokens_total": (_s("maxserve_num_output_tokens_total"),),
        "preemptions_total": (_s("maxserve_cache_preemption_count_total"),),
        "spec_acceptance_length": (_h("maxserve_spec_decode_avg_acceptance_length"),),
    },
    "sglang": {
        "running": (_s("sglang:num_running_reqs"),),
        "waiting": (_s("sglang:num_queue_reqs"),),
        "kv_cache_usage": (_s("sglang:token_usage"),),
        "prefix_cache_hit_rate": (_s("sglang:cache_hit_rate"),),
        "prompt_tokens_total": (_s("sglang:prompt_tokens_total"),),
        "generation_tokens_total": (_s("sglang:generation_tokens_total"),),
        "spec_acceptance_length": (_s("sglang:spec_accept_length"),),
    },
    "tgi": {
        "running": (_s("tgi_batch_current_size"),),
        "waiting": (_s("tgi_queue_size"),),
        "prompt_tokens_total": (_s("tgi_request_input_length_sum"),),
        "generation_tokens_total": (_s("tgi_request_generated_tokens_sum"),),
    },
    "llamacpp": {
        "running": (_s("llamacpp:requests_processing"),),
        "waiting": (_s("llamacpp:requests_deferred"),),
        "kv_cache_usage": (_s("llamacpp:kv_cache_usage_ratio"),),
        "prompt_tokens_total": (_s("llamacpp:prompt_tokens_total"),),
        "generation_tokens_total": (_s("llamacpp:tokens_predicted_total"),),
    },
}


def parse_metrics(text: str) -> list[Sample]:
    """Every sample of a Prometheus text exposition (a real parser: prometheus_client).
    Raises ValueError on text that is not the Prometheus format."""
    out: list[Sample] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.append(Sample(s.name, dict(s.labels), float(s.value), family.name, family.type))
    return out


def _index(samples: Iterable[Sample]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for s in samples:
        if math.isnan(s.value):
            continue
        totals[s.name] = totals.get(s.name, 0.0) + s.value
    return totals


def detect_engine(samples: Iterable[Sample]) -> str | None:
    """The engine whose prefix most samples carry (None when none matches)."""
    counts = dict.fromkeys(ENGINES, 0)
    for s in samples:
        for engine, prefix in PREFIXES.items():
            if s.name.startswith(prefix):
                counts[engine] += 1
    best = max(counts, key=lambda e: counts[e])
    return best if counts[best] else None


def _value(src: Src, now: Mapping[str, float], prev: Mapping[str, float] | None) -> float | None:
    if src.kind == "sum":
        v = now.get(src.names[0])
        return None if v is None else v * src.scale
    if src.kind == "sum_of":
        vals = [now[n] for n in src.names if n in now]
        return sum(vals) * src.scale if vals else None
    base = src.names[0]
    total, count = now.get(base + "_sum"), now.get(base + "_count")
    if total is None or count is None:
        return None
    if prev is not None:
        p_total, p_count = prev.get(base + "_sum"), prev.get(base + "_count")
        if p_total is not None and p_count is not None and count > p_count:
            return (total - p_total) / (count - p_count) * src.scale
    return total / count * src.scale if count > 0 else None


def normalize(
    samples: Iterable[Sample],
    engine: str | None = None,
    previous: Iterable[Sample] | None = None,
) -> dict[str, float]:
    """The schema's fields present in one scrape (absent fields are left out).

    ``engine`` defaults to :func:`detect_engine`. With ``previous`` (the scrape before),
    histogram means and the counter-based prefix-cache hit rate are over the interval
    between the two scrapes, else since the engine started.
    """
    samples = list(samples)
    engine = engine or detect_engine(samples)
    if engine is None:
        return {}
    now = _index(samples)
    prev = _index(previous) if previous is not None else None
    out: dict[str, float] = {}
    for fieldname, sources in NAME_MAPS[engine].items():
        for src in sources:
            v = _value(src, now, prev)
            if v is not None:
                out[fieldname] = v
                break
    hits, queries = out.get("prefix_cache_hits_total"), out.get("prefix_cache_queries_total")
    if hits is not None and queries is not None and "prefix_cache_hit_rate" not in out:
        rate = None
        if prev is not None:
            prev_norm = normalize(previous or [], engine)
            ph = prev_norm.get("prefix_cache_hits_total")
            pq = prev_norm.get("prefix_cache_queries_total")
            if ph is not None and pq is not None and queries > pq:
                rate = (hits - ph) / (queries - pq)
        if rate is None and queries > 0:
            rate = hits / queries
        if rate is not None:
            out["prefix_cache_hit_rate"] = rate
    return out
