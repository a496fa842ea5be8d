"""One run's load from several hosts: the run split across Ray actors, each running the Rust
core on its share, and their records merged back into one run (``--workers N``).

Why Ray: a cluster of engines behind a router needs more streams than one client host can
drive, and Ray already places actors on nodes, moves numpy arrays through its object store and
reports a dead node. sonic adds only what makes the merged run exact:

- The schedule is made once, by the driver: the same seed gives the same intended send times,
  prompts and request ids for any N. Requests (or whole sessions) go to workers round-robin in
  send order; each worker gets its share's intended times as explicit arrivals, its share of
  ``--max-concurrency`` (and the session cap), and the global record numbers for its ids.
- All workers take t0 at one agreed wall-clock instant, a few seconds ahead. Each worker's
  clock offset to the driver is measured (the round trip with the smallest delay) and its t0
  is mapped onto the driver's timeline, so a late worker shows as dispatch lag, not as a
  faster server.
- A worker that dies takes its share's records with it: those requests are recorded as failed,
  naming the worker and the reason, and the run still saves.

Records come back as the core's columns (numpy arrays through the object store; strings as one
joined column); the merged ``RunRecords`` feed the same metrics, dialects and result files as a
single-process run. ``records.extra["workers"]`` says what each worker did.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from sonic.errors import SonicError
from sonic.records import RunRecords

# How far ahead the agreed start lies: actors must exist and have their connections warm.
START_LEAD_S = 3.0
CLOCK_PINGS = 8


@dataclass(frozen=True)
class Share:
    """One worker's part of a run: the records it sends (global indices, in order) and its
    own RunConfig."""

    worker: int
    records: np.ndarray
    config: Any


def _split_counts(total: int | None, n: int) -> list[int | None]:
    """``total`` (a concurrency or session cap) spread over ``n`` workers."""
    if total is None:
        return [None] * n
    return [total // n + (1 if w < total % n else 0) for w in range(n)]


def split(config, n: int) -> list[Share]:
    """The run ``config`` as ``n`` shares with the driver's schedule (see the module doc)."""
    from sonic import client

    if n < 1:
        raise SonicError(f"--workers must be at least 1, got {n}")
    sessions = config.sessions
    units = len(sessions) if sessions is not None else len(config.requests)
    if units < n:
        raise SonicError(f"--workers {n}: the run has only {units} requests or sessions to share")
    caps = _split_counts(config.max_concurrency, n)
    session_caps = _split_counts(config.max_concurrent_sessions, n)
    if any(c == 0 for c in caps + session_caps):
        raise SonicError(
            f"--workers {n} is more than the concurrency or session cap: each worker needs one"
        )
    arrivals = client.schedule_preview(config.schedule, units)
    # Record numbers of each unit (a session's turns are consecutive records).
    if sessions is not None:
        sizes = np.array([len(s.sent_turns) for s in sessions], dtype=np.int64)
    else:
        sizes = np.ones(units, dtype=np.int64)
    first = np.concatenate([[0], np.cumsum(sizes)])
    shares = []
    for w in range(n):
        units_w = np.arange(w, units, n)
        recs = np.concatenate([np.arange(first[u], first[u + 1]) for u in units_w])
        schedule = client.ScheduleSpec(
            request_rate=None,
            burstiness=None,
            convention="precomputed",
            seed=config.schedule.seed,
            arrivals_s=[float(arrivals[u]) for u in units_w],
        )
        part = dataclasses.replace(
            config,
            requests=[] if sessions is not None else [config.requests[u] for u in units_w],
            sessions=None if sessions is None else [sessions[u] for u in units_w],
            schedule=schedule,
            max_concurrency=caps[w],
            max_concurrent_sessions=session_caps[w],
            warm_connections=min(config.warm_connections, caps[w] or config.warm_connections),
            record_ids=[int(i) for i in recs],
        )
        shares.append(Share(w, recs, part))
    return shares


# ------------------------------------------------------------------ transport


def pack(records: RunRecords) -> dict[str, Any]:
    """The records as arrays only (strings joined), for the object store."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(RunRecords):
        if f.name == "extra":
            continue
        value = getattr(records, f.name)
        if f.name in ("error", "finish_reason"):
            out[f.name] = _pack_strings(value)
        else:
            out[f.name] = value
    out["extra"] = {k: v for k, v in records.extra.items() if k != "workers"}
    return out


def unpack(doc: dict[str, Any]) -> RunRecords:
    fields = {k: v for k, v in doc.items() if k != "extra"}
    for name in ("error", "finish_reason"):
        fields[name] = _unpack_strings(fields[name])
    records = RunRecords(**fields)
    records.extra.update(doc.get("extra", {}))
    return records


def _pack_strings(values: list[str | None]) -> tuple[np.ndarray, bytes, np.ndarray]:
    present = np.array([v is not None for v in values], dtype=bool)
    encoded = [(v or "").encode("utf-8") for v in values]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in encoded])]).astype(np.int64)
    return present, b"".join(encoded), offsets


def _unpack_strings(packed) -> list[str | None]:
    present, blob, offsets = packed
    return [
        blob[offsets[i] : offsets[i + 1]].decode("utf-8") if present[i] else None
        for i in range(len(present))
    ]


# ------------------------------------------------------------------ merge


def merge(parts: list[tuple[np.ndarray, RunRecords, int]], total: int, t0_unix_ns: int):
    """One RunRecords of ``total`` records from each worker's (global indices, records, shift):
    ``shift`` ns moves a worker's times onto the driver's timeline (its t0 - the agreed start,
    clock offset removed). A request's first send is due at the driver's time and stays; a
    later turn's is its previous turn's end plus think time, a worker time, and moves. Chunks
    and text are scattered to their global places with array arithmetic (no loop per chunk)."""
    i64 = np.int64
    cols = {
        name: np.full(total, -1, dtype=i64)
        for name in (
            "intended_ns", "sent_ns", "end_ns", "dispatched_ns",
            "prompt_tokens", "completion_tokens", "cached_tokens",
        )
    }  # fmt: skip
    cols["session_index"] = np.zeros(total, dtype=i64)
    cols["turn_index"] = np.zeros(total, dtype=i64)
    status = np.zeros(total, dtype=np.int32)
    error = np.full(total, "not sent: no worker reported this request", dtype=object)
    finish = np.full(total, None, dtype=object)
    n_chunks = np.zeros(total, dtype=i64)
    n_bytes = np.zeros(total, dtype=i64)
    cancelled = False
    for idx, rec, shift in parts:
        cancelled |= bool(rec.cancelled)
        moved = {
            "sent_ns": rec.sent_ns,
            "end_ns": rec.end_ns,
            "dispatched_ns": rec.extra["dispatched_ns"],
        }
        for name, values in moved.items():
            values = np.asarray(values, dtype=i64)
            cols[name][idx] = np.where(values >= 0, values + shift, values)
        intended = np.asarray(rec.intended_ns, dtype=i64)
        local = np.asarray(rec.session_index)
        later = np.r_[False, local[1:] == local[:-1]] if len(local) else local.astype(bool)
        cols["intended_ns"][idx] = np.where(later & (intended >= 0), intended + shift, intended)
        for name in ("prompt_tokens", "completion_tokens", "cached_tokens", "turn_index"):
            cols[name][idx] = getattr(rec, name)
        cols["session_index"][idx] = _session_base(idx, rec)
        status[idx] = rec.http_status
        error[idx] = _objects(rec.error)
        finish[idx] = _objects(rec.finish_reason)
        offsets = np.asarray(rec.chunk_offsets, dtype=i64)
        text_at = np.asarray(rec.chunk_text_offsets, dtype=i64)
        n_chunks[idx] = np.diff(offsets)
        n_bytes[idx] = text_at[offsets[1:]] - text_at[offsets[:-1]]
    chunk_offsets = np.concatenate([[0], np.cumsum(n_chunks)]).astype(i64)
    byte_offsets = np.concatenate([[0], np.cumsum(n_bytes)]).astype(i64)
    chunk_ns = np.zeros(int(chunk_offsets[-1]), dtype=i64)
    chunk_kind = np.zeros(int(chunk_offsets[-1]), dtype=np.uint8)
    chunk_len = np.zeros(int(chunk_offsets[-1]), dtype=i64)
    text = np.zeros(int(byte_offsets[-1]), dtype=np.uint8)
    for idx, rec, shift in parts:
        offsets = np.asarray(rec.chunk_offsets, dtype=i64)
        text_at = np.asarray(rec.chunk_text_offsets, dtype=i64)
        counts = np.diff(offsets)
        # Local chunk k of local record j lands at global_start[g] + (k - offsets[j]).
        dest = np.repeat(chunk_offsets[idx] - offsets[:-1], counts) + np.arange(offsets[-1])
        ns = np.asarray(rec.chunk_ns, dtype=i64)
        chunk_ns[dest] = np.where(ns >= 0, ns + shift, ns)
        chunk_kind[dest] = rec.chunk_kind
        chunk_len[dest] = np.diff(text_at)
        nbytes = text_at[offsets[1:]] - text_at[offsets[:-1]]
        byte_dest = np.repeat(byte_offsets[idx] - text_at[offsets[:-1]], nbytes) + np.arange(
            text_at[offsets[-1]]
        )
        text[byte_dest] = np.frombuffer(rec.text, dtype=np.uint8, count=int(text_at[offsets[-1]]))
    merged = RunRecords(
        t0_unix_ns=t0_unix_ns,
        t0_mono_ns=0,
        cancelled=cancelled,
        intended_ns=cols["intended_ns"],
        sent_ns=cols["sent_ns"],
        end_ns=cols["end_ns"],
        http_status=status,
        prompt_tokens=cols["prompt_tokens"],
        completion_tokens=cols["completion_tokens"],
        error=error.tolist(),
        finish_reason=finish.tolist(),
        chunk_offsets=chunk_offsets,
        chunk_ns=chunk_ns,
        chunk_kind=chunk_kind,
        chunk_text_offsets=np.concatenate([[0], np.cumsum(chunk_len)]).astype(i64),
        text=text.tobytes(),
        session_index=cols["session_index"],
        turn_index=cols["turn_index"],
        cached_tokens=cols["cached_tokens"],
    )
    merged.extra["dispatched_ns"] = cols["dispatched_ns"]
    return merged


def _objects(values: list) -> np.ndarray:
    """A 1-D object array of ``values`` (strings or None), never split into characters."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _session_base(idx: np.ndarray, rec: RunRecords) -> np.ndarray:
    """Global session numbers: a worker's local session k is the session of its record whose
    global index starts that session; numbered by the first record's global index, then ranked
    after the merge (see :func:`renumber_sessions`)."""
    local = np.asarray(rec.session_index)
    if local.size == 0:
        return np.zeros(0, dtype=np.int64)
    _, first, inverse = np.unique(local, return_index=True, return_inverse=True)
    return np.asarray(idx, dtype=np.int64)[first][inverse.ravel()]


def renumber_sessions(records: RunRecords) -> None:
    """Session numbers 0..S-1 in order of their first record (as a single-process run has)."""
    _, dense = np.unique(records.session_index, return_inverse=True)
    records.session_index = dense.astype(np.int64)


# ------------------------------------------------------------------ Ray


def _ray():
    try:
        import ray
    except ImportError:
        raise SonicError(
            '--workers needs Ray: pip install "sonic-bench[ray]" (or pip install ray)'
        ) from None
    return ray


def _worker_class(ray):
    @ray.remote(num_cpus=1, max_restarts=0)
    class SonicWorker:
        """Runs one share with the Rust core on its node."""

        def clock_ns(self) -> int:
            return time.time_ns()

        def host(self) -> str:
            return f"{os.uname().nodename}:{os.getpid()}"

        def run(self, config) -> dict[str, Any]:
            from sonic import client

            cpu0 = os.times()
            records = client.run(config, progress=False)
            cpu1 = os.times()
            doc = pack(records)
            doc["cpu_s"] = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
            return doc

    return SonicWorker


def clock_offset_ns(ray, actor) -> tuple[int, int]:
    """(worker clock - driver clock, round trip) from the ping with the smallest round trip."""
    best = None
    for _ in range(CLOCK_PINGS):
        a = time.time_ns()
        remote = ray.get(actor.clock_ns.remote())
        b = time.time_ns()
        rtt = b - a
        if best is None or rtt < best[1]:
            best = (remote - (a + b) // 2, rtt)
    assert best is not None
    return best


def _progress_printer(progress: bool, workers: int, total: int):
    """With ``progress``, one stderr line as each worker ends (a worker reports only then)."""
    done = [0, 0]

    def say(w: int, host: str, records: int, failure: str | None) -> None:
        done[0] += 1
        done[1] += records
        if progress:
            what = "failed" if failure else "done"
            print(
                f"sonic: worker {w} ({host}) {what}: {done[0]}/{workers} workers, "
                f"{done[1]}/{total} requests reported",
                file=sys.stderr,
                flush=True,
            )

    return say


def run(config, workers: int, address: str | None, progress: bool = False) -> RunRecords:
    """Run ``config`` on ``workers`` Ray actors (``address``: the cluster; None: a local Ray)
    and return the merged records; with ``progress`` a line as each worker ends. Ctrl-C stops
    the workers (their actors are killed): the records come back only from workers that
    finished, so an interrupted run keeps nothing."""
    ray = _ray()
    shares = split(config, workers)
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False, include_dashboard=False)
        except Exception as exc:  # noqa: BLE001 (Ray raises many kinds; one line for the user)
            raise SonicError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    cls = _worker_class(ray)
    actors = [cls.options(scheduling_strategy="SPREAD").remote() for _ in shares]
    try:
        hosts = ray.get([a.host.remote() for a in actors], timeout=120)
    except Exception as exc:  # noqa: BLE001
        raise SonicError(f"the Ray workers did not start: {exc}") from None
    offsets = [clock_offset_ns(ray, a) for a in actors]
    start = time.time_ns() + int(START_LEAD_S * 1e9)
    futures = []
    for share, actor, (offset, _) in zip(shares, actors, offsets):
        cfg = dataclasses.replace(share.config, start_at_unix_ns=start + offset)
        futures.append(actor.run.remote(cfg))
    results: list[dict[str, Any] | None] = [None] * len(shares)
    failures: list[str | None] = [None] * len(shares)
    say = _progress_printer(progress, len(shares), sum(len(s.records) for s in shares))
    try:
        pending = list(futures)
        while pending:  # in the order the workers finish, so progress can be told
            (fut,), pending = ray.wait(pending, num_returns=1)
            w = futures.index(fut)
            try:
                results[w] = ray.get(fut)
            except Exception as exc:  # noqa: BLE001 (a dead actor or node)
                failures[w] = f"worker {w} ({hosts[w]}) failed: {type(exc).__name__}: " + (
                    str(exc).splitlines()[0] if str(exc) else "no detail"
                )
            say(w, hosts[w], len(shares[w].records), failures[w])
    finally:
        for actor in actors:
            ray.kill(actor)
    parts = []
    info = []
    total = int(sum(len(s.records) for s in shares))
    for share, result, failure, (offset, rtt), host in zip(
        shares, results, failures, offsets, hosts
    ):
        entry: dict[str, Any] = {
            "worker": share.worker,
            "host": host,
            "records": int(len(share.records)),
            "clock_offset_ns": int(offset),
            "clock_rtt_ns": int(rtt),
        }
        if result is None:
            entry["error"] = failure
            info.append(entry)
            continue
        cpu = result.pop("cpu_s")
        rec = unpack(result)
        # The worker's t0 on the driver's clock, relative to the agreed start.
        shift = int(rec.t0_unix_ns - offset - start)
        parts.append((share.records, rec, shift))
        lag = _lag_ms(rec)
        entry.update(start_lag_ms=shift / 1e6, cpu_s=round(float(cpu), 3), **lag)
        info.append(entry)
    merged = merge(parts, total, start)
    renumber_sessions(merged)
    for share, failure in zip(shares, failures):
        if failure is not None:
            for g in share.records:
                merged.error[int(g)] = f"not measured: {failure}"
    merged.extra["workers"] = info
    merged.extra["client_threads"] = next(
        (int(p[1].extra["client_threads"]) for p in parts if "client_threads" in p[1].extra), None
    )
    return merged


def _lag_ms(rec: RunRecords) -> dict[str, float]:
    """The worker's dispatch lag (sent - intended) over its sent requests, mean and p99."""
    sent = np.asarray(rec.sent_ns)
    intended = np.asarray(rec.intended_ns)
    ok = (sent >= 0) & (intended >= 0)
    if not ok.any():
        return {}
    lag = (sent[ok] - intended[ok]) / 1e6
    return {
        "dispatch_lag_mean_ms": float(lag.mean()),
        "dispatch_lag_p99_ms": float(np.percentile(lag, 99)),
    }
