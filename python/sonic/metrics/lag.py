"""Did the client keep to its own schedule?

Without a concurrency cap, sent minus intended send time is the client's own delay (dispatch
lag): with a p99 above ``LAG_OK_MS`` the latencies measured at that rate include the client,
and the run says so. Under a concurrency cap, or at rate ``inf`` (every request due at once),
waiting is intended and says nothing about the client.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

LAG_OK_MS = 5.0


def dispatch_lag_ms(records: Any) -> np.ndarray:
    """Sent minus intended send time (ms) of every request that was sent."""
    sent_ns = np.asarray(records.sent_ns)
    sent = sent_ns >= 0
    return (sent_ns[sent] - np.asarray(records.intended_ns)[sent]) / 1e6


def lag_is_meaningful(rate: float, concurrency: int | None) -> bool:
    """Whether sent − intended measures the client (no cap, finite rate)."""
    return concurrency is None and not math.isinf(rate)


def where(rate: float, concurrency: int | None) -> str:
    """``4 req/s`` / ``inf req/s, concurrency 8``."""
    text = f"{'inf' if math.isinf(rate) else f'{rate:g}'} req/s"
    return text + (f", concurrency {concurrency}" if concurrency else "")


def behind_schedule(records: Any, rate: float, concurrency: int | None) -> str | None:
    """A one-line warning when the client fell behind its schedule, else None."""
    lag = dispatch_lag_ms(records)
    if not lag.size or not lag_is_meaningful(rate, concurrency):
        return None
    p50, p99 = (float(x) for x in np.percentile(lag, [50, 99]))
    if p99 <= LAG_OK_MS:
        return None
    return (
        f"dispatch lag p99 {p99:.1f} ms at {where(rate, concurrency)} (p50 {p50:.2f} ms): "
        "the client fell behind its schedule on this machine"
    )
