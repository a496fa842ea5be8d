"""The workload as sonic builds it before the client sees it: sessions of turns, or single
requests, with intended arrival offsets when a trace gives them.

These are sonic's own typed structures; :mod:`sonic.workloads.convert` turns them into the
client's ``Turn``/``Session``/``RequestSpec`` objects, so that the datasets do not depend on
the client's types and the client does not depend on where a workload came from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

# Workload kinds.
SESSIONS = "sessions"
REQUESTS = "requests"
# How the client joins a session's texts ([system?, user_0, assistant_0, ..., user_k]) into one
# completions prompt (sonic.client.Session); turn lengths and expected reuse follow it.
COMPLETIONS_JOINER = "\n\n"


@dataclass(frozen=True)
class WorkloadTurn:
    """One user-side turn. ``reference_answer`` is the dataset's assistant text for it: the
    history that later turns carry by default (``--history dataset``), identical for every
    engine. ``think_s`` is the pause after the previous turn ended, before this one is sent."""

    content: str
    max_tokens: int | None = None
    reference_answer: str = ""
    think_s: float = 0.0


@dataclass(frozen=True)
class WorkloadSession:
    """An ordered conversation; ``system`` (when set) opens every request of it.
    ``start_turn`` k: the turns before k are history only, never sent (a session warm-started
    mid-way, :mod:`sonic.workloads.warmup`)."""

    turns: tuple[WorkloadTurn, ...]
    system: str | None = None
    session_id: str = ""
    start_turn: int = 0

    @property
    def num_turns(self) -> int:
        return len(self.turns)

    @property
    def sent_turns(self) -> tuple[WorkloadTurn, ...]:
        return self.turns[self.start_turn :]


@dataclass(frozen=True)
class WorkloadRequest:
    """One independent request (a trace record without a session)."""

    prompt: str
    prompt_len: int
    max_tokens: int | None


@dataclass(frozen=True)
class Workload:
    """What one run sends.

    - ``kind`` ``sessions``: ``sessions`` in start order; ``arrivals_s`` (when set) are their
      intended start offsets from t0 (a session trace), else the run's arrival process decides.
    - ``kind`` ``requests``: ``requests`` with ``arrivals_s`` one per request (trace replay).

    ``source`` names the dataset; ``notes`` are one-line facts for the result (how history was
    built, what a trace lacked). ``block_size`` is the trace's hash block size, if any.
    ``ignore_first_turn_stats`` and ``max_concurrent_sessions`` are MAX's
    ``--ignore-first-turn-stats`` and ``--max-concurrent-conversations``. The first
    ``warm_started`` sessions start mid-way and at t0, ahead of the arrival process.
    """

    kind: str
    source: str
    sessions: tuple[WorkloadSession, ...] = ()
    requests: tuple[WorkloadRequest, ...] = ()
    arrivals_s: tuple[float, ...] | None = None
    block_size: int | None = None
    # Per request of a trace: its hash ids and prompt length, for reuse counted without
    # re-tokenizing (sonic.workloads.reuse); None for other workloads.
    block_ids: tuple[tuple[tuple[int | str, ...], int], ...] | None = None
    ignore_first_turn_stats: bool = False
    max_concurrent_sessions: int | None = None
    # MAX stops sending turns once --num-prompts requests went out (sessions end early);
    # None: every turn runs.
    max_requests: int | None = None
    warm_started: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def num_requests(self) -> int:
        """Requests the workload sends when every turn runs."""
        if self.kind == SESSIONS:
            return sum(len(s.sent_turns) for s in self.sessions)
        return len(self.requests)

    def fingerprint(self) -> str:
        """SHA-256 over everything sent and when: equal iff two runs got the same workload
        (the dataset history included, so a comparison can check byte-identical prompts)."""
        digest = hashlib.sha256(self.kind.encode())
        items: list[Any] = (
            [[s.system, s.session_id, [dataclasses.astuple(t) for t in s.turns]]
             + ([s.start_turn] if s.start_turn else [])  # stable for cold sessions
             for s in self.sessions]
            if self.kind == SESSIONS
            else [dataclasses.astuple(r) for r in self.requests]
        )  # fmt: skip
        tail = [self.warm_started] if self.warm_started else []
        for item in [*items, list(self.arrivals_s or ()), *tail]:
            digest.update(json.dumps(item, ensure_ascii=False).encode("utf-8") + b"\n")
        return digest.hexdigest()

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary for the result and the console."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "source": self.source,
            "requests": self.num_requests,
            "timed": self.arrivals_s is not None,
        }
        if self.kind == SESSIONS:
            out["sessions"] = len(self.sessions)
            out["ignore_first_turn_stats"] = self.ignore_first_turn_stats
            out["max_concurrent_sessions"] = self.max_concurrent_sessions
            out["max_requests"] = self.max_requests
        if self.block_size is not None:
            out["trace_block_size"] = self.block_size
        if self.notes:
            out["notes"] = list(self.notes)
        return out
