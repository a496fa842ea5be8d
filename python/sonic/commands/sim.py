"""``sonic sim``: run the simulated OpenAI-compatible engine in the foreground.

Prints ``sonic sim listening on http://HOST:PORT`` once it accepts connections; Ctrl-C or
SIGTERM stop it cleanly.
"""

from __future__ import annotations

import argparse
import signal
from typing import NoReturn

from sonic.errors import SonicError

DESCRIPTION = """\
An OpenAI-compatible simulated LLM engine: /v1/completions, /v1/chat/completions (streaming
and not), /v1/models, /health, /version, /tokenize, /metrics (vLLM names),
/reset_prefix_cache. Its timing comes from a continuous-batching model (step time = base +
per-decoding-sequence cost + per-prefill-token cost, chunked prefill, a token budget per step,
KV capacity) or, with --ttft-ms and --itl-ms, from exact timing independent of load.
Profiles: default (5 ms + 250 us/seq + 40 us/prompt token), fast-decode (4 ms + 100 us/seq +
100 us/prompt token), fast-prefill (6 ms + 300 us/seq + 10 us/prompt token); all with
max-num-seqs 256, max-num-batched-tokens 2048, kv-cache-tokens 131072, max-model-len 4096.
Prefix caching (on by default, as in vLLM): prompt tokens in 16-token blocks keyed by a hash
chained over the prefix, LRU-evicted at a capacity in blocks; cached tokens are not prefilled
(the batching model charges only uncached tokens; exact mode adds
--exact-prefill-us-per-token per uncached token to the TTFT), are reported in each response's
usage.prompt_tokens_details.cached_tokens and counted in vllm:prefix_cache_queries_total /
vllm:prefix_cache_hits_total. A request's `cache_salt` (or header X-Cache-Salt) isolates it:
different salts share no blocks. POST /reset_prefix_cache empties the cache.
Requests may force a fault with the header `x-sonic-fault: 500|429|reset|stall|malformed`.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise SonicError(message)


def _parser() -> argparse.ArgumentParser:
    from sonic.sim import PROFILES

    p = _Parser(
        prog="sonic sim",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    g.add_argument("--port", type=int, default=8000, help="port (0 = a free port; default 8000)")
    g.add_argument("--model", default="sonic-sim", help="served model id (default sonic-sim)")
    g.add_argument(
        "--tokenizer",
        help="tokenizer.json or HF directory for prompt counting and output text "
        "(default: built-in whitespace-and-punctuation tokenizer)",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of output lengths, text, faults")
    e = p.add_argument_group("engine model (unset values come from the profile)")
    e.add_argument("--profile", default="default", choices=PROFILES, help="engine profile")
    e.add_argument("--max-model-len", type=int, help="context length (prompt + output) limit")
    e.add_argument("--max-num-seqs", type=int, help="sequences per batch")
    e.add_argument("--max-num-batched-tokens", type=int, help="token budget per engine step")
    e.add_argument("--kv-cache-tokens", type=int, help="KV cache capacity in tokens")
    e.add_argument("--step-base-ms", type=float, help="fixed cost of each step (ms)")
    e.add_argument("--decode-us-per-seq", type=float, help="step cost per decoding sequence (us)")
    e.add_argument("--prefill-us-per-token", type=float, help="step cost per prompt token (us)")
    e.add_argument(
        "--eos-mean-len",
        type=float,
        default=128.0,
        help="mean output length when a request does not set ignore_eos (default 128)",
    )
    x = p.add_argument_group("exact timing (ground truth, independent of load)")
    x.add_argument("--ttft-ms", type=float, help="first token this long after the request")
    x.add_argument("--itl-ms", type=float, help="then one token every this many ms")
    x.add_argument(
        "--output-len", type=int, help="fixed output length (capped by the request's max_tokens)"
    )
    x.add_argument(
        "--exact-prefill-us-per-token",
        type=float,
        default=0.0,
        help="exact mode: add this many us to the TTFT per uncached prompt token "
        "(default 0: TTFT independent of the prompt and the prefix cache)",
    )
    c = p.add_argument_group("prefix caching")
    c.add_argument(
        "--enable-prefix-caching",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reuse the computed blocks of earlier prompts (default on, as in vLLM)",
    )
    c.add_argument(
        "--prefix-block-size",
        type=int,
        default=16,
        help="tokens per cache block; only whole blocks are cached (default 16, as vLLM)",
    )
    c.add_argument(
        "--prefix-cache-blocks",
        type=int,
        help="cache capacity in blocks, least recently used evicted first "
        "(default: --kv-cache-tokens / --prefix-block-size; 0 disables caching)",
    )
    f = p.add_argument_group("fault injection (probabilities per request, 0..1)")
    f.add_argument("--fail-500", type=float, default=0.0, help="answer HTTP 500")
    f.add_argument("--fail-429", type=float, default=0.0, help="answer HTTP 429")
    f.add_argument("--fail-reset", type=float, default=0.0, help="reset the connection mid-stream")
    f.add_argument("--fail-stall", type=float, default=0.0, help="stop sending mid-stream")
    f.add_argument("--fail-malformed", type=float, default=0.0, help="send a malformed SSE line")
    f.add_argument(
        "--stall-s", type=float, default=3600.0, help="length of a stall (s, default 3600)"
    )
    return p


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    ns = _parser().parse_args(argv)
    from sonic import _core
    from sonic.sim import SimOptions, serve

    opts = SimOptions(**vars(ns))
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        serve(opts)
    except _core.CoreError as exc:
        raise SonicError(str(exc)) from None
    except KeyboardInterrupt:
        pass
    return 0
