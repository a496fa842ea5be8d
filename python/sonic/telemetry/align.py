"""One time axis for request records, GPU samples and engine scrapes.

Every source is stamped with CLOCK_MONOTONIC ns (``time.monotonic_ns()``); the run records
carry their t0 on that clock (``RunRecords.t0_mono_ns``) and times relative to it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def align(records_t0_mono_ns: int, series_t_ns: Any) -> np.ndarray:
    """Seconds since the run's start (negative before it) for monotonic-ns timestamps."""
    t = np.asarray(series_t_ns, dtype=np.int64)
    return (t - np.int64(records_t0_mono_ns)).astype(np.float64) / 1e9


def run_window_ns(records: Any) -> tuple[int, int] | None:
    """``(start, end)`` of a run in monotonic ns: t0 to the last request's end (None when the
    records carry no monotonic t0)."""
    t0 = int(getattr(records, "t0_mono_ns", 0) or 0)
    if t0 <= 0:
        return None
    ends = np.asarray(records.end_ns, dtype=np.int64)
    sent = np.asarray(records.sent_ns, dtype=np.int64)
    last = max(int(ends.max(initial=0)), int(sent.max(initial=0)), 0)
    return t0, t0 + last


def in_flight(records: Any) -> tuple[np.ndarray, np.ndarray]:
    """Requests in flight as a step function: ``(t_s, count)`` where count holds from t_s[i]
    until t_s[i+1]; t in seconds since the run's start. Unsent requests are left out;
    unfinished ones stay in flight to the end."""
    sent = np.asarray(records.sent_ns, dtype=np.int64)
    end = np.asarray(records.end_ns, dtype=np.int64)
    ok = sent >= 0
    sent, end = sent[ok], end[ok]
    if sent.size == 0:
        return np.zeros(1), np.zeros(1, dtype=np.int64)
    horizon = max(int(sent.max()), int(end.max(initial=0)))
    end = np.where(end >= 0, end, horizon)
    times = np.concatenate([sent, end])
    steps = np.concatenate([np.ones_like(sent), -np.ones_like(end)])
    order = np.lexsort((steps, times))  # at equal times, ends (-1) before starts (+1)
    t_sorted, counts = times[order], np.cumsum(steps[order])
    return t_sorted.astype(np.float64) / 1e9, counts


def plot_timeline(records: Any, telemetry: Any, ax: Any = None, path: Any = None):
    """In-flight requests, engine running/waiting, KV-cache usage and GPU utilisation on one
    time axis (seconds since the run's start). ``telemetry``: a ``TelemetryResult`` or the
    dict of a ``*.telemetry.json`` sidecar. Returns the matplotlib Figure."""
    import matplotlib

    if ax is None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    doc = telemetry.sidecar() if hasattr(telemetry, "sidecar") else telemetry
    t0 = int(records.t0_mono_ns)
    if ax is None:
        fig, ax = plt.subplots(figsize=(10, 4.5))
    else:
        fig = ax.figure
    t, n = in_flight(records)
    ax.step(t, n, where="post", label="in flight (client)", color="black")
    server = (doc.get("server") or {}).get("series") or {}
    if server.get("t_mono_ns"):
        ts = align(t0, server["t_mono_ns"])
        for key, style in (("running", "-"), ("waiting", "--")):
            if key in server:
                vals = [np.nan if v is None else v for v in server[key]]
                ax.plot(ts, vals, style, marker=".", drawstyle="steps-post", label=f"engine {key}")
    ax.set_xlabel("seconds since run start")
    ax.set_ylabel("requests")
    ax2 = ax.twinx()
    if server.get("t_mono_ns") and "kv_cache_usage" in server:
        vals = [np.nan if v is None else 100.0 * v for v in server["kv_cache_usage"]]
        ax2.plot(align(t0, server["t_mono_ns"]), vals, ":", color="tab:purple", label="KV cache %")
    gpu = (doc.get("gpu") or {}).get("series") or {}
    if gpu.get("t_mono_ns"):
        dev = np.asarray(gpu["device"])
        tg = align(t0, gpu["t_mono_ns"])
        util = np.asarray(gpu["gpu_util_pct"], dtype=float)
        for d in np.unique(dev):
            m = dev == d
            ax2.plot(tg[m], util[m], alpha=0.7, label=f"GPU {int(d)} util %")
    ax2.set_ylabel("%")
    ax2.set_ylim(0, 105)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper right", fontsize="small")
    if path is not None:
        fig.savefig(path, bbox_inches="tight")
    return fig
