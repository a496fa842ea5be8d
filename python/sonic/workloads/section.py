"""What a run of a sessions or trace workload records about it: the workload's summary, the
history mode, its fingerprint, and prefix reuse expected (from the workload) beside measured
(from the engine's own /metrics counters over the run), for the result, console and report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sonic.workloads.reuse import ExpectedReuse
from sonic.workloads.types import SESSIONS, Workload


def measured_hit_rate(telemetry: Any) -> float | None:
    """Prefix-cache hit rate over the run from the engine's own /metrics: tokens hit / tokens
    queried from the counters (vLLM's ``prefix_cache_*_total``, MAX's equivalents), else the
    mean of a hit-rate gauge over the run (SGLang's ``cache_hit_rate``, vLLM V0's); None when
    the engine exports neither."""
    primary = getattr(telemetry, "primary", None)
    if primary is None:
        return None
    deltas = primary.deltas.get("normalized", {})
    hits, queries = deltas.get("prefix_cache_hits_total"), deltas.get("prefix_cache_queries_total")
    if hits is not None and queries:
        return float(hits) / float(queries)
    gauge = primary.gauge_stats(getattr(telemetry, "window_ns", None)).get("prefix_cache_hit_rate")
    return None if gauge is None or gauge.get("mean") is None else float(gauge["mean"])


def reported_cached_share(records: Any) -> float | None:
    """Share of prompt tokens the engine said it served from cache, summed over the responses
    that reported it (``usage.prompt_tokens_details.cached_tokens``): the measure for engines
    without prefix-cache counters in /metrics (llama.cpp); None when no response reported it."""
    cached = np.asarray(records.cached_tokens)
    prompt = np.asarray(records.prompt_tokens)
    sel = (cached >= 0) & (prompt > 0)
    if not sel.any():
        return None
    return float(cached[sel].sum()) / float(prompt[sel].sum())


@dataclass(frozen=True)
class WorkloadSection:
    """``sonic.workload`` of a result."""

    workload: Workload
    history: str
    expected: ExpectedReuse
    measured_hit_rate: float | None
    by_turn: list[dict[str, Any]] = field(default_factory=list)
    sessions: dict[str, Any] = field(default_factory=dict)
    reported_cached_share: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.workload.describe())
        if self.workload.kind == SESSIONS:
            out["history"] = self.history
        out["fingerprint"] = self.workload.fingerprint()
        out["expected_prefix_reuse"] = self.expected.to_dict()
        out["measured_prefix_cache_hit_rate"] = self.measured_hit_rate
        out["reported_cached_prompt_share"] = self.reported_cached_share
        if self.by_turn:
            out["by_turn"] = self.by_turn
        if self.sessions:
            out["session_stats"] = self.sessions
        return out

    def console_lines(self) -> list[str]:
        w = self.workload
        lines = []
        if w.kind == SESSIONS:
            lines.append(
                f"Sessions: {len(w.sessions)} with {w.num_requests} turns, history {self.history}"
            )
        for r in self.expected.by_block_size:
            lines.append(f"Expected prefix reuse ({r.block_size}-token blocks): {r.share:.1%}")
        if self.measured_hit_rate is not None:
            lines.append(f"Measured prefix-cache hit rate (engine): {self.measured_hit_rate:.1%}")
        if self.reported_cached_share is not None:
            lines.append(f"Cached prompt tokens (engine usage): {self.reported_cached_share:.1%}")
        if self.by_turn:
            ttfts = ", ".join(
                f"{t['turn']}: {t['ttft_mean_ms']:.1f}"
                for t in self.by_turn[:8]
                if t["ttft_mean_ms"] is not None
            )
            lines.append(f"Mean TTFT by turn (ms): {ttfts}")
        return lines


def _ms(values: np.ndarray, q: float | None = None) -> float | None:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return None
    return float(1e3 * (v.mean() if q is None else np.percentile(v, q)))


def turn_stats(records: Any, requests: Any) -> list[dict[str, Any]]:
    """TTFT and E2EL by turn index over the successful turns (turn 0 = first turns)."""
    turn = np.asarray(records.turn_index)
    ok = np.asarray(requests.success, dtype=bool)
    out = []
    for k in np.unique(turn[turn >= 0]):
        sel = (turn == k) & ok
        out.append(
            {
                "turn": int(k),
                "completed": int(sel.sum()),
                "failed": int(((turn == k) & ~ok).sum()),
                "ttft_mean_ms": _ms(requests.ttft_s[sel]),
                "ttft_p99_ms": _ms(requests.ttft_s[sel], 99),
                "e2el_mean_ms": _ms(requests.e2el_s[sel]),
            }
        )
    return out


def session_stats(records: Any, requests: Any) -> dict[str, Any]:
    """Sessions that finished every turn, and their duration (first send to last byte)."""
    sess = np.asarray(records.session_index)
    ok = np.asarray(requests.success, dtype=bool)
    sent = np.asarray(records.sent_ns, dtype=np.int64)
    end = np.asarray(records.end_ns, dtype=np.int64)
    complete, durations = 0, []
    ids = np.unique(sess)
    for s in ids:
        sel = sess == s
        if ok[sel].all():
            complete += 1
            durations.append((end[sel].max() - sent[sel].min()) / 1e9)
    d = np.asarray(durations, dtype=float)
    return {
        "sessions": int(ids.size),
        "completed": complete,
        "duration_mean_s": float(d.mean()) if d.size else None,
        "duration_p99_s": float(np.percentile(d, 99)) if d.size else None,
    }
