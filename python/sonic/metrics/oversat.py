"""Stop an over-saturated run early (``--stop-over-saturated``), as GuideLLM can.

Watched from the progress counters the client already polls: the backlog (requests due by the
schedule but not finished; requests in flight when the schedule is unknown) must grow by more
than ``GROWTH_FRACTION`` of the arrivals (and at least ``MIN_GROWTH`` requests) over every
trailing ``WINDOW_S`` seconds, continuously for ``WINDOW_S`` seconds, while arrivals continue.
A run that merely ramps up stops growing within a latency; one the engine cannot keep up with
grows for as long as requests arrive, and measuring it longer only measures its length.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

WINDOW_S = 5.0
GROWTH_FRACTION = 0.1
MIN_GROWTH = 4


class OverSaturationMonitor:
    """Called with each progress snapshot; returns a one-line reason once the run should stop."""

    def __init__(self, due_offsets_s: np.ndarray | None = None, window_s: float = WINDOW_S):
        due = None if due_offsets_s is None else np.sort(np.asarray(due_offsets_s, float))
        self.due = due if due is not None and due.size else None
        self.window_s = float(window_s)
        self.history: deque[tuple[float, int, int]] = deque()  # (t, backlog, arrivals)
        self.since: float | None = None

    def _arrivals(self, p: dict[str, Any], t: float) -> int:
        if self.due is None:
            return int(p["dispatched"])
        return int(np.searchsorted(self.due, t, side="right"))

    def __call__(self, p: dict[str, Any]) -> str | None:
        t = float(p["elapsed_s"])
        if t <= 0:
            return None
        arrivals = self._arrivals(p, t)
        done = int(p["completed"]) + int(p["failed"])
        backlog = arrivals - done if self.due is not None else int(p["in_flight"])
        self.history.append((t, backlog, arrivals))
        while len(self.history) > 2 and self.history[1][0] <= t - self.window_s:
            self.history.popleft()
        t_then, backlog_then, arrivals_then = self.history[0]
        arriving = self.due is None or t < float(self.due[-1])
        if t - t_then < self.window_s or not arriving:
            self.since = None
            return None
        came = arrivals - arrivals_then
        growth = backlog - backlog_then
        if growth > max(GROWTH_FRACTION * came, MIN_GROWTH):
            self.since = t if self.since is None else self.since
        else:
            self.since = None
        if self.since is not None and t - self.since >= self.window_s:
            return (
                f"stopped early (--stop-over-saturated) at {t:.1f} s: the backlog grew from "
                f"{backlog_then} to {backlog} requests in {t - t_then:.1f} s and kept growing "
                f"for {t - self.since:.1f} s; the engine could not keep up with the offered rate"
            )
        return None
