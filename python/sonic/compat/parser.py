"""``parse_run_args``: the union of vLLM `bench serve` and MAX benchmark_serving.py flags.

argparse (``allow_abbrev=False``, built from ``flags.FLAGS``) only splits argv into raw strings,
so ``--flag value`` and ``--flag=value`` behave alike; this module then refuses what would
change the measurement, applies the chosen dialect's defaults and validates each value with a
one-line ``SonicError``. Imports stay light (stdlib only): ``sonic run --help`` must be quick.
"""

from __future__ import annotations

import argparse
import difflib
import math
import secrets
import sys
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, NoReturn
from urllib.parse import urlsplit

from sonic import dialects
from sonic.compat import values as V
from sonic.compat.backends import resolve_route
from sonic.compat.flags import ACCEPTED, FLAGS, REFUSED, Flag, flag_table
from sonic.compat.runargs import (
    DatasetArgs,
    MetricsArgs,
    OutputArgs,
    RunArgs,
    SamplingArgs,
    TargetArgs,
    TrafficArgs,
    scrub_url,
)
from sonic.datasets.registry import NOT_IMPLEMENTED
from sonic.datasets.registry import RUN_DATASET_NAMES as DATASETS
from sonic.dialects import Dialect
from sonic.errors import SonicError
from sonic.metrics.retok import DEFAULT_RETOKENIZE, Retokenize

RAMP_UP_STRATEGIES = ("linear", "exponential")
DEFAULT_REQUEST_TIMEOUT_S = 6 * 3600.0
HELP_TOKENS = ("-h", "--help")


class _Parser(argparse.ArgumentParser):
    """argparse that raises SonicError instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        line = message.splitlines()[0] if message else "bad arguments"
        if line.endswith("expected one argument"):
            flag = line.split()[1].rstrip(":") if line.startswith("argument ") else "--flag"
            line += f" (for a value starting with '-', write {flag}=VALUE)"
        raise SonicError(line)


_PARSER: _Parser | None = None


def _build_parser() -> _Parser:
    global _PARSER
    if _PARSER is not None:
        return _PARSER
    parser = _Parser(prog="sonic run", add_help=False, allow_abbrev=False)
    for flag in FLAGS:
        names = [flag.name, *flag.aliases]
        if flag.kind == "bool":
            parser.add_argument(*names, dest=flag.dest, nargs="?", const="true", default=None)
            if flag.negation:
                parser.add_argument(
                    flag.negation, dest=flag.dest, action="store_const", const="false"
                )
        elif flag.kind == "list":
            parser.add_argument(*names, dest=flag.dest, nargs="*", action="extend", default=None)
        else:
            parser.add_argument(*names, dest=flag.dest, default=None)
    _PARSER = parser
    return parser


def _unknown_flag_error(token: str) -> SonicError:
    name = token.split("=", 1)[0]
    known = list(flag_table())
    guess = name.replace("_", "-")
    if guess in known:
        close = [guess]
    else:
        close = difflib.get_close_matches(guess, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else " (see sonic run --help)"
    return SonicError(f"unknown flag {name}{hint}")


def _is_harmless(flag: Flag, value: Any) -> bool:
    if flag.kind == "list":
        return not value
    text = str(value).strip().lower()
    for ok in flag.harmless:
        if text == ok:
            return True
        try:
            if float(text) == float(ok):
                return True
        except ValueError:
            pass
    return False


class _Raw:
    """Raw flag strings by dest, with typed accessors that name the flag in errors. A flag
    not given takes the dialect's default for it when the dialect sets one (of the accessor's
    type), else the accessor's own default."""

    def __init__(self, ns: dict[str, Any], defaults: Mapping[str, Any] | None = None) -> None:
        self.ns = ns
        self.by_dest = {f.dest: f for f in FLAGS}
        self.defaults: Mapping[str, Any] = defaults or {}

    def _default(self, dest: str, default: Any, kinds: tuple[type, ...]) -> Any:
        value = self.defaults.get(dest)
        if isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds):
            return value
        return default

    def given(self, dest: str) -> bool:
        return self.ns.get(dest) is not None

    def name(self, dest: str) -> str:
        return self.by_dest[dest].name

    def text(self, dest: str, default: str | None = None) -> str | None:
        value = self.ns.get(dest)
        return self._default(dest, default, (str,)) if value is None else value

    def items(self, dest: str) -> list[str] | None:
        return self.ns.get(dest)

    def flag(self, dest: str, default: bool = False) -> bool:
        value = self.ns.get(dest)
        if value is None:
            return self._default(dest, default, (bool,))
        return V.parse_bool(self.name(dest), value)

    def integer(self, dest: str, default: int | None, minimum: int | None = None) -> int | None:
        value = self.ns.get(dest)
        if value is None:
            return self._default(dest, default, (int,))
        return V.parse_int(self.name(dest), value, minimum)

    def number(self, dest: str, default: float | None, **checks: bool) -> float | None:
        value = self.ns.get(dest)
        if value is None:
            return self._default(dest, default, (int, float))
        return V.parse_float(self.name(dest), value, **checks)


def parse_run_args(argv: list[str]) -> RunArgs:
    """Parse ``sonic run`` argv into a resolved, validated RunArgs.

    Raises SonicError (one line) on any bad input. ``-h``/``--help`` prints the help to stdout
    and raises ``SystemExit(0)``, as argparse does.
    """
    argv = list(argv)
    if any(tok in HELP_TOKENS for tok in argv):
        from sonic.compat.help import format_run_help

        sys.stdout.write(format_run_help())
        raise SystemExit(0)
    ns, extras = _build_parser().parse_known_args(_undot_metrics_urls(argv))
    for token in extras:
        if token.startswith("-") and token != "-":
            raise _unknown_flag_error(token)
    if extras:
        shown = "" if any(t.startswith("--header") for t in argv) else f" {extras[0]!r}"
        raise SonicError(f"unexpected argument{shown}: sonic run takes only --flags")
    raw = _Raw(vars(ns))

    ignored: list[str] = []
    for flag in FLAGS:
        if not raw.given(flag.dest) or flag.status not in (ACCEPTED, REFUSED):
            continue
        if flag.status == REFUSED and not _is_harmless(flag, raw.ns[flag.dest]):
            raise SonicError(
                f"{flag.name} is not supported: {flag.reason} "
                "(sonic refuses flags that would change what is measured)"
            )
        ignored.append(flag.name)

    dialect = dialects.select(raw.text("compat"), raw.text("backend"))
    raw.defaults = dialect.defaults
    for dest, reason in dialect.refused.items():
        if raw.given(dest):
            raise SonicError(
                f"{raw.name(dest)} is not supported with --compat {dialect.name}: {reason}"
            )
    target = _target(raw, dialect)
    dataset = _dataset(raw, dialect, target)
    traffic = _traffic(raw, dialect)
    sampling = _sampling(raw, dialect, target, dataset)
    metrics = _metrics(raw, dialect, dataset)
    output = _output(raw, target, dialect)
    explicit = frozenset(d for d in raw.by_dest if raw.given(d))
    return RunArgs(
        dialect=dialect,
        target=target,
        dataset=dataset,
        traffic=traffic,
        sampling=sampling,
        metrics=metrics,
        output=output,
        accepted_ignored=tuple(ignored),
        explicit=explicit,
    )


METRICS_URLS_DOTTED = "--metrics-urls."


def _undot_metrics_urls(argv: list[str]) -> list[str]:
    """MAX's ``--metrics-urls.LABEL=URL`` (or ``--metrics-urls.LABEL URL``) as
    ``--metrics-urls LABEL=URL``."""
    out: list[str] = []
    it = iter(argv)
    for tok in it:
        if not tok.startswith(METRICS_URLS_DOTTED):
            out.append(tok)
            continue
        label, sep, url = tok[len(METRICS_URLS_DOTTED) :].partition("=")
        if not sep:
            url = next(it, "")
        out += ["--metrics-urls", f"{label}={url}"]
    return out


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _target(raw: _Raw, dialect: Dialect) -> TargetArgs:
    route = resolve_route(
        raw.text("backend", dialect.default("backend")),
        raw.text("endpoint", dialect.default("endpoint")),
    )
    if not dialect.chat_backend_suffix:  # the backend keeps its name on a chat endpoint
        route = replace(route, backend=route.requested_backend)
    host = raw.text("host", dialect.default("host")).strip()
    if not host or any(c in host for c in "/ \t"):
        raise SonicError(f"--host: expected a host name or address, got {host!r}")
    port = raw.integer("port", 8000, minimum=1)
    if port > 65535:
        raise SonicError(f"--port: must be at most 65535, got {port}")
    base_url = raw.text("base_url")
    if base_url is not None:
        base_url, host, port = _check_base_url(raw, base_url, host, port)
    else:
        base_url = f"http://{_format_host(host)}:{port}"

    model = raw.text("model")
    if model is not None and not model.strip():
        raise SonicError("--model: empty")
    if model is None and dialect.model_required:
        raise SonicError(f"--model is required with --compat {dialect.name}")
    headers = V.parse_kv_pairs("--header", raw.items("header") or [], secret=True)
    for index, value in enumerate(headers.values(), start=1):
        if "\r" in value or "\n" in value:
            raise SonicError(f"--header: value {index} contains a line break (value not shown)")
    prefix = raw.text("request_id_prefix")
    if prefix is None:
        prefix = f"bench-{secrets.token_hex(4)}-"
    return TargetArgs(
        backend=route.backend,
        requested_backend=route.requested_backend,
        api=route.api,
        base_url=base_url,
        endpoint=route.endpoint,
        host=host,
        port=port,
        model=model,
        served_model_name=raw.text("served_model_name"),
        tokenizer=raw.text("tokenizer", model),
        trust_remote_code=raw.flag("trust_remote_code"),
        request_id_prefix=prefix,
        request_timeout_s=raw.number("request_timeout_s", DEFAULT_REQUEST_TIMEOUT_S, positive=True),
        insecure=raw.flag("insecure"),
        server_args=raw.text("server_args", ""),
        headers=headers,
    )


def _check_base_url(raw: _Raw, url: str, host: str, port: int) -> tuple[str, str, int]:
    """Validate --base-url; --host/--port given alongside must agree with it."""
    shown = scrub_url(url)
    try:
        parts = urlsplit(url.strip())
        url_port = parts.port
    except ValueError:
        raise SonicError(f"--base-url: not a valid URL: {shown}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SonicError(f"--base-url: expected http(s)://host[:port][/prefix], got {shown}")
    if parts.query or parts.fragment:
        raise SonicError(f"--base-url: must not contain a query or fragment: {shown}")
    url_host = parts.hostname
    if url_port is None:
        url_port = 443 if parts.scheme == "https" else 80
    if raw.given("host") and host.strip("[]") != url_host:
        raise SonicError(f"--host {host} disagrees with --base-url {shown}; pass one of them")
    if raw.given("port") and port != url_port:
        raise SonicError(f"--port {port} disagrees with --base-url {shown}; pass one of them")
    return url.strip().rstrip("/"), url_host, url_port


def _dataset(raw: _Raw, dialect: Dialect, target: TargetArgs) -> DatasetArgs:
    name = raw.text("dataset_name", dialect.default("dataset_name")).strip()
    path = raw.text("dataset_path")
    if raw.given("dataset"):
        if raw.given("dataset_name") and name != "sharegpt":
            raise SonicError(
                f"--dataset is a ShareGPT path; it cannot be combined with --dataset-name {name}"
            )
        if path is not None:
            raise SonicError("--dataset and --dataset-path both given; use --dataset-path")
        name, path = "sharegpt", raw.text("dataset")
    if name not in DATASETS:
        if name in NOT_IMPLEMENTED:
            raise SonicError(
                f"--dataset-name {name} is not supported: the {NOT_IMPLEMENTED[name]} dataset "
                f"is not implemented (available: {', '.join(DATASETS)})"
            )
        close = difflib.get_close_matches(name, DATASETS, n=1)
        hint = f"; did you mean {close[0]}?" if close else f" (available: {', '.join(DATASETS)})"
        raise SonicError(f"unknown --dataset-name {name!r}{hint}")
    if name == "hf" and not path and raw.text("hf_name"):
        path = raw.text("hf_name")
    if name in ("hf", "custom") and not path:
        what = "a Hugging Face dataset id" if name == "hf" else "a JSONL file"
        hint = " or --hf-name" if name == "hf" else ""
        raise SonicError(f"--dataset-name {name} needs --dataset-path{hint} ({what})")

    seed_text = raw.text("seed")
    if seed_text is None:
        seed, drawn = int(dialect.default("seed")), False
    else:
        seed, drawn = V.parse_seed("--seed", seed_text)

    lens = {
        "random_input_len": raw.integer("random_input_len", 1024, minimum=1),
        "random_output_len": raw.integer("random_output_len", 128, minimum=1),
        "sharegpt_output_len": raw.integer("sharegpt_output_len", None, minimum=1),
        "custom_output_len": raw.integer("custom_output_len", 256, minimum=-1),
        "hf_output_len": raw.integer("hf_output_len", None, minimum=1),
    }
    if lens["custom_output_len"] == 0:
        raise SonicError("--custom-output-len: must be positive, or -1 to take it from the file")
    # vLLM's generic --input-len/--output-len set the dataset-specific lengths.
    generic = (
        ("input_len", ("random_input_len",)),
        (
            "output_len",
            ("random_output_len", "sharegpt_output_len", "custom_output_len", "hf_output_len"),
        ),
    )
    for dest, targets in generic:
        value = raw.integer(dest, None, minimum=1)
        if value is None:
            continue
        for specific in targets:
            if raw.given(specific) and lens[specific] != value:
                raise SonicError(
                    f"{raw.name(dest)} {value} contradicts {raw.name(specific)} {lens[specific]}"
                )
            lens[specific] = value

    sonnet_input = raw.integer("sonnet_input_len", 550, minimum=1)
    sonnet_prefix = raw.integer("sonnet_prefix_len", 200, minimum=0)
    if name == "sonnet" and sonnet_prefix > sonnet_input:
        raise SonicError(
            f"--sonnet-prefix-len {sonnet_prefix} exceeds --sonnet-input-len {sonnet_input}"
        )
    ratio_text = raw.text("random_range_ratio")
    if ratio_text is None:
        ratio = float(dialect.default("random_range_ratio", 0.0))
        range_ratio = (ratio, ratio)
    else:
        range_ratio = V.parse_range_ratio(
            "--random-range-ratio", ratio_text, dialect.dataset_rules.range_ratio
        )
    output_lengths = raw.text("output_lengths")
    return DatasetArgs(
        name=name,
        path=path,
        num_prompts=raw.integer("num_prompts", int(dialect.default("num_prompts")), minimum=1),
        seed=seed,
        seed_drawn=drawn,
        compat=dialect.name,
        endpoint_is_chat=target.api == "chat",
        trust_remote_code=target.trust_remote_code,
        sharegpt_output_len=lens["sharegpt_output_len"],
        sonnet_input_len=sonnet_input,
        sonnet_output_len=raw.integer("sonnet_output_len", 150, minimum=1),
        sonnet_prefix_len=sonnet_prefix,
        random_input_len=lens["random_input_len"],
        random_output_len=lens["random_output_len"],
        random_prefix_len=raw.integer("random_prefix_len", 0, minimum=0),
        random_range_ratio=range_ratio,
        custom_output_len=lens["custom_output_len"],
        hf_subset=raw.text("hf_subset"),
        hf_split=raw.text("hf_split"),
        hf_name=raw.text("hf_name"),
        hf_text_column=raw.text("hf_text_column"),
        hf_output_column=raw.text("hf_output_column"),
        hf_output_len=lens["hf_output_len"],
        output_lengths=None
        if output_lengths is None
        else V.parse_output_lengths("--output-lengths", output_lengths),
        max_output_len=raw.integer("max_output_len", None, minimum=1),
        disable_shuffle=raw.flag("disable_shuffle"),
        no_oversample=raw.flag("no_oversample"),
        skip_chat_template=raw.flag("skip_chat_template"),
        chat_template_kwargs=_chat_template_kwargs(raw),
        **_workload_fields(raw),
    )


def _workload_fields(raw: _Raw) -> dict[str, Any]:
    """Multi-turn and trace-replay settings (``sonic.workloads``); combinations are checked
    when the workload is built, where the dataset is known."""
    ratios = {
        dest: raw.number(dest, default, positive=True)
        for dest, default in (
            ("random_first_turn_ratio", 1.0),
            ("trace_speedup", 1.0),
            ("timed_trace_sec_multiplier", 1.0),
        )
    }
    ratios["random_sys_prompt_ratio"] = raw.number(
        "random_sys_prompt_ratio", 0.0, non_negative=True
    )
    labels = {
        f"timed_trace_label_{k}": raw.text(f"timed_trace_label_{k}", default)
        for k, default in (
            ("timestamp", "timestamp"),
            ("input_length", "input_length"),
            ("output_length", "output_length"),
            ("hash_ids", "hash_ids"),
        )
    }
    return {
        "num_chat_sessions": raw.integer("num_chat_sessions", None, minimum=1),
        "random_num_turns": raw.text("random_num_turns", "1"),
        "delay_between_chat_turns": raw.text("delay_between_chat_turns"),
        "random_max_num_unique_sys_prompt": raw.integer(
            "random_max_num_unique_sys_prompt", 1, minimum=1
        ),
        "ignore_first_turn_stats": raw.flag("ignore_first_turn_stats"),
        "max_concurrent_conversations": raw.integer(
            "max_concurrent_conversations", None, minimum=1
        ),
        "prefix_repetition_prefix_len": raw.integer("prefix_repetition_prefix_len", 256, 0),
        "prefix_repetition_suffix_len": raw.integer("prefix_repetition_suffix_len", 256, 0),
        "prefix_repetition_num_prefixes": raw.integer("prefix_repetition_num_prefixes", 10, 1),
        "prefix_repetition_output_len": raw.integer("prefix_repetition_output_len", 128, 1),
        "timed_trace_chunk_hash_size": raw.integer("timed_trace_chunk_hash_size", 16, 1),
        "trace_block_size": raw.integer("trace_block_size", 512, 1),
        "self_timed": raw.flag("self_timed"),
        **ratios,
        **labels,
    }


def _chat_template_kwargs(raw: _Raw) -> dict[str, Any]:
    """--chat-template-kwargs: as in vLLM, passed to the client-side chat template that
    formats prompts (custom and hf datasets), never sent in the request body."""
    text = raw.text("chat_template_kwargs")
    return {} if text is None else V.parse_json_object("--chat-template-kwargs", text)


def _traffic(raw: _Raw, dialect: Dialect) -> TrafficArgs:
    rate_text = raw.text("request_rate")
    rates = (math.inf,) if rate_text is None else V.parse_rate_list("--request-rate", rate_text)
    mc_text = raw.text("max_concurrency")
    concurrencies = (
        (None,) if mc_text is None else V.parse_concurrency_list("--max-concurrency", mc_text)
    )
    burstiness = raw.number("burstiness", 1.0, positive=True, allow_inf=True)

    strategy = raw.text("ramp_up_strategy")
    start = raw.number("ramp_up_start_rps", None, non_negative=True)
    end = raw.number("ramp_up_end_rps", None, non_negative=True)
    if strategy is None:
        if start is not None or end is not None:
            raise SonicError("--ramp-up-start-rps/--ramp-up-end-rps need --ramp-up-strategy")
    else:
        strategy = strategy.strip().lower()
        if strategy not in RAMP_UP_STRATEGIES:
            raise SonicError(
                f"--ramp-up-strategy: expected linear or exponential, got {strategy!r}"
            )
        if start is None or end is None:
            raise SonicError(
                "--ramp-up-strategy needs both --ramp-up-start-rps and --ramp-up-end-rps"
            )
        if len(rates) > 1 or not math.isinf(rates[0]):
            raise SonicError(
                "--ramp-up-strategy sets the rate itself; remove --request-rate (or pass inf)"
            )
        if end <= 0:
            raise SonicError("--ramp-up-end-rps: must be positive")
        if start > end:
            raise SonicError(f"--ramp-up-start-rps {start} must not exceed --ramp-up-end-rps {end}")
        if strategy == "exponential" and start == 0:
            raise SonicError("--ramp-up-start-rps: must be positive for an exponential ramp-up")

    ready = raw.number("ready_check_timeout_sec", 0.0, non_negative=True)
    if raw.given("skip_test_prompt"):
        test_prompt = not raw.flag("skip_test_prompt")
        if not test_prompt and ready > 0:
            raise SonicError(
                "--skip-test-prompt contradicts --ready-check-timeout-sec > 0, which retries the "
                "test request until the server is ready"
            )
    else:
        test_prompt = dialect.test_prompt_default or ready > 0
    return TrafficArgs(
        request_rates=rates,
        max_concurrencies=concurrencies,
        burstiness=burstiness,
        ramp_up_strategy=strategy,
        ramp_up_start_rps=start,
        ramp_up_end_rps=end,
        arrival=dialect.arrival,
        max_benchmark_duration_s=raw.number(
            "max_benchmark_duration_s",
            None if raw.given("num_prompts") else dialect.duration_cap_without_num_prompts_s,
            positive=True,
        ),
        num_warmups=raw.integer("num_warmups", 0, minimum=0),
        test_prompt=test_prompt,
        ready_check_timeout_s=ready,
        flush_prefix_cache=raw.flag(
            "flush_prefix_cache", bool(dialect.default("flush_prefix_cache") or False)
        ),
        stop_over_saturated=raw.flag("stop_over_saturated", False),
        self_calibrate=raw.flag("self_calibrate", True),
        client_threads=_client_threads(raw),
        **_worker_fields(raw),
        warmup_to_steady_state=raw.flag("warmup_to_steady_state", False),
        warmup_oversample_factor=raw.integer("warmup_oversample_factor", 8, minimum=0),
        warmup_concurrency=raw.integer("warmup_concurrency", 128, minimum=1),
        **_session_fields(raw),
    )


HISTORY_MODES = ("dataset", "live")
MAX_CLIENT_THREADS = 256  # as the core allows


def _worker_fields(raw: _Raw) -> dict[str, Any]:
    """--workers / --ray-address (sonic.workers)."""
    workers = raw.integer("workers", 1, minimum=1)
    address = raw.text("ray_address", None)
    if address is not None and workers == 1:
        raise SonicError("--ray-address needs --workers N (N >= 2)")
    if workers > 1 and raw.flag("stop_over_saturated", False):
        raise SonicError("--stop-over-saturated is not available with --workers")
    if workers > 1 and raw.flag("stream_records", False):
        raise SonicError(
            "--stream-records is not available with --workers (the workers' records come "
            "back in memory)"
        )
    return {"workers": workers, "ray_address": address}


def _client_threads(raw: _Raw) -> int | None:
    n = raw.integer("client_threads", None, minimum=1)
    if n is not None and n > MAX_CLIENT_THREADS:
        raise SonicError(f"--client-threads: at most {MAX_CLIENT_THREADS}, got {n}")
    return n


def _session_fields(raw: _Raw) -> dict[str, Any]:
    """How session requests are sent (used only by multi-turn workloads)."""
    history = raw.text("history", "dataset")
    if history not in HISTORY_MODES:
        raise SonicError(f"--history: expected one of {', '.join(HISTORY_MODES)}, got {history!r}")
    header = raw.text("session_header", "X-Session-ID")
    if header is not None and (not header.strip() or any(c in header for c in " :\r\n")):
        raise SonicError(f"--session-header: not a header name: {header!r}")
    salt = raw.text("cache_salt", "auto")
    if salt is not None and not salt.strip():
        raise SonicError("--cache-salt: must not be empty (none: no salt)")
    return {
        "history": history,
        "session_header": None if header.lower() == "none" else header,
        "cache_salt": None if salt.lower() == "none" else salt,
        "session_id_as_cache_salt": raw.flag("use_session_id_as_cache_salt"),
    }


# Sampling flags whose body fields only OpenAI-style APIs understand (vLLM's rule).
_OPENAI_ONLY = ("min_p", "frequency_penalty", "presence_penalty", "repetition_penalty", "logprobs")


def _sampling(
    raw: _Raw, dialect: Dialect, target: TargetArgs, dataset: DatasetArgs
) -> SamplingArgs:
    openai_api = target.api in ("completions", "chat")
    if not openai_api:
        for dest in _OPENAI_ONLY:
            if raw.given(dest):
                raise SonicError(
                    f"{raw.name(dest)} needs an OpenAI-style endpoint (completions or chat), "
                    f"but {target.endpoint} speaks the {target.api} API"
                )
    top_p = raw.number("top_p", None, positive=True)
    if top_p is not None and top_p > 1:
        raise SonicError(f"--top-p: must be in (0, 1], got {top_p}")
    min_p = raw.number("min_p", None, non_negative=True)
    if min_p is not None and min_p > 1:
        raise SonicError(f"--min-p: must be in [0, 1], got {min_p}")

    if raw.given("ignore_eos"):
        ignore_eos = raw.flag("ignore_eos")
        if raw.given("disable_ignore_eos") and ignore_eos and raw.flag("disable_ignore_eos"):
            raise SonicError("--ignore-eos contradicts --disable-ignore-eos")
    elif raw.given("disable_ignore_eos"):
        ignore_eos = not raw.flag("disable_ignore_eos")
    elif dialect.ignore_eos_policy == "always":
        ignore_eos = openai_api
    elif dialect.ignore_eos_policy == "completions":
        ignore_eos = target.api == "completions"
    else:  # "flag_or_random" (checked by Dialect): vLLM forces it for random prompts
        ignore_eos = dataset.name == "random" and openai_api

    extra_text = raw.text("extra_body")
    extra = (
        {}
        if extra_text is None
        else V.parse_json_object("--extra-body", extra_text, allow_file=True)
    )
    return SamplingArgs(
        temperature=raw.number("temperature", dialect.default("temperature"), non_negative=True),
        top_p=top_p,
        top_k=raw.integer("top_k", None, minimum=-1),
        min_p=min_p,
        frequency_penalty=raw.number("frequency_penalty", None),
        presence_penalty=raw.number("presence_penalty", None),
        repetition_penalty=raw.number("repetition_penalty", None, positive=True),
        ignore_eos=ignore_eos,
        logprobs=raw.integer("logprobs", None, minimum=0),
        extra_body=extra,
    )


def _metrics(raw: _Raw, dialect: Dialect, dataset: DatasetArgs) -> MetricsArgs:
    # Imported here so that the parser module's import stays stdlib-only.
    from sonic.metrics.rules import (
        parse_goodput,
        parse_metric_percentiles,
        parse_percentile_metrics,
    )

    metrics_text = raw.text("percentile_metrics")
    if metrics_text is None:
        names = tuple(dialect.default("percentile_metrics"))
    else:
        # MAX calls end-to-end latency "latency"; vLLM calls it "e2el".
        items = ["e2el" if m.strip() == "latency" else m for m in metrics_text.split(",")]
        names = tuple(parse_percentile_metrics(",".join(items)))
    pct_text = raw.text("metric_percentiles")
    if pct_text is None:
        percentiles = tuple(dialect.default("metric_percentiles"))
    else:
        percentiles = tuple(parse_metric_percentiles(pct_text))
    goodput_items = raw.items("goodput")
    goodput = None if goodput_items is None else parse_goodput(goodput_items)
    # None: the dialect decides per run point (MAX 2026 skips max_concurrency at rate inf).
    first = raw.integer("skip_first_n_requests", None, minimum=0)
    last = raw.integer("skip_last_n_requests", None, minimum=0)
    ttft_skip = raw.integer("ttft_skip_requests", 0, minimum=0)
    if (first or 0) + (last or 0) >= dataset.num_prompts:
        raise SonicError(
            f"--skip-first-n-requests {first or 0} + --skip-last-n-requests {last or 0} leave "
            f"none of the {dataset.num_prompts} requests to measure"
        )
    if ttft_skip >= dataset.num_prompts:
        raise SonicError(
            f"--ttft-skip-requests {ttft_skip} leaves none of the {dataset.num_prompts} requests"
        )
    return MetricsArgs(
        percentile_metrics=names,
        metric_percentiles=percentiles,
        goodput=goodput,
        ttft_skip_requests=ttft_skip,
        skip_first_n_requests=first,
        skip_last_n_requests=last,
        retokenize=Retokenize.parse(raw.text("retokenize", str(DEFAULT_RETOKENIZE))),
    )


def _output(raw: _Raw, target: TargetArgs, dialect: Dialect) -> OutputArgs:
    label = raw.text("label", target.backend)
    if not label.strip():
        raise SonicError("--label: empty")
    return OutputArgs(
        save_result=raw.flag("save_result"),
        save_detailed=raw.flag("save_detailed"),
        stream_records=raw.flag("stream_records"),
        append_result=raw.flag("append_result"),
        always_save_result=raw.flag("always_save_result"),
        result_dir=raw.text("result_dir"),
        result_filename=raw.text("result_filename"),
        metadata=V.parse_kv_pairs("--metadata", raw.items("metadata") or []),
        label=label,
        disable_tqdm=raw.flag("disable_tqdm"),
        collect_gpu_stats=raw.flag(
            "collect_gpu_stats", bool(dialect.default("collect_gpu_stats") or False)
        ),
        collect_cpu_stats=raw.flag(
            "collect_cpu_stats", bool(dialect.default("collect_cpu_stats") or False)
        ),
        server_pids=_server_pids(raw.items("server_pids") or []),
        **_telemetry(raw, target),
    )


def _telemetry(raw: _Raw, target: TargetArgs) -> dict[str, Any]:
    """GPU sample rate and the engine /metrics endpoints (``none`` or an empty URL: off)."""
    hz = raw.number("gpu_sample_hz", 10.0, positive=True)
    if hz is not None and hz > 1000:
        raise SonicError(f"--gpu-sample-hz: {hz} is above 1000")
    collect = raw.flag("collect_server_stats", True)
    extra = _metrics_urls(raw.items("metrics_urls") or [])
    url = raw.text("server_metrics_url")
    if url is None:
        url = None if extra else target.base_url + "/metrics"
    elif url.strip().lower() in ("", "none", "off"):
        url = None
    else:
        _check_metrics_url("--server-metrics-url", url)
        from sonic.telemetry.session import DEFAULT_ENDPOINT_LABEL

        if DEFAULT_ENDPOINT_LABEL in extra:
            raise SonicError(
                f"--metrics-urls: label {DEFAULT_ENDPOINT_LABEL!r} is the one of "
                "--server-metrics-url; pick another label"
            )
    interval = raw.number("server_metrics_interval_s", 1.0, positive=True)
    return {
        "gpu_sample_hz": float(hz or 10.0),
        "collect_server_stats": collect and (url is not None or bool(extra)),
        "server_metrics_url": url if collect else None,
        "server_metrics_endpoints": extra if collect else {},
        "server_metrics_interval_s": float(interval or 1.0),
    }


def _server_pids(items: list[str]) -> tuple[int, ...]:
    """--server-pids: positive integers (commas or spaces between them)."""
    pids: list[int] = []
    for item in items:
        for part in item.replace(",", " ").split():
            if not part.isdigit() or int(part) <= 0:
                raise SonicError(f"--server-pids: {part!r} is not a process id")
            pids.append(int(part))
    return tuple(dict.fromkeys(pids))


def _check_metrics_url(flag: str, url: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise SonicError(f"{flag}: {scrub_url(url)!r} is not an http(s) URL")


def _metrics_urls(items: list[str]) -> dict[str, str]:
    """``LABEL=URL`` items of --metrics-urls (labels: letters, digits, ``_``, ``-``, ``.``)."""
    out: dict[str, str] = {}
    for index, item in enumerate(items, start=1):
        label, sep, url = item.partition("=")
        label, url = label.strip(), url.strip()
        if not sep or not label or not url:
            raise SonicError(
                f"--metrics-urls: item {index} is not LABEL=URL "
                "(or write --metrics-urls.LABEL=URL as MAX does)"
            )
        if not all(c.isalnum() or c in "_-." for c in label):
            raise SonicError(f"--metrics-urls: label {label!r} may hold only letters, digits, _-.")
        if label in out:
            raise SonicError(f"--metrics-urls: label {label!r} given twice")
        _check_metrics_url(f"--metrics-urls.{label}", url)
        out[label] = url
    return out
