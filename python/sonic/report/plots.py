"""Report figures as PNG bytes, drawn with matplotlib's Agg canvas (no display, no pyplot
global state), so the same bytes can go to ``plots/`` and, base64-encoded, into the HTML.

- curves: median and p99 TTFT and TPOT against achieved output throughput, one line per
  engine through its request-rate points (each point is its own mean over repeats);
- distributions: per point, TTFT / TPOT / ITL box plots per engine (whiskers at p1/p99);
- timelines: at the scenario's busiest point, one panel per engine with the client's in-flight
  requests, the engine's own running/waiting queue and KV-cache use, and GPU utilisation, all on
  the run's time axis (from each run's ``*.telemetry.json``; left out when none was saved).
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sonic import recordfile
from sonic.metrics import catalogue
from sonic.report import fmt
from sonic.report.model import ReportData
from sonic.report.stats import at_point, points, usable, usable_requests


def _axis(metric: str, stat: str = "") -> str:
    """An axis label from the metric catalogue: ``median TTFT (ms)``."""
    m = catalogue.BY_NAME[metric]
    return f"{stat} {m.label} ({m.unit})".strip()


CURVE_PANELS = tuple(
    (catalogue.latency_column(stat, metric), _axis(metric, stat))
    for metric in ("ttft", "tpot")
    for stat in ("median", "p99")
)
DIST_PANELS = tuple((f"{m}_ms", _axis(m)) for m in ("ttft", "tpot", "itl"))
THROUGHPUT_AXIS = f"achieved {_axis('output_throughput')}"
MAX_DIST_ROWS = 8


@dataclass
class Plot:
    """One figure: file name under plots/, caption, PNG bytes, and which kind it is
    (``curves``, ``distributions`` or ``timeline``: the report places them by kind)."""

    name: str
    title: str
    png: bytes
    kind: str = ""


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "scenario"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def curves(data: ReportData, scenario: str) -> Plot | None:
    """Latency–throughput curves of one scenario (None when it has no finished point)."""
    summ = data.summary[data.summary["scenario"] == scenario]
    if summ.empty:
        return None
    fig = _figure(11, 7.5)
    axes = fig.subplots(2, 2).ravel()
    x_col = "output_throughput"
    drew = False
    for ax, (col, ylabel) in zip(axes, CURVE_PANELS):
        for engine in data.engines:
            e = summ[summ["engine"] == engine]
            xs, ys, los, his, labels = [], [], [], [], []
            for p in points(e):
                pe = at_point(e, p)
                x = pe[pe["metric"] == x_col]
                y = pe[pe["metric"] == col]
                if x.empty or y.empty or fmt.is_missing(y.iloc[0]["mean"]):
                    continue
                xs.append(float(x.iloc[0]["mean"]))
                ys.append(float(y.iloc[0]["mean"]))
                lo, hi = y.iloc[0]["ci_low"], y.iloc[0]["ci_high"]
                los.append(0.0 if fmt.is_missing(lo) else ys[-1] - float(lo))
                his.append(0.0 if fmt.is_missing(hi) else float(hi) - ys[-1])
                labels.append(fmt.rate(p[1]))
            if not xs:
                continue
            drew = True
            ax.errorbar(xs, ys, yerr=[los, his], marker="o", capsize=3, label=data.label(engine))
            for x, y, lab in zip(xs, ys, labels):
                ax.annotate(lab, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xlabel(THROUGHPUT_AXIS)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    if not drew:
        return None
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(handles)))
    fig.suptitle(f"{scenario}: latency vs throughput (points labelled with request rate)")
    return Plot(
        f"{slug(scenario)}-curves.png",
        f"{scenario}: latency–throughput curves",
        _png(fig),
        "curves",
    )


def _samples(req, engine: str, point, column: str):
    import numpy as np

    sub = at_point(req[req["engine"] == engine], point)
    sub = sub[sub["success"]]
    if column == "itl_ms":
        arrays = [np.asarray(v, dtype=float) for v in sub["itl_ms"]]
        vals = np.concatenate(arrays) if arrays else np.zeros(0)
    else:
        vals = sub[column].to_numpy(dtype=float)
    return vals[np.isfinite(vals)]


def _hbox(ax, series) -> None:
    """Horizontal box plot; ``orientation`` replaced ``vert`` in matplotlib 3.10."""
    try:
        ax.boxplot(series, whis=(1, 99), showfliers=False, orientation="horizontal")
    except TypeError:
        ax.boxplot(series, whis=(1, 99), showfliers=False, vert=False)


def distributions(data: ReportData, scenario: str) -> Plot | None:
    """TTFT / TPOT / ITL distributions per engine at each point of one scenario."""
    req = usable_requests(data.requests, usable(data.results))
    if req is None or req.empty:
        return None
    req = req[req["scenario"] == scenario]
    pts = points(req)[:MAX_DIST_ROWS]
    if not pts:
        return None
    fig = _figure(11, 2.6 * len(pts) + 0.8)
    axes = fig.subplots(len(pts), len(DIST_PANELS), squeeze=False)
    drew = False
    for row, p in zip(axes, pts):
        for ax, (col, label) in zip(row, DIST_PANELS):
            series, names = [], []
            for engine in data.engines:
                vals = _samples(req, engine, p, col)
                if vals.size:
                    series.append(vals)
                    names.append(data.label(engine))
            if series:
                drew = True
                _hbox(ax, series)
                ax.set_yticks(range(1, len(names) + 1), names, fontsize=8)
            ax.set_xlabel(label)
            ax.set_title(f"{fmt.point(p[1], p[2])}", fontsize=9)
            ax.grid(True, axis="x", alpha=0.3)
    if not drew:
        return None
    fig.suptitle(f"{scenario}: per-request distributions (box: quartiles, whiskers: p1–p99)")
    return Plot(
        f"{slug(scenario)}-distributions.png",
        f"{scenario}: TTFT / TPOT / ITL distributions",
        _png(fig),
        "distributions",
    )


def _timeline_inputs(result_file: Path):
    """(records-like object, telemetry sidecar dict) of one run, or None without telemetry."""

    try:
        doc = json.loads(result_file.read_text())
        sonic = doc.get("sonic") or {}
        side_name = (sonic.get("telemetry") or {}).get("file")
        raw_name = sonic.get("raw_records")
        if not side_name or not raw_name:
            return None
        side = json.loads((result_file.parent / side_name).read_text())
        window = side.get("window_mono_ns") or []
        cols = _raw_times(result_file.parent / raw_name)
    except (OSError, ValueError, KeyError):
        return None
    if not window or not cols["sent_ns"].size:
        return None
    records = SimpleNamespace(t0_mono_ns=int(window[0]), **cols)
    return records, side


def _raw_times(path: Path) -> dict[str, Any]:
    """``sent_ns`` and ``end_ns`` per request from a run's raw records: the JSON lines of
    ``--save-detailed``, or a streamed run's Arrow records file."""
    import numpy as np

    names = ("sent_ns", "end_ns")
    if path.name.endswith(recordfile.SUFFIX):
        got = recordfile.scalar_columns(path, names)
        return {n: np.asarray(got[n], dtype=np.int64) for n in names}
    lines = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    return {
        n: np.array([-1 if ln.get(n) is None else ln[n] for ln in lines], np.int64) for n in names
    }


def timelines(data: ReportData, scenario: str) -> Plot | None:
    """Client, engine and GPU on one time axis at the scenario's busiest point, per engine."""
    from sonic.telemetry.align import plot_timeline

    runs = usable(data.results)
    runs = runs[(runs["scenario"] == scenario) & runs["file"].notna()]
    if runs.empty:
        return None
    busiest = runs.sort_values(["request_rate", "repeat"], ascending=[False, True])
    point_rate = busiest["request_rate"].iloc[0]
    panels = []
    for engine in data.engines:
        rows = busiest[(busiest["engine"] == engine) & (busiest["request_rate"] == point_rate)]
        if rows.empty:
            continue
        got = _timeline_inputs(data.root / str(rows["file"].iloc[0]))
        if got is not None:
            panels.append((engine, *got))
    if not panels:
        return None
    fig = _figure(10, 3.2 * len(panels))
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (engine, records, side) in zip(axes, panels):
        plot_timeline(records, side, ax=ax)
        ax.set_title(f"{data.label(engine)} · {fmt.rate(point_rate)} req/s")
    return Plot(
        f"{slug(scenario)}-timeline.png",
        f"{scenario}: client in-flight, engine queue, KV cache and GPU over time",
        _png(fig),
        "timeline",
    )


def all_plots(data: ReportData) -> dict[str, list[Plot]]:
    """Plots per scenario, in scenario order."""
    out: dict[str, list[Plot]] = {}
    taken: set[str] = set()
    good = usable(data.results)
    for scenario in dict.fromkeys(good["scenario"]):
        figures = (curves(data, scenario), distributions(data, scenario), timelines(data, scenario))
        plots = [p for p in figures if p]
        for p in plots:  # distinct scenarios can share a slug ("a b" and "a-b")
            stem, k = p.name[: -len(".png")], 1
            while p.name in taken:
                k += 1
                p.name = f"{stem}-{k}.png"
            taken.add(p.name)
        if plots:
            out[scenario] = plots
    return out
