"""The client's own lag verdict (sent vs intended send time)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from sonic.metrics.lag import LAG_OK_MS, behind_schedule, dispatch_lag_ms


def _records(lags_ms, unsent=0):
    intended = np.arange(len(lags_ms) + unsent, dtype=np.int64) * 10_000_000
    sent = intended.copy()
    sent[: len(lags_ms)] += (np.asarray(lags_ms) * 1e6).astype(np.int64)
    sent[len(lags_ms) :] = -1
    return SimpleNamespace(intended_ns=intended, sent_ns=sent)


def test_lag_counts_only_sent_requests():
    lag = dispatch_lag_ms(_records([0.5, 1.0], unsent=3))
    assert lag.tolist() == [0.5, 1.0]


def test_warns_only_when_the_schedule_alone_sets_send_times():
    late = _records([0.1] * 95 + [3 * LAG_OK_MS] * 5)
    msg = behind_schedule(late, 20.0, None)
    assert msg is not None and "dispatch lag p99 15.0 ms at 20 req/s" in msg
    assert behind_schedule(_records([0.2] * 100), 20.0, None) is None
    # Under a cap or at rate inf, waiting is intended: no verdict about the client.
    assert behind_schedule(late, 20.0, 4) is None
    assert behind_schedule(late, math.inf, None) is None
    assert behind_schedule(_records([]), 20.0, None) is None
