"""Warm-up to steady state (MAX `max benchmark` 2026, ``--warmup-to-steady-state``).

A multi-turn run that starts every session at turn 0 opens with empty caches and short
histories, unlike the traffic it stands for. MAX's answer, reproduced here:

- M = ``--max-concurrent-conversations``, else the point's ``--max-concurrency``; no cap, no
  warm-up. The dataset is asked for ``--warmup-oversample-factor`` x (the largest M of the
  run) sessions more than ``--num-chat-sessions``.
- The first C = factor x M sessions are the candidates (at least M; both pools shrink in
  proportion when the dataset has fewer sessions), the next N the main pool, the rest unused.
- M candidates are picked without replacement: with a factor of 2 or more in proportion to
  their number of turns (systematic sampling; a session heavy enough to be certain is taken
  outright), else uniformly. Each picked session starts at a turn drawn uniformly from its
  turns; the turns before it are history. Draws use the run's seed.
- Before t0, each picked session that starts after turn 0 sends one untimed request: the
  history up to its previous user turn, with that turn's output length (``ignore_eos``), at
  most ``--warmup-concurrency`` at once. Answers are discarded; a failure stops the run.
- The measured run sends the picked sessions first, from their start turns, all at t0; the
  main pool follows the arrival process. Both count in the metrics.

Where sonic differs: the history is the dataset's text (as for every sonic session run),
and ``--warmup-delay-biased`` is not implemented (refused by the flag table).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from sonic.errors import SonicError
from sonic.workloads.types import SESSIONS, Workload

# Datasets whose sessions MAX warms up: its own multi-turn chat sources.
WARMABLE = ("sharegpt", "random")

S = TypeVar("S")


@dataclass(frozen=True)
class WarmupPlan:
    """Which sessions start warm, where, and what the sampling gave (for the console and the
    result's ``sonic.warmup_to_steady_state``)."""

    warm_sessions: int  # M actually picked
    prerun_requests: int  # picked sessions that start after turn 0
    candidate_pool: int
    main_pool: int
    oversample_factor: int
    mode: str  # turn_biased | uniform
    target_mean_turns: float  # mean turns of the whole pool, weighted by their turns
    realised_mean_turns: float  # mean turns of the picked sessions
    always_picked: int  # candidates heavier than an even share of the turns (certain picks)
    start_turns: tuple[int, ...]
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["start_turns"] = list(self.start_turns)
        d["warnings"] = list(self.warnings)
        return d

    def console_lines(self) -> list[str]:
        cold = self.warm_sessions - self.prerun_requests
        return [
            f"[warmup-sampling] candidates {self.candidate_pool}, main pool {self.main_pool}, "
            f"picked {self.warm_sessions} (factor {self.oversample_factor}, {self.mode}); "
            f"mean turns target {self.target_mean_turns:.2f}, picked "
            f"{self.realised_mean_turns:.2f}; taken outright {self.always_picked}",
            f"Warming up to steady state: {self.warm_sessions} sessions ({self.prerun_requests} "
            f"pre-run, {cold} start cold)",
        ]


def warm_count(max_concurrency: int | None, max_concurrent_sessions: int | None) -> int:
    """M: the session cap, else the concurrency; 0 = no warm-up (unbounded)."""
    return max_concurrent_sessions or max_concurrency or 0


def pool_request(num_sessions: int, largest_m: int, factor: int) -> int:
    """Sessions to ask the dataset for: the main pool plus factor x the largest M."""
    return num_sessions + max(factor, 0) * max(largest_m, 0)


def pool_sizes(total: int, n: int, m: int, factor: int) -> tuple[int, int, list[str]]:
    """(candidates C, main pool N') from ``total`` sessions; warnings on a shortfall."""
    if total < m:
        raise SonicError(
            f"--warmup-to-steady-state needs at least {m} sessions (M, the concurrency or "
            f"session cap) and the dataset gave {total}; lower the cap or pass "
            "--no-warmup-to-steady-state"
        )
    ideal = max(factor, 1) * m
    if total >= n + ideal:
        return ideal, n, []
    c = max(m, math.floor(ideal * total / (n + ideal)))
    main = min(n, total - c)
    return (
        c,
        main,
        [
            f"warm-up: the dataset has {total} sessions, not the {n + ideal} asked for; "
            f"candidates {c} (of {ideal}), main pool {main} (of {n})"
        ],
    )


def systematic_pick(weights: np.ndarray, m: int, rng: np.random.Generator) -> tuple[list[int], int]:
    """Probability-proportional-to-size sampling of ``m`` indices without replacement: a unit
    whose weight reaches the remaining total / remaining draws is certain and taken first
    (repeatedly); the rest are hit by evenly spaced ticks from one uniform offset. Returns
    (sorted indices, how many were taken outright)."""
    w = np.asarray(weights, dtype=float)
    chosen: list[int] = []
    left = list(range(len(w)))
    while len(chosen) < m:
        need = m - len(chosen)
        total = float(w[left].sum())
        sure = [i for i in left if w[i] >= total / need]
        if not sure:
            break
        take = set(sure[:need])
        chosen.extend(sorted(take))
        left = [i for i in left if i not in take]
    certain = len(chosen)
    need = m - len(chosen)
    if need > 0:
        cum = np.cumsum(w[left])
        step = cum[-1] / need
        ticks = rng.uniform(0.0, step) + step * np.arange(need)
        hits = np.searchsorted(cum, ticks, side="right")
        chosen.extend(left[int(h)] for h in np.minimum(hits, len(left) - 1))
    return sorted(chosen), certain


def plan(workload: Workload, n: int, m: int, factor: int, seed: int) -> tuple[Workload, WarmupPlan]:
    """The measured workload (picked sessions from their start turns first, then the main
    pool) and the plan, from a pool built with :func:`pool_request` sessions."""
    if workload.kind != SESSIONS:
        raise SonicError("--warmup-to-steady-state applies to multi-turn sessions only")
    sessions = workload.sessions
    c, main, warnings = pool_sizes(len(sessions), n, m, factor)
    candidates = sessions[:c]
    weights = np.array([max(s.num_turns, 1) for s in candidates], dtype=float)
    rng = np.random.default_rng(seed)
    certain = 0
    if factor >= 2 and c > m:
        # Sessions heavy enough to be taken outright bias the warm-up towards them.
        picked, certain = systematic_pick(weights, m, rng)
        mode = "turn_biased"
    else:
        picked = sorted(int(i) for i in rng.choice(c, size=m, replace=False))
        mode = "uniform"
    if certain:
        warnings.append(f"warm-up: {certain} session(s) long enough to be picked with certainty")
    full = np.array([max(s.num_turns, 1) for s in sessions], dtype=float)
    starts = [int(rng.integers(0, candidates[i].num_turns)) for i in picked]
    warm = tuple(dataclasses.replace(candidates[i], start_turn=k) for i, k in zip(picked, starts))
    chosen = weights[picked]
    measured = dataclasses.replace(
        workload,
        sessions=warm + sessions[c : c + main],
        warm_started=len(warm),
        notes=(*workload.notes, f"warm-up to steady state: {len(warm)} sessions start mid-way"),
    )
    return measured, WarmupPlan(
        warm_sessions=len(warm),
        prerun_requests=sum(1 for k in starts if k > 0),
        candidate_pool=c,
        main_pool=main,
        oversample_factor=factor,
        mode=mode,
        target_mean_turns=float((full**2).sum() / full.sum()),
        realised_mean_turns=float(chosen.mean()) if len(chosen) else 0.0,
        always_picked=certain,
        start_turns=tuple(starts),
        warnings=tuple(warnings),
    )


def prerun_sessions(sessions: Sequence[S], warm: int) -> list[S]:
    """The untimed warm-up of the first ``warm`` sessions (workload or client sessions): one
    single-request session per session that starts after turn 0, made of its turns up to the
    one before its start and sending only that one, so the history that its first measured
    turn carries is in the engine's cache."""
    return [
        dataclasses.replace(s, turns=s.turns[: s.start_turn], start_turn=s.start_turn - 1)
        for s in sessions[:warm]
        if s.start_turn > 0
    ]
