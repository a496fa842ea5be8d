"""Did every request get the output length it asked for?

With ``ignore_eos`` each successful request should stop exactly at its ``max_tokens``. Fewer
tokens mean the engine did not honour ``ignore_eos`` (so two engines compared on "the same"
workload did different work, a common and silent source of unfair comparisons); more mean it
ignored ``max_tokens``. Without ``ignore_eos`` stopping early at EOS is normal: only counted.

Each request is judged by the strongest evidence it has, in this order:

1. **The server's usage count** (``usage.completion_tokens``): what the engine says it
   generated, judged exactly: short below ``max_tokens``, long above it.
2. **The finish_reason the server sent**, where there is no usage count (MAX's profile does
   not ask for usage, so its output tokens are the re-tokenized text). A re-tokenized count is
   no per-request evidence: decoding a model's tokens and encoding the text again can count
   20 % or more fewer tokens (BPE merges across the generated token boundaries, random-ish
   output text), so a 32-token answer can re-tokenize to 25 and a threshold near
   ``max_tokens`` accuses engines that did honour ``ignore_eos``. The finish reason does not
   depend on the tokenizer: ``"length"`` means the engine stopped at ``max_tokens``, so it is
   never short whatever the re-tokenized count; a stop reason (``"stop"``, TGI's
   ``"eos_token"``...) means it stopped at EOS or a stop string before ``max_tokens``: short.
3. **The re-tokenized text alone**, where neither was sent (or the finish reason is one this
   check does not know): short only far below ``max_tokens`` (under ``RETOK_FAR_SHARE`` of
   it), beyond what re-tokenization loses; an engine that stops at EOS under random prompts
   usually stops far earlier than that. Never "long" (re-tokenizing can also count more).

The warning says which of these it used, so a reader can weigh it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from sonic.metrics.requests import RequestMetrics

# Finish reasons that mean "stopped because max_tokens was reached" (OpenAI-compatible servers,
# TGI and llama.cpp say "length"): the engine honoured the requested length.
LENGTH_FINISH_REASONS = frozenset({"length", "max_tokens"})
# Finish reasons that mean "stopped at EOS or a stop string before max_tokens": with ignore_eos
# sent, the engine did not honour it. Any other reason (None, "abort", "tool_calls", ...) is
# not evidence either way, and the re-tokenized count is judged instead.
STOP_FINISH_REASONS = frozenset({"stop", "eos_token", "eos", "stop_sequence"})
# With neither usage nor a known finish reason, a re-tokenized count below
# RETOK_FAR_SHARE * max_tokens is "short". Re-tokenization can lose 20 %+ of the tokens, so
# anything above half of max_tokens is within its noise and not held against the engine.
RETOK_FAR_SHARE = 0.5

# Evidence names (OutputLengthCheck.short_by keys, short_examples_by values).
BY_USAGE = "usage"
BY_FINISH_REASON = "finish_reason"
BY_RETOK = "retok"

_EVIDENCE_TEXT = {
    BY_USAGE: "by the server's usage count",
    BY_FINISH_REASON: 'by finish_reason (the server reported a stop, not "length")',
    BY_RETOK: (
        f"by re-tokenized text under {RETOK_FAR_SHARE:.0%} of max_tokens (no usage count or known "
        "finish_reason was sent; re-tokenized text can count 20 %+ fewer tokens than the "
        "engine generated, so only requests this far short are counted)"
    ),
}


@dataclass(frozen=True)
class OutputLengthCheck:
    ignore_eos: bool
    checked: int  # successful requests with a max_tokens and some evidence of their length
    short: int  # fewer tokens than max_tokens (by the strongest evidence, see the module doc)
    long: int  # more tokens than max_tokens (server usage only)
    unchecked: int  # successful requests with a max_tokens but no evidence at all
    by_usage: int  # of the checked, how many by the server's usage
    short_examples: list[tuple[int, int, int]]  # (request index, tokens, max_tokens); -1: none
    # Of the checked, how many by finish_reason (no usage); the rest by re-tokenized text.
    by_finish_reason: int = 0
    # The short requests per evidence (BY_USAGE, BY_FINISH_REASON, BY_RETOK).
    short_by: dict[str, int] = field(default_factory=dict)
    # Which evidence judged each of short_examples (same order).
    short_examples_by: list[str] = field(default_factory=list)

    def warning(self) -> str | None:
        """One line when the engine did not produce the lengths it was asked for, naming the
        count (or finish reason) that says so."""
        parts = []
        if self.ignore_eos and self.short:
            i, got, want = self.short_examples[0]
            how = self.short_examples_by[0] if self.short_examples_by else BY_RETOK
            if how == BY_FINISH_REASON:
                tokens = f"a stop finish_reason before max_tokens {want}" + (
                    f", its text re-tokenizes to {got} tokens" if got >= 0 else ""
                )
            else:
                tokens = f"{got} of {want} tokens"
            counts = {k: v for k, v in self.short_by.items() if v}
            if not counts:  # a check read back from an older result file
                counts = {how: self.short}
            evidence = ", ".join(
                f"{v} {_EVIDENCE_TEXT[k]}" if len(counts) > 1 else _EVIDENCE_TEXT[k]
                for k, v in counts.items()
            )
            parts.append(
                f"{self.short} of {self.checked} requests stopped before max_tokens although "
                f"ignore_eos was sent, {evidence} (request {i}: {tokens}): the engine did not "
                "honour ignore_eos, so output lengths differ from the workload"
            )
        if self.long:
            parts.append(
                f"{self.long} of {self.checked} requests produced more than max_tokens "
                f"{_EVIDENCE_TEXT[BY_USAGE]}"
            )
        return "; ".join(parts) or None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["short_examples"] = [list(x) for x in self.short_examples]
        return d


def _finish_reasons(req: RequestMetrics) -> tuple[np.ndarray, np.ndarray]:
    """Per request: did the server say it stopped at max_tokens / at a stop (EOS)?"""
    reasons = list(req.finish_reason or [])[: req.n]
    reasons += [None] * (req.n - len(reasons))
    at_length = np.array([r in LENGTH_FINISH_REASONS for r in reasons], dtype=bool)
    at_stop = np.array([r in STOP_FINISH_REASONS for r in reasons], dtype=bool)
    return at_length, at_stop


def check_output_lengths(
    req: RequestMetrics, max_tokens: Sequence[int | None], ignore_eos: bool, examples: int = 3
) -> OutputLengthCheck:
    want = np.full(req.n, -1, dtype=np.int64)
    for i, m in enumerate(max_tokens[: req.n]):
        want[i] = -1 if m is None else int(m)
    asked = req.success & (want > 0)
    usage = np.asarray(req.usage_output_len)
    retok = np.asarray(req.retok_output_len)
    at_length, at_stop = _finish_reasons(req)

    by_usage = asked & (usage >= 0)
    by_reason = asked & ~by_usage & (at_length | at_stop)
    by_retok = asked & ~by_usage & ~by_reason & (retok >= 0)
    got = np.where(by_usage, usage, retok)

    short_usage = by_usage & (usage < want)
    # A stop reason with a text that re-tokenizes to max_tokens or more produced the asked-for
    # length anyway (EOS as the last token): the workload was done, nothing to hold against it.
    short_reason = by_reason & at_stop & ~(retok >= want)
    short_retok = by_retok & (retok < RETOK_FAR_SHARE * want)
    short_mask = short_usage | short_reason | short_retok
    short = np.flatnonzero(short_mask)
    long = by_usage & (usage > want)
    judged = by_usage | by_reason | by_retok

    def evidence(i: int) -> str:
        return BY_USAGE if short_usage[i] else BY_FINISH_REASON if short_reason[i] else BY_RETOK

    return OutputLengthCheck(
        ignore_eos=bool(ignore_eos),
        checked=int(judged.sum()),
        short=int(short.size),
        long=int(long.sum()),
        unchecked=int((asked & ~judged).sum()),
        by_usage=int(by_usage.sum()),
        short_examples=[(int(i), int(got[i]), int(want[i])) for i in short[:examples]],
        by_finish_reason=int(by_reason.sum()),
        short_by={
            BY_USAGE: int(short_usage.sum()),
            BY_FINISH_REASON: int(short_reason.sum()),
            BY_RETOK: int(short_retok.sum()),
        },
        short_examples_by=[evidence(int(i)) for i in short[:examples]],
    )
