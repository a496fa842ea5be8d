"""vLLM's `vllm bench serve` (2025+): its defaults, metric rules, body fields, save and exit
policy, result document, file names and console summary.

Metric rules: TTFT at the first chunk carrying a choice (even with empty text), end at the last
such chunk, ITL between choice chunks, tokens from the server's usage (re-tokenized text when a
response has none); a 200 reply without any choice chunk failed. Results are written on
``--save-result``/``--append-result``, also when requests failed, and the exit code is 0.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sonic.datasets.base import DatasetRules
from sonic.dialects.base import BodyPolicy, Dialect, rate_str
from sonic.metrics.rules import MetricRules

# Removed from the document without --save-detailed (latencies/queue_times are kept).
DETAILED_KEYS = (
    "input_lens",
    "output_lens",
    "start_times",
    "ttfts",
    "itls",
    "generated_texts",
    "errors",
)
ARRAY_KEYS = (
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
DATE_FORMAT = "%Y%m%d-%H%M%S"

# metric -> (short name, section header), vLLM's console wording
SECTIONS = {
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


class VllmDialect(Dialect):
    def result_filename(self, info, when: datetime) -> str:
        """``{label}-{rate}qps[-concurrency{N}]-{model}-{%Y%m%d-%H%M%S}.json`` (label defaults
        to the backend; ramp-up: ``{label}-ramp-up-{strategy}-{start}qps-{end}qps...``)."""
        base_model = info.model_id.split("/")[-1]
        mc = f"-concurrency{info.max_concurrency}" if info.max_concurrency is not None else ""
        label = info.label or info.backend
        dt = when.strftime(DATE_FORMAT)
        if info.ramp_up_strategy is not None:
            return (
                f"{label}-ramp-up-{info.ramp_up_strategy}-{info.ramp_up_start_rps}qps-"
                f"{info.ramp_up_end_rps}qps{mc}-{base_model}-{dt}.json"
            )
        return f"{label}-{rate_str(info.request_rate)}qps{mc}-{base_model}-{dt}.json"

    def stat_metrics(self, info) -> list[str]:
        """Selected metrics in vLLM's fixed order; the client-queue ones exist only under a
        concurrency cap (and the queue-inclusive E2EL only with a finite rate), as in vLLM."""
        from sonic.metrics import PERCENTILE_METRICS

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

    def build_result(self, metrics, info) -> dict[str, Any]:
        """Header, generation keys, then per selected metric ``mean/median/std/p{P}_{m}_ms``;
        per-request arrays only with ``save_detailed``; 0 for an empty sample set."""
        from sonic.metrics import percentile_word
        from sonic.results.document import (
            SONIC_KEY,
            check_metadata,
            per_request_arrays,
            request_rate_value,
            sonic_section,
            zero,
        )

        m = metrics
        header: dict[str, Any] = {
            "date": info.date.strftime(DATE_FORMAT),
            "endpoint_type": info.endpoint_type or info.backend,
            "backend": info.backend,
            "label": info.label,  # as given; null without --label
            "model_id": info.model_id,
            "tokenizer_id": info.tokenizer_id,
            "num_prompts": info.num_prompts,
        }
        traffic: dict[str, Any] = {
            # vLLM writes an unbounded rate as "inf" and burstiness as the float itself
            # (json.dump's Infinity).
            "request_rate": request_rate_value(info.request_rate),
            "burstiness": info.burstiness,
            "max_concurrency": info.max_concurrency,
        }
        if info.ramp_up_strategy is not None:
            traffic["ramp_up_strategy"] = info.ramp_up_strategy
            traffic["ramp_up_start_rps"] = info.ramp_up_start_rps
            traffic["ramp_up_end_rps"] = info.ramp_up_end_rps
        keys = (
            ARRAY_KEYS
            if info.save_detailed
            else tuple(k for k in ARRAY_KEYS if k not in DETAILED_KEYS)
        )
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
            **per_request_arrays(m, keys),
            "max_output_tokens_per_s": m.max_output_tokens_per_s,
            "max_concurrent_requests": m.max_concurrent_requests,
            "rtfx": 0.0,
        }
        if info.ramp_up_strategy is not None:
            body["rps_change_events"] = list(info.rps_change_events)
        for name in self.stat_metrics(info):
            s = m.stats[name].scaled(1000.0)
            body[f"mean_{name}_ms"] = zero(s.mean)
            body[f"median_{name}_ms"] = zero(s.median)
            body[f"std_{name}_ms"] = zero(s.std)
            for p in info.metric_percentiles:
                body[f"p{percentile_word(p)}_{name}_ms"] = zero(s.p(p))
        check_metadata(info.metadata, [*header, *traffic, *body, SONIC_KEY])
        return {
            **header,
            **info.metadata,
            **traffic,
            **body,
            SONIC_KEY: sonic_section(self, m, info),
        }

    def add_telemetry(self, doc: dict[str, Any], telemetry: Any) -> None:
        """vLLM's ``spec_decode_*`` keys when the engine counted speculative decoding."""
        from sonic.results.document import insert_before_sonic, num

        spec = {
            k: [num(x) for x in v] if isinstance(v, list) else num(v) if isinstance(v, float) else v
            for k, v in telemetry.vllm_spec_decode().items()
        }
        insert_before_sonic(doc, spec)

    def owns(self, doc: dict[str, Any]) -> bool:
        return "failed" in doc and "endpoint_type" in doc

    def console_lines(self, metrics, info) -> list[str]:
        from sonic.console import BANNER, WIDTH, flt, integer, section
        from sonic.metrics import percentile_word

        m = metrics
        out = [BANNER, integer("Successful requests:", m.completed)]
        out.append(integer("Failed requests:", m.failed))
        if info.max_concurrency is not None:
            out.append(integer("Maximum request concurrency:", info.max_concurrency))
        if not math.isinf(info.request_rate):
            out.append(flt("Request rate configured (RPS):", info.request_rate))
        out += [
            flt("Benchmark duration (s):", m.duration_s),
            integer("Total input tokens:", m.total_input_tokens),
            integer("Total generated tokens:", m.total_output_tokens),
            flt("Request throughput (req/s):", m.request_throughput),
        ]
        if m.goodput_slos_ms:
            out.append(flt("Request goodput (req/s):", m.request_goodput))
        out += [
            flt("Output token throughput (tok/s):", m.output_throughput),
            flt("Peak output token throughput (tok/s):", m.max_output_tokens_per_s),
            flt("Peak concurrent requests:", m.max_concurrent_requests),
            flt("Total token throughput (tok/s):", m.total_token_throughput),
        ]
        for name in self.stat_metrics(info):
            short, header = SECTIONS[name]
            s = m.stats[name].scaled(1000.0)
            out.append(section(header))
            out.append(flt(f"Mean {short} (ms):", s.mean, 0.0))
            out.append(flt(f"Median {short} (ms):", s.median, 0.0))
            for p in info.metric_percentiles:
                out.append(flt(f"P{percentile_word(p)} {short} (ms):", s.p(p), 0.0))
        out.append("=" * WIDTH)
        return out


VLLM = VllmDialect(
    name="vllm",
    title="vLLM `bench serve`",
    summary="TTFT at the first chunk with a choice, server usage token counts, precomputed "
    "arrivals, results saved and exit 0 even when requests fail.",
    defaults={
        "backend": "openai",
        "host": "127.0.0.1",
        "dataset_name": "random",
        "seed": 0,
        "num_prompts": 1000,
        "percentile_metrics": ("ttft", "tpot", "itl"),
        "metric_percentiles": (99.0,),
        "random_range_ratio": 0.0,
        "temperature": None,
        "collect_gpu_stats": False,
        "collect_cpu_stats": False,
        "flush_prefix_cache": False,
    },
    metric_rules=MetricRules(choice_required=True),
    dataset_rules=DatasetRules(
        range_ratio="symmetric",
        oversample=True,
        sharegpt_hub_download=False,
        sonnet_strict=False,
        sonnet_template_on_chat=False,
    ),
    body=BodyPolicy(
        max_tokens_field={
            "completions": "max_tokens",
            "chat": "max_completion_tokens",
            "tgi": "parameters.max_new_tokens",
            "trtllm": "max_tokens",
        },
        include_usage=("completions", "chat"),
        fixed_fields={
            "completions": {"repetition_penalty": 1.0},
            # TGI rejects temperature 0 and top_p 1, hence vLLM's near-greedy values.
            "tgi": {"parameters": {"do_sample": True, "temperature": 0.01, "top_p": 0.99}},
            "trtllm": {"accumulate_tokens": True, "temperature": 0.0, "top_p": 1.0},
        },
    ),
    ignore_eos_policy="flag_or_random",
    arrival="precomputed",
    test_prompt_default=False,
    model_required=False,
    saves_on=("save_result", "append_result"),
    unique_auto_names=False,
    keep_overwritten=False,
    strict_exit=False,
    metric_keys={
        "completed": "completed",
        "duration_s": "duration",
        "total_input_tokens": "total_input_tokens",
        "total_output_tokens": "total_output_tokens",
        "request_throughput": "request_throughput",
        "output_throughput": "output_throughput",
        "failed": "failed",
        "total_token_throughput": "total_token_throughput",
        "goodput": "request_goodput",
    },
    latency_stems={"ttft": "ttft", "tpot": "tpot", "itl": "itl", "e2el": "e2el"},
    backends=(),
)
