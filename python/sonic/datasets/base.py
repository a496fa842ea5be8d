"""Types and helpers shared by every dataset: the request, the arguments, file reading, shuffling.

Every sampler takes its randomness from a local ``random.Random(seed)`` or numpy generator built
from ``DatasetArgs.seed``, never from global state, so the same seed gives the same prompts for
every engine in a comparison. Where vLLM or MAX seed a global RNG and then draw from it, a fresh
local generator with the same seed draws the same numbers, which keeps prompts identical to theirs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sonic.errors import SonicError

if TYPE_CHECKING:
    from sonic.tokenizer import Tokenizer

log = logging.getLogger("sonic.datasets")


@dataclass(frozen=True)
class DatasetRules:
    """How a dialect draws prompts; each dataset module reads the fields it needs.

    - ``range_ratio``: ``symmetric`` = lengths U[L(1-r), L(1+r)], special tokens kept out of
      the draws (vLLM); ``lower_bound`` = U[max(int(L*r), 1), L], where 1.0 means a fixed length
      (MAX).
    - ``oversample``: too few usable records are filled up by seeded draws (vLLM) instead of
      running short.
    - ``sharegpt_hub_download``: sharegpt without --dataset-path downloads it from the Hub.
    - ``sonnet_strict``: the sonnet prefix must exceed the templated instruction and the
      extra lines must be distinct (MAX).
    - ``sonnet_template_on_chat``: sonnet prompts are chat-templated for chat endpoints (MAX)
      rather than for completions endpoints (vLLM).
    - ``random_encoded_len``: a ``lower_bound`` random prompt's length is its decoded text
      re-encoded (MAX 2026) rather than the drawn length (MAX 2025).
    """

    range_ratio: str = "symmetric"
    oversample: bool = True
    sharegpt_hub_download: bool = False
    sonnet_strict: bool = False
    sonnet_template_on_chat: bool = False
    random_encoded_len: bool = False


@dataclass
class SampleRequest:
    """One prompt to send.

    ``prompt_len`` is the dataset's own token count (the profile's rule, see each dataset);
    ``expected_output_len`` becomes ``max_tokens`` (None: let the server decide). ``messages``,
    when set, is sent as-is to chat endpoints instead of wrapping ``prompt`` as one user turn.
    """

    prompt: str
    prompt_len: int
    expected_output_len: int | None
    messages: list[dict[str, Any]] | None = None


@dataclass
class DatasetArgs:
    """Which prompts are sent, identical for every engine given the same values: the one set
    of dataset settings, parsed by ``sonic run`` and read by the samplers. ``None`` fields take
    the dialect's default; ``compat`` names the dialect (``sonic.dialects``) whose
    ``DatasetRules`` apply.
    """

    name: str = "random"
    path: str | None = None
    num_prompts: int = 1000
    seed: int = 0
    seed_drawn: bool = False  # --seed none: drawn at parse time, recorded for a replay
    compat: str = "vllm"
    endpoint_is_chat: bool = False
    # sharegpt (and code_debug, as in MAX July 2025)
    sharegpt_output_len: int | None = None
    # sonnet
    sonnet_input_len: int = 550
    sonnet_output_len: int | None = 150
    sonnet_prefix_len: int = 200
    # random
    random_input_len: int = 1024
    random_output_len: int = 128
    random_prefix_len: int = 0
    # One ratio, or (input, output) ratios; None: the dialect's default.
    random_range_ratio: float | tuple[float, float] | None = None
    # custom
    custom_output_len: int = 256  # -1: take "output_tokens" from the file
    skip_chat_template: bool = False
    # Extra variables of the client-side chat template (vLLM's --chat-template-kwargs).
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    # hf
    hf_subset: str | None = None
    hf_split: str | None = None
    hf_name: str | None = None
    hf_output_len: int | None = None
    hf_text_column: str | None = None
    hf_output_column: str | None = None
    # code_debug: keep items whose prompt mentions LICENSE (MAX July 2025) instead of dropping them
    code_debug_keep_license: bool = False
    # common
    disable_shuffle: bool = False
    no_oversample: bool = False
    trust_remote_code: bool = False
    # Output lengths of the run, over the dataset's: MAX's --output-lengths (one for all, or
    # one per request, cycled) and --max-output-len (a cap on every request's max_tokens).
    output_lengths: int | tuple[int, ...] | None = None
    max_output_len: int | None = None
    # Multi-turn sessions (sonic.workloads). MAX's chat-session flags: with --num-chat-sessions
    # the sharegpt and random datasets give sessions instead of single prompts.
    num_chat_sessions: int | None = None
    random_num_turns: str = "1"  # a MAX distribution parameter (sonic.workloads.distribution)
    delay_between_chat_turns: str | None = None  # ms, a MAX distribution parameter
    random_first_turn_ratio: float = 1.0
    random_sys_prompt_ratio: float = 0.0
    random_max_num_unique_sys_prompt: int = 1
    ignore_first_turn_stats: bool = False
    max_concurrent_conversations: int | None = None
    # prefix_repetition (vLLM)
    prefix_repetition_prefix_len: int = 256
    prefix_repetition_suffix_len: int = 256
    prefix_repetition_num_prefixes: int = 10
    prefix_repetition_output_len: int = 128
    # timed_trace (vLLM): record field names, block size, timestamp unit; --self-timed sends
    # each record at its timestamp instead of by --request-rate.
    timed_trace_chunk_hash_size: int = 16
    timed_trace_sec_multiplier: float = 1.0
    timed_trace_label_timestamp: str = "timestamp"
    timed_trace_label_input_length: str = "input_length"
    timed_trace_label_output_length: str = "output_length"
    timed_trace_label_hash_ids: str = "hash_ids"
    self_timed: bool = False
    # trace (sonic): Mooncake-format JSONL, timestamps in ms, always sent at its times
    trace_block_size: int = 512
    trace_speedup: float = 1.0

    def workload_settings(self) -> dict[str, Any]:
        """The multi-turn and trace settings (``sonic.workloads``) that differ from their
        defaults, by flag dest, for ``client_args``: empty for a plain run, so its record does
        not change."""
        names = [f.name for f in dataclasses.fields(self)]
        first = names.index("num_chat_sessions")
        defaults = DatasetArgs()
        return {
            n: getattr(self, n) for n in names[first:] if getattr(self, n) != getattr(defaults, n)
        }

    @property
    def rules(self) -> DatasetRules:
        from sonic import dialects

        return dialects.get(self.compat).dataset_rules

    @property
    def range_ratios(self) -> tuple[float, float]:
        """(input, output) range ratios."""
        from sonic import dialects

        r = self.random_range_ratio
        if r is None:
            r = dialects.get(self.compat).default("random_range_ratio", 0.0)
        if isinstance(r, (tuple, list)):
            return float(r[0]), float(r[1])
        return float(r), float(r)

    def validate(self) -> None:
        self.rules  # noqa: B018 - an unknown dialect fails here with its one-line error
        if isinstance(self.num_prompts, bool) or not isinstance(self.num_prompts, int):
            raise SonicError(f"--num-prompts must be an integer, got {self.num_prompts!r}")
        if self.num_prompts < 1 and self.name != "custom":
            raise SonicError(f"--num-prompts must be at least 1, got {self.num_prompts}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise SonicError(f"--seed must be an integer, got {self.seed!r}")
        for flag, value in (
            ("--sharegpt-output-len", self.sharegpt_output_len),
            ("--sonnet-output-len", self.sonnet_output_len),
            ("--hf-output-len", self.hf_output_len),
        ):
            if value is not None and value < 1:
                raise SonicError(f"{flag} must be at least 1, got {value}")


# -- reading input files --------------------------------------------------------------------------
def existing_file(path: str | Path, what: str) -> Path:
    """``path`` (or a shipped ``sonic:NAME``) as a Path, or a one-line error if it is missing
    or not a file."""
    from sonic.resources import resolve

    p = Path(resolve(str(path))).expanduser()
    if not p.exists():
        raise SonicError(f"{what} {p} does not exist")
    if not p.is_file():
        raise SonicError(f"{what} {p} is not a file")
    return p


def read_text(path: str | Path, what: str) -> str:
    p = existing_file(path, what)
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SonicError(f"{what} {p} is not UTF-8 text") from None
    except OSError as exc:
        raise SonicError(f"cannot read {what} {p}: {exc.strerror or exc}") from None


def read_json(path: str | Path, what: str) -> Any:
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SonicError(
            f"{what} {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None


def read_jsonl(path: str | Path, what: str) -> list[Any]:
    """One JSON value per non-blank line."""
    rows = []
    for lineno, line in enumerate(read_text(path, what).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise SonicError(
                f"{what} {path} line {lineno} is not valid JSON ({exc.msg}); "
                "expected one JSON object per line (JSONL)"
            ) from None
    return rows


# -- sampling helpers -----------------------------------------------------------------------------
def shuffled(items: list[Any], seed: int, enabled: bool = True) -> list[Any]:
    """Same permutation as ``random.seed(seed); random.shuffle(items)`` (vLLM and MAX)."""
    out = list(items)
    if enabled:
        random.Random(seed).shuffle(out)
    return out


def oversample(requests: list[SampleRequest], num_prompts: int, seed: int) -> list[SampleRequest]:
    """Fill up to ``num_prompts`` by seeded draws with replacement, as vLLM does."""
    if not requests or len(requests) >= num_prompts:
        return requests
    rng = random.Random(seed)
    extra = [dataclasses.replace(rng.choice(requests)) for _ in range(num_prompts - len(requests))]
    log.info("oversampled %d requests to reach %d", len(extra), num_prompts)
    return requests + extra


def finish(
    requests: list[SampleRequest], args: DatasetArgs, what: str, *, allow_oversample: bool
) -> list[SampleRequest]:
    """Apply the profile's policy for too few usable records: error, oversample, or run short."""
    if not requests:
        raise SonicError(f"{what}: no usable prompts after filtering")
    want = args.num_prompts
    if want >= 1 and len(requests) < want:
        if allow_oversample and args.rules.oversample and not args.no_oversample:
            return oversample(requests, want, args.seed)
        log.warning("%s: only %d usable prompts of %d requested", what, len(requests), want)
    return requests


def is_valid_sequence(prompt_len: int, output_len: int, *, fixed_output: bool) -> bool:
    """ShareGPT's filter in both tools: prompt ≥ 4, output ≥ 4 (unless pinned), prompt ≤ 1024,
    prompt + output ≤ 2048."""
    if prompt_len < 4 or (not fixed_output and output_len < 4):
        return False
    return prompt_len <= 1024 and prompt_len + output_len <= 2048


def chat_format(tokenizer: Tokenizer, prompt: str, **kwargs: Any) -> str:
    """The prompt as one user turn, rendered with the tokenizer's chat template."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, **kwargs
    )


def maybe_chat_format(tokenizer: Tokenizer, prompt: str, args: DatasetArgs) -> str:
    """vLLM's custom/hf rule: template the prompt for completions endpoints unless
    ``--skip-chat-template``; chat endpoints template on the server, so they get it raw."""
    if args.skip_chat_template or args.endpoint_is_chat:
        return prompt
    if not tokenizer.has_chat_template:
        raise SonicError(
            f"tokenizer {tokenizer.name_or_path} has no chat template to format {args.name} "
            "prompts with; pass --skip-chat-template to send them raw"
        )
    return chat_format(tokenizer, prompt, **args.chat_template_kwargs)
