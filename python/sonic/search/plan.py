"""Where a capacity search probes next, as a pure function of the probes it has run.

Bracket, then bisect: the first probe is at ``start``; while it meets the SLOs the load
doubles, while it misses the load halves (down to ``minimum``), until a met load sits below a
missed one. The bracket is then bisected (geometric mean for a request rate, integer midpoint
for a concurrency) until it is within ``resolution``; the highest met load is then repeated
``confirm_repeats`` times, and a repeat that misses counts the load as missed, so the search
goes on below it. Because the next load depends only on the probes so far, a search that was
interrupted resumes by reading its probes back.

The bracket is read off the probes as: ``hi`` = the lowest load that missed, ``lo`` = the
highest load below ``hi`` that met (every repeat). Loads that met above a miss are noise the
search does not trust.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

RATE = "rate"
CONCURRENCY = "concurrency"
SEARCH_OVER = (RATE, CONCURRENCY)

FOUND = "found"  # the capacity lies within the resolution, confirmed
NONE = "none"  # even the lowest load allowed misses the SLOs
CAPPED = "capped"  # the highest load allowed still meets them
LIMIT = "limit"  # the probe budget ran out first


@dataclass(frozen=True)
class SearchSpec:
    """How to search: over what, where to start, the bounds, the resolution, the repeats."""

    over: str = RATE
    start: float = 1.0
    minimum: float = 1.0 / 16.0
    maximum: float = 1024.0
    resolution: float = 0.05  # relative, for a rate; a concurrency resolves to 1
    confirm_repeats: int = 3
    max_probes: int = 40

    def to_dict(self) -> dict:
        return {
            "over": self.over,
            "start": self.start,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "resolution": self.resolution,
            "confirm_repeats": self.confirm_repeats,
            "max_probes": self.max_probes,
        }

    @classmethod
    def from_dict(cls, d: dict) -> SearchSpec:
        return cls(**{k: d[k] for k in cls().to_dict() if k in d})

    def within_requests(self, requests: int) -> tuple[SearchSpec, str | None]:
        """A probe of N requests never holds more than N in flight: a concurrency search
        above N would "meet" its SLO at loads it never applied, so its maximum is N."""
        if self.over != CONCURRENCY or self.maximum <= requests:
            return self, None
        cap = float(max(requests, 1))
        spec = replace(
            self, maximum=cap, start=min(self.start, cap), minimum=min(self.minimum, cap)
        )
        return spec, (
            f"search maximum lowered to {cap:g} concurrent requests: a probe of {requests} "
            "requests cannot hold more in flight (raise --num-prompts to search higher)"
        )

    def round(self, load: float) -> float:
        """A probe load as it is run and named: an integer concurrency, a rate to 4 digits."""
        if self.over == CONCURRENCY:
            return float(max(1, round(load)))
        return float(f"{load:.4g}")

    def resolved(self, lo: float, hi: float) -> bool:
        if self.over == CONCURRENCY:
            return hi - lo <= 1
        return hi <= lo * (1.0 + self.resolution)

    def between(self, lo: float, hi: float) -> float:
        if self.over == CONCURRENCY:
            return float((int(lo) + int(hi)) // 2)
        return self.round(math.sqrt(lo * hi))

    @property
    def unit(self) -> str:
        return "req/s" if self.over == RATE else "concurrent requests"


@dataclass(frozen=True)
class Step:
    """The search's next move: a load to probe, or the end with its status and capacity."""

    load: float | None
    status: str | None = None
    capacity: float | None = None


def bracket(loads: Sequence[float], met: Sequence[bool]) -> tuple[float | None, float | None]:
    """(highest met load below the lowest missed one, lowest missed load); a load met only
    if every probe at it met."""
    by_load: dict[float, bool] = {}
    for load, ok in zip(loads, met):
        by_load[load] = by_load.get(load, True) and bool(ok)
    missed = [x for x, ok in by_load.items() if not ok]
    hi = min(missed) if missed else None
    below = [x for x, ok in by_load.items() if ok and (hi is None or x < hi)]
    return (max(below) if below else None), hi


def next_step(spec: SearchSpec, loads: Sequence[float], met: Sequence[bool]) -> Step:
    """What to do after probes at ``loads`` that met (or not) the SLOs."""
    if not loads:
        return Step(spec.round(spec.start))
    lo, hi = bracket(loads, met)
    repeats_at_lo = sum(1 for x in loads if x == lo)
    if lo is None:  # nothing met yet: go lower
        assert hi is not None
        if hi <= spec.minimum:
            return _budget(spec, loads, lo, Step(None, NONE))
        return _budget(spec, loads, lo, Step(max(spec.round(hi / 2.0), spec.round(spec.minimum))))
    if hi is None:  # everything met: go higher
        if lo >= spec.maximum:
            if repeats_at_lo < 1 + spec.confirm_repeats:
                return _budget(spec, loads, lo, Step(lo))
            return Step(None, CAPPED, lo)
        return _budget(spec, loads, lo, Step(min(spec.round(lo * 2.0), spec.round(spec.maximum))))
    if not spec.resolved(lo, hi):
        mid = spec.between(lo, hi)
        if lo < mid < hi:
            return _budget(spec, loads, lo, Step(mid))
    if repeats_at_lo < 1 + spec.confirm_repeats:
        return _budget(spec, loads, lo, Step(lo))
    return Step(None, FOUND, lo)


def _budget(spec: SearchSpec, loads: Sequence[float], lo: float | None, step: Step) -> Step:
    """``step``, unless the probe budget is spent: then stop with the best load so far."""
    if step.load is not None and len(loads) >= spec.max_probes:
        return Step(None, LIMIT, lo)
    return step


def capacity_samples(
    loads: Sequence[float], boot_met: Sequence[np.ndarray], n_boot: int
) -> np.ndarray:
    """Capacity under each bootstrap resample: the bracket rule applied to the probes' met
    flags in resample b (0 where no load met). Its spread is the capacity's CI, limited to
    the loads probed."""
    out = np.zeros(n_boot)
    if not loads:
        return out
    flags = np.array([np.asarray(b, dtype=bool)[:n_boot] for b in boot_met])
    for b in range(n_boot):
        lo, _ = bracket(loads, flags[:, b])
        out[b] = 0.0 if lo is None else lo
    return out
