"""Which answers are re-tokenized after the run (``--retokenize``).

Re-tokenizing an answer costs about as much CPU as receiving it (1.5-2 µs per token with a
fast tokenizer), all of it after the run. Some counts need it: a dialect that counts output
tokens from the text (MAX's ``retokenize`` and ``hybrid`` modes), or an answer without a
usage count under the ``usage`` mode. Every other re-tokenized count only checks the server's
usage count against the text (the result's token discrepancy), and a sample spread over the
run checks that as well as every answer does.

- ``needed``: only the answers whose count is taken from the text;
- ``N`` (default 100): those, plus N requests spread evenly over the run;
- ``all``: every successful answer (what sonic did before ``--retokenize``).

Step TPOT (per-chunk token counts) is needed where the dialect asks for it and is unaffected.
Stdlib only at import: the CLI parses the flag before numpy is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sonic.errors import SonicError

if TYPE_CHECKING:
    import numpy as np

    from sonic.metrics.rules import MetricRules

ALL = "all"
NEEDED = "needed"
DEFAULT_SAMPLE = 100


@dataclass(frozen=True)
class Retokenize:
    """The re-tokenization policy: every answer (``sample=None``) or those needed plus
    ``sample`` spread over the run (0: those needed only)."""

    sample: int | None = DEFAULT_SAMPLE

    @classmethod
    def parse(cls, text: str) -> Retokenize:
        word = text.strip().lower()
        if word == ALL:
            return cls(None)
        if word == NEEDED:
            return cls(0)
        try:
            n = int(word)
        except ValueError:
            n = -1
        if n < 0:
            raise SonicError(
                f"--retokenize {text!r}: expected 'all', 'needed' or a number of requests to "
                "sample (0 or more)"
            )
        return cls(n)

    def __str__(self) -> str:
        if self.sample is None:
            return ALL
        return NEEDED if self.sample == 0 else str(self.sample)

    def select(
        self,
        index: np.ndarray,
        n: int,
        success: np.ndarray,
        usage_out: np.ndarray,
        rules: MetricRules,
    ) -> np.ndarray:
        """Which of the requests at ``index`` (positions in a run of ``n``) to re-tokenize.

        The sample depends on the position only (request i is in it when ``i*N // n`` steps
        up at i), so a streamed run's batches pick the same requests as one pass in memory.
        """
        import numpy as np

        if self.sample is None or rules.token_count != "usage":
            return success.copy()
        needed = success & (usage_out <= 0)
        if self.sample == 0 or n == 0:
            return needed
        k = min(self.sample, n)
        idx = np.asarray(index, dtype=np.int64)
        sampled = (idx + 1) * k // n != idx * k // n
        return needed | (success & sampled)


DEFAULT_RETOKENIZE = Retokenize()
