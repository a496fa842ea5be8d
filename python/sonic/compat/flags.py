"""Every flag of vLLM `bench serve` and of MAX's benchmarks (2025 and 2026) and what sonic does.

Each flag has one status:

- ``implemented``: parsed, validated and carried in ``RunArgs``.
- ``accepted``: changes nothing sonic measures (progress, plots, logging, or options of a
  dataset/feature that is itself refused); accepted so scripts keep working, and recorded in
  ``RunArgs.accepted_ignored``.
- ``refused``: would change what is measured and is not implemented; an error naming the flag
  and the reason. ``harmless`` lists values that keep the tool's default behaviour (e.g.
  ``--num-iters 1``), which are accepted instead.

The table drives the argparse parser, the help text and the tests, so a flag cannot be parsed
without a documented status.
"""

from __future__ import annotations

from dataclasses import dataclass

IMPLEMENTED = "implemented"
ACCEPTED = "accepted"
REFUSED = "refused"

# Where a flag comes from, as shown in --help.
ORIGINS = {"both": "", "vllm": "vLLM", "max": "MAX", "sonic": "sonic"}

# Help sections, in display order.
GROUPS = {
    "compat": "dialect (whose conventions)",
    "target": "server and endpoint",
    "model": "model and tokenizer",
    "dataset": "dataset and prompts",
    "traffic": "traffic: arrivals and concurrency",
    "prerun": "warm-up and readiness",
    "sampling": "sampling and request body",
    "metrics": "metrics",
    "results": "results files",
    "telemetry": "telemetry and console",
}


@dataclass(frozen=True)
class Flag:
    """One command-line flag. ``kind``: ``value`` (one string), ``bool`` (bare = true, also
    ``--flag=false`` and a generated ``--no-flag``) or ``list`` (zero or more values, repeats
    accumulate)."""

    name: str
    status: str
    origin: str
    kind: str = "value"
    group: str = ""
    help: str = ""
    metavar: str = ""
    default: str = ""  # shown in --help when no profile sets a default for this flag
    aliases: tuple[str, ...] = ()
    reason: str = ""  # why a refused flag is refused / why an accepted one does nothing
    harmless: tuple[str, ...] = ()

    @property
    def dest(self) -> str:
        return self.name.lstrip("-").replace("-", "_").replace(".", "_")

    @property
    def negation(self) -> str | None:
        """The generated ``--no-X`` form of a boolean flag (not for flags already negative)."""
        if self.kind != "bool" or self.name.startswith("--no-"):
            return None
        return "--no-" + self.name[2:]


def _impl(name, group, origin, help, kind="value", metavar="", default="", aliases=()):
    return Flag(name, IMPLEMENTED, origin, kind, group, help, metavar, default, tuple(aliases))


def _acc(name, origin, reason, kind="value"):
    return Flag(name, ACCEPTED, origin, kind, reason=reason)


def _ref(name, origin, reason, kind="value", harmless=()):
    return Flag(name, REFUSED, origin, kind, reason=reason, harmless=tuple(harmless))


_FALSE = ("false", "0", "no", "off")
_UNUSED_DATASET = "only used by a dataset sonic refuses"

FLAGS: tuple[Flag, ...] = (
    # --- compatibility -------------------------------------------------------------------
    _impl(
        "--compat",
        "compat",
        "sonic",
        "whose conventions to reproduce: one of the dialects listed at the top; default max "
        "for --backend modular/modular-chat, else vllm",
        metavar="NAME",
    ),
    # --- server and endpoint -------------------------------------------------------------
    _impl(
        "--backend",
        "target",
        "both",
        "server kind; names the result and picks the default endpoint (the endpoint's "
        "suffix decides the request format; a chat endpoint turns vllm into vllm-chat)",
        metavar="NAME",
        aliases=("--endpoint-type",),
    ),
    _impl(
        "--base-url",
        "target",
        "both",
        "server URL (scheme://host:port[/prefix]); replaces --host/--port",
        metavar="URL",
    ),
    _impl("--host", "target", "both", "server host", metavar="HOST"),
    _impl("--port", "target", "both", "server port", metavar="PORT", default="8000"),
    _impl(
        "--endpoint",
        "target",
        "both",
        "API path; default per backend: /v1/completions, /v1/chat/completions for *-chat, "
        "/generate_stream for tgi, /v2/models/ensemble/generate_stream for trt-llm",
        metavar="PATH",
    ),
    _impl(
        "--header",
        "target",
        "vllm",
        "extra HTTP header(s) KEY=VALUE; values are never logged or saved",
        kind="list",
        metavar="KEY=VALUE",
    ),
    _impl(
        "--request-id-prefix",
        "target",
        "vllm",
        "x-request-id prefix; the request index is appended",
        metavar="STR",
        default="bench-<8 hex>-",
    ),
    _impl(
        "--request-timeout-s",
        "target",
        "sonic",
        "per-request timeout in seconds",
        metavar="S",
        default="21600 (6 h, as vLLM)",
    ),
    _impl("--insecure", "target", "vllm", "skip TLS certificate verification", kind="bool"),
    _impl(
        "--server-args",
        "target",
        "max",
        "server launch arguments, copied into the result",
        metavar="STR",
        default='""',
    ),
    # --- model and tokenizer -------------------------------------------------------------
    _impl(
        "--model",
        "model",
        "both",
        "model name (required with --compat max; vllm asks the server's /v1/models)",
        metavar="NAME",
    ),
    _impl(
        "--served-model-name",
        "model",
        "vllm",
        "model name sent in requests when it differs from --model",
        metavar="NAME",
    ),
    _impl(
        "--tokenizer",
        "model",
        "both",
        "HF id, local directory or tokenizer.json",
        metavar="ID|PATH",
        default="--model",
    ),
    _impl(
        "--trust-remote-code", "model", "both", "allow custom tokenizer code from the Hub", "bool"
    ),
    # --- dataset ---------------------------------------------------------------------------
    _impl(
        "--dataset-name",
        "dataset",
        "both",
        "sharegpt, sonnet, random, code_debug, custom (JSONL prompt/output_tokens), hf, "
        "prefix_repetition, sessions (JSONL message lists), trace (Mooncake JSONL) or "
        "timed_trace (vLLM)",
        metavar="NAME",
    ),
    _impl("--dataset-path", "dataset", "both", "local file, or HF id for hf", metavar="PATH"),
    _impl(
        "--dataset",
        "dataset",
        "max",
        "deprecated (MAX July 2025): a ShareGPT file; same as --dataset-name sharegpt "
        "--dataset-path",
        metavar="PATH",
    ),
    _impl("--num-prompts", "dataset", "both", "number of requests", metavar="N"),
    _impl(
        "--seed",
        "dataset",
        "both",
        "seed of prompts and arrivals; none = draw one",
        "value",
        "N|none",
    ),
    _impl(
        "--input-len",
        "dataset",
        "vllm",
        "generic input length (sets --random-input-len)",
        metavar="N",
    ),
    _impl(
        "--output-len",
        "dataset",
        "vllm",
        "generic output length (sets the output length of random, sharegpt, custom, hf)",
        metavar="N",
    ),
    _impl(
        "--sharegpt-output-len",
        "dataset",
        "both",
        "fixed output length for sharegpt/code_debug",
        metavar="N",
    ),
    _impl("--sonnet-input-len", "dataset", "both", "", metavar="N", default="550"),
    _impl("--sonnet-output-len", "dataset", "both", "", metavar="N", default="150"),
    _impl("--sonnet-prefix-len", "dataset", "both", "", metavar="N", default="200"),
    _impl("--random-input-len", "dataset", "both", "", metavar="N", default="1024"),
    _impl("--random-output-len", "dataset", "both", "", metavar="N", default="128"),
    _impl(
        "--random-prefix-len",
        "dataset",
        "vllm",
        "fixed random prefix before each prompt",
        metavar="N",
        default="0",
    ),
    _impl(
        "--random-range-ratio",
        "dataset",
        "both",
        "length spread; vllm: U[L(1-r), L(1+r)], r in [0,1), also "
        '{"input":r,"output":r}; max: U[L*r, L], 1.0 = fixed',
        metavar="R",
    ),
    _impl(
        "--custom-output-len",
        "dataset",
        "vllm",
        "output length for custom; -1 = from the file",
        metavar="N",
        default="256",
    ),
    _impl("--hf-subset", "dataset", "vllm", "", metavar="NAME"),
    _impl("--hf-split", "dataset", "vllm", "", metavar="NAME"),
    _impl(
        "--hf-name",
        "dataset",
        "vllm",
        "the Hub dataset id: where rows load from when --dataset-path is not given, the "
        "dataset's name (recorded) when it is a local file",
        metavar="NAME",
    ),
    _impl(
        "--hf-text-column",
        "dataset",
        "sonic",
        "hf dataset column holding the prompt (default: the first of prompt, question, "
        "instruction, text, ...)",
        metavar="NAME",
    ),
    _impl(
        "--hf-output-column",
        "dataset",
        "sonic",
        "hf dataset column whose token count is each request's output length",
        metavar="NAME",
    ),
    _impl("--hf-output-len", "dataset", "vllm", "", metavar="N"),
    _impl(
        "--output-lengths",
        "dataset",
        "max",
        "output length for every request: an integer or a JSON file of lengths",
        metavar="N|PATH",
    ),
    _impl("--max-output-len", "dataset", "max", "cap on each request's max tokens", metavar="N"),
    _impl("--disable-shuffle", "dataset", "vllm", "keep the dataset's order", "bool"),
    _impl("--no-oversample", "dataset", "vllm", "do not repeat prompts to reach N", "bool"),
    _impl(
        "--skip-chat-template",
        "dataset",
        "vllm",
        "never chat-template prompts (sonnet)",
        "bool",
    ),
    # --- multi-turn sessions and trace replay (sonic.workloads) ----------------------------
    _impl(
        "--num-chat-sessions",
        "dataset",
        "max",
        "multi-turn: N sessions; sharegpt sends whole conversations, random MAX's synthetic "
        "chats (--random-num-turns, --random-*-ratio)",
        metavar="N",
    ),
    _impl(
        "--random-num-turns",
        "dataset",
        "max",
        "turns per synthetic session: a number or N(m,s), U(a,b), DU(a,b), G(k,t), LN(m,s)",
        metavar="DIST",
        default="1",
    ),
    _impl(
        "--delay-between-chat-turns",
        "dataset",
        "max",
        "think time in ms between a turn's end and the next turn (number or distribution)",
        metavar="MS|DIST",
    ),
    _impl(
        "--random-first-turn-ratio",
        "dataset",
        "max",
        "first synthetic turn's input length as a share of --random-input-len",
        metavar="R",
        default="1.0",
    ),
    _impl(
        "--random-sys-prompt-ratio",
        "dataset",
        "max",
        "share of the first synthetic turn that is a shared prefix (a 'system prompt')",
        metavar="R",
        default="0.0",
    ),
    _impl(
        "--random-max-num-unique-sys-prompt",
        "dataset",
        "max",
        "how many distinct shared prefixes synthetic sessions pick from",
        metavar="N",
        default="1",
    ),
    _impl(
        "--ignore-first-turn-stats",
        "dataset",
        "max",
        "leave every session's first turn out of the statistics",
        "bool",
    ),
    _impl(
        "--max-concurrent-conversations",
        "traffic",
        "max",
        "cap on sessions active at once (--max-concurrency still caps requests in flight)",
        metavar="N",
    ),
    _impl(
        "--prefix-repetition-prefix-len",
        "dataset",
        "vllm",
        "prefix_repetition: tokens of each shared prefix",
        metavar="N",
        default="256",
    ),
    _impl(
        "--prefix-repetition-suffix-len",
        "dataset",
        "vllm",
        "prefix_repetition: tokens after the prefix, distinct per request",
        metavar="N",
        default="256",
    ),
    _impl(
        "--prefix-repetition-num-prefixes",
        "dataset",
        "vllm",
        "prefix_repetition: distinct prefixes (num-prompts // this requests each)",
        metavar="N",
        default="10",
    ),
    _impl(
        "--prefix-repetition-output-len",
        "dataset",
        "vllm",
        "prefix_repetition: output length",
        metavar="N",
        default="128",
    ),
    _impl(
        "--trace-block-size",
        "dataset",
        "sonic",
        "trace: prompt tokens per hash id (Mooncake: 512)",
        metavar="N",
        default="512",
    ),
    _impl(
        "--trace-speedup",
        "dataset",
        "sonic",
        "trace: replay the recorded times this many times faster",
        metavar="X",
        default="1.0",
    ),
    _impl(
        "--timed-trace-chunk-hash-size",
        "dataset",
        "vllm",
        "timed_trace: prompt tokens per hash id",
        metavar="N",
        default="16",
    ),
    _impl(
        "--timed-trace-sec-multiplier",
        "dataset",
        "vllm",
        "timed_trace: seconds per timestamp unit (0.001 for ms)",
        metavar="X",
        default="1",
    ),
    _impl(
        "--timed-trace-label-timestamp",
        "dataset",
        "vllm",
        "timed_trace: field of the timestamp",
        metavar="KEY",
        default="timestamp",
    ),
    _impl(
        "--timed-trace-label-input-length",
        "dataset",
        "vllm",
        "timed_trace: field of the prompt length",
        metavar="KEY",
        default="input_length",
    ),
    _impl(
        "--timed-trace-label-output-length",
        "dataset",
        "vllm",
        "timed_trace: field of the output length",
        metavar="KEY",
        default="output_length",
    ),
    _impl(
        "--timed-trace-label-hash-ids",
        "dataset",
        "vllm",
        "timed_trace: field of the block hash ids",
        metavar="KEY",
        default="hash_ids",
    ),
    _impl(
        "--self-timed",
        "traffic",
        "vllm",
        "timed_trace: send each record at its timestamp instead of by --request-rate",
        "bool",
    ),
    # --- traffic ---------------------------------------------------------------------------
    _impl(
        "--request-rate",
        "traffic",
        "both",
        "requests/s (Poisson with --burstiness 1) or inf; a comma list sweeps (MAX 2026)",
        metavar="R[,R..]",
        default="inf",
    ),
    _impl(
        "--burstiness",
        "traffic",
        "both",
        "gamma shape of inter-arrivals: 1 = Poisson, <1 burstier, inf = constant",
        metavar="B",
        default="1.0",
    ),
    _impl(
        "--max-concurrency",
        "traffic",
        "both",
        "cap on requests in flight (never delays the arrival schedule); none = unbounded; "
        "a comma list sweeps (MAX 2026)",
        metavar="N[,N..]",
        default="none",
    ),
    _impl(
        "--ramp-up-strategy",
        "traffic",
        "vllm",
        "linear or exponential rate ramp from --ramp-up-start-rps to --ramp-up-end-rps",
        metavar="S",
    ),
    _impl("--ramp-up-start-rps", "traffic", "vllm", "", metavar="R"),
    _impl("--ramp-up-end-rps", "traffic", "vllm", "", metavar="R"),
    _impl(
        "--max-benchmark-duration-s",
        "traffic",
        "max",
        "stop dispatching after this many seconds",
        metavar="S",
    ),
    _impl(
        "--stop-over-saturated",
        "traffic",
        "sonic",
        "stop the run early (dispatch stopped, requests in flight aborted) once the backlog of "
        "requests due but unfinished has kept growing for 5 s, as GuideLLM can: the engine "
        "cannot keep up with the rate, and a longer run only measures its length; the result "
        "says so (sonic.validity, over_saturated) and the exit code is 1",
        "bool",
    ),
    # --- sessions (multi-turn workloads) -----------------------------------------------------
    _impl(
        "--history",
        "traffic",
        "sonic",
        "what earlier turns of a session carry: dataset (default: the dataset's own answers, "
        "byte-identical for every engine) or live (the text this engine returned; recorded in "
        "the result, and a comparison checks every engine used the same mode)",
        metavar="{dataset,live}",
        default="dataset",
    ),
    _impl(
        "--session-header",
        "traffic",
        "sonic",
        "header that carries each session's id (MAX's X-Session-ID); none: not sent",
        metavar="NAME",
        default="X-Session-ID",
    ),
    _impl(
        "--cache-salt",
        "traffic",
        "sonic",
        "cache_salt body field of session requests (vLLM, MAX): auto (default) draws one per "
        "run so repeated runs start with a cold prefix cache; none: not sent; else the value",
        metavar="SALT",
        default="auto",
    ),
    _impl(
        "--use-session-id-as-cache-salt",
        "traffic",
        "max",
        "salt each session's requests with its session id (with --cache-salt: SALT:ID), so "
        "sessions never share prefix-cache blocks",
        "bool",
    ),
    # --- warm-up and readiness -------------------------------------------------------------
    _impl(
        "--flush-prefix-cache",
        "prerun",
        "max",
        "POST the engine's prefix-cache reset just before the measured run (/reset_prefix_cache; "
        "SGLang /flush_cache), so no earlier run's cache hits are measured; vLLM serves it only "
        "with VLLM_SERVER_DEV_MODE=1",
        "bool",
    ),
    _impl(
        "--client-threads",
        "traffic",
        "sonic",
        "worker threads of the client that read the streams (default: the host's available "
        "cores, at most 16; the dispatcher keeps the schedule on a thread of its own)",
        metavar="N",
    ),
    _impl(
        "--workers",
        "traffic",
        "sonic",
        "split the run across N Ray actors on the cluster's nodes, each running the client on "
        "its share (same schedule, prompts and request ids as one process; records merged into "
        "one run); needs Ray (sonic-bench[ray])",
        metavar="N",
        default="1",
    ),
    _impl(
        "--ray-address",
        "traffic",
        "sonic",
        "the Ray cluster for --workers (ray://HOST:10001 or HOST:6379; default: a local Ray)",
        metavar="ADDRESS",
    ),
    _impl(
        "--self-calibrate",
        "prerun",
        "sonic",
        "before the run, time a few streams from the embedded exact-mode sim at the run's "
        "concurrency and record the client's own timing error on this host in the result "
        "(sonic.client_accuracy; about 0.2 s); on by default, --no-self-calibrate skips it",
        "bool",
    ),
    _impl(
        "--num-warmups",
        "prerun",
        "vllm",
        "untimed warm-up requests before the run",
        metavar="N",
        default="0",
    ),
    _impl(
        "--warmup-to-steady-state",
        "prerun",
        "max",
        "multi-turn runs with a concurrency or session cap M: start M sessions mid-way (turn "
        "drawn per session, sessions picked length-biased from a larger pool) after one untimed "
        "request per session that loads its history into the engine's cache, so the run opens "
        "at steady state (on by default with max-benchmark, as in `max benchmark` 2026)",
        "bool",
    ),
    _impl(
        "--warmup-oversample-factor",
        "prerun",
        "max",
        "warm-up candidates = this x M sessions drawn on top of --num-chat-sessions; 2 or more "
        "picks by number of turns, 1 uniformly, 0 takes the pool's first M",
        metavar="N",
        default="8",
    ),
    _impl(
        "--warmup-concurrency",
        "prerun",
        "max",
        "untimed warm-up requests in flight at once",
        metavar="N",
        default="128",
    ),
    _impl(
        "--skip-test-prompt",
        "prerun",
        "max",
        "do not send the untimed test request (on by default with max; with vllm it is sent "
        "only when --ready-check-timeout-sec > 0)",
        "bool",
    ),
    _impl(
        "--ready-check-timeout-sec",
        "prerun",
        "vllm",
        "retry the test request until the server answers or this many seconds pass",
        metavar="S",
        default="0",
        aliases=("--server-ready-timeout-s",),
    ),
    # --- sampling and request body -------------------------------------------------------
    _impl("--temperature", "sampling", "both", "", metavar="T"),
    _impl("--top-p", "sampling", "vllm", "", metavar="P"),
    _impl("--top-k", "sampling", "vllm", "", metavar="K"),
    _impl("--min-p", "sampling", "vllm", "", metavar="P"),
    _impl("--frequency-penalty", "sampling", "vllm", "", metavar="X"),
    _impl("--presence-penalty", "sampling", "vllm", "", metavar="X"),
    _impl("--repetition-penalty", "sampling", "vllm", "", metavar="X"),
    _impl(
        "--ignore-eos",
        "sampling",
        "vllm",
        "ask the server to ignore EOS; vllm: forced on for random; max: always on for "
        "completions; max-benchmark: on unless --disable-ignore-eos",
        "bool",
    ),
    _impl(
        "--disable-ignore-eos",
        "sampling",
        "max",
        "do not send ignore_eos (max-benchmark sends it by default)",
        "bool",
    ),
    _impl("--logprobs", "sampling", "vllm", "logprobs per token to request", metavar="N"),
    _impl(
        "--extra-body",
        "sampling",
        "both",
        "JSON object (inline or a file) merged last into every request body",
        metavar="JSON|PATH",
    ),
    _impl(
        "--chat-template-kwargs",
        "sampling",
        "vllm",
        "JSON object of variables for the client-side chat template (custom, hf datasets)",
        metavar="JSON",
    ),
    # --- metrics ---------------------------------------------------------------------------
    _impl(
        "--percentile-metrics",
        "metrics",
        "both",
        "comma list of ttft,tpot,itl,e2el (latency = e2el)",
        metavar="LIST",
    ),
    _impl(
        "--metric-percentiles",
        "metrics",
        "both",
        "comma list of percentiles, e.g. 50,90,99.9",
        metavar="LIST",
    ),
    _impl(
        "--goodput",
        "metrics",
        "vllm",
        "SLOs in ms for goodput: ttft:MS tpot:MS e2el:MS",
        kind="list",
        metavar="KEY:MS",
    ),
    _impl(
        "--ttft-skip-requests",
        "metrics",
        "max",
        "leave the first N requests out of TTFT and throughput distributions (MAX August 2025)",
        metavar="N",
        default="0",
    ),
    _impl(
        "--retokenize",
        "metrics",
        "sonic",
        "which answers are re-tokenized after the run: 'needed' (those whose output count "
        "comes from the text: the dialect counts that way, or no usage count came back), N "
        "(those plus N requests spread over the run, to check the server's usage count; the "
        "default) or 'all' (every successful answer; costs about as much CPU as the run)",
        metavar="WHICH",
        default="100",
    ),
    _impl(
        "--skip-first-n-requests",
        "metrics",
        "max",
        "leave the first N submitted requests out of every aggregate (MAX 2026)",
        metavar="N",
        default="0",
    ),
    _impl(
        "--skip-last-n-requests",
        "metrics",
        "max",
        "leave the last N completed requests out of every aggregate (MAX 2026)",
        metavar="N",
        default="0",
    ),
    # --- results -----------------------------------------------------------------------------
    _impl("--save-result", "results", "both", "write the result JSON", "bool"),
    _impl(
        "--save-detailed",
        "results",
        "vllm",
        "keep per-request arrays and write a raw per-request file",
        "bool",
    ),
    _impl(
        "--stream-records",
        "results",
        "sonic",
        "bounded memory for runs of millions of requests: finished requests leave the client "
        "in batches while the run goes and their chunks go to an Arrow file (kept beside a "
        "saved result as <result>.records.arrow, read by pandas/polars; generated texts only "
        "with --save-detailed); per-request metrics stay exact, ITL and step-TPOT percentiles "
        "come from an HDR histogram (3 significant digits; mean/std exact), and the result's "
        "per-request itls/generated_texts lists stay in that file",
        "bool",
    ),
    _impl("--append-result", "results", "vllm", "append one JSON line to the result file", "bool"),
    _impl(
        "--always-save-result",
        "results",
        "max",
        "with max, save even when requests failed",
        "bool",
    ),
    _impl("--result-dir", "results", "both", "directory of the result file", metavar="DIR"),
    _impl("--result-filename", "results", "both", "result file name", metavar="NAME"),
    _impl(
        "--metadata",
        "results",
        "both",
        "KEY=VALUE pairs added to the result",
        kind="list",
        metavar="KEY=VALUE",
    ),
    _impl(
        "--label",
        "results",
        "vllm",
        "result name prefix",
        metavar="STR",
        default="the backend",
    ),
    # --- telemetry and console -------------------------------------------------------------
    _impl(
        "--collect-gpu-stats",
        "telemetry",
        "max",
        "sample GPU memory, utilisation, power and energy (NVML, Rust thread) during the "
        "run; without an NVIDIA driver a warning, never an error",
        "bool",
    ),
    _impl(
        "--collect-cpu-stats",
        "telemetry",
        "max",
        "the server processes' user/system CPU time over the run (MAX's cpu_metrics): the "
        "processes listening on the server's port here and their children, or --server-pids",
        "bool",
    ),
    _impl(
        "--server-pids",
        "telemetry",
        "max",
        "PIDs whose CPU time --collect-cpu-stats measures (default: found by the port)",
        kind="list",
        metavar="PID",
    ),
    _impl(
        "--gpu-sample-hz",
        "telemetry",
        "sonic",
        "GPU samples per second with --collect-gpu-stats",
        metavar="HZ",
        default="10",
    ),
    _impl(
        "--collect-server-stats",
        "telemetry",
        "max",
        "scrape the engine's Prometheus /metrics before, during and after the run "
        "(counter deltas in the result, time series in *.telemetry.json)",
        "bool",
        default="on",
    ),
    _impl(
        "--server-metrics-url",
        "telemetry",
        "sonic",
        "the engine's Prometheus endpoint (MAX serves it on port 8001 by default)",
        metavar="URL",
        default="{base-url}/metrics",
    ),
    _impl(
        "--metrics-urls",
        "telemetry",
        "max",
        "more /metrics endpoints to scrape, each LABEL=URL (MAX's --metrics-urls.LABEL=URL "
        "also works), e.g. prefill and decode servers; without --server-metrics-url they "
        "replace the default endpoint. MAX results get server_metrics_by_endpoint",
        kind="list",
        metavar="LABEL=URL",
    ),
    _impl(
        "--server-metrics-interval-s",
        "telemetry",
        "sonic",
        "seconds between /metrics scrapes during the run",
        metavar="S",
        default="1",
    ),
    _impl("--disable-tqdm", "telemetry", "both", "no progress bar", "bool"),
    # --- accepted: change nothing measured -------------------------------------------------
    _acc("--print-inputs-and-outputs", "max", "console debugging output", "bool"),
    _acc("--verbose", "max", "console verbosity", "bool"),
    _acc("--plot-timeline", "vllm", "plots are not drawn", "bool"),
    _acc("--plot-dataset-stats", "vllm", "plots are not drawn", "bool"),
    _acc("--timeline-itl-thresholds", "vllm", "plots are not drawn"),
    _acc("--log-dir", "max", "sonic writes no log files"),
    _acc("--print-workload-stats", "max", "console output", "bool"),
    _acc("--latency-percentiles", "max", "MAX 2026 CSV output only"),
    _acc("--dataset-mode", "max", "--dataset-path already says local vs Hub"),
    _acc("--tokenizer-local-files-only", "max", "where the tokenizer is loaded from", "bool"),
    _acc("--record-request-text", "max", "generated texts are kept with --save-detailed", "bool"),
    _acc("--benchmark-sha", "max", "upload bookkeeping"),
    _acc("--cluster-information-path", "max", "upload bookkeeping"),
    _acc("--benchmark-config-name", "max", "upload bookkeeping"),
    _acc("--lora-assignment", "vllm", "only used with --lora-modules, which is refused"),
    _acc("--kv-block-size", "max", _UNUSED_DATASET),
    _acc("--trace-file", "max", "only used with --trace, which is refused"),
    _acc("--trace-session", "max", "only used with --trace, which is refused"),
    _acc("--warmup-delay-estimated-ttft-ms", "max", "only used by --warmup-delay-biased (refused)"),
    _acc("--warmup-delay-estimated-tpot-ms", "max", "only used by --warmup-delay-biased (refused)"),
    _acc("--max-concurrent-lora-ops", "max", "only used with LoRA, which is refused"),
    _acc("--response-format-fraction", "max", "only used with --response-format (refused)"),
    _acc("--response-format-turn", "max", "only used with --response-format (refused)"),
    _acc("--tools-fraction", "max", "only used with --tools (refused)"),
    _acc("--tool-calls", "max", _UNUSED_DATASET, "bool"),
    _acc("--image-count", "max", "only used with --image-fraction (refused)"),
    _acc("--image-long-side", "max", "only used with --image-fraction (refused)"),
    _acc("--image-aspect-ratio", "max", "only used with --image-fraction (refused)"),
    _acc("--image-turn", "max", "only used with --image-fraction (refused)"),
    _acc("--image-width", "max", "only used by pixel-generation tasks (refused)"),
    _acc("--image-height", "max", "only used by pixel-generation tasks (refused)"),
    _acc("--image-steps", "max", "only used by pixel-generation tasks (refused)"),
    _acc("--image-guidance-scale", "max", "only used by pixel-generation tasks (refused)"),
    _acc("--image-negative-prompt", "max", "only used by pixel-generation tasks (refused)"),
    _acc("--image-seed", "max", "only used by pixel-generation tasks (refused)"),
    _acc("--num-frames", "max", "only used by pixel-generation tasks (refused)"),
    _acc("--arxiv-summarization-input-len", "max", _UNUSED_DATASET),
    _acc("--obfuscated-conversations-average-output-len", "max", _UNUSED_DATASET),
    _acc("--obfuscated-conversations-coefficient-of-variation", "max", _UNUSED_DATASET),
    _acc("--obfuscated-conversations-shuffle", "max", _UNUSED_DATASET, "bool"),
    _acc("--batch-job-image-dir", "max", _UNUSED_DATASET),
    _acc("--agentic-tool-profiles", "max", _UNUSED_DATASET),
    _acc("--agentic-rounds-per-turn", "max", _UNUSED_DATASET),
    _acc("--spec-bench-output-len", "vllm", _UNUSED_DATASET),
    _acc("--spec-bench-category", "vllm", _UNUSED_DATASET),
    _acc("--speed-bench-dataset-subset", "vllm", _UNUSED_DATASET),
    _acc("--speed-bench-output-len", "vllm", _UNUSED_DATASET),
    _acc("--speed-bench-category", "vllm", _UNUSED_DATASET),
    _acc("--blazedit-min-distance", "vllm", _UNUSED_DATASET),
    _acc("--blazedit-max-distance", "vllm", _UNUSED_DATASET),
    _acc("--asr-max-audio-len-sec", "vllm", _UNUSED_DATASET),
    _acc("--asr-min-audio-len-sec", "vllm", _UNUSED_DATASET),
    _acc("--random-batch-size", "vllm", _UNUSED_DATASET),
    _acc("--no-reranker", "vllm", _UNUSED_DATASET, "bool"),
    _acc("--random-mm-base-items-per-request", "vllm", _UNUSED_DATASET),
    _acc("--random-mm-num-mm-items-range-ratio", "vllm", _UNUSED_DATASET),
    _acc("--random-mm-limit-mm-per-prompt", "vllm", _UNUSED_DATASET),
    _acc("--random-mm-bucket-config", "vllm", _UNUSED_DATASET),
    _acc("--bfcl-categories", "vllm", _UNUSED_DATASET),
    _acc("--custom-ensure-client-side-data", "vllm", _UNUSED_DATASET, "bool"),
    # --- refused: would change what is measured ------------------------------------------
    _ref("--use-beam-search", "vllm", "beam search is not implemented", "bool", _FALSE),
    _ref(
        "--profile",
        "vllm",
        "server profiling (/start_profile) slows the server and is not implemented",
        "bool",
        _FALSE,
    ),
    _ref(
        "--no-stream",
        "vllm",
        "loading a Hub dataset whole (a full shuffle, not a buffered one) is not implemented; "
        "it would change which prompts are sampled",
        "bool",
        _FALSE,
    ),
    _ref(
        "--probe-request-rate",
        "vllm",
        "latency probe requests are not implemented",
        harmless=("0",),
    ),
    _ref("--lora-modules", "vllm", "LoRA adapter traffic is not implemented", "list"),
    _ref("--lora", "max", "LoRA adapter traffic is not implemented"),
    _ref("--lora-paths", "max", "LoRA adapter traffic is not implemented", "list"),
    _ref(
        "--lora-uniform-traffic-ratio",
        "max",
        "LoRA adapter traffic is not implemented",
        harmless=("0",),
    ),
    _ref("--per-lora-traffic-ratio", "max", "LoRA adapter traffic is not implemented", "list"),
    _ref(
        "--enable-multimodal-chat",
        "vllm",
        "multimodal prompts are not implemented",
        "bool",
        _FALSE,
    ),
    _ref(
        "--skip-tokenizer-init",
        "vllm",
        "sonic needs the tokenizer for prompts and token counts",
        "bool",
        _FALSE,
    ),
    _ref(
        "--tokenizer-mode",
        "vllm",
        "only the fast HF tokenizer (mode auto) is implemented",
        harmless=("auto",),
    ),
    _ref(
        "--tokenizer-revision",
        "max",
        "tokenizer revisions are not implemented; pass a local tokenizer path",
    ),
    _ref(
        "--model-max-length",
        "max",
        "filtering prompts by a model length limit is not implemented",
    ),
    _ref(
        "--thinking-temperature",
        "max",
        "reasoning-specific sampling is not implemented",
    ),
    _ref("--response-format", "max", "structured-output requests are not implemented"),
    _ref("--tools", "max", "tool-calling requests are not implemented"),
    _ref(
        "--chat-warmup-delay-ms",
        "max",
        "multi-turn chat sessions are not implemented",
        harmless=("0",),
    ),
    _ref(
        "--random-coefficient-of-variation",
        "max",
        "MAX August 2025's normal-distributed random lengths are not implemented; use "
        "--random-range-ratio",
    ),
    _ref(
        "--random-distribution-type",
        "max",
        "MAX August 2025's random length distributions are not implemented; use "
        "--random-range-ratio",
    ),
    _ref("--random-image-size", "max", "image prompts are not implemented", harmless=("",)),
    _ref("--random-image-count", "max", "image prompts are not implemented", harmless=("0",)),
    _ref("--image-fraction", "max", "image prompts are not implemented", harmless=("0",)),
    _ref(
        "--benchmark-task",
        "max",
        "only text generation is implemented",
        harmless=("text-generation",),
    ),
    _ref(
        "--record-output-lengths",
        "max",
        "writing an output-lengths file is not implemented",
    ),
    _ref(
        "--workload-config",
        "max",
        "MAX 2026 workload YAML files are not implemented; pass the flags instead",
    ),
    _ref(
        "--config-file",
        "max",
        "MAX 2026 config YAML files are not implemented; pass the flags instead",
    ),
    _ref("--force-unique-runs", "max", "prompt uniquification is not implemented", "bool", _FALSE),
    _ref(
        "--fit-distributions",
        "max",
        "distribution fitting of the workload is not implemented",
        "bool",
        _FALSE,
    ),
    _ref(
        "--warmup-delay-biased",
        "max",
        "MAX 2026 biased warm-up delays are not implemented",
        "bool",
        _FALSE,
    ),
    _ref(
        "--warm-shared-prefix",
        "max",
        "prefix-cache warming is not implemented",
        "bool",
        _FALSE,
    ),
    _ref(
        "--num-iters",
        "max",
        "repeated iterations are not implemented; run sonic once per trial",
        harmless=("1",),
    ),
    _ref(
        "--num-prompts-multiplier",
        "max",
        "num-prompts scaled by concurrency is not implemented; pass --num-prompts",
    ),
    _ref(
        "--gpu-metrics-host",
        "max",
        "remote DCGM GPU metrics are not implemented; use --collect-gpu-stats on the server host",
        harmless=("",),
    ),
    _ref("--dry-run", "max", "a dry run would report a benchmark nobody ran", "bool", _FALSE),
    _ref("--trace", "max", "nsys tracing slows the server and is not implemented", "bool", _FALSE),
    _ref("--upload-results", "max", "uploading results is not implemented", "bool", _FALSE),
)


def flag_table() -> dict[str, Flag]:
    """Every option string (names, aliases, ``--no-X`` forms) mapped to its flag."""
    table: dict[str, Flag] = {}
    for flag in FLAGS:
        names = [flag.name, *flag.aliases]
        if flag.negation:
            names.append(flag.negation)
        for name in names:
            if name in table:
                raise RuntimeError(f"flag {name} declared twice")  # a bug in this table
            table[name] = flag
    return table
