"""MAX's 2026 `max benchmark` (the ``modular``/``max`` package, checked against 26.7.0).

Defaults: the chat endpoint, seed 24301, no temperature sent, ``ignore_eos`` on, GPU/CPU/server
statistics and a prefix-cache flush before the run, 1000 prompts and a 300 s cap when neither a
prompt count nor a duration is given, and under an unbounded rate with a concurrency above 1 the
first and last ``max_concurrency`` requests left out of every aggregate.

Metric rules: TTFT at the first chunk with text, end at the last event, ITL between text chunks,
output tokens from the server's usage (re-tokenized text without it), a response without text
failed, requests cut off by ``--max-benchmark-duration-s`` left out of every count, duration =
the measured window. The result document is the tool's: ``request_records``, confidence
intervals on every mean (95 % Student t), ``result_groups``, null for NaN, statistics of empty
sample sets omitted.

Steady state: sonic's own window (``sonic.metrics.steady``, from requests in flight) fills
``steady_state_*``; the tool's metric keys stay whole-run and the window's metrics are under
``sonic.steady_state``. Cached-token rates come from each response's
``usage.prompt_tokens_details.cached_tokens`` (null / empty when the engine reports none);
request records carry their session and turn in multi-turn runs. Not implemented, and said so
in the document and the README rather than faked: outlier rejection
(``num_outliers_rejected`` 0), per-concurrency reseeding of the workload, cache retentions,
the ``sweep-serving-*`` CSV directory. Workload YAML is refused by the flag table (see
flags.py). ``--warmup-to-steady-state`` is on by default, as in the tool (sonic.workloads.warmup).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sonic.dialects import max as max2025
from sonic.dialects.base import BodyPolicy, Dialect

# The tool's 95 % two-sided Student t values by degrees of freedom; the largest key <= df
# applies, 1.96 from 120 on.
T_TABLE = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
    9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000,
    80: 1.990, 100: 1.984, 120: 1.980,
}  # fmt: skip
STAT_FIELDS = (("mean", None), ("std", None), ("median", None), ("p90", 90.0), ("p95", 95.0),
               ("p99", 99.0))  # fmt: skip
# Throughput percentiles are "lower is worse": p90 is the 10th percentile.
THROUGHPUT_FIELDS = (("mean", None), ("std", None), ("median", None), ("p90", 10.0),
                     ("p95", 5.0), ("p99", 1.0))  # fmt: skip
# (document name, sonic statistic, scale, unit)
LATENCIES = (
    ("ttft_ms", "ttft", 1000.0),
    ("tpot_ms", "tpot", 1000.0),
    ("itl_ms", "itl", 1000.0),
)
STEADY_STATE_NOTE = (
    "sonic's steady-state window was not computed for this document; the metrics cover the "
    "whole measured window"
)
# sonic finds the window from the load (requests in flight), not from TTFT/TPOT stability, and
# reports the window's metrics under sonic.steady_state: the tool's keys stay whole-run.
STEADY_STATE_WINDOW_NOTE = (
    "sonic's window ({mode}, {start:.3g}-{end:.3g} s); the metrics above cover the whole "
    "measured window, the window's own are under sonic.steady_state; no outliers are rejected"
)
# Keys whose values sonic cannot give as the tool does (see the module docstring and the
# README's Compatibility section); the differential test compares their presence, not types.
DOCUMENTED_DIFFERENCES = (
    "client_args",
    "request_submit_times",
    "request_complete_times",
    "per_turn_cached_token_rates",
    "global_cached_token_rate",
    "steady_state_mode",
    "steady_state_warning",
    "aggregate_server_stats",
)
_PERCENTILE_FLAGS = (
    "`max benchmark` has no such flag; its result has fixed mean/std/median/p90/p95/p99 keys "
    "with confidence intervals"
)


def t_value(df: int) -> float:
    if df >= 120:
        return 1.96
    return T_TABLE[max(k for k in T_TABLE if k <= df)]


def confidence(mean: float | None, std: float | None, n: int) -> dict[str, Any] | None:
    """The tool's confidence interval of a mean from the population std of ``n`` samples;
    None when n < 2 or the mean is not a positive finite number."""
    if mean is None or std is None or n < 2 or not math.isfinite(mean) or mean <= 0:
        return None
    half = t_value(n - 1) * std * math.sqrt(n / (n - 1)) / math.sqrt(n)
    lower, upper = mean - half, mean + half
    width = (upper - lower) / mean
    if n < 5:
        word = "insufficient_data"
    elif width <= 0.10:
        word = "high"
    elif width <= 0.20:
        word = "medium"
    else:
        word = "low"
    return {
        "ci_lower": lower,
        "ci_upper": upper,
        "ci_relative_width": width,
        "confidence": word,
        "sample_size": n,
    }


def _family(name: str, s: Any, fields: tuple, unit: str) -> tuple[dict[str, Any], Any]:
    """Flat keys of one statistic (empty when it has no samples) and its result_groups
    entry (None when empty)."""
    from sonic.results.document import num

    if s.n == 0:
        return {}, None
    values = {}
    for field, q in fields:
        v = getattr(s, field) if q is None else s.p(q)
        values[field] = num(v)
    flat = {f"{field}_{name}": v for field, v in values.items()}
    ci = confidence(s.mean, s.std, s.n)
    if ci is not None:
        flat.update({f"{name}_{k}": v for k, v in ci.items()})
    group = {
        "mean": values["mean"],
        "std": values["std"],
        "p50": values["median"],
        "p90": values["p90"],
        "p95": values["p95"],
        "p99": values["p99"],
        "unit": unit,
        "confidence_info": ci,
    }
    return flat, group


class MaxBenchmarkDialect(Dialect):
    def result_filename(self, info, when: datetime) -> str:
        """`max benchmark` saves only to --result-filename; sonic's --save-result names the
        file as MAX's 2025 script did."""
        return max2025.filename(info, when)

    def resolve_skip(self, given: int | None, rate: float, max_concurrency: int | None) -> int:
        """Unset: ``max_concurrency`` when the rate is unbounded and it exceeds 1, else 0."""
        if given is not None:
            return given
        if math.isinf(rate) and max_concurrency is not None and max_concurrency > 1:
            return max_concurrency
        return 0

    def build_result(self, metrics, info) -> dict[str, Any]:
        import numpy as np

        from sonic.metrics.stats import summarize
        from sonic.results.document import SONIC_KEY, check_metadata, json_safe, num, sonic_section
        from sonic.results.secrets import redact_args

        m, r = metrics, metrics.requests
        n = r.n
        measured = m.measured if m.measured.size == n else r.success
        success = r.success
        cancelled = np.array([e in _cut_off_errors() for e in r.error], dtype=bool)
        completed = int(measured.sum())
        failures = int((~success & ~cancelled).sum())
        client_args = json_safe(redact_args(info.client_args))
        client_args["request_rate"] = _rate_text(info.request_rate)
        client_args["max_concurrency"] = info.max_concurrency
        dispatched = n
        header: dict[str, Any] = {
            "date": info.date.strftime(max2025.DATE_FORMAT),
            "backend": info.backend,
            "benchmark_task": "text-generation",
            "model_id": info.model_id,
            "tokenizer_id": info.tokenizer_id,
            "num_prompts": completed,  # the tool writes the measured count here
            "dataset_name": info.dataset_name,
            "client_args": client_args,
            "request_rate": _rate_value(info.request_rate),
            "burstiness": info.burstiness,
            "max_concurrency": info.max_concurrency or dispatched,
            "max_concurrent_conversations": None,
        }
        body: dict[str, Any] = {
            "peak_gpu_memory_mib": [],
            "available_gpu_memory_mib": [],
            "gpu_utilization": [],
        }
        total_in = m.total_input_tokens
        total_out = m.total_output_tokens
        duration = m.duration_s
        errors = ["" if e is None or c else e for e, c in zip(r.error, cancelled)]
        body.update(
            {
                "duration": duration,
                "completed": completed,
                "failures": failures,
                "request_throughput": completed / duration if duration > 0 else 0.0,
                "excluded_successful": int((success & ~measured).sum()),
                "errors": errors,
                "request_submit_times": [num(x) for x in r.sent_s],
                "request_complete_times": [num(x) for x in r.sent_s + r.e2el_s],
            }
        )
        latency, latency_group = _family("latency_ms", m.stats["e2el"].scaled(1000.0),
                                         STAT_FIELDS, "ms")  # fmt: skip
        body.update(latency)
        body["total_input_tokens"] = total_in
        body["total_output_tokens"] = total_out
        body["aggregate_tokens_per_minute"] = (
            (total_in + total_out) * 60.0 / duration if duration > 0 else None
        )
        body["skip_first_n_requests"] = info.skip_first_n_requests
        body["skip_last_n_requests"] = info.skip_last_n_requests
        ok_idx = np.flatnonzero(success)
        failed_idx = np.flatnonzero(~success & ~cancelled)
        body["input_lens"] = [0 if c else int(x) for x, c in zip(r.client_input_len, cancelled)]
        body["output_lens"] = [0] * len(failed_idx) + [int(r.output_len[i]) for i in ok_idx]
        body["ttfts"] = [0.0 if math.isnan(x) else float(x) for x in r.ttft_s]
        sessions = r.turn_index is not None and bool((np.asarray(r.turn_index) > 0).any())
        body["request_records"] = [_record(r, i, bool(measured[i]), bool(cancelled[i]), sessions)
                                   for i in range(n)]  # fmt: skip
        cache = _cache_rates(r, success, total_in)
        body["per_turn_cached_token_rates"] = cache.per_turn
        body["per_turn_cache_retentions"] = []
        body["global_cached_token_rate"] = cache.overall
        groups: dict[str, Any] = {"latency_ms": latency_group}
        throughput: dict[str, Any] = {}
        for stem in ("input_throughput", "output_throughput"):
            flat, throughput[stem] = _family(stem, m.stats[stem], THROUGHPUT_FIELDS, "tok/s")
            body.update(flat)
        request_mix = {
            "constrained_request_rate": 0.0,
            "constrained_conformance_rate": None,
            "tool_request_rate": 0.0,
            "tool_call_response_rate": None,
            "image_request_rate": 0.0,
            "lora_request_rate": 0.0,
        }
        body.update({k: v for k, v in request_mix.items() if v is not None})
        for name, stat, scale in LATENCIES:
            flat, groups[name] = _family(name, m.stats[stat].scaled(scale), STAT_FIELDS, "ms")
            body.update(flat)
        flat, groups["step_tpot_ms"] = _family(
            "step_tpot_ms", m.stats["step_tpot"].scaled(1000.0), STAT_FIELDS, "ms"
        )
        body.update(flat)
        # The tool's per-turn cached-token rate statistics, in percent.
        rates = summarize(np.asarray(cache.per_turn), (90.0, 95.0, 99.0)).scaled(100.0)
        flat, cache_group = _family("per_turn_cached_token_rate", rates, STAT_FIELDS, "%")
        body.update(flat)
        body.update(
            {
                "steady_state_detected": False,
                "steady_state_window_count": 0,
                "steady_state_mode": None,
                "steady_state_warning": STEADY_STATE_NOTE,
                "num_outliers_rejected": 0,
                "aggregate_server_stats": [
                    {
                        "prompt_tokens": _opt(r.usage_input_len[i]),
                        "completion_tokens": _opt(r.usage_output_len[i]),
                        "total_tokens": _total(r.usage_input_len[i], r.usage_output_len[i]),
                        "cached_tokens": _cached(r, i),
                    }
                    for i in range(n)
                ],
            }
        )
        failed_errors = [e for e in errors if e]
        body["result_groups"] = {
            "summary": {
                "task_type": "text",
                "max_concurrency": header["max_concurrency"],
                "duration": duration,
                "completed": completed,
                "failures": failures,
                "request_throughput": body["request_throughput"],
                "aggregate_tokens_per_minute": body["aggregate_tokens_per_minute"],
                "mean_ttft_ms": body.get("mean_ttft_ms"),
                "mean_tpot_ms": body.get("mean_tpot_ms"),
                "mean_itl_ms": body.get("mean_itl_ms"),
                "total_generated_outputs": None,
            },
            "request_mix": request_mix,
            "gpu_stats": None,
            "latency_stats": {
                "latency_ms": groups["latency_ms"],
                "ttft_ms": groups["ttft_ms"],
                "tpot_ms": groups["tpot_ms"],
                "itl_ms": groups["itl_ms"],
                "step_tpot_ms": groups["step_tpot_ms"],
                "ttft_ms_constrained": None,
                "ttft_ms_unconstrained": None,
                "tpot_ms_constrained": None,
                "tpot_ms_unconstrained": None,
            },
            "throughput_stats": throughput,
            "cache_stats": {
                "global_cached_token_rate": cache.overall,
                "per_turn_cached_token_rate": cache_group,
                "per_turn_cache_retention": None,
            },
            "diagnostics": None
            if not failed_errors
            else {
                "server_startup_time": None,
                "steady_state_detected": None,
                "steady_state_window_count": None,
                "steady_state_mode": None,
                "steady_state_warning": None,
                "num_outliers_rejected": None,
                "errors": failed_errors,
            },
        }
        check_metadata(info.metadata, [*header, *body, SONIC_KEY])
        metadata = {("cpu" if k == "server_cpu" else k): v for k, v in info.metadata.items()}
        return {**header, **metadata, **body, SONIC_KEY: sonic_section(self, m, info)}

    def add_telemetry(self, doc: dict[str, Any], telemetry: Any) -> None:
        """GPU lists, ``cpu_metrics`` after them, then the /metrics keys (before ``duration``);
        ``result_groups.gpu_stats`` when GPUs were sampled."""
        from sonic.results.document import insert_after

        if telemetry.gpu_requested:
            doc.update(telemetry.max_gpu_keys())  # keys exist: their order is kept
        if telemetry.cpu is not None:
            insert_after(doc, "gpu_utilization", {"cpu_metrics": telemetry.cpu.as_dict()})
        anchor = "cpu_metrics" if "cpu_metrics" in doc else "gpu_utilization"
        insert_after(doc, anchor, _with_batch_stats(telemetry.max_server_metrics()))
        gpu = {k: doc.get(k) for k in max2025.GPU_KEYS}
        if any(gpu.values()) and isinstance(doc.get("result_groups"), dict):
            doc["result_groups"]["gpu_stats"] = {**gpu, "gpu_utilization_by_group": None}

    def add_steady_state(self, doc: dict[str, Any], state: Any) -> None:
        """``steady_state_*`` from sonic's window: detected, requests in it, sonic's mode,
        and a warning that says which metrics cover what (or why none was found)."""
        if state.detected:
            warning = STEADY_STATE_WINDOW_NOTE.format(
                mode=state.mode, start=state.start_s, end=state.end_s
            )
        else:
            warning = f"no steady state found: {state.warning or 'not applicable'}"
        keys = {
            "steady_state_detected": bool(state.detected),
            "steady_state_window_count": int(state.requests) if state.detected else 0,
            "steady_state_mode": state.mode,
            "steady_state_warning": warning,
        }
        doc.update({k: v for k, v in keys.items() if k in doc})
        diagnostics = (doc.get("result_groups") or {}).get("diagnostics")
        if isinstance(diagnostics, dict):
            diagnostics.update(keys)

    def owns(self, doc: dict[str, Any]) -> bool:
        return "result_groups" in doc and "request_records" in doc

    def console_lines(self, metrics, info) -> list[str]:
        from sonic.console import BANNER, WIDTH, flt, integer, section

        m = metrics
        completed = int(m.measured.sum()) if m.measured.size else m.completed
        rate = (
            "inf"
            if math.isinf(info.request_rate) and info.max_concurrency is None
            else (f"{0.0:.5f}")
        )
        out = [
            BANNER,
            integer("Successful requests:", completed),
            integer("Failed requests:", m.failed),
            flt("Benchmark duration (s):", m.duration_s),
            integer("Total input tokens:", m.total_input_tokens),
            integer("Total generated tokens:", m.total_output_tokens),
            integer("Total nonempty serving response chunks:", m.nonempty_chunks),
            integer("Input request rate (req/s):", rate),
            integer("Request throughput (req/s):", f"{m.request_throughput:.5f}"),
            integer("Max Concurrency:", info.max_concurrency or m.num_requests),
            section("Latency Stats"),
        ]
        rows = (("TTFT", "ttft"), ("TPOT", "tpot"), ("Step TPOT", "step_tpot"), ("ITL", "itl"),
                ("Request Latency", "e2el"))  # fmt: skip
        out.append(f"{'Metric (ms)':<18}{'Mean':>9}{'Std':>9}{'P50':>9}{'P90':>9}{'P95':>9}"
                   f"{'P99':>9}")  # fmt: skip
        for label, key in rows:
            s = m.stats[key].scaled(1000.0)
            if s.n == 0:
                continue
            cells = [s.mean, s.std, s.median, s.p(90.0), s.p(95.0), s.p(99.0)]
            out.append(f"{label:<18}" + "".join(f"{c:>9.2f}" for c in cells))
        out += [
            "  TPOT = (latency - TTFT) / (output_tokens - 1)",
            "  Step TPOT = ITL / tokens_per_step, per decode step",
            section("Token Stats"),
            integer("Max input tokens:", m.max_input_tokens),
            integer("Max output tokens:", m.max_output_tokens),
            integer("Max total tokens:", m.max_total_tokens),
            "=" * WIDTH,
        ]
        return out


# Histogram families of MAX's batch statistics, per phase (``prefill_stats``/``decode_stats``).
BATCH_STAT_FAMILIES = (
    "context_tokens",
    "creation_time_milliseconds",
    "generation_throughput_tokens_per_second",
    "input_tokens",
    "prompt_throughput_tokens_per_second",
)


def _with_batch_stats(server: dict[str, Any]) -> dict[str, Any]:
    """The tool writes the batch fields of ``server_metrics`` and ``prefill_stats`` /
    ``decode_stats`` whenever it scraped an endpoint: null (count 0) when the engine does not
    export them."""
    from sonic.telemetry.maxshape import BATCH_TYPES, metric_key

    if not server:
        return server
    first = server["server_metrics"]
    histograms = first.get("histograms", {})
    out = dict(server)
    for batch_type, phase in BATCH_TYPES:
        first.setdefault(f"{phase}_batch_execution_time_ms", None)
        first.setdefault(f"{phase}_batch_count", 0)
        stats: dict[str, Any] = {}
        for family in BATCH_STAT_FAMILIES:
            name = f"maxserve_batch_{family}"
            hist = histograms.get(metric_key(name, {"batch_type": batch_type})) or {}
            for field in ("mean", "count", "sum"):
                stats[f"{name}_{field}"] = hist.get(field)
        out[f"{phase}_stats"] = stats
    return out


def _cut_off_errors() -> tuple[str, ...]:
    from sonic.metrics.requests import CUT_OFF_ERRORS

    return CUT_OFF_ERRORS


def _rate_value(rate: float) -> float | str:
    return "inf" if math.isinf(rate) else rate


def _rate_text(rate: float) -> str:
    return "inf" if math.isinf(rate) else str(float(rate))


def _opt(v: Any) -> int | None:
    x = int(v)
    return None if x < 0 else x


def _total(a: Any, b: Any) -> int | None:
    x, y = _opt(a), _opt(b)
    return None if x is None or y is None else x + y


def _record(r: Any, i: int, measured: bool, cancelled: bool, sessions: bool) -> dict[str, Any]:
    ok = bool(r.success[i]) and not cancelled

    def ms(v: float) -> float | None:
        return None if not ok or math.isnan(v) else float(v) * 1000.0

    sent = r.sent_s[i]
    end = sent + r.e2el_s[i]
    return {
        "index": i,
        "prompt_len": 0 if cancelled else int(r.client_input_len[i]),
        "output_len": int(r.output_len[i]),
        "success": bool(r.success[i]),
        "cancelled": cancelled,
        "measured": measured,
        "error": "" if r.error[i] is None or cancelled else r.error[i],
        "ttft_ms": ms(r.ttft_s[i]),
        "tpot_ms": ms(r.tpot_s[i]) if r.output_len[i] > 1 else None,
        "latency_ms": ms(r.e2el_s[i]),
        "submit_time": None if math.isnan(sent) else float(sent),
        "complete_time": None if math.isnan(end) else float(end),
        "session_id": None if not sessions else str(int(r.session_index[i])),
        "turn_index": None if not sessions else int(r.turn_index[i]),
        "generated_text": None,
    }


@dataclass(frozen=True)
class CacheRates:
    """The tool's cached-token statistics from the engine's usage: per request (each "turn"),
    cached / prompt tokens over the successful requests whose usage reported both, and the
    global rate, all cached tokens over the run's input tokens. Empty / None when no response
    reported cached tokens (the tool cannot tell that from 0 and writes zeros)."""

    per_turn: list[float]
    overall: float | None


def _cached(r: Any, i: int) -> int | None:
    c = None if r.cached_tokens is None else int(r.cached_tokens[i])
    return None if c is None or c < 0 else c


def _cache_rates(r: Any, success: Any, total_input: int) -> CacheRates:
    import numpy as np

    if r.cached_tokens is None:
        return CacheRates([], None)
    cached = np.asarray(r.cached_tokens)
    prompt = np.asarray(r.usage_input_len)
    sel = success & (cached >= 0) & (prompt > 0)
    if not sel.any():
        return CacheRates([], None)
    per_turn = [float(c) / float(p) for c, p in zip(cached[sel], prompt[sel])]
    overall = float(cached[sel].sum()) / total_input if total_input > 0 else 0.0
    return CacheRates(per_turn, overall)


MAX_BENCHMARK = MaxBenchmarkDialect(
    name="max-benchmark",
    title="MAX `max benchmark` (2026)",
    summary="chat endpoint, seed 24301, usage token counts, skip-first/last = concurrency at "
    "rate inf, GPU/CPU/server stats and a cache flush on, confidence intervals; exit 1 on "
    "failures (the file only with --always-save-result).",
    defaults={
        "backend": "modular",
        "host": "localhost",
        "endpoint": "/v1/chat/completions",
        "dataset_name": "sharegpt",
        "seed": 24301,
        "num_prompts": 1000,
        "percentile_metrics": ("ttft", "tpot", "itl", "e2el"),
        "metric_percentiles": (90.0, 95.0, 99.0),
        "random_range_ratio": 1.0,
        "temperature": None,
        "collect_gpu_stats": True,
        "collect_cpu_stats": True,
        "flush_prefix_cache": True,
        "warmup_to_steady_state": True,
    },
    # The 2025 rules, except: usage token counts, the measured window, step TPOT.
    metric_rules=replace(
        max2025.MAX.metric_rules,
        token_count="usage",
        duration_start="measured_window",
        step_tpot=True,
    ),
    dataset_rules=replace(max2025.DATASET_RULES, random_encoded_len=True),
    body=BodyPolicy(
        max_tokens_field={
            "completions": "max_tokens",
            "chat": "max_tokens",
            "tgi": "parameters.max_new_tokens",
            "trtllm": "max_tokens",
        },
        include_usage=("chat",),
        fixed_fields={
            "completions": {"best_of": 1},
            "tgi": {"parameters": {"do_sample": True, "temperature": 0.01, "top_p": 0.99}},
            "trtllm": {"accumulate_tokens": True},
        },
    ),
    ignore_eos_policy="always",
    arrival="sequential",
    test_prompt_default=True,
    model_required=True,
    saves_on=("result_filename", "save_result"),
    unique_auto_names=False,
    keep_overwritten=True,
    strict_exit=True,
    failed_runs_saved=False,
    # input_throughput is a per-request distribution here: the catalogue's aggregate comes
    # from the sonic section.
    metric_keys={k: v for k, v in max2025.METRIC_KEYS.items() if k != "input_throughput"},
    latency_stems=max2025.LATENCY_STEMS,
    refused={
        "percentile_metrics": _PERCENTILE_FLAGS,
        "metric_percentiles": _PERCENTILE_FLAGS,
        "ttft_skip_requests": "`max benchmark` has no such flag; use --skip-first-n-requests",
    },
    chat_backend_suffix=False,
    # Without --num-prompts and without a duration the tool caps the run at 300 s.
    duration_cap_without_num_prompts_s=300.0,
    aliases=("max-2026", "max-g3"),
    backends=(),
)
