"""Capacity searches in a suite results directory: each engine's capacity and each pair's ratio.

A search scenario leaves ``runs/<engine>/<scenario>/search/search.json`` per engine, holding the
capacity found and its bootstrap resamples (``sonic.search.runner``). The ratio of two engines'
capacities gets its CI from the resamples paired by index (the engines were resampled
independently, so any pairing is a valid draw of the ratio).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sonic.search.plan import FOUND
from sonic.search.slo import LEVEL

SEARCH_FILE = "search.json"


@dataclass(frozen=True)
class Capacity:
    """One engine's search in one scenario."""

    engine: str
    scenario: str
    status: str | None  # found | none | capped | limit; None: unfinished
    capacity: float | None
    ci: tuple[float, float] | None
    unit: str
    slo_text: str
    probes: int
    samples: np.ndarray
    directory: Path

    def text(self) -> str:
        if self.status == FOUND and self.capacity is not None:
            lo, hi = self.ci or (math.nan, math.nan)
            return f"{self.capacity:g} {self.unit} [{lo:g}, {hi:g}]"
        if self.status == "capped" and self.capacity is not None:
            return f"≥ {self.capacity:g} {self.unit} (search max)"
        if self.status == "none":
            return "none (SLO not met at the lowest load)"
        if self.status == "limit":
            return "not found (probe budget spent)"
        return "unfinished"


@dataclass(frozen=True)
class CapacityRatio:
    """``better`` carries ``ratio`` × ``other``'s load, with a CI; significant when the CI
    excludes 1."""

    scenario: str
    better: str
    other: str
    ratio: float
    ci: tuple[float, float]
    slo_text: str

    @property
    def significant(self) -> bool:
        return self.ci[0] > 1.0

    def text(self, label=str) -> str:
        lo, hi = self.ci
        hi_text = "∞" if math.isinf(hi) else f"{hi:.2f}"
        span = f"{self.ratio:.2f}× [{lo:.2f}, {hi_text}]"
        if self.significant:
            who, whom = label(self.better), label(self.other)
            return f"{who} carries {span} {whom}'s load at {self.slo_text}"
        return (
            f"no significant difference in capacity between {label(self.better)} and "
            f"{label(self.other)} ({span}) at {self.slo_text}"
        )


def read_searches(root: str | Path) -> list[Capacity]:
    """Every finished or unfinished search under ``root/runs``, in a stable order."""
    out = []
    for path in sorted(Path(root).glob(f"runs/*/*/search/{SEARCH_FILE}")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        ci = doc.get("capacity_ci")
        out.append(
            Capacity(
                engine=path.parents[2].name,
                scenario=path.parents[1].name,
                status=doc.get("status"),
                capacity=doc.get("capacity"),
                ci=None if ci is None else (float(ci[0]), float(ci[1])),
                unit=str(doc.get("capacity_unit", "")),
                slo_text=str(doc.get("slo_text", "")),
                probes=len(doc.get("probes", [])),
                samples=np.asarray(doc.get("capacity_samples", []), dtype=float),
                directory=path.parent,
            )
        )
    return out


def ratios(searches: list[Capacity]) -> list[CapacityRatio]:
    """Each scenario's engine pairs with a found capacity: larger over smaller."""
    out = []
    scenarios = sorted({c.scenario for c in searches})
    for scen in scenarios:
        found = [
            c
            for c in searches
            if c.scenario == scen and c.status == FOUND and c.capacity and c.samples.size
        ]
        for i, a in enumerate(found):
            for b in found[i + 1 :]:
                hi, lo = (a, b) if a.capacity >= b.capacity else (b, a)
                n = min(hi.samples.size, lo.samples.size)
                with np.errstate(divide="ignore", invalid="ignore"):
                    r = hi.samples[:n] / lo.samples[:n]
                r = np.where(np.isnan(r), 1.0, r)  # 0/0: neither met any load in that draw
                tail = (1.0 - LEVEL) / 2.0 * 100.0
                ci_lo, ci_hi = np.percentile(r, [tail, 100.0 - tail])
                out.append(
                    CapacityRatio(
                        scenario=scen,
                        better=hi.engine,
                        other=lo.engine,
                        ratio=float(hi.capacity / lo.capacity),
                        ci=(float(ci_lo), float(ci_hi)),
                        slo_text=hi.slo_text,
                    )
                )
    return out
