"""One figure per search: each SLO's statistic against load, its bound and the capacity."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sonic.search.runner import SearchState

PLOT_FILE = "search.png"


def plot_search(state: SearchState, directory: Path, title: str | None = None) -> Path:
    """Write ``search.png`` in ``directory``: met probes filled, missed ones hollow, 95% CIs
    as error bars, the SLO bound dashed, the capacity found as a vertical line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sonic.search.plan import RATE

    panels = (
        [("attainment", None)] if state.attainment is not None else [(s.key, s) for s in state.slos]
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (key, slo) in zip(axes[0], panels):
        for met in (True, False):
            probes = [p for p in state.probes if p.verdict.met is met]
            if not probes:
                continue
            xs = [p.load for p in probes]
            if slo is None:
                ys = [100 * (p.verdict.attainment or 0.0) for p in probes]
                err = None
            else:
                checks = [next(c for c in p.verdict.checks if c.slo.key == key) for p in probes]
                ys = [1e3 * c.value_s for c in checks]
                err = [
                    [max(0.0, y - 1e3 * c.ci_s[0]) for y, c in zip(ys, checks)],
                    [max(0.0, 1e3 * c.ci_s[1] - y) for y, c in zip(ys, checks)],
                ]
            ax.errorbar(
                xs,
                ys,
                yerr=err,
                fmt="o",
                mfc="C0" if met else "none",
                color="C0" if met else "C3",
                label="meets" if met else "misses",
                capsize=3,
            )
        if slo is None:
            ax.axhline(100 * (state.attainment or 0.0), ls="--", color="k", lw=1)
            ax.set_ylabel("requests within every bound (%)")
        else:
            ax.axhline(1e3 * slo.limit_s, ls="--", color="k", lw=1, label="SLO")
            ax.set_ylabel(f"{slo.label.split(' ≤ ')[0]} (ms)")
        if state.capacity:
            ax.axvline(state.capacity, color="C2", lw=1.5, label="capacity")
        if state.spec.over == RATE:
            ax.set_xscale("log")
        ax.set_xlabel(f"load ({state.spec.unit})")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(textwrap.fill(title or state.answer(), 60 * len(panels)), fontsize=8)
    fig.tight_layout()
    path = directory / PLOT_FILE
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
