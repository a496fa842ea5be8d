"""Everything a report shows, computed once from a results directory.

The Markdown summary, the HTML report and the console lines all render this one object, so
they cannot disagree about a number, a winner or which engine is simulated.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sonic.report.stats import DEFAULT_SEED, METRICS_BY_COLUMN, Metric

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from sonic.report.capacity import Capacity, CapacityRatio

SIMULATED_TAG = "[SIMULATED]"


@dataclass
class ReportData:
    """A results directory's contents and the statistics derived from them."""

    root: Path
    manifest: dict[str, Any]
    validation: dict[str, Any] | None
    results: pd.DataFrame
    requests: pd.DataFrame
    summary: pd.DataFrame
    comparisons: pd.DataFrame
    winners: pd.DataFrame
    engines: list[str]
    simulated: set[str]
    seed: int
    warnings: list[str] = field(default_factory=list)
    # Capacity searches (search scenarios): each engine's answer and each pair's ratio. Their
    # probes are not fixed points, so ``results`` above leaves them out (``load_results`` and
    # ``all_results`` keep them).
    capacities: list[Capacity] = field(default_factory=list)
    capacity_ratios: list[CapacityRatio] = field(default_factory=list)
    all_results: pd.DataFrame | None = None

    def label(self, engine: str) -> str:
        """The engine's name as shown anywhere: simulated ones carry ``[SIMULATED]``."""
        return f"{engine} {SIMULATED_TAG}" if engine in self.simulated else engine

    @property
    def any_simulated(self) -> bool:
        return bool(self.simulated)

    @property
    def title(self) -> str:
        name = self.manifest.get("suite") or self.root.name
        tag = f" {SIMULATED_TAG}" if self.any_simulated else ""
        return f"sonic-bench report: {name}{tag}"

    def checks(self) -> list[dict[str, Any]]:
        checks = (self.validation or {}).get("checks") or []
        return [c for c in checks if isinstance(c, dict)]

    def fairness_problems(self) -> list[dict[str, Any]]:
        """Validation checks that failed or warned, failures first."""
        bad = [c for c in self.checks() if c.get("status") in ("fail", "warn")]
        return sorted(bad, key=lambda c: c.get("status") != "fail")

    def unfair(self) -> bool:
        v = self.validation or {}
        return v.get("fair") is False or any(c.get("status") == "fail" for c in self.checks())

    def metric(self, column: str) -> Metric:
        return METRICS_BY_COLUMN[column]

    def run_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for status in self.results["status"]:
            counts[status] = counts.get(status, 0) + 1
        return counts


def _eos_warnings(results: pd.DataFrame) -> list[str]:
    """An engine that did not honour ignore_eos did other work than the workload asked."""
    out = []
    for engine, short in results.groupby("engine", sort=False)["eos_not_honoured"].sum().items():
        if short > 0:
            out.append(
                f"{engine}: {int(short)} requests stopped before max_tokens although ignore_eos "
                "was sent (the engine did not honour it): its output lengths differ from the "
                "workload, so its numbers are not like for like"
            )
    return out


def collect(results_dir: str | Path, *, seed: int | None = None) -> ReportData:
    """Load a results directory and compute the repeat statistics, comparisons and winners."""
    from sonic.analysis import (
        load_requests,
        load_results,
        read_manifest,
        read_validation,
        results_root,
        simulated_engines,
    )
    from sonic.report.capacity import ratios, read_searches
    from sonic.report.stats import compare_engines, engine_order, repeat_summary, winners

    root = results_root(results_dir)
    manifest = read_manifest(root)
    validation = read_validation(root)
    all_results = load_results(root)
    searched = {
        str(v.get("scenario"))
        for v in (manifest.get("searches") or {}).values()
        if isinstance(v, dict)
    }
    results = all_results[~all_results["scenario"].isin(searched)] if searched else all_results
    capacities = read_searches(root)
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        requests = load_requests(root)
    caught += [str(w.message) for w in ws]
    if seed is None:
        raw_seed = manifest.get("seed", DEFAULT_SEED)
        seed = raw_seed if isinstance(raw_seed, int) else DEFAULT_SEED
    engines = engine_order(results, manifest)
    for name in manifest.get("engines") or {}:
        if name not in engines:
            engines.append(name)
    simulated = simulated_engines(manifest) | set(results.loc[results["simulated"], "engine"])
    caught += _eos_warnings(results)
    summary = repeat_summary(results, seed=seed)
    comparisons = compare_engines(results, requests, engines=engines, seed=seed)
    return ReportData(
        root=root,
        manifest=manifest,
        validation=validation,
        results=results,
        requests=requests,
        summary=summary,
        comparisons=comparisons,
        winners=winners(comparisons),
        engines=engines,
        simulated=simulated,
        seed=seed,
        warnings=caught,
        capacities=capacities,
        capacity_ratios=ratios(capacities),
        all_results=all_results,
    )
