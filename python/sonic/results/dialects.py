"""Result documents in the vLLM (`vllm bench serve`) and MAX (benchmark_serving.py G1 + G2
additions) dialects, key-exact and in their order, plus one ``sonic`` object for our extras.

Dialect keys carry the dialect's own conventions (vLLM writes 0 for an empty sample set and
``"inf"`` for an unbounded rate; MAX writes null); anything sonic adds lives only under
``"sonic"`` so existing readers see exactly the keys they expect.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from sonic import __version__
from sonic.errors import SonicError
from sonic.metrics import PERCENTILE_METRICS, BenchmarkMetrics, Summary, percentile_word
from sonic.results.info import RunInfo
from sonic.results.policy import Outcome, check_dialect, run_outcome
from sonic.results.secrets import redact_args

SONIC_KEY = "sonic"
# Removed from the vLLM document without --save-detailed (latencies/queue_times are kept).
VLLM_DETAILED_KEYS = (
    "input_lens",
    "output_lens",
    "start_times",
    "ttfts",
    "itls",
    "generated_texts",
    "errors",
)
MAX_LATENCY_METRICS = (("ttft", "ttft"), ("tpot", "tpot"), ("itl", "itl"), ("latency", "e2el"))
MAX_STAT_FIELDS = ("mean", "median", "std", "p90", "p95", "p99")
# G2 reports per-request throughput with "lower is worse" percentiles: p90 is the 10th.
MAX_THROUGHPUT_FIELDS = (
    ("mean", None),
    ("std", None),
    ("median", None),
    ("p90", 10.0),
    ("p95", 5.0),
    ("p99", 1.0),
)
_SONIC_PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
_ERROR_EXCERPT = 300


def request_rate_value(rate: float) -> float | str:
    """A header rate (``request_rate``, ``burstiness``): a number, or the string ``"inf"``
    (JSON has no infinity; both tools write the rate this way)."""
    return "inf" if math.isinf(rate) else rate


def _num(v: Any) -> Any:
    """A JSON-safe number: NaN/inf become null."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _zero(v: float | None) -> float:
    return 0.0 if v is None or not math.isfinite(v) else float(v)


def _stat(s: Summary, name: str, *, reverse: float | None = None) -> float | None:
    if s.n == 0:
        return None
    if name in ("mean", "median", "std"):
        return getattr(s, name)
    q = reverse if reverse is not None else float(name[1:])
    return s.p(q)


def _json_safe(obj: Any) -> Any:
    """Make client args JSON-serializable without losing what the user typed."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def _check_metadata(metadata: dict[str, str], reserved: Iterable[str]) -> None:
    clash = sorted(set(metadata) & set(reserved))
    if clash:
        raise SonicError(
            f"--metadata key {clash[0]!r} would overwrite a result key; choose another name"
        )


def _per_request_arrays(m: BenchmarkMetrics, keys: Iterable[str]) -> dict[str, list[Any]]:
    """Index-aligned per-request lists (seconds; 0.0 where undefined, as both tools write)."""
    r = m.requests
    make = {
        "input_lens": lambda: [int(x) for x in r.input_len],
        "output_lens": lambda: [int(x) for x in r.output_len],
        "ttfts": lambda: [_zero(x) for x in r.ttft_s],
        "itls": lambda: [r.itls(i).tolist() for i in range(r.n)],
        "latencies": lambda: [_zero(x) for x in r.e2el_s],
        "start_times": lambda: [_zero(x) for x in r.sent_s],
        "queue_times": lambda: [_zero(x) for x in r.queue_s],
        "generated_texts": lambda: list(r.generated_text),
        "errors": lambda: ["" if e is None else e for e in r.error],
    }
    return {k: make[k]() for k in keys}


def build_result(dialect: str, metrics: BenchmarkMetrics, info: RunInfo) -> dict[str, Any]:
    """The result document of ``dialect`` (``vllm`` or ``max``)."""
    if check_dialect(dialect) == "vllm":
        return build_vllm_result(metrics, info)
    return build_max_result(metrics, info)


def build_vllm_result(metrics: BenchmarkMetrics, info: RunInfo) -> dict[str, Any]:
    """vLLM `bench serve` keys: header, generation keys, then per selected metric
    ``mean/median/std/p{P}_{metric}_ms``; per-request arrays only with ``save_detailed``."""
    m = metrics
    header: dict[str, Any] = {
        "date": info.date.strftime("%Y%m%d-%H%M%S"),
        "endpoint_type": info.endpoint_type or info.backend,
        "backend": info.backend,
        "label": info.label,
        "model_id": info.model_id,
        "tokenizer_id": info.tokenizer_id,
        "num_prompts": info.num_prompts,
    }
    traffic: dict[str, Any] = {
        "request_rate": request_rate_value(info.request_rate),
        "burstiness": request_rate_value(info.burstiness),
        "max_concurrency": info.max_concurrency,
    }
    if info.ramp_up_strategy is not None:
        traffic["ramp_up_strategy"] = info.ramp_up_strategy
        traffic["ramp_up_start_rps"] = info.ramp_up_start_rps
        traffic["ramp_up_end_rps"] = info.ramp_up_end_rps
    array_keys = (
        "input_lens",
        "output_lens",
        "ttfts",
        "itls",
        "latencies",
        "start_times",
        "queue_times",
        "generated_texts",
        "errors",
    )
    if not info.save_detailed:
        array_keys = tuple(k for k in array_keys if k not in VLLM_DETAILED_KEYS)
    body: dict[str, Any] = {
        "duration": m.duration_s,
        "completed": m.completed,
        "failed": m.failed,
        "total_input_tokens": m.total_input_tokens,
        "total_output_tokens": m.total_output_tokens,
        "request_throughput": m.request_throughput,
        "request_goodput": m.request_goodput if m.goodput_slos_ms else None,
        "output_throughput": m.output_throughput,
        "total_token_throughput": m.total_token_throughput,
        **_per_request_arrays(m, array_keys),
        "max_output_tokens_per_s": m.max_output_tokens_per_s,
        "max_concurrent_requests": m.max_concurrent_requests,
        "rtfx": 0.0,
    }
    if info.rps_change_events:
        body["rps_change_events"] = list(info.rps_change_events)
    for name in vllm_stat_metrics(info):
        s = m.stats[name].scaled(1000.0)
        body[f"mean_{name}_ms"] = _zero(s.mean)
        body[f"median_{name}_ms"] = _zero(s.median)
        body[f"std_{name}_ms"] = _zero(s.std)
        for p in info.metric_percentiles:
            body[f"p{percentile_word(p)}_{name}_ms"] = _zero(s.p(p))
    _check_metadata(info.metadata, [*header, *traffic, *body, SONIC_KEY])
    outcome = run_outcome("vllm", m, info.num_prompts)
    return {
        **header,
        **info.metadata,
        **traffic,
        **body,
        SONIC_KEY: sonic_section("vllm", m, info, outcome),
    }


def vllm_stat_metrics(info: RunInfo) -> list[str]:
    """Selected metrics in vLLM's fixed order; the client-queue ones exist only under a
    concurrency cap (and the queue-inclusive E2EL only with a finite rate), as in vLLM."""
    out = []
    for name in PERCENTILE_METRICS:
        if name not in info.percentile_metrics:
            continue
        if name == "client_queue_time" and info.max_concurrency is None:
            continue
        if name == "e2el_including_client_queue" and (
            info.max_concurrency is None or math.isinf(info.request_rate)
        ):
            continue
        out.append(name)
    return out


def build_max_result(metrics: BenchmarkMetrics, info: RunInfo) -> dict[str, Any]:
    """MAX G1 keys (what the seed suite reads: aggregate ``input_throughput`` and
    ``output_throughput``, ``*_ttft_ms``/``*_tpot_ms``/``*_itl_ms``, ``server_args``,
    ``client_args``, scalar GPU keys) plus G2's ``failures``, ``burstiness``,
    ``max_concurrency``, p90/p95, ``*_latency_ms`` and per-request throughput distributions."""
    m = metrics
    client_args = _json_safe(redact_args(info.client_args))
    if "request_rate" in client_args:
        client_args["request_rate"] = str(info.client_args["request_rate"])
    header: dict[str, Any] = {
        "date": info.date.strftime("%Y-%m-%d %H:%M:%S"),
        "backend": info.backend,
        "model_id": info.model_id,
        "tokenizer_id": info.tokenizer_id,
        "num_prompts": info.num_prompts,
        "server_args": info.server_args,
        "dataset_name": info.dataset_name,
        "client_args": client_args,
    }
    traffic: dict[str, Any] = {
        "request_rate": request_rate_value(info.request_rate),
        "burstiness": request_rate_value(info.burstiness),
        # G2 overwrites the argument with the cap actually used (all requests if unbounded).
        "max_concurrency": info.max_concurrency or m.num_requests,
    }
    body: dict[str, Any] = {
        "duration": m.duration_s,
        "completed": m.completed,
        "failures": m.failed,
        "total_input_tokens": m.total_input_tokens,
        "total_output_tokens": m.total_output_tokens,
        "request_throughput": m.request_throughput,
        "input_throughput": m.input_throughput,
        "output_throughput": m.output_throughput,
    }
    for stem in ("input_throughput", "output_throughput"):
        s = m.stats[stem]
        for fieldname, rev in MAX_THROUGHPUT_FIELDS:
            body[f"{fieldname}_{stem}"] = _num(_stat(s, fieldname, reverse=rev))
    for stem, metric in MAX_LATENCY_METRICS:
        s = m.stats[metric].scaled(1000.0)
        for fieldname in MAX_STAT_FIELDS:
            body[f"{fieldname}_{stem}_ms"] = _num(_stat(s, fieldname))
    body.update(
        _per_request_arrays(
            m, ("input_lens", "output_lens", "ttfts", "itls", "generated_texts", "errors")
        )
    )
    body["peak_gpu_memory_mib"] = info.peak_gpu_memory_mib
    body["available_gpu_memory_mib"] = info.available_gpu_memory_mib
    body["gpu_utilization"] = info.gpu_utilization
    _check_metadata(info.metadata, [*header, *traffic, *body, SONIC_KEY])
    outcome = run_outcome("max", m, info.num_prompts)
    return {
        **header,
        **info.metadata,
        **traffic,
        **body,
        SONIC_KEY: sonic_section("max", m, info, outcome),
    }


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


def sonic_section(
    dialect: str, m: BenchmarkMetrics, info: RunInfo, outcome: Outcome | None = None
) -> dict[str, Any]:
    """sonic's own keys: provenance, rules, partial marker, latency from the intended send,
    dispatch lag, token-count discrepancy and the metrics the dialect has no key for."""
    outcome = outcome or run_outcome(dialect, m, info.num_prompts)
    t = m.tokens
    return {
        "version": __version__,
        "compat": dialect,
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
        "duration_s": m.duration_s,
        "input_throughput": m.input_throughput,
        "total_token_throughput": m.total_token_throughput,
        "request_goodput": m.request_goodput,
        "good_requests": m.good_requests,
        "goodput_slos_ms": m.goodput_slos_ms or None,
        "max_output_tokens_per_s": m.max_output_tokens_per_s,
        "max_concurrent_requests": m.max_concurrent_requests,
        "successes_without_first_token": m.successes_without_first_token,
        "latency_ms": {k: stats_ms(m.stats[k]) for k in ("ttft", "tpot", "itl", "e2el")},
        "from_intended_send_ms": {
            "ttft": stats_ms(m.stats["ttft_intended"]),
            "e2el": stats_ms(m.stats["e2el_including_client_queue"]),
        },
        "dispatch_lag_ms": stats_ms(m.stats["dispatch_lag"]),
        "token_counts": {
            "mode": m.rules.token_count,
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
MAX_GPU_KEYS = ("peak_gpu_memory_mib", "available_gpu_memory_mib", "gpu_utilization")


def add_telemetry(doc: dict[str, Any], dialect: str, telemetry: Any, output_tokens: int) -> None:
    """Put a ``TelemetryResult`` into a result document, in place.

    MAX: the per-GPU lists under MAX's keys (where the GPU keys already stand; empty lists
    when collection was on but nothing was sampled), MAX's ``cpu_metrics`` (the server's CPU
    time, with ``--collect-cpu-stats``), and MAX's ``server_metrics`` /
    ``server_metrics_by_endpoint`` (counters, gauges, histograms of each scraped endpoint)
    when ``/metrics`` was scraped before and after the run. vLLM: vLLM's ``spec_decode_*`` keys when
    the engine counted speculative decoding (before ``sonic``). Both: ``sonic.telemetry``
    (GPU summary, energy, tokens per joule, the engine's counter deltas under
    ``server_metrics``, warnings).
    """
    if check_dialect(dialect) == "max":
        if telemetry.gpu_requested:
            doc.update(telemetry.max_gpu_keys())  # keys exist: their order is kept
        if telemetry.cpu is not None:  # after the GPU keys, as MAX writes it
            _insert_after(doc, "gpu_utilization", {"cpu_metrics": telemetry.cpu.as_dict()})
        _insert_before_sonic(doc, telemetry.max_server_metrics())
    if dialect == "vllm":
        spec = {
            k: [_num(x) for x in v]
            if isinstance(v, list)
            else _num(v)
            if isinstance(v, float)
            else v
            for k, v in telemetry.vllm_spec_decode().items()
        }
        _insert_before_sonic(doc, spec)
    doc.setdefault(SONIC_KEY, {})[TELEMETRY_KEY] = telemetry.summary(output_tokens)


def _insert_after(doc: dict[str, Any], anchor: str, keys: dict[str, Any]) -> None:
    """``keys`` right after ``anchor`` (before ``sonic`` when the anchor is missing)."""
    if anchor not in doc:
        _insert_before_sonic(doc, keys)
        return
    items = list(doc.items())
    doc.clear()
    for k, v in items:
        if k not in keys:
            doc[k] = v
        if k == anchor:
            doc.update(keys)


def _insert_before_sonic(doc: dict[str, Any], keys: dict[str, Any]) -> None:
    """New tool keys go before ``sonic``, which stays the last key of a document."""
    if keys:
        sonic = doc.pop(SONIC_KEY, None)
        doc.update(keys)
        if sonic is not None:
            doc[SONIC_KEY] = sonic
