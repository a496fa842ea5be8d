"""The suite report: ``build_report(results_dir)`` writes ``summary.md``, ``report.html`` and
``plots/*.png`` from a results directory and prints a short console summary.

It works on whatever the directory holds (also an interrupted suite), so the suite can call
it after every engine and on Ctrl-C. pandas and matplotlib are imported only here, when a
report is built, never when the CLI starts.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from sonic.errors import SonicError

SUMMARY_FILE = "summary.md"
HTML_FILE = "report.html"
PLOTS_DIR = "plots"
CONSOLE_METRICS = ("output_throughput", "p99_ttft_ms", "p99_tpot_ms")


@dataclass
class ReportPaths:
    """What ``build_report`` wrote."""

    summary: Path
    html: Path
    plots: list[Path] = field(default_factory=list)


def require_deps() -> None:
    """pandas and matplotlib are dependencies; an environment without them is broken."""
    missing = []
    for mod in ("pandas", "matplotlib"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise SonicError(
            f"the report needs {' and '.join(missing)}, which sonic-bench depends on: "
            "reinstall it (pip install sonic-bench)"
        )


def _write_plots(root: Path, plots) -> list[Path]:
    """Replace plots/ as a whole: new PNGs go to a temporary folder that is renamed into place,
    so a reader never sees a mix of old and new figures (stale ones disappear)."""
    target = root / PLOTS_DIR
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".plots.", dir=root))
    except OSError as exc:
        raise SonicError(f"cannot write plots in {root}: {exc.strerror or exc}") from None
    try:
        for plot in plots:
            with open(tmp / plot.name, "wb") as fh:
                fh.write(plot.png)
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        old = None
        if target.exists():
            old = root / f".plots.old.{os.getpid()}"
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SonicError(f"cannot write plots in {root}: {exc.strerror or exc}") from None
    return [target / p.name for p in plots]


def short_verdict(data, v: dict) -> str:
    """One scenario × metric in a few words, e.g. ``alpha lower at 2 of 2 points (12–30%)``;
    margins are listed as a range over points, never averaged."""
    from sonic.report import fmt

    m = data.metric(v["metric"])
    pts = v["points"]
    if v["state"] == "consistent":
        won = [p for p in pts if p["winner"] == v["overall"] and p["significant"] is True]
        diffs = sorted(p["difference_pct"] for p in won)
        span = fmt.pct(diffs[0]) if len(diffs) == 1 else f"{diffs[0]:.1f}–{diffs[-1]:.1f}%"
        return (
            f"{data.label(v['overall'])} {m.better_word} at {len(won)} of {len(pts)} "
            f"point(s) ({span}, significant)"
        )
    if v["state"] == "mixed":
        return "mixed: " + "; ".join(
            f"{fmt.rate(p['request_rate'])} req/s {data.label(p['winner'])}"
            for p in pts
            if p["significant"] is True
        )
    if v["state"] == "untested":
        by = {p["winner"] for p in pts}
        who = data.label(next(iter(by))) if len(by) == 1 else "mixed"
        return f"untested (one repeat); {who} {m.better_word} by mean"
    if v["state"] == "invalid":
        why = sorted({p["invalid"] for p in pts if p.get("invalid")})
        return f"not comparable ({'; '.join(why)})"
    return f"no significant difference at {len(pts)} point(s)"


def console_lines(data) -> list[str]:
    """A few lines for the terminal: runs, simulated notice, fairness, headline winners."""
    from sonic.report import summary
    from sonic.report.stats import scenario_verdicts

    counts = data.run_counts()
    engines = ", ".join(data.label(e) for e in data.engines) or "none"
    lines = [
        f"{data.title}: {sum(counts.values())} runs "
        f"({', '.join(f'{v} {k}' for k, v in sorted(counts.items())) or 'none'}); "
        f"engines: {engines}"
    ]
    verdicts = summary.validity_counts(data)
    if verdicts.get("invalid") or verdicts.get("warn"):
        said = ", ".join(f"{n} {k}" for k, n in sorted(verdicts.items()))
        lines.append(f"run validity: {said} (see Run validity in the report)")
    if data.any_simulated:
        lines.append(summary.simulated_notice(data, bold=False))
    if data.validation is None:
        lines.append("fairness: not checked (no validation.json)")
    elif data.fairness_problems():
        probs = data.fairness_problems()
        word = "UNFAIR" if data.unfair() else "fairness warnings"
        names = ", ".join(f"{c.get('name')} ({c.get('status')})" for c in probs)
        lines.append(f"{word}: {names}")
    for r in data.capacity_ratios:
        lines.append(f"  {r.scenario} · capacity: {r.text(data.label)}")
    for v in scenario_verdicts(data.winners):
        if v["metric"] in CONSOLE_METRICS:
            label = summary.metric_label(data, v["metric"])
            lines.append(f"  {v['scenario']} · {label}: {short_verdict(data, v)}")
    return lines


def build_report(
    results_dir: str | os.PathLike[str],
    *,
    out: TextIO | None = None,
    quiet: bool = False,
    seed: int | None = None,
) -> ReportPaths:
    """Rebuild ``summary.md``, ``report.html`` and ``plots/`` in ``results_dir`` (each written
    atomically) and print a short summary to ``out`` (stdout) unless ``quiet``."""
    require_deps()
    from sonic.report import html, plots, summary
    from sonic.report.model import collect
    from sonic.results.files import write_atomic

    data = collect(results_dir, seed=seed)
    figures = plots.all_plots(data)
    root = data.root
    plot_paths = _write_plots(root, [p for ps in figures.values() for p in ps])
    summary_path = write_atomic(root / SUMMARY_FILE, [summary.render(data, figures)])
    html_path = write_atomic(root / HTML_FILE, [html.render(data, figures)])
    paths = ReportPaths(summary=summary_path, html=html_path, plots=plot_paths)
    if not quiet:
        stream = sys.stdout if out is None else out
        for line in console_lines(data):
            print(line, file=stream)
        print(
            f"report: {summary_path}, {html_path} and {len(plot_paths)} plot(s) in "
            f"{root / PLOTS_DIR}",
            file=stream,
        )
    return paths


__all__ = ["ReportPaths", "build_report"]
