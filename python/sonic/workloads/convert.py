"""sonic's workload types → the client's (``sonic.client``): ``Turn``/``Session`` for sessions,
``RequestSpec`` for requests, and the intended send offsets for ``ScheduleSpec.arrivals_s``.

The client's types are imported on use, so building a workload never loads the core.
"""

from __future__ import annotations

from typing import Any

from sonic.workloads.types import SESSIONS, Workload


def to_client_sessions(workload: Workload) -> list[Any]:
    """``sonic.client.Session`` objects, one per session, in start order."""
    from sonic.client import Session, Turn  # the sessions client (issue 12)

    return [
        Session(
            turns=[
                Turn(
                    content=t.content,
                    max_tokens=t.max_tokens,
                    reference_answer=t.reference_answer,
                    think_s=t.think_s,
                )
                for t in s.turns
            ],
            system=s.system,
            session_id=s.session_id,
            start_turn=s.start_turn,
        )
        for s in workload.sessions
    ]


def to_client_requests(workload: Workload) -> list[Any]:
    """``sonic.client.RequestSpec`` objects of a requests workload, in send order."""
    from sonic.client import RequestSpec

    return [RequestSpec(prompt=r.prompt, max_tokens=r.max_tokens) for r in workload.requests]


def arrivals(workload: Workload) -> list[float] | None:
    """``ScheduleSpec.arrivals_s``: intended offsets from t0 of each request (requests) or of
    each session's first turn (sessions); None when the run's arrival process decides."""
    return None if workload.arrivals_s is None else list(workload.arrivals_s)


def run_config_fields(workload: Workload) -> dict[str, Any]:
    """The ``RunConfig`` fields a workload sets: ``sessions`` and ``max_concurrent_sessions``,
    or ``requests``. ``ScheduleSpec.arrivals_s`` comes from :func:`arrivals`; the run's own
    ``history``, header and salt settings are the caller's."""
    if workload.kind == SESSIONS:
        return {
            "sessions": to_client_sessions(workload),
            "max_concurrent_sessions": workload.max_concurrent_sessions,
        }
    return {"requests": to_client_requests(workload)}
