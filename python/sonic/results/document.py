"""What every result document shares, whichever tool's dialect writes it: number
conventions, per-request arrays, the ``sonic`` section of our extras, and key insertion.

The dialect modules (``sonic.dialects``) own each tool's keys and their order; anything sonic
adds lives only under ``"sonic"``, so existing readers see exactly the keys they expect.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from sonic import __version__
from sonic.errors import SonicError
from sonic.metrics import BenchmarkMetrics, Summary, catalogue, percentile_word
from sonic.results.info import RunInfo

SONIC_KEY = "sonic"
_SONIC_PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
_ERROR_EXCERPT = 300


def request_rate_value(rate: float) -> float | str:
    """A header rate (``request_rate``, ``burstiness``): a number, or the string ``"inf"``
    (JSON has no infinity; both tools write the rate this way)."""
    return "inf" if math.isinf(rate) else rate


def num(v: Any) -> Any:
    """A JSON-safe number: NaN/inf become null."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def zero(v: float | None) -> float:
    return 0.0 if v is None or not math.isfinite(v) else float(v)


def stat(
    s: Summary, name: str, *, reverse: float | None = None, empty: float | None = None
) -> float | None:
    """``mean``/``median``/``std``/``p{P}`` of ``s`` (``reverse``: the percentile actually
    taken); ``empty`` when there are no samples; never NaN."""
    if s.n == 0:
        return empty
    if name in ("mean", "median", "std"):
        value = getattr(s, name)
    else:
        value = s.p(reverse if reverse is not None else float(name[1:]))
    return num(value) if num(value) is not None else empty


def json_safe(obj: Any) -> Any:
    """Make client args JSON-serializable without losing what the user typed."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def check_metadata(metadata: dict[str, str], reserved: Iterable[str]) -> None:
    clash = sorted(set(metadata) & set(reserved))
    if clash:
        raise SonicError(
            f"--metadata key {clash[0]!r} would overwrite a result key; choose another name"
        )


# Per-request lists of per-chunk data: a streamed run keeps them in its records file only.
PER_CHUNK_KEYS = ("itls", "generated_texts")


def per_request_arrays(m: BenchmarkMetrics, keys: Iterable[str]) -> dict[str, list[Any]]:
    """Index-aligned per-request lists (seconds; 0.0 where undefined, as both tools write).
    A streamed run leaves out ``PER_CHUNK_KEYS`` (``sonic.records_file`` holds them)."""
    r = m.requests
    if r.streamed:
        keys = [k for k in keys if k not in PER_CHUNK_KEYS]
    make = {
        "input_lens": lambda: [int(x) for x in r.input_len],
        "output_lens": lambda: [int(x) for x in r.output_len],
        "ttfts": lambda: [zero(x) for x in r.ttft_s],
        "itls": lambda: [r.itls(i).tolist() for i in range(r.n)],
        "latencies": lambda: [zero(x) for x in r.e2el_s],
        "start_times": lambda: [zero(x) for x in r.sent_s],
        "queue_times": lambda: [zero(x) for x in r.queue_s],
        "generated_texts": lambda: list(r.generated_text),
        "errors": lambda: ["" if e is None else e for e in r.error],
    }
    return {k: make[k]() for k in keys}


def build_result(dialect: Any, metrics: BenchmarkMetrics, info: RunInfo) -> dict[str, Any]:
    """The result document of ``dialect`` (a Dialect or its name)."""
    from sonic import dialects

    return dialects.get(dialect).build_result(metrics, info)


def build_vllm_result(metrics: BenchmarkMetrics, info: RunInfo) -> dict[str, Any]:
    return build_result("vllm", metrics, info)


def build_max_result(metrics: BenchmarkMetrics, info: RunInfo) -> dict[str, Any]:
    return build_result("max", metrics, info)


def stats_ms(s: Summary, *, scale: float = 1000.0) -> dict[str, Any]:
    """A Summary as a JSON object (ms by default) with sonic's fixed percentile set."""
    t = s.scaled(scale)
    out: dict[str, Any] = {"n": t.n, "mean": t.mean, "median": t.median, "std": t.std}
    out["min"], out["max"] = t.min, t.max
    for p in _SONIC_PERCENTILES:
        out[f"p{percentile_word(p)}"] = t.p(p)
    return out


def _error_counts(m: BenchmarkMetrics, limit: int = 20) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, err in m.errors():
        key = err.strip().splitlines()[0][:_ERROR_EXCERPT] if err.strip() else "(empty error)"
        counts[key] = counts.get(key, 0) + 1
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return dict(top)


def sonic_section(dialect: Any, m: BenchmarkMetrics, info: RunInfo) -> dict[str, Any]:
    """sonic's own keys: provenance, rules, partial marker, latency from the intended send,
    dispatch lag, token-count discrepancy and the metrics the dialect has no key for."""
    from sonic import dialects

    d = dialects.get(dialect)
    outcome = d.outcome(m, info.expected_requests or info.num_prompts)
    t = m.tokens
    return {
        "version": __version__,
        "compat": d.name,
        "simulated": info.simulated,
        "rules": m.rules.as_dict(),
        "partial": outcome.partial,
        "partial_reasons": list(outcome.reasons),
        "cancelled": m.cancelled,
        "t0_unix_ns": m.t0_unix_ns,
        "num_requests": m.num_requests,
        "completed": m.completed,
        "failed": m.failed,
        "not_sent": m.not_sent,
        "cut_off": m.cut_off,
        "duration_s": m.duration_s,
        "input_throughput": m.input_throughput,
        "total_token_throughput": m.total_token_throughput,
        "request_goodput": m.request_goodput,
        "good_requests": m.good_requests,
        "goodput_slos_ms": m.goodput_slos_ms or None,
        "max_output_tokens_per_s": m.max_output_tokens_per_s,
        "max_concurrent_requests": m.max_concurrent_requests,
        "successes_without_first_token": m.successes_without_first_token,
        "latency_ms": {x.name: stats_ms(m.stats[x.name]) for x in catalogue.LATENCIES},
        "from_intended_send_ms": {
            "ttft": stats_ms(m.stats["ttft_intended"]),
            "e2el": stats_ms(m.stats["e2el_including_client_queue"]),
        },
        "dispatch_lag_ms": stats_ms(m.stats["dispatch_lag"]),
        "token_counts": {
            "mode": m.rules.token_count,
            "retokenize": t.retokenize,
            "retokenized": t.retokenized,
            "output_compared": t.compared,
            "output_usage_total": t.usage_total,
            "output_retokenized_total": t.retokenized_total,
            "output_mean_abs_diff": t.mean_abs_diff,
            "output_max_abs_diff": t.max_abs_diff,
            "output_relative_diff": t.relative_diff,
            "requests_without_usage": t.requests_without_usage,
            "input_compared": t.input_compared,
            "input_usage_total": t.input_usage_total,
            "input_client_total": t.input_client_total,
            "input_relative_diff": t.input_relative_diff,
        },
        "error_counts": _error_counts(m),
        "raw_records": info.raw_records_file,
    }


TELEMETRY_KEY = "telemetry"


def add_telemetry(doc: dict[str, Any], dialect: Any, telemetry: Any, output_tokens: int) -> None:
    """Put a ``TelemetryResult`` into a result document, in place: the dialect's own keys
    (MAX's GPU/CPU/server metrics, vLLM's ``spec_decode_*``), then ``sonic.telemetry`` (GPU
    summary, energy, tokens per joule, the engine's counter deltas, warnings)."""
    from sonic import dialects

    dialects.get(dialect).add_telemetry(doc, telemetry)
    doc.setdefault(SONIC_KEY, {})[TELEMETRY_KEY] = telemetry.summary(output_tokens)


def insert_after(doc: dict[str, Any], anchor: str, keys: dict[str, Any]) -> None:
    """``keys`` right after ``anchor`` (before ``sonic`` when the anchor is missing)."""
    if anchor not in doc:
        insert_before_sonic(doc, keys)
        return
    items = list(doc.items())
    doc.clear()
    for k, v in items:
        if k not in keys:
            doc[k] = v
        if k == anchor:
            doc.update(keys)


def insert_before_sonic(doc: dict[str, Any], keys: dict[str, Any]) -> None:
    """New tool keys go before ``sonic``, which stays the last key of a document."""
    if keys:
        sonic = doc.pop(SONIC_KEY, None)
        doc.update(keys)
        if sonic is not None:
            doc[SONIC_KEY] = sonic
