"""MAX's 2025 benchmark_serving.py, as the original sonic suite vendored it, with the additions
its August 2025 version kept compatible (``--max-concurrency``, ``--burstiness``,
``--temperature``, p90/p95, ``failures``, per-request throughput distributions).

Metric rules: TTFT at the first chunk with text, end at the last event (``[DONE]`` included),
ITL between text chunks, output tokens by re-tokenizing the generated text, input tokens as the
client counted them; a response without text failed; requests cut off by
``--max-benchmark-duration-s`` are left out of every count. Statistics of an empty sample set
are 0.0 (the seed's ``analyze_results.py`` formats them with ``:.2f``). A run in which a request
failed exits 1, and its file is written only with ``--always-save-result`` (otherwise it is
kept beside, as ``<name>.partial``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sonic.datasets.base import DatasetRules
from sonic.dialects.base import BodyPolicy, Dialect, rate_str
from sonic.metrics.rules import MetricRules

DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
LATENCY_METRICS = (("ttft", "ttft"), ("tpot", "tpot"), ("itl", "itl"), ("latency", "e2el"))
STAT_FIELDS = ("mean", "median", "std", "p90", "p95", "p99")
# Per-request throughput with "lower is worse" percentiles: p90 is the 10th.
THROUGHPUT_FIELDS = (
    ("mean", None),
    ("std", None),
    ("median", None),
    ("p90", 10.0),
    ("p95", 5.0),
    ("p99", 1.0),
)
GPU_KEYS = ("peak_gpu_memory_mib", "available_gpu_memory_mib", "gpu_utilization")
SECTIONS = (
    ("ttft", "TTFT", "Time to First Token"),
    ("tpot", "TPOT", "Time per Output Token (excl. 1st token)"),
    ("itl", "ITL", "Inter-token Latency"),
    ("e2el", "Request Latency", "Per-Request E2E Latency"),
)
_PERCENTILE_FLAGS = (
    "MAX's result has fixed mean/median/std/p90/p95/p99 keys of ttft, tpot, itl and latency; "
    "use --compat vllm to choose metrics and percentiles"
)

BODY = BodyPolicy(
    max_tokens_field={
        "completions": "max_tokens",
        "chat": "max_tokens",
        "tgi": "parameters.max_new_tokens",
        "trtllm": "max_tokens",
    },
    include_usage=(),
    fixed_fields={
        "completions": {"temperature": 0.0, "best_of": 1, "ignore_eos": True},
        "chat": {"temperature": 0.0},
        "tgi": {"parameters": {"do_sample": True, "temperature": 0.01, "top_p": 0.99}},
        "trtllm": {"accumulate_tokens": True, "temperature": 0.0, "top_p": 1.0},
    },
)
METRIC_KEYS = {
    "completed": "completed",
    "duration_s": "duration",
    "total_input_tokens": "total_input_tokens",
    "total_output_tokens": "total_output_tokens",
    "request_throughput": "request_throughput",
    "output_throughput": "output_throughput",
    "failed": "failures",
    "input_throughput": "input_throughput",
}
LATENCY_STEMS = {"ttft": "ttft", "tpot": "tpot", "itl": "itl", "e2el": "latency"}
DATASET_RULES = DatasetRules(
    range_ratio="lower_bound",
    oversample=False,
    sharegpt_hub_download=True,
    sonnet_strict=True,
    sonnet_template_on_chat=True,
)


def filename(info, when: datetime, date_format: str = DATE_FORMAT) -> str:
    """``{backend}-{rate}qps[-concurrency{N}]-{model}-{date}.json``."""
    base_model = info.model_id.split("/")[-1]
    mc = f"-concurrency{info.max_concurrency}" if info.max_concurrency is not None else ""
    dt = when.strftime(date_format)
    return f"{info.backend}-{rate_str(info.request_rate)}qps{mc}-{base_model}-{dt}.json"


class Max2025Dialect(Dialect):
    def result_filename(self, info, when: datetime) -> str:
        return filename(info, when)

    def empty_stat(self) -> float | None:
        """What a statistic of no samples is written as."""
        return 0.0

    def build_result(self, metrics, info) -> dict[str, Any]:
        """The July 2025 keys (aggregate ``input_throughput``/``output_throughput``,
        ``*_ttft_ms`` …, ``server_args``, ``client_args``, scalar GPU keys) plus the August
        2025 ``failures``, ``burstiness``, ``max_concurrency``, p90/p95, ``*_latency_ms`` and
        per-request throughput distributions."""
        from sonic.results.document import (
            SONIC_KEY,
            check_metadata,
            json_safe,
            per_request_arrays,
            request_rate_value,
            sonic_section,
            stat,
        )
        from sonic.results.secrets import redact_args

        m = metrics
        empty = self.empty_stat()
        client_args = json_safe(redact_args(info.client_args))
        if "request_rate" in client_args:
            client_args["request_rate"] = str(info.client_args["request_rate"])
        header: dict[str, Any] = {
            "date": info.date.strftime(DATE_FORMAT),
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
            # The August 2025 script overwrites the argument with the cap actually used (all
            # requests if unbounded).
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
            for fieldname, rev in THROUGHPUT_FIELDS:
                body[f"{fieldname}_{stem}"] = stat(s, fieldname, reverse=rev, empty=empty)
        for stem, metric in LATENCY_METRICS:
            s = m.stats[metric].scaled(1000.0)
            for fieldname in STAT_FIELDS:
                body[f"{fieldname}_{stem}_ms"] = stat(s, fieldname, empty=empty)
        body.update(
            per_request_arrays(
                m, ("input_lens", "output_lens", "ttfts", "itls", "generated_texts", "errors")
            )
        )
        body["peak_gpu_memory_mib"] = info.peak_gpu_memory_mib
        body["available_gpu_memory_mib"] = info.available_gpu_memory_mib
        body["gpu_utilization"] = info.gpu_utilization
        check_metadata(info.metadata, [*header, *traffic, *body, SONIC_KEY])
        return {
            **header,
            **info.metadata,
            **traffic,
            **body,
            SONIC_KEY: sonic_section(self, m, info),
        }

    def add_telemetry(self, doc: dict[str, Any], telemetry: Any) -> None:
        """Per-GPU lists under MAX's GPU keys (where they already stand; empty lists when
        collection was on but nothing was sampled), ``cpu_metrics`` (the server's CPU time)
        and ``server_metrics`` / ``server_metrics_by_endpoint`` from /metrics."""
        from sonic.results.document import insert_after, insert_before_sonic

        if telemetry.gpu_requested:
            doc.update(telemetry.max_gpu_keys())  # keys exist: their order is kept
        if telemetry.cpu is not None:  # after the GPU keys, as MAX writes it
            insert_after(doc, "gpu_utilization", {"cpu_metrics": telemetry.cpu.as_dict()})
        insert_before_sonic(doc, telemetry.max_server_metrics())

    def owns(self, doc: dict[str, Any]) -> bool:
        return "failures" in doc and "client_args" in doc

    def console_lines(self, metrics, info) -> list[str]:
        from sonic.console import BANNER, WIDTH, flt, integer, section

        m = metrics
        out = [
            BANNER,
            integer("Successful requests:", m.completed),
            integer("Failed requests:", m.failed),
            flt("Benchmark duration (s):", m.duration_s),
            integer("Total input tokens:", m.total_input_tokens),
            integer("Total generated tokens:", m.total_output_tokens),
            integer("Total nonempty serving response chunks:", m.nonempty_chunks),
            flt("Request throughput (req/s):", m.request_throughput),
            flt("Input token throughput (tok/s):", m.input_throughput),
            flt("Output token throughput (tok/s):", m.output_throughput),
        ]
        for name, short, header in SECTIONS:
            s = m.stats[name].scaled(1000.0)
            out.append(section(header))
            out.append(flt(f"Mean {short} (ms):", s.mean))
            out.append(flt(f"Median {short} (ms):", s.median))
            out.append(flt(f"P99 {short} (ms):", s.p(99.0)))
        out += [
            section("Token Stats"),
            integer("Max input tokens:", m.max_input_tokens),
            integer("Max output tokens:", m.max_output_tokens),
            integer("Max total tokens:", m.max_total_tokens),
        ]
        if info.peak_gpu_memory_mib or info.available_gpu_memory_mib or info.gpu_utilization:
            out += [
                section("GPU Stats"),
                flt("GPU Utilization (%):", info.gpu_utilization),
                flt("Peak GPU Memory Used (MiB):", info.peak_gpu_memory_mib),
                flt("GPU Memory Available (MiB):", info.available_gpu_memory_mib),
            ]
        out.append("=" * WIDTH)
        return out


MAX = Max2025Dialect(
    name="max",
    title="MAX benchmark_serving.py (2025)",
    summary="TTFT at the first non-empty text, re-tokenized output, sleep-after-send arrivals, "
    "exit 1 on failures (the file only with --always-save-result).",
    defaults={
        "backend": "modular",
        "host": "localhost",
        "dataset_name": "sharegpt",
        "seed": 0,
        "num_prompts": 1000,
        # Fixed by the document; recorded and used for sonic's own percentiles.
        "percentile_metrics": ("ttft", "tpot", "itl", "e2el"),
        "metric_percentiles": (90.0, 95.0, 99.0),
        "random_range_ratio": 1.0,
        "temperature": 0.0,
        # The 2025 script collects nothing unless asked and never flushes a cache.
        "collect_gpu_stats": False,
        "collect_cpu_stats": False,
        "flush_prefix_cache": False,
    },
    metric_rules=MetricRules(
        ttft_rule="first_text",
        end_rule="last_event",
        itl_rule="text",
        token_count="retokenize",
        require_text=True,
        cut_off="excluded",
    ),
    dataset_rules=DATASET_RULES,
    body=BODY,
    ignore_eos_policy="completions",
    arrival="sequential",
    test_prompt_default=True,
    model_required=True,
    saves_on=("save_result", "result_filename"),
    unique_auto_names=True,
    keep_overwritten=True,
    strict_exit=True,
    failed_runs_saved=False,
    refused={
        "percentile_metrics": _PERCENTILE_FLAGS,
        "metric_percentiles": _PERCENTILE_FLAGS,
        # sonic.workloads follows `max benchmark` 2026; MAX 2025 drew turns from U[n/2, n]
        # and delays from N(m, m/2), which sonic does not reproduce.
        "num_chat_sessions": "MAX 2025's multi-turn draws are not reproduced; sessions follow "
        "`max benchmark` 2026 (--compat max-benchmark)",
    },
    metric_keys=METRIC_KEYS,
    latency_stems=LATENCY_STEMS,
    aliases=("max-2025",),
    backends=("modular", "modular-chat"),
)
