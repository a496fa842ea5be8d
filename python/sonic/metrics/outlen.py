"""Did every request get the output length it asked for?

With ``ignore_eos`` each successful request should stop exactly at its ``max_tokens``. Fewer
tokens mean the engine did not honour ``ignore_eos`` (so two engines compared on "the same"
workload did different work, a common and silent source of unfair comparisons); more mean it
ignored ``max_tokens``. Without ``ignore_eos`` stopping early at EOS is normal: only counted.
The server's own ``usage`` count is judged exactly. Where the server sent none (MAX's
profile does not ask for it), the re-tokenized text is judged with a margin, since it can
differ by a few tokens from what the engine generated (BPE merges across token
boundaries): short only below 90 % of ``max_tokens`` less two tokens, and never "long".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from sonic.metrics.requests import RequestMetrics

# Without server usage, a re-tokenized count below RETOK_SHARE * max_tokens - RETOK_SLACK is
# "short": an engine that stops at EOS usually stops far earlier than that.
RETOK_SHARE = 0.9
RETOK_SLACK = 2


@dataclass(frozen=True)
class OutputLengthCheck:
    ignore_eos: bool
    checked: int  # successful requests with a max_tokens and a token count
    short: int  # fewer tokens than max_tokens
    long: int  # more tokens than max_tokens (server usage only)
    unchecked: int  # successful requests with a max_tokens but no token count
    by_usage: int  # of the checked, how many by the server's usage (the rest re-tokenized)
    short_examples: list[tuple[int, int, int]]  # (request index, tokens, max_tokens)

    def warning(self) -> str | None:
        """One line when the engine did not produce the lengths it was asked for."""
        parts = []
        if self.ignore_eos and self.short:
            i, got, want = self.short_examples[0]
            parts.append(
                f"{self.short} of {self.checked} requests stopped before max_tokens although "
                f"ignore_eos was sent (request {i}: {got} of {want} tokens): the engine did not "
                "honour ignore_eos, so output lengths differ from the workload"
            )
        if self.long:
            parts.append(f"{self.long} of {self.checked} requests produced more than max_tokens")
        return "; ".join(parts) or None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["short_examples"] = [list(x) for x in self.short_examples]
        return d


def check_output_lengths(
    req: RequestMetrics, max_tokens: Sequence[int | None], ignore_eos: bool, examples: int = 3
) -> OutputLengthCheck:
    want = np.full(req.n, -1, dtype=np.int64)
    for i, m in enumerate(max_tokens[: req.n]):
        want[i] = -1 if m is None else int(m)
    asked = req.success & (want > 0)
    usage = np.asarray(req.usage_output_len)
    retok = np.asarray(req.retok_output_len)
    by_usage = asked & (usage >= 0)
    by_retok = asked & ~by_usage & (retok >= 0)
    got = np.where(by_usage, usage, retok)
    short = np.flatnonzero(
        (by_usage & (usage < want)) | (by_retok & (retok < RETOK_SHARE * want - RETOK_SLACK))
    )
    long = by_usage & (usage > want)
    judged = by_usage | by_retok
    return OutputLengthCheck(
        ignore_eos=bool(ignore_eos),
        checked=int(judged.sum()),
        short=int(short.size),
        long=int(long.sum()),
        unchecked=int((asked & ~judged).sum()),
        by_usage=int(by_usage.sum()),
        short_examples=[(int(i), int(got[i]), int(want[i])) for i in short[:examples]],
    )
