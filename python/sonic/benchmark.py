"""One benchmark, top to bottom: workload → schedule → client → records → metrics → results.

``run_benchmark(args)`` is what ``sonic run`` does; the suite calls ``run_point`` for each of
its runs. Python prepares everything (prompts, lengths, request bodies) before the Rust core
starts the clock, and only reads the records after it stops.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sonic.compat.runargs import RunArgs
from sonic.errors import SonicError

READY_RETRY_S = 5.0
# Appended to the file name of a result that the dialect would not have written (a failed run
# without --always-save-result), so that readers globbing *.json do not take it as a result.
PARTIAL_SUFFIX = ".partial"


@dataclass
class PointOutcome:
    """What one run (one rate × concurrency point) produced."""

    exit_code: int
    result: dict[str, Any] | None
    result_path: Path | None
    metrics: Any
    records: Any
    reasons: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- server probes


def _get_json(
    url: str, timeout: float = 5.0, headers: dict[str, str] | None = None, insecure: bool = False
) -> Any:
    from sonic import httpcalls

    body = httpcalls.get(
        url,
        timeout=timeout,
        headers={"Accept": "application/json", **(headers or {})},
        insecure=insecure,
    )
    return json.loads(body.decode("utf-8", errors="replace"))


def host_port(base_url: str) -> tuple[str, int]:
    """The server's host and port (the scheme's default port when the URL names none)."""
    parts = urlsplit(base_url)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


def check_reachable(base_url: str, timeout: float = 5.0) -> None:
    """Fail fast with one line when nothing listens at the server's address."""
    scheme = urlsplit(base_url).scheme
    if scheme not in ("http", "https"):
        raise SonicError(f"unsupported URL scheme {scheme!r}: use http:// or https://")
    host, port = host_port(base_url)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SonicError(f"cannot connect to the server at {host}:{port}: {reason}") from None


def discover_model(
    base_url: str, headers: dict[str, str] | None = None, insecure: bool = False
) -> str:
    """The first model id from /v1/models (vLLM's behaviour when --model is not given); the
    run's headers go along (a hosted API wants its key here too)."""
    try:
        doc = _get_json(base_url + "/v1/models", headers=headers, insecure=insecure)
        return str(doc["data"][0]["id"])
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise SonicError(
            f"--model not given and {base_url}/v1/models gave no model id ({exc}); pass --model"
        ) from None


def is_simulated(base_url: str, insecure: bool = False) -> bool:
    """True when the server says it is sonic's simulated engine (its /version tells)."""
    try:
        doc = _get_json(base_url + "/version", timeout=2.0, insecure=insecure)
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and bool(doc.get("simulated"))


# ---------------------------------------------------------------- workload


def load_workload(args: RunArgs):
    """Tokenizer and sampled requests for ``args`` (identical for every engine given a seed)."""
    from sonic.datasets import sample_requests
    from sonic.tokenizer import load_tokenizer

    t, d = args.target, args.dataset
    name = t.tokenizer or t.model
    if not name:
        raise SonicError("no tokenizer: pass --tokenizer or --model")
    tokenizer = load_tokenizer(name, trust_remote_code=t.trust_remote_code)
    from sonic.workloads import build_workload

    extra = _warmup_extra_sessions(args)
    if extra:  # MAX's warm-up draws its candidates from a larger pool
        d = replace(d, num_chat_sessions=(d.num_chat_sessions or 0) + extra)
    workload = build_workload(d, tokenizer)
    if workload is not None and extra:
        start = WarmStart(workload, args, tokenizer)
        return tokenizer, start.samples_for(args)[0]
    if workload is not None:  # sessions or a timed trace: the client gets the workload itself
        return tokenizer, WorkloadSamples.of(workload, tokenizer, t.api)
    samples = sample_requests(d, tokenizer)
    if not samples:
        raise SonicError(f"dataset {d.name!r} gave no usable prompts")
    return tokenizer, samples


class WorkloadSamples(list):
    """The samples of a sessions or timed-trace workload: one SampleRequest per record (turns
    session by session, as the client records them; prompt and length with the dataset's
    history), plus the workload itself, which ``build_run_config`` hands to the client.
    ``warm``: the warm-up to steady state that made it (per point; None without)."""

    def __init__(self, samples: list, workload) -> None:
        super().__init__(samples)
        self.workload = workload
        self.warm: WarmStart | None = None
        self.warm_plan = None

    @classmethod
    def of(cls, workload, tokenizer, api: str) -> WorkloadSamples:
        from sonic.datasets.base import SampleRequest
        from sonic.workloads.reuse import prompt_ids, turn_messages
        from sonic.workloads.types import COMPLETIONS_JOINER, SESSIONS

        workload = _capped(workload)
        if workload.kind != SESSIONS:
            samples = [
                SampleRequest(r.prompt, r.prompt_len, r.max_tokens) for r in workload.requests
            ]
            return cls(samples, workload)
        turns = [t for sess in workload.sessions for t in sess.sent_turns]
        samples = [
            SampleRequest(
                prompt=COMPLETIONS_JOINER.join(m["content"] for m in messages),
                prompt_len=len(ids),
                expected_output_len=turn.max_tokens,
            )
            for turn, messages, ids in zip(
                turns, turn_messages(workload), prompt_ids(workload, tokenizer, api)
            )
        ]
        return cls(samples, workload)


def _warmup_extra_sessions(args: RunArgs) -> int:
    """Sessions the dataset is asked for beyond --num-chat-sessions, for the warm-up's
    candidates (0 when no warm-up applies: off, not a chat-sessions dataset, no cap)."""
    from sonic.workloads import warmup

    tr, d = args.traffic, args.dataset
    if not (tr.warmup_to_steady_state and d.num_chat_sessions and d.name in warmup.WARMABLE):
        return 0
    largest = max(
        warmup.warm_count(mc, d.max_concurrent_conversations) for mc in tr.max_concurrencies
    )
    if not largest:
        return 0
    return warmup.pool_request(d.num_chat_sessions, largest, tr.warmup_oversample_factor) - (
        d.num_chat_sessions
    )


class WarmStart:
    """The sessions pool of a warm-up to steady state, and each point's measured samples
    (M, the sessions that start mid-way, depends on the point's concurrency)."""

    def __init__(self, pool, args: RunArgs, tokenizer) -> None:
        self.pool = pool
        self.n = args.dataset.num_chat_sessions or 0
        self.factor = args.traffic.warmup_oversample_factor
        self.seed = args.dataset.seed
        self.tokenizer = tokenizer
        self.api = args.target.api
        self._by_m: dict[int, WorkloadSamples] = {}

    def samples_for(self, args: RunArgs):
        """(samples, plan) of the point ``args``; plan None when it has no cap."""
        from sonic.workloads import warmup

        d = args.dataset
        m = warmup.warm_count(args.traffic.max_concurrency, d.max_concurrent_conversations)
        if m not in self._by_m:
            if m:
                measured, plan = warmup.plan(self.pool, self.n, m, self.factor, self.seed)
            else:
                measured, plan = replace(self.pool, sessions=self.pool.sessions[: self.n]), None
            samples = WorkloadSamples.of(measured, self.tokenizer, self.api)
            samples.warm, samples.warm_plan = self, plan
            self._by_m[m] = samples
        samples = self._by_m[m]
        return samples, samples.warm_plan


def _capped(workload):
    """MAX stops sending turns once --num-prompts requests went out; which sessions that cuts
    depends on the engine's timing there. Here the cut is the same for every engine: whole
    sessions in start order, the last one shortened, up to that many requests."""
    from dataclasses import replace

    cap = workload.max_requests
    if cap is None or workload.num_requests <= cap:
        return workload
    kept, left = [], cap
    for sess in workload.sessions:
        if left <= 0:
            break
        kept.append(replace(sess, turns=sess.turns[: sess.start_turn + left]))
        left -= len(kept[-1].sent_turns)
    arrivals = None if workload.arrivals_s is None else workload.arrivals_s[: len(kept)]
    note = f"sessions cut to {cap} requests (--num-prompts), whole sessions in start order"
    return replace(
        workload,
        sessions=tuple(kept),
        arrivals_s=arrivals,
        warm_started=min(workload.warm_started, len(kept)),
        notes=(*workload.notes, note),
    )


def workload_of(samples):
    """The sessions/trace workload behind ``samples`` (None for plain prompts)."""
    return getattr(samples, "workload", None)


def _max_tokens(args: RunArgs, expected: int | None, index: int) -> int | None:
    lengths = args.dataset.output_lengths
    if isinstance(lengths, int):
        expected = lengths
    elif isinstance(lengths, tuple) and lengths:
        expected = lengths[index % len(lengths)]
    cap = args.dataset.max_output_len
    values = [v for v in (expected, cap) if v is not None]
    return min(values) if values else None


def request_headers(args: RunArgs) -> list[tuple[str, str]]:
    """``--header`` values, plus ``Authorization: Bearer $OPENAI_API_KEY`` when set and no
    Authorization header was given (as vLLM and MAX do)."""
    headers = list(args.target.headers.items())
    key = os.environ.get("OPENAI_API_KEY")
    if key and not any(k.lower() == "authorization" for k, _ in headers):
        headers.append(("Authorization", f"Bearer {key}"))
    return headers


def build_run_config(args: RunArgs, samples, *, schedule_seed: int | None = None):
    """The Rust core's RunConfig for one sweep point."""
    from sonic import client

    t, tr = args.target, args.traffic
    headers = request_headers(args)
    requests = [
        client.RequestSpec(
            prompt=None if s.messages else s.prompt,
            messages=s.messages,
            max_tokens=_max_tokens(args, s.expected_output_len, i),
        )
        for i, s in enumerate(samples)
    ]
    rate = tr.request_rate
    ramp = None
    if tr.ramp_up_strategy:
        ramp = client.RampUp(
            strategy=tr.ramp_up_strategy,
            start_rps=float(tr.ramp_up_start_rps or 0.0),
            end_rps=float(tr.ramp_up_end_rps or 0.0),
        )
    schedule = client.ScheduleSpec(
        request_rate=None if math.isinf(rate) else rate,
        burstiness=None if math.isinf(tr.burstiness) else tr.burstiness,
        ramp_up=ramp,
        convention=tr.arrival,
        seed=args.dataset.seed if schedule_seed is None else schedule_seed,
    )
    sessions: dict[str, Any] = {}
    workload = workload_of(samples)
    if workload is not None:
        sessions, requests, schedule = _hand_over(args, workload, requests, schedule)
    return client.RunConfig(
        **sessions,
        base_url=t.base_url,
        endpoint=t.endpoint,
        api=t.api,
        model=t.request_model or "",
        headers=headers,
        request_id_prefix=t.request_id_prefix,
        timeout_s=t.request_timeout_s,
        body=client.BodyOptions(
            max_tokens_field=args.max_tokens_field,
            include_usage=False,  # already in static_body() when the dialect sends it
            ignore_eos=None,
            fields=args.static_body(),
            extra_body={},
        ),
        requests=requests,
        schedule=schedule,
        max_concurrency=tr.max_concurrency,
        max_duration_s=tr.max_benchmark_duration_s,
        insecure=t.insecure,
        warm_connections=warm_connections(args),
        client_threads=tr.client_threads,
    )


def _hand_over(args: RunArgs, workload, requests, schedule):
    """What a sessions or timed-trace workload changes in the RunConfig: the recorded send
    times, and for sessions the turns (with the run's output-length caps) and the session
    options. Returns (session fields, requests, schedule)."""
    import secrets
    from dataclasses import replace

    from sonic import client
    from sonic.workloads.types import SESSIONS

    if workload.arrivals_s is not None:
        schedule = replace(schedule, arrivals_s=list(workload.arrivals_s))
    if workload.warm_started:
        schedule = replace(schedule, unpaced=workload.warm_started)
    if workload.kind != SESSIONS:
        return {}, requests, schedule
    index = 0  # record index (sent turns), for per-request output lengths
    sessions = []
    for sess in workload.sessions:
        turns = []
        for k, t in enumerate(sess.turns):
            cap = _max_tokens(args, t.max_tokens, index)
            turns.append(client.Turn(t.content, cap, t.reference_answer, t.think_s))
            index += k >= sess.start_turn
        sessions.append(client.Session(turns, sess.system, sess.session_id, sess.start_turn))
    tr = args.traffic
    salted = args.target.api in ("completions", "chat")  # other APIs have no cache_salt field
    salt = tr.cache_salt if salted else None
    if salt == "auto":  # one per run: a repeated run must not start on this one's cache
        salt = "run-" + secrets.token_hex(6)
    fields = {
        "sessions": sessions,
        "history": tr.history,
        "session_header": tr.session_header,
        "max_concurrent_sessions": workload.max_concurrent_sessions,
        "cache_salt": salt,
        "session_id_as_cache_salt": tr.session_id_as_cache_salt and salted,
    }
    return fields, [], schedule


def warm_connections(args: RunArgs) -> int:
    """How many untimed requests go before the run: the test prompt and the warm-ups.

    The measured run opens as many connections before t0: the tools we compare with send
    those requests over the pool that the run then uses, so their first wave does not pay
    for connection setup either.
    """
    tr = args.traffic
    return max(tr.num_warmups, 1 if tr.test_prompt else 0)


def _untimed(config, samples, n: int):
    """A copy of ``config`` that sends the first request ``n`` times at once, untimed."""
    from dataclasses import replace

    from sonic import client

    first = config.requests[0] if config.requests else _first_turn(config)
    return replace(
        _without_sessions(config),
        requests=[first] * n,
        schedule=client.ScheduleSpec(
            request_rate=None, burstiness=None, ramp_up=None, convention="precomputed", seed=0
        ),
        max_concurrency=None,
        max_duration_s=None,
        request_id_prefix=config.request_id_prefix + "warmup-",
        warm_connections=0,
    )


def _first_turn(config):
    """The first session's first turn as a plain request (the untimed test prompt)."""
    from sonic import client

    sess = config.sessions[0]
    turn = sess.turns[0]
    if config.api == "chat":
        messages = [{"role": "system", "content": sess.system}] if sess.system else []
        messages.append({"role": "user", "content": turn.content})
        return client.RequestSpec(messages=messages, max_tokens=turn.max_tokens)
    prompt = "\n\n".join(x for x in (sess.system, turn.content) if x)
    return client.RequestSpec(prompt=prompt, max_tokens=turn.max_tokens)


def _without_sessions(config):
    """``config`` with its session options cleared (the core refuses them without sessions)."""
    from dataclasses import replace

    return replace(
        config,
        sessions=None,
        history="dataset",
        max_concurrent_sessions=None,
        cache_salt=None,
        session_id_as_cache_salt=False,
        session_header=None,
    )


def send_test_prompt(args: RunArgs, config, samples) -> None:
    """The untimed test request(s) before the run: readiness check and warm-up."""
    from sonic import client

    tr = args.traffic
    n = warm_connections(args)
    if n == 0:
        return
    deadline = time.monotonic() + max(tr.ready_check_timeout_s, 0.0)
    while True:
        records = client.run(_untimed(config, samples, n), progress=False)
        if records.cancelled:  # Ctrl-C before the measured run: stop, nothing was measured
            raise KeyboardInterrupt
        errors = [e for e in records.error if e is not None]
        if not errors:
            return
        if time.monotonic() >= deadline:
            raise SonicError(f"the test request failed: {errors[0]}")
        time.sleep(READY_RETRY_S)


def warm_up_to_steady_state(args: RunArgs, config, plan, progress: bool, out) -> None:
    """MAX's pre-run (sonic.workloads.warmup): one untimed request per session that starts
    mid-way, with the measured run's salts and session ids so that its first measured turn
    finds its history cached; answers discarded, any failure stops the run."""
    from sonic import client
    from sonic.workloads.warmup import prerun_sessions

    for line in plan.console_lines():
        print(line, file=out)
    for warning in plan.warnings:
        print(f"sonic: {warning}", file=sys.stderr)
    sessions = prerun_sessions(config.sessions or [], plan.warm_sessions)
    if not sessions:
        return
    print(f"[warmup-prerun] sending {len(sessions)} requests", file=out)
    pre = replace(
        config,
        sessions=sessions,
        max_concurrency=args.traffic.warmup_concurrency,
        max_concurrent_sessions=None,
        schedule=client.ScheduleSpec(
            request_rate=None, burstiness=None, convention="precomputed", seed=0
        ),
        max_duration_s=None,
        request_id_prefix=config.request_id_prefix + "warmup-",
        warm_connections=0,
        body=replace(config.body, ignore_eos=True),  # each reply as long as the dataset's
    )
    records = client.run(pre, progress=progress)
    if records.cancelled:  # Ctrl-C before the measured run: stop, nothing was measured
        raise KeyboardInterrupt
    errors = [e for e in records.error if e is not None]
    if errors:
        raise SonicError(
            f"the warm-up to steady state failed ({len(errors)} of {len(sessions)} requests): "
            f"{errors[0]} (--no-warmup-to-steady-state skips it)"
        )
    print("[warmup-prerun] complete", file=out)


# Backends whose missing prefix-cache reset was already reported in this process.
_UNKNOWN_FLUSH_SAID: set[str] = set()


def flush_prefix_cache(args: RunArgs) -> bool | None:
    """Reset the engine's prefix cache before the measured run (``--flush-prefix-cache``).

    True when flushed, False when the engine refused (a warning says why), None when not
    asked for. Never fatal: a run on a warm cache is still a run, and it says so.
    """
    from sonic import httpcalls
    from sonic.compat.backends import PREFIX_CACHE_RESET

    t = args.target
    if not args.traffic.flush_prefix_cache:
        return None
    path = PREFIX_CACHE_RESET.get(t.backend)
    if path is None:
        if t.backend not in _UNKNOWN_FLUSH_SAID:  # once per process, not once per search probe
            _UNKNOWN_FLUSH_SAID.add(t.backend)
            print(
                f"sonic: --flush-prefix-cache: no prefix-cache reset is known for backend "
                f"{t.backend}; the cache is not flushed (each result records "
                "prefix_cache_flushed: false)",
                file=sys.stderr,
            )
        return False
    try:
        httpcalls.get(
            t.base_url + path,
            method="POST",
            timeout=30.0,
            headers=dict(request_headers(args)),
            insecure=t.insecure,
            limit=4096,
        )
    except (OSError, ValueError) as exc:
        hint = " (vLLM serves it only with VLLM_SERVER_DEV_MODE=1)" if "vllm" in t.backend else ""
        print(
            f"sonic: --flush-prefix-cache: POST {path} failed ({exc}){hint}; the measured run "
            "starts on whatever the cache holds",
            file=sys.stderr,
        )
        return False
    return True


# ---------------------------------------------------------------- one point


@dataclass(frozen=True)
class RunChecks:
    """What a finished run says about its own validity: did the client keep its schedule,
    did the engine produce the asked-for output lengths, was the prefix cache flushed."""

    lag_warning: str | None
    lengths: Any  # OutputLengthCheck
    flushed: bool | None

    @classmethod
    def of(
        cls, args: RunArgs, max_tokens: list[int | None], records, metrics, flushed: bool | None
    ) -> RunChecks:
        from sonic.metrics.lag import behind_schedule
        from sonic.metrics.outlen import check_output_lengths

        tr = args.traffic
        rate = (tr.ramp_up_end_rps or math.inf) if tr.ramp_up_strategy else tr.request_rate
        lag = behind_schedule(records, rate, tr.max_concurrency)
        lengths = check_output_lengths(metrics.requests, max_tokens, args.sampling.ignore_eos)
        return cls(lag, lengths, flushed)

    def warnings(self) -> list[str]:
        out = []
        if self.lag_warning:
            out.append(f"{self.lag_warning}; latencies at this rate include client delay")
        if self.lengths.warning():
            out.append(self.lengths.warning())
        return out

    def as_sonic_keys(self) -> dict[str, Any]:
        return {
            "client_lag_warning": self.lag_warning,
            "output_lengths": self.lengths.as_dict(),
            "prefix_cache_flushed": self.flushed,
        }


def run_point(
    args: RunArgs,
    tokenizer,
    samples,
    *,
    simulated: bool = False,
    progress: bool | None = None,
    out=None,
) -> PointOutcome:
    """Run one rate × concurrency point, compute its metrics, print and save its results."""
    from sonic import console, recordfile, results
    from sonic.metrics import SkipRules, compute_metrics, token_counter
    from sonic.telemetry import run_window_ns

    out = sys.stdout if out is None else out
    warm = getattr(samples, "warm", None)
    samples, warm_plan = warm.samples_for(args) if warm is not None else (samples, None)
    config = build_run_config(args, samples)
    accuracy = self_calibration(args, len(samples))
    send_test_prompt(args, config, samples)
    flushed = flush_prefix_cache(args)
    show = (not args.output.disable_tqdm) if progress is None else progress
    if warm_plan is not None:
        warm_up_to_steady_state(args, config, warm_plan, show, out)
    telemetry = _telemetry_session(args)
    cpu0 = os.times()
    with telemetry:  # GPU sampler + /metrics scraper around the run; never fatal
        records = _measure(args, config, show, _record_file(args))
        telemetry.set_window(*(run_window_ns(records) or (None, None)))
    cpu1 = os.times()
    # The run's request objects are not needed past it (a Python object per request, about
    # 100 MB at 10^6 requests): only each one's max_tokens, for the output-length check.
    max_tokens = [r.max_tokens for r in config.requests]
    del config
    tel = telemetry.result()

    dialect = args.dialect
    rules = dialect.metric_rules
    first, last = skip_counts(args)
    metrics = compute_metrics(
        records,
        rules,
        [s.prompt_len for s in samples],
        count_tokens=token_counter(tokenizer),
        goodput=args.metrics.goodput,
        percentiles=args.metrics.metric_percentiles,
        skip=SkipRules(
            first=first,
            last=last,
            ttft=args.metrics.ttft_skip_requests,
            first_turns=args.dataset.ignore_first_turn_stats,
        ),
        retokenize=args.metrics.retokenize,
    )
    workload = workload_of(samples)
    expected = args.dataset.num_prompts if workload is None else len(samples)
    info = replace(
        make_info(args, simulated=simulated, records=records), expected_requests=expected
    )
    outcome = dialect.outcome(metrics, expected)
    console.print_summary(dialect, metrics, info, file=out)
    for line in tel.console_lines():
        print(line, file=out)
    for warning in tel.warnings:
        print(f"sonic: {warning}", file=sys.stderr)
    if accuracy is not None:
        print(f"Client timing error here (calibrated): {accuracy['line']}", file=out)
    section = _workload_section(args, samples, tokenizer, tel, records, metrics)
    if section is not None:
        for line in section.console_lines():
            print(line, file=out)
    checks = RunChecks.of(args, max_tokens, records, metrics, flushed)
    for warning in checks.warnings():
        print(f"sonic: {warning}", file=sys.stderr)
    validity = _assess(args, records, metrics, tel, cpu0, cpu1)
    console.print_validity(validity, file=out)

    doc = None
    path = None
    o = args.output
    if dialect.should_save(o) or o.save_detailed:
        secrets = results.collect_secrets(extra=list(args.target.headers.values()))
        path = results.result_path(
            dialect,
            info,
            result_dir=o.result_dir,
            result_filename_arg=o.result_filename,
            when=info.date,
        )
        held = outcome.exit_code != 0 and not (dialect.failed_runs_saved or o.always_save_result)
        if held:  # the tool would write nothing; what was measured is kept beside
            path = path.with_name(path.name + PARTIAL_SUFFIX)
        if records.chunks_file is not None:  # streamed: its Arrow file is the raw record
            kept = recordfile.keep_beside(records, path, text=o.save_detailed)
            info.raw_records_file = kept.name
        elif o.save_detailed:
            raw = results.raw_records_path(path)
            results.write_raw_records(raw, records, metrics, secrets=secrets)
            info.raw_records_file = raw.name
        doc = results.build_result(dialect, metrics, info)
        results.add_telemetry(doc, dialect, tel, metrics.total_output_tokens)
        # Time series only with --save-detailed: a plain --save-result directory keeps one
        # JSON per run, as vLLM/MAX readers that glob *.json expect.
        if o.save_detailed and (tel.has_gpu_data or tel.has_server_data):
            side = telemetry_sidecar_path(path)
            results.write_atomic(side, [results.files.dumps(tel.sidecar(), secrets)])
            doc[results.SONIC_KEY]["telemetry"]["file"] = side.name
        sonic_keys = doc.setdefault(results.SONIC_KEY, {})
        if outcome.partial:
            sonic_keys["partial"] = True
        sonic_keys.update(checks.as_sonic_keys())
        if section is not None:
            sonic_keys["workload"] = section.to_dict()
        if accuracy is not None:
            sonic_keys["client_accuracy"] = {k: v for k, v in accuracy.items() if k != "line"}
        if warm_plan is not None:
            sonic_keys["warmup_to_steady_state"] = warm_plan.to_dict()
        if records.extra.get("client_threads") is not None:
            sonic_keys["client_threads"] = int(records.extra["client_threads"])
        if "workers" in records.extra:
            sonic_keys["workers"] = records.extra["workers"]
        if records.chunks_file is not None:
            sonic_keys["records_file"] = {
                "file": records.chunks_file.name,
                "format": "arrow-ipc",
                "generated_text": bool(o.save_detailed),
                "chunk_percentiles": metrics.requests.chunks.precision,
            }
        _add_validity(doc, dialect, validity, metrics)
        results.save_result(dialect, doc, path, append=o.append_result, secrets=secrets)
        if held:
            print(
                f"sonic: the run failed, so --compat {dialect.name} writes no result file; what "
                f"was measured is kept in {path} (--always-save-result writes it under the "
                "tool's name)",
                file=sys.stderr,
            )
        else:
            print(f"Results saved to {path}", file=out)
    for reason in outcome.reasons:
        print(f"sonic: {reason}", file=sys.stderr)
    code = outcome.exit_code
    if validity.figures.stopped_early and code == 130:  # sonic stopped it, not the user
        code = 1
    return PointOutcome(
        exit_code=code,
        result=doc,
        result_path=path,
        metrics=metrics,
        records=records,
        reasons=outcome.reasons,
        extra={"telemetry": tel, "validity": validity},
    )


def _record_file(args: RunArgs) -> Path | None:
    """Where a streamed run (--stream-records) writes its records: the result directory when
    a result is saved (the file is kept beside it), else the system's temporary directory
    (the file goes with the run's records object)."""
    o = args.output
    if not o.stream_records:
        return None
    from sonic import recordfile

    saved = args.dialect.should_save(o) or o.save_detailed
    return recordfile.scratch_path((o.result_dir or ".") if saved else None)


def _measure(args: RunArgs, config, progress: bool, record_file: Path | None = None):
    """The measured run: in this process, or split across Ray workers (--workers)."""
    from sonic import client

    tr = args.traffic
    if tr.workers > 1:
        from sonic import workers

        return workers.run(config, tr.workers, tr.ray_address, progress=progress)
    if record_file is None:
        from sonic.recordfile import warn_unstreamed

        warn_unstreamed(config.total_requests)
    monitor = _saturation_monitor(args, config)
    records = client.run(config, progress=progress, monitor=monitor, record_file=record_file)
    if record_file is not None:
        from sonic.recordfile import remove_with

        remove_with(records, record_file)
    return records


def _saturation_monitor(args: RunArgs, config):
    """``--stop-over-saturated``: a monitor of the client's progress (None when not asked)."""
    if not args.traffic.stop_over_saturated:
        return None
    from sonic import client
    from sonic.metrics.oversat import OverSaturationMonitor

    # The backlog is due minus done where the schedule says when requests are due; for
    # sessions (later turns are due when earlier ones end) it is the requests in flight.
    sched, due = config.schedule, None
    if getattr(sched, "arrivals_s", None) is not None and config.requests:
        due = sched.arrivals_s
    elif sched.request_rate is not None and sched.ramp_up is None and config.requests:
        due = client.schedule_preview(sched, len(config.requests))
    return OverSaturationMonitor(due)


def _assess(args: RunArgs, records, metrics, tel, cpu0, cpu1):
    """The run's validity verdict (sonic.metrics.validity), client CPU from os.times."""
    from sonic.metrics.validity import assess_run

    wall = cpu1.elapsed - cpu0.elapsed
    used = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return assess_run(
        args,
        records,
        metrics,
        telemetry=tel,
        client_cpu_percent=100.0 * used / wall if wall > 0 else None,
        stopped_early=records.extra.get("stopped_early"),
    )


def _add_validity(doc, dialect, validity, metrics) -> None:
    """``sonic.validity`` and ``sonic.steady_state``, and the dialect's own steady-state keys."""
    from sonic.metrics.validity import steady_section
    from sonic.results import SONIC_KEY

    sonic_keys = doc.setdefault(SONIC_KEY, {})
    sonic_keys["validity"] = validity.to_dict()
    sonic_keys["steady_state"] = steady_section(validity, metrics)
    dialect.add_steady_state(doc, validity.steady_state)


def self_calibration(args: RunArgs, num_requests: int) -> dict[str, Any] | None:
    """``sonic.client_accuracy``: the client's timing error on this host just before the run
    (``--no-self-calibrate``: None). Never fatal: a failed calibration is said and skipped."""
    if not args.traffic.self_calibrate:
        return None
    from sonic import _core
    from sonic.calibrate import run_accuracy

    try:
        return run_accuracy(args.traffic.max_concurrency, num_requests)
    except (_core.CoreError, OSError) as exc:
        print(f"sonic: self-calibration skipped: {exc}", file=sys.stderr)
        return None


def _workload_section(args: RunArgs, samples, tokenizer, telemetry, records, metrics):
    """``sonic.workload`` of a sessions or trace run (None for plain prompts)."""
    workload = workload_of(samples)
    if workload is None:
        return None
    from sonic.workloads import SESSIONS
    from sonic.workloads.reuse import expected_reuse
    from sonic.workloads.section import (
        WorkloadSection,
        measured_hit_rate,
        reported_cached_share,
        session_stats,
        turn_stats,
    )

    history = args.traffic.history
    reuse = expected_reuse(workload, tokenizer, api=args.target.api, history=history)
    sessions = workload.kind == SESSIONS
    return WorkloadSection(
        workload,
        history,
        reuse,
        measured_hit_rate(telemetry),
        by_turn=turn_stats(records, metrics.requests) if sessions else [],
        sessions=session_stats(records, metrics.requests) if sessions else {},
        reported_cached_share=reported_cached_share(records),
    )


def skip_counts(args: RunArgs) -> tuple[int, int]:
    """--skip-first/last-n-requests of this run point, unset ones from the dialect."""
    tr, m, d = args.traffic, args.metrics, args.dialect
    rate, mc = tr.request_rate, tr.max_concurrency
    given_first = m.skip_first_n_requests
    if given_first is None and args.dataset.ignore_first_turn_stats:
        # MAX: ignoring first turns replaces the automatic skip-first, unless sessions are
        # warmed up to steady state (then both apply).
        given_first = None if tr.warmup_to_steady_state else 0
    first = d.resolve_skip(given_first, rate, mc)
    last = d.resolve_skip(m.skip_last_n_requests, rate, mc)
    if first + last >= args.dataset.num_prompts:
        raise SonicError(
            f"skipping the first {first} and last {last} requests (max-concurrency {mc}) leaves "
            f"none of the {args.dataset.num_prompts} requests to measure; raise --num-prompts"
        )
    return first, last


def _telemetry_session(args: RunArgs):
    from sonic.telemetry import TelemetrySession

    o, t = args.output, args.target
    host, port = host_port(t.base_url)
    return TelemetrySession(
        gpu=o.collect_gpu_stats,
        gpu_hz=o.gpu_sample_hz,
        metrics_url=o.server_metrics_url,
        metrics_endpoints=o.server_metrics_endpoints,
        metrics_interval_s=o.server_metrics_interval_s,
        metrics_insecure=t.insecure,
        cpu=o.collect_cpu_stats,
        cpu_pids=list(o.server_pids) or None,
        server_host=host,
        server_port=port,
    )


def telemetry_sidecar_path(result: Path) -> Path:
    """``<stem>.telemetry.json`` beside a result file (GPU and engine time series)."""
    from sonic.telemetry import SIDECAR_SUFFIX

    p = Path(result)
    stem = p.name[: -len(p.suffix)] if p.suffix else p.name
    return p.with_name(stem + SIDECAR_SUFFIX)


def make_info(args: RunArgs, *, simulated: bool, records=None):
    from sonic.results import RunInfo
    from sonic.results.info import rps_change_events

    t, tr, d, o, m = args.target, args.traffic, args.dataset, args.output, args.metrics
    first, last = skip_counts(args)
    return RunInfo(
        backend=t.backend,
        model_id=t.model or "",
        num_prompts=d.num_prompts,
        request_rate=tr.request_rate,
        tokenizer_id=t.tokenizer,
        label=o.label if "label" in args.explicit else None,  # vLLM writes null without one
        endpoint_type=t.backend,
        dataset_name=d.name,
        burstiness=tr.burstiness,
        max_concurrency=tr.max_concurrency,
        ramp_up_strategy=tr.ramp_up_strategy,
        ramp_up_start_rps=tr.ramp_up_start_rps,
        ramp_up_end_rps=tr.ramp_up_end_rps,
        metadata=dict(o.metadata),
        server_args=t.server_args,
        client_args=args.client_args(),
        percentile_metrics=list(m.percentile_metrics),
        metric_percentiles=list(m.metric_percentiles),
        save_detailed=o.save_detailed,
        simulated=simulated,
        skip_first_n_requests=first,
        skip_last_n_requests=last,
        rps_change_events=None
        if records is None or not tr.ramp_up_strategy
        else rps_change_events(
            tr.ramp_up_strategy,
            float(tr.ramp_up_start_rps or 0.0),
            float(tr.ramp_up_end_rps or 0.0),
            records,
        ),
    )


# ---------------------------------------------------------------- the command


def prepare_run(args: RunArgs):
    """Reach the server, fill in its model if not given, load the workload:
    ``(args, tokenizer, samples, simulated)`` for ``run_point``."""
    t = args.target
    check_reachable(t.base_url)
    if t.model is None:
        headers = dict(request_headers(args))
        args = args.with_model(discover_model(t.base_url, headers, t.insecure))
    simulated = is_simulated(t.base_url, t.insecure)
    tokenizer, samples = load_workload(args)
    return args, tokenizer, samples, simulated


def run_benchmark(args: RunArgs) -> int:
    """``sonic run``: every sweep point in turn; the worst exit code wins."""
    args, tokenizer, samples, simulated = prepare_run(args)
    code = 0
    points = list(args.points())
    for point in points:
        if len(points) > 1:
            point = _per_point_filename(point)
        outcome = run_point(point, tokenizer, samples, simulated=simulated)
        code = max(code, outcome.exit_code)
        if outcome.exit_code == 130:
            break
    return code


def _per_point_filename(point: RunArgs) -> RunArgs:
    """In a sweep, one ``--result-filename`` would be overwritten by every point: each point
    gets its own file, the rate (and concurrency) inserted before the extension."""
    from dataclasses import replace

    name = point.output.result_filename
    if not name or point.output.append_result:
        return point
    rate = point.traffic.request_rate
    mc = point.traffic.max_concurrency
    tag = f"-{'inf' if math.isinf(rate) else f'{rate:g}'}qps"
    tag += f"-concurrency{mc}" if mc is not None else ""
    stem, dot, ext = name.rpartition(".")
    new = f"{stem}{tag}.{ext}" if dot and stem else f"{name}{tag}"
    return replace(point, output=replace(point.output, result_filename=new))
