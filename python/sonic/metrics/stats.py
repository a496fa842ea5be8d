"""Summary statistics with numpy's conventions (population std, linear-interpolated percentiles).

Every dialect reports the same numbers; they differ only in which ones they show and how an
empty sample set is written (vLLM: 0, MAX: null), so an empty set is kept as ``None`` here and
the writers decide.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

# Percentiles computed for every metric, whatever the user asked for: the MAX dialect needs
# p90/p95/p99 and, for its reversed throughput percentiles, p10/p5/p1; sonic adds p99.9.
BASE_PERCENTILES: tuple[float, ...] = (1.0, 5.0, 10.0, 50.0, 90.0, 95.0, 99.0, 99.9)


def percentile_word(p: float) -> str:
    """Key fragment for a percentile: ``99`` for 99.0, ``99.9`` for 99.9 (vLLM's convention)."""
    return str(int(p)) if int(p) == p else str(p)


@dataclass(frozen=True)
class Summary:
    """Statistics of one sample set; every value is ``None`` when the set is empty."""

    n: int
    mean: float | None = None
    median: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    percentiles: dict[float, float] = field(default_factory=dict)

    def p(self, q: float) -> float | None:
        """The q-th percentile (must have been computed)."""
        if self.n == 0:
            return None
        if q not in self.percentiles:
            raise KeyError(
                f"percentile {q} was not computed: pass it to compute_metrics(percentiles=...)"
            )
        return self.percentiles[q]

    def scaled(self, factor: float) -> Summary:
        """The same statistics multiplied by ``factor`` (e.g. 1000 for seconds -> ms)."""
        if self.n == 0:
            return self

        def m(v: float | None) -> float | None:
            return None if v is None else v * factor

        return Summary(
            n=self.n,
            mean=m(self.mean),
            median=m(self.median),
            std=m(self.std),
            min=m(self.min),
            max=m(self.max),
            percentiles={q: v * factor for q, v in self.percentiles.items()},
        )


def summarize(values: np.ndarray | Iterable[float], percentiles: Iterable[float] = ()) -> Summary:
    """mean / median / population std / min / max and linear-interpolated percentiles.

    ``BASE_PERCENTILES`` are always included. NaNs are not dropped here: callers select the
    values that are defined, so a NaN reaching this point is a bug that should show.
    """
    arr = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64)
    qs = sorted(set(BASE_PERCENTILES) | {float(q) for q in percentiles})
    if arr.size == 0:
        return Summary(n=0)
    pct = np.percentile(arr, qs)
    return Summary(
        n=int(arr.size),
        mean=float(np.mean(arr)),
        median=float(np.median(arr)),
        std=float(np.std(arr)),
        min=float(np.min(arr)),
        max=float(np.max(arr)),
        percentiles={q: float(v) for q, v in zip(qs, pct)},
    )
