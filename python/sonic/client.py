"""The load generator's Python face: a typed run configuration and ``run()``.

Everything timed happens in the Rust core (``sonic._core``): the configuration is serialised
to JSON once, the core prepares request bodies ahead of the dispatcher (all of them before t0
for a run of up to 16,384 requests, then a thread stays that far ahead: src/client/feed.rs),
and Python only waits for the end (polling the progress counters when a progress line or a
monitor wants them), then receives the columnar records (or takes them in batches while the
run goes: ``record_file``). Ctrl-C never loses what was
measured: the first one stops dispatching and lets in-flight requests finish, the second one
aborts them; either way the records come back with ``cancelled=True``.

A workload is either independent ``requests`` or multi-turn ``sessions`` (see ``Session``):
session starts follow the schedule, turn k+1 is due when turn k has ended plus its
``think_s`` (that instant is its intended time, so waits show as dispatch lag), and every
turn carries the history before it, built by the core (src/client/session.rs,
src/client/conversation.rs). Records: one per turn, session-major, with ``session_index``
and ``turn_index`` (a plain request is a one-turn session: its index and turn 0).
"""

from __future__ import annotations

import json
import os
import select
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Callable, TextIO

import numpy as np

from sonic import _core
from sonic.records import RunRecords

# How often a progress line on a terminal is refreshed, a monitor consulted and a streamed
# run's records taken. A run with none of these only wakes when it ends or a signal comes.
POLL_S = 0.1
PLAIN_EVERY_S = 10.0  # progress cadence when stderr is not a terminal
# The longest wait between looks at the run: a Ctrl-C interrupts the wait at once, but should
# the kernel deliver it to another thread, it is noticed at the next look.
IDLE_S = 1.0


@dataclass(frozen=True, slots=True)  # slots: 40 bytes less each, 40 MB at 10^6 requests
class RequestSpec:
    """One request: a prompt (or chat messages) and its output-length limit (None: not sent)."""

    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class Turn:
    """One turn of a session: the user's text, its output limit (None: not sent), the
    dataset's reply (the history in ``history="dataset"`` mode) and the wait after the
    previous turn ended before this one is sent (ignored for turn 0)."""

    content: str
    max_tokens: int | None = None
    reference_answer: str = ""
    think_s: float = 0.0


@dataclass(frozen=True)
class Session:
    """A conversation sent turn by turn. Chat bodies carry messages ``[system?, user_0,
    assistant_0, ..., user_k]``; completions-style bodies the same texts joined by a blank
    line (``"\n\n"``), so each prompt extends the previous prompt and reply. ``session_id``
    is the session header's value and the cache salt's session part (empty: its index).
    ``start_turn`` k: turns before k are history only (their reference answers), never sent
    (a session warm-started mid-way, MAX's ``--warmup-to-steady-state``)."""

    turns: list[Turn]
    system: str | None = None
    session_id: str = ""
    start_turn: int = 0

    @property
    def sent_turns(self) -> list[Turn]:
        """The turns this session sends (from ``start_turn`` on), as the core counts them."""
        return self.turns[self.start_turn :]

    def to_dict(self) -> dict[str, Any]:
        return {
            "turns": [
                {
                    "content": t.content,
                    "max_tokens": t.max_tokens,
                    "reference_answer": t.reference_answer,
                    "think_s": t.think_s,
                }
                for t in self.turns
            ],
            "system": self.system,
            "session_id": self.session_id,
            "start_turn": int(self.start_turn),
        }


@dataclass(frozen=True)
class RampUp:
    """Per-request rate moving from ``start_rps`` to ``end_rps`` (linear | exponential)."""

    strategy: str
    start_rps: float
    end_rps: float


@dataclass(frozen=True)
class ScheduleSpec:
    """Arrival process. ``request_rate`` None: all at t0 (unless ramping); ``burstiness``
    None: constant spacing (``--burstiness inf``), 1.0: Poisson, else gamma. ``arrivals_s``:
    explicit offsets from t0 in seconds, one per request or session start (trace replay:
    finite, >= 0, non-decreasing), overriding rate, burstiness and ramp-up. ``unpaced``: that
    many arrivals at t0 ahead of the drawn ones (warm-started sessions go at once)."""

    request_rate: float | None = None
    burstiness: float | None = 1.0
    ramp_up: RampUp | None = None
    convention: str = "precomputed"
    seed: int = 0
    arrivals_s: list[float] | None = None
    unpaced: int = 0

    def to_dict(self) -> dict[str, Any]:
        ramp = self.ramp_up
        return {
            "request_rate": self.request_rate,
            "burstiness": self.burstiness,
            "ramp_up": None
            if ramp is None
            else {"strategy": ramp.strategy, "start_rps": ramp.start_rps, "end_rps": ramp.end_rps},
            "convention": self.convention,
            "seed": int(self.seed),
            "arrivals_s": None if self.arrivals_s is None else [float(t) for t in self.arrivals_s],
            "unpaced": int(self.unpaced),
        }


@dataclass(frozen=True)
class BodyOptions:
    """Body fields shared by every request. ``fields`` is copied into each body and wins over
    the managed fields; ``max_tokens_field`` is dotted for nested fields (TGI)."""

    max_tokens_field: str = "max_tokens"
    include_usage: bool = False
    ignore_eos: bool | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    extra_body: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunConfig:
    """A complete run for the core. Header values are secrets: excluded from ``repr``.

    Sessions (exclusive with ``requests``): ``history`` "dataset" sends the dataset's
    reference answers as earlier replies (byte-identical prompts for every engine), "live"
    the text this engine returned; ``session_header`` (e.g. "X-Session-ID") carries each
    session's id; ``max_concurrent_sessions`` caps sessions active at once (``max_concurrency``
    still caps requests in flight). ``cache_salt`` is sent as the body field ``cache_salt``
    (chat/completions); with ``session_id_as_cache_salt`` the salt is the session's id,
    ``"{cache_salt}:{session_id}"`` when both are set."""

    base_url: str
    endpoint: str
    api: str
    model: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list, repr=False)
    request_id_prefix: str = ""
    timeout_s: float | None = None
    body: BodyOptions = field(default_factory=BodyOptions)
    requests: list[RequestSpec] = field(default_factory=list)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    max_concurrency: int | None = None
    max_duration_s: float | None = None
    insecure: bool = False  # https without certificate checks
    # Connections opened before t0 (GET {base_url}/health each), at most the pool size.
    warm_connections: int = 0
    sessions: list[Session] | None = None
    history: str = "dataset"
    session_header: str | None = None
    max_concurrent_sessions: int | None = None
    cache_salt: str | None = None
    session_id_as_cache_salt: bool = False
    # Worker threads reading the streams (None: the host's available cores, at most 16).
    client_threads: int | None = None
    # The number in each record's x-request-id (None: its index): a worker's share of a run
    # keeps the run's ids (sonic.workers).
    record_ids: list[int] | None = None
    # Take t0 at this wall-clock instant (ns since the epoch); None: at once.
    start_at_unix_ns: int | None = None
    # Hand finished records over while the run goes (run(record_file=...) sets it).
    stream_records: bool = False

    @property
    def total_requests(self) -> int:
        """Records the run makes: one per request, or per sent turn of each session."""
        if self.sessions is None:
            return len(self.requests)
        return sum(len(s.sent_turns) for s in self.sessions)

    def to_core(self) -> tuple[str, Iterator[str]]:
        """What ``_core.start_run`` takes: the configuration's JSON without its requests, and
        the requests as JSON arrays in parts, made as they are taken (``_requests_json``)."""
        b = self.body
        doc = {
            "base_url": self.base_url,
            "endpoint": self.endpoint,
            "api": self.api,
            "model": self.model,
            "headers": [[str(k), str(v)] for k, v in self.headers],
            "request_id_prefix": self.request_id_prefix,
            "timeout_s": self.timeout_s,
            "body": {
                "max_tokens_field": b.max_tokens_field,
                "include_usage": b.include_usage,
                "ignore_eos": b.ignore_eos,
                "fields": b.fields,
                "extra_body": b.extra_body,
            },
            "schedule": self.schedule.to_dict(),
            "max_concurrency": self.max_concurrency,
            "max_duration_s": self.max_duration_s,
            "insecure": self.insecure,
            "warm_connections": int(self.warm_connections),
            "sessions": None if self.sessions is None else [s.to_dict() for s in self.sessions],
            "history": self.history,
            "session_header": self.session_header,
            "max_concurrent_sessions": self.max_concurrent_sessions,
            "cache_salt": self.cache_salt,
            "session_id_as_cache_salt": bool(self.session_id_as_cache_salt),
            "client_threads": self.client_threads,
            "record_ids": None if self.record_ids is None else [int(i) for i in self.record_ids],
            "start_at_unix_ns": self.start_at_unix_ns,
            "stream_records": bool(self.stream_records),
            "requests": [],  # last: filled in below
        }
        encode = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode
        try:
            return encode(doc), _requests_json(encode, self.requests)
        except (TypeError, ValueError) as exc:
            raise _core.CoreError(f"invalid run configuration: {exc}") from None

    def to_json(self) -> str:
        """The whole configuration as one JSON document (requests included)."""
        head, parts = self.to_core()
        inner = ",".join(p[1:-1] for p in parts)
        return head[: -len("[]}")] + "[" + inner + "]}"  # the head ends with "requests":[]}


REQUESTS_PER_PART = 10_000


def _requests_json(encode: Callable[[Any], str], requests: list[RequestSpec]) -> Iterator[str]:
    """The requests as JSON arrays of ``REQUESTS_PER_PART`` requests each, made one at a time
    as the core takes them: a run of 10^6 requests never holds a dict per request, a million
    small strings or every part at once in Python, and the core parses each part only when
    its run reaches it."""
    try:
        for at in range(0, len(requests), REQUESTS_PER_PART):
            yield (
                "["
                + ",".join(
                    encode({"prompt": r.prompt, "messages": r.messages, "max_tokens": r.max_tokens})
                    for r in requests[at : at + REQUESTS_PER_PART]
                )
                + "]"
            )
    except (TypeError, ValueError) as exc:
        raise _core.CoreError(f"invalid run configuration: {exc}") from None


def schedule_preview(schedule: ScheduleSpec, n: int) -> np.ndarray:
    """Intended arrival offsets (seconds from t0) that ``schedule`` gives ``n`` requests."""
    return _core.schedule_preview(json.dumps(schedule.to_dict()), n)


def to_records(raw: dict[str, Any]) -> RunRecords:
    """RunRecords from the core's dict; keys that are not fields go to ``extra``."""
    records = RunRecords.from_core(raw)
    names = set(RunRecords.__dataclass_fields__)
    records.extra.update({k: v for k, v in raw.items() if k not in names and k != "record_index"})
    return records


class _ProgressLine:
    """One live line on stderr: done/total, failed, in flight, request rate, elapsed."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self.last_plain = time.monotonic()
        self.note = ""

    def render(self, p: dict[str, Any]) -> str:
        done = p["completed"] + p["failed"]
        rate = done / p["elapsed_s"] if p["elapsed_s"] > 0 else 0.0
        line = (
            f"sonic: {done}/{p['total']} done ({p['failed']} failed), "
            f"{p['in_flight']} in flight, {rate:.1f} req/s, {p['elapsed_s']:.1f} s"
        )
        return line + (f" [{self.note}]" if self.note else "")

    def due_in(self) -> float:
        """Seconds until the line wants a new snapshot."""
        if self.tty:
            return POLL_S
        return max(0.0, PLAIN_EVERY_S - (time.monotonic() - self.last_plain))

    def update(self, p: dict[str, Any]) -> None:
        if self.tty:
            self.out.write("\r\x1b[2K" + self.render(p))
            self.out.flush()
        elif time.monotonic() - self.last_plain >= PLAIN_EVERY_S:
            self.last_plain = time.monotonic()
            print(self.render(p), file=self.out, flush=True)

    def close(self, p: dict[str, Any]) -> None:
        prefix = "\r\x1b[2K" if self.tty else ""
        print(prefix + self.render(p), file=self.out, flush=True)


def run(
    config: RunConfig,
    progress: bool = False,
    *,
    out: TextIO | None = None,
    monitor: Callable[[dict[str, Any]], str | None] | None = None,
    record_file: str | os.PathLike[str] | None = None,
) -> RunRecords:
    """Run ``config`` to its end (or Ctrl-C) and return everything measured.

    ``monitor`` sees each progress snapshot; when it returns a reason, dispatch stops, the
    requests in flight are aborted and the reason is kept in ``records.extra["stopped_early"]``
    (``--stop-over-saturated``). With ``record_file`` the run streams its records: finished
    requests are taken from the core every poll and appended to that Arrow file
    (``sonic.recordfile``), so memory holds the per-request scalars only; the returned
    records have no chunk columns and ``chunks_file`` set."""
    writer = None
    if record_file is not None:
        from sonic.recordfile import RecordWriter

        config = replace(config, stream_records=True)
        writer = RecordWriter(record_file, config.total_requests)  # before any load is sent
    try:
        handle = _core.start_run(*config.to_core())
    except BaseException:
        if writer is not None:
            writer.close()
        raise
    try:
        return _drive(handle, progress, out, monitor, writer)
    finally:
        if writer is not None:
            writer.close()


def _take(handle, writer) -> None:
    """Move the core's finished records into the records file."""
    raw = handle.take_finished()
    if raw is not None:
        writer.append(to_records(raw), raw["record_index"])


def _end_waiter(handle) -> Callable[[float], object]:
    """Sleep until the run ends or a timeout (s) passes: ``poll`` on the handle's descriptor,
    not ``handle.wait``, because a signal interrupts it (Ctrl-C raises there at once), so no
    timed wake-up is needed to notice one; each such wake-up costs tens of µs of CPU on a VM,
    which at one stream is a visible share of the client's CPU per chunk. (``poll``, not
    ``select``: a process with 1,024 descriptors open would be out of ``select``'s range.)"""
    waiter = select.poll()
    waiter.register(handle.done_fd(), select.POLLIN)
    return lambda timeout: waiter.poll(timeout * 1000.0)


def _next_look(bar: _ProgressLine | None, watching: bool) -> float:
    """Seconds until the loop has something to do besides noticing the end: a monitor or a
    records file every POLL_S, else the progress line's own cadence, at most IDLE_S."""
    if watching:
        return POLL_S
    return min(IDLE_S, bar.due_in()) if bar is not None else IDLE_S


def _drive(handle, progress, out, monitor, writer) -> RunRecords:
    bar = _ProgressLine(out or sys.stderr) if progress else None
    until_end = _end_waiter(handle)
    interrupts = 0
    raw = None
    stopped: str | None = None
    while raw is None:
        watching = monitor is not None and stopped is None  # a monitor that has not fired
        try:
            until_end(_next_look(bar, writer is not None or watching))
            raw = handle.wait(0.0)
            if raw is None and writer is not None:
                _take(handle, writer)
            if raw is None and (bar is not None or watching):
                snapshot = handle.poll()
                if watching:
                    stopped = monitor(snapshot)
                    if stopped is not None:
                        handle.cancel(abort_in_flight=True)
                        if bar is not None:
                            bar.note = "stopped early: over-saturated"
                if bar is not None:
                    bar.update(snapshot)
        except KeyboardInterrupt:
            interrupts += 1
            abort = interrupts >= 2
            handle.cancel(abort_in_flight=abort)
            if bar is not None:
                bar.note = (
                    "interrupted: aborting requests in flight"
                    if abort
                    else "interrupted: finishing requests in flight (Ctrl-C again to abort)"
                )
    if bar is not None:
        bar.close(handle.poll())
    if writer is not None:
        _take(handle, writer)  # any handed over between the last poll and the end
        writer.append(to_records(raw), raw["record_index"])
        names = set(RunRecords.__dataclass_fields__)
        records = writer.records(raw)
        from sonic.recordfile import release_freed_memory

        release_freed_memory()
        records.extra.update(
            {k: v for k, v in raw.items() if k not in names and k != "record_index"}
        )
    else:
        records = to_records(raw)
    # A Ctrl-C that came after the last request went out cancels nothing in the core, but the
    # user still asked to stop: the run says it was interrupted, so a caller (a search, a
    # suite) stops too instead of starting the next run.
    records.cancelled = records.cancelled or interrupts > 0
    if stopped is not None:
        records.extra["stopped_early"] = stopped
    return records
