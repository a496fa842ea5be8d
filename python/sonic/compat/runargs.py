"""The typed, validated result of parsing ``sonic run`` flags.

Everything is resolved here once (dialect defaults applied, endpoint routed, policies turned
into plain values), so later layers read fields instead of re-deriving conventions. Secrets
(header values, URL passwords) are excluded from ``repr`` and scrubbed from ``client_args()``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sonic.datasets.base import DatasetArgs
from sonic.dialects import Dialect
from sonic.metrics.retok import DEFAULT_RETOKENIZE, Retokenize

REDACTED = "<redacted>"


@dataclass(frozen=True)
class TargetArgs:
    """Where requests go and how they are addressed."""

    backend: str  # after MAX August 2025's -chat resolution; names results
    requested_backend: str  # as given, or the dialect default
    api: str  # completions | chat | tgi | trtllm (decided by the endpoint suffix)
    base_url: str  # scheme://host:port[/prefix], no trailing slash
    endpoint: str
    host: str
    port: int
    model: str | None  # None: ask the server's /v1/models (vLLM behaviour)
    served_model_name: str | None
    tokenizer: str | None  # defaults to --model
    trust_remote_code: bool
    request_id_prefix: str
    request_timeout_s: float
    insecure: bool
    server_args: str
    headers: dict[str, str] = field(repr=False)

    @property
    def url(self) -> str:
        return self.base_url + self.endpoint

    @property
    def request_model(self) -> str | None:
        """The ``model`` field of request bodies."""
        return self.served_model_name or self.model


@dataclass(frozen=True)
class TrafficArgs:
    """When requests are sent. A list in rates or concurrencies is a MAX 2026-style sweep."""

    request_rates: tuple[float, ...]  # math.inf = all at t0
    max_concurrencies: tuple[int | None, ...]  # None = unbounded
    burstiness: float  # math.inf = constant inter-arrivals
    ramp_up_strategy: str | None  # linear | exponential
    ramp_up_start_rps: float | None
    ramp_up_end_rps: float | None
    arrival: str  # precomputed (vLLM) | sequential (MAX)
    max_benchmark_duration_s: float | None
    num_warmups: int
    test_prompt: bool  # send one untimed request first
    ready_check_timeout_s: float  # retry the test request until this passes (0 = once)
    flush_prefix_cache: bool = False  # reset the engine's prefix cache before the run
    stop_over_saturated: bool = False  # stop once the backlog keeps growing (GuideLLM)
    self_calibrate: bool = True  # measure the client's timing error here before the run
    client_threads: int | None = None  # the client's worker threads (None: the core's default)
    workers: int = 1  # Ray actors sharing the run (sonic.workers); 1: this process alone
    ray_address: str | None = None  # the Ray cluster (None: a local Ray)
    # MAX's --warmup-to-steady-state: warm-started sessions (sonic.workloads.warmup).
    warmup_to_steady_state: bool = False
    warmup_oversample_factor: int = 8
    warmup_concurrency: int = 128
    # Sessions (multi-turn workloads only): earlier turns' text, id header, prefix-cache salt
    # ("auto": one drawn per run).
    history: str = "dataset"
    session_header: str | None = "X-Session-ID"
    cache_salt: str | None = "auto"
    session_id_as_cache_salt: bool = False

    @property
    def is_sweep(self) -> bool:
        return len(self.request_rates) > 1 or len(self.max_concurrencies) > 1

    @property
    def request_rate(self) -> float:
        """The single rate of a non-sweep run (first of a sweep)."""
        return self.request_rates[0]

    @property
    def max_concurrency(self) -> int | None:
        return self.max_concurrencies[0]


@dataclass(frozen=True)
class SamplingArgs:
    """Generation settings sent with each request (``None`` = not sent)."""

    temperature: float | None
    top_p: float | None
    top_k: int | None
    min_p: float | None
    frequency_penalty: float | None
    presence_penalty: float | None
    repetition_penalty: float | None
    ignore_eos: bool  # resolved from the flag, the dialect's policy, the API and the dataset
    logprobs: int | None
    extra_body: dict[str, Any]  # --extra-body, applied last

    def overrides(self) -> dict[str, Any]:
        """Sampling fields that were set, in body-field names."""
        names = (
            "temperature",
            "top_p",
            "top_k",
            "min_p",
            "frequency_penalty",
            "presence_penalty",
            "repetition_penalty",
        )
        out = {n: getattr(self, n) for n in names if getattr(self, n) is not None}
        if self.logprobs is not None:
            out["logprobs"] = self.logprobs
        return out


@dataclass(frozen=True)
class MetricsArgs:
    """Which statistics are computed and reported."""

    percentile_metrics: tuple[str, ...]  # of ttft, tpot, itl, e2el
    metric_percentiles: tuple[float, ...]
    goodput: dict[str, float] | None  # {ttft|tpot|e2el: ms}
    ttft_skip_requests: int
    skip_first_n_requests: int | None  # None: the dialect's default for the run point
    skip_last_n_requests: int | None
    retokenize: Retokenize = DEFAULT_RETOKENIZE  # which answers are re-tokenized after the run


@dataclass(frozen=True)
class OutputArgs:
    """Result files and console."""

    save_result: bool
    save_detailed: bool
    append_result: bool
    always_save_result: bool
    result_dir: str | None
    result_filename: str | None
    metadata: dict[str, str]
    label: str
    disable_tqdm: bool
    collect_gpu_stats: bool
    collect_cpu_stats: bool = False
    server_pids: tuple[int, ...] = ()  # empty: found by the server's port
    gpu_sample_hz: float = 10.0
    collect_server_stats: bool = True
    server_metrics_url: str | None = None  # resolved: None = not scraped
    server_metrics_endpoints: dict[str, str] = field(default_factory=dict)  # --metrics-urls
    server_metrics_interval_s: float = 1.0
    # Records streamed to an Arrow file while the run goes (sonic.recordfile).
    stream_records: bool = False

    @property
    def wants_file(self) -> bool:
        """Whether a result file is requested (either tool's trigger)."""
        return self.save_result or self.append_result or self.save_detailed


@dataclass(frozen=True)
class RunArgs:
    """Everything ``sonic run`` needs, resolved. Build with ``parse_run_args``."""

    dialect: Dialect
    target: TargetArgs
    dataset: DatasetArgs
    traffic: TrafficArgs
    sampling: SamplingArgs
    metrics: MetricsArgs
    output: OutputArgs
    accepted_ignored: tuple[str, ...]  # flags accepted that change nothing, as given
    explicit: frozenset[str]  # dests the user set (the rest are defaults)

    def points(self) -> Iterator[RunArgs]:
        """One RunArgs per sweep point: concurrency outer, rate inner (MAX 2026's order)."""
        for mc in self.traffic.max_concurrencies:
            for rate in self.traffic.request_rates:
                yield replace(
                    self,
                    traffic=replace(self.traffic, request_rates=(rate,), max_concurrencies=(mc,)),
                )

    def with_model(self, model: str) -> RunArgs:
        """Fill in a model discovered from /v1/models; the tokenizer follows unless given."""
        tokenizer = self.target.tokenizer if "tokenizer" in self.explicit else model
        return replace(self, target=replace(self.target, model=model, tokenizer=tokenizer))

    def static_body(self) -> dict[str, Any]:
        """Request-body fields that are the same for every request.

        Per request the client adds the model, the prompt (``backends.PROMPT_FIELD``), the
        max-tokens field (``max_tokens_field``) and ``stream: true``. Precedence: the dialect's
        fixed fields, then ignore_eos, stream_options and the sampling flags, then
        ``--extra-body`` (top-level keys replace earlier ones).
        """
        api = self.target.api
        body = self.dialect.body.fixed(api)
        if api in ("completions", "chat"):
            if self.sampling.ignore_eos:
                body["ignore_eos"] = True
            else:
                body.pop("ignore_eos", None)
            if api in self.dialect.body.include_usage:
                body["stream_options"] = {"include_usage": True}
            body.update(self.sampling.overrides())
        elif api == "tgi":
            body.setdefault("parameters", {}).update(self.sampling.overrides())
        else:
            body.update(self.sampling.overrides())
        body.update(copy.deepcopy(self.sampling.extra_body))
        return body

    @property
    def max_tokens_field(self) -> str:
        """Body field of the output-length limit; dotted for nested fields (TGI)."""
        return self.dialect.body.max_tokens_field[self.target.api]

    def client_args(self) -> dict[str, Any]:
        """The settings as MAX's ``client_args`` JSON object: argparse-style keys, request rate
        as a string, secrets scrubbed. Safe to write to a result file."""
        t, d, tr, s, m, o = (
            self.target,
            self.dataset,
            self.traffic,
            self.sampling,
            self.metrics,
            self.output,
        )
        return {
            "compat": self.dialect.name,
            "backend": t.backend,
            "base_url": scrub_url(t.base_url),
            "host": t.host,
            "port": t.port,
            "endpoint": t.endpoint,
            "header": {name: REDACTED for name in t.headers},
            "model": t.model,
            "served_model_name": t.served_model_name,
            "tokenizer": t.tokenizer,
            "trust_remote_code": t.trust_remote_code,
            "request_id_prefix": t.request_id_prefix,
            "request_timeout_s": t.request_timeout_s,
            "server_args": t.server_args,
            "dataset_name": d.name,
            "dataset_path": d.path,
            "num_prompts": d.num_prompts,
            "seed": d.seed,
            "sharegpt_output_len": d.sharegpt_output_len,
            "sonnet_input_len": d.sonnet_input_len,
            "sonnet_output_len": d.sonnet_output_len,
            "sonnet_prefix_len": d.sonnet_prefix_len,
            "random_input_len": d.random_input_len,
            "random_output_len": d.random_output_len,
            "random_prefix_len": d.random_prefix_len,
            "random_range_ratio": _ratio_json(d.random_range_ratio),
            "output_lengths": list(d.output_lengths)
            if isinstance(d.output_lengths, tuple)
            else d.output_lengths,
            "max_output_len": d.max_output_len,
            **d.workload_settings(),
            "request_rate": ",".join(rate_str(r) for r in tr.request_rates),
            "burstiness": _num_json(tr.burstiness),
            "max_concurrency": tr.max_concurrency
            if len(tr.max_concurrencies) == 1
            else ",".join("none" if c is None else str(c) for c in tr.max_concurrencies),
            "ramp_up_strategy": tr.ramp_up_strategy,
            "ramp_up_start_rps": tr.ramp_up_start_rps,
            "ramp_up_end_rps": tr.ramp_up_end_rps,
            "max_benchmark_duration_s": tr.max_benchmark_duration_s,
            "num_warmups": tr.num_warmups,
            "skip_test_prompt": not tr.test_prompt,
            "flush_prefix_cache": tr.flush_prefix_cache,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": s.top_k,
            "min_p": s.min_p,
            "frequency_penalty": s.frequency_penalty,
            "presence_penalty": s.presence_penalty,
            "repetition_penalty": s.repetition_penalty,
            "ignore_eos": s.ignore_eos,
            "logprobs": s.logprobs,
            "extra_body": copy.deepcopy(s.extra_body),
            "percentile_metrics": ",".join(m.percentile_metrics),
            "metric_percentiles": ",".join(_pct_str(p) for p in m.metric_percentiles),
            "goodput": dict(m.goodput) if m.goodput else None,
            "ttft_skip_requests": m.ttft_skip_requests,
            "skip_first_n_requests": m.skip_first_n_requests,
            "skip_last_n_requests": m.skip_last_n_requests,
            "retokenize": str(m.retokenize),
            "save_result": o.save_result,
            "save_detailed": o.save_detailed,
            "stream_records": o.stream_records,
            "append_result": o.append_result,
            "always_save_result": o.always_save_result,
            "result_dir": o.result_dir,
            "result_filename": o.result_filename,
            "metadata": [f"{k}={v}" for k, v in o.metadata.items()],
            "label": o.label,
            "disable_tqdm": o.disable_tqdm,
            "collect_gpu_stats": o.collect_gpu_stats,
            "collect_cpu_stats": o.collect_cpu_stats,
            "server_pids": list(o.server_pids),
            "gpu_sample_hz": o.gpu_sample_hz,
            "collect_server_stats": o.collect_server_stats,
            "server_metrics_url": scrub_url(o.server_metrics_url) if o.server_metrics_url else None,
            "metrics_urls": {k: scrub_url(v) for k, v in o.server_metrics_endpoints.items()},
            "server_metrics_interval_s": o.server_metrics_interval_s,
            "accepted_ignored": list(self.accepted_ignored),
        }


def rate_str(rate: float) -> str:
    """A request rate as MAX and vLLM print it: ``inf`` or the float's repr (``10.0``)."""
    return "inf" if math.isinf(rate) else repr(float(rate))


def _pct_str(p: float) -> str:
    return str(int(p)) if p == int(p) else repr(p)


def _num_json(value: float) -> float | str:
    return "inf" if math.isinf(value) else value


def _ratio_json(pair: tuple[float, float]) -> float | dict[str, float]:
    return pair[0] if pair[0] == pair[1] else {"input": pair[0], "output": pair[1]}


def scrub_url(url: str) -> str:
    """Drop a password from ``scheme://user:password@host``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username}:{REDACTED}@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
