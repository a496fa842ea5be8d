"""Client self-certification: how exactly this client times streams on this host, now.

The embedded simulated engine in exact mode sends the first token ``ttft_ms`` after a request
arrives and one every ``itl_ms`` after it, independent of load. Whatever the client measures
beyond that is its error bound on this host: transit through the kernel, the sim's and the
client's scheduling, the client's own reading. ``sonic calibrate`` measures it at several
stream counts and prints the host's capacity; every ``sonic run`` measures it briefly at its
own concurrency before it starts and writes it into the result, so a published number carries
its own accuracy. The bound includes the sim's lateness, so it over-states the client's error.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass

import numpy as np

from sonic.records import CHUNK_TEXT

# A host "keeps up" at a stream count while the p99 TTFT error stays within this.
ACCURACY_BOUND_MS = 1.0
DEFAULT_STREAMS = (1, 8, 64, 256)
MAX_STREAMS = 4096


@dataclass(frozen=True)
class CalibrationSpec:
    """One calibration: the exact timing asked of the sim and how much load to put on it."""

    streams: tuple[int, ...] = DEFAULT_STREAMS
    requests_per_stream: int = 4
    ttft_ms: float = 10.0
    itl_ms: float = 2.0
    output_len: int = 16


@dataclass(frozen=True)
class Accuracy:
    """The client's timing error at one stream count (ms; error = measured − exact)."""

    streams: int
    requests: int
    failed: int
    chunks_per_s: float
    ttft_error_mean_ms: float
    ttft_error_p99_ms: float
    ttft_error_max_ms: float
    itl_error_p99_ms: float  # |gap − itl| at p99
    dispatch_lag_p99_ms: float
    client_cpu_s: float  # CPU time of this process during the stream count's run

    @property
    def within_bound(self) -> bool:
        return self.failed == 0 and self.ttft_error_p99_ms <= ACCURACY_BOUND_MS

    def to_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def line(self) -> str:
        return (
            f"TTFT error mean {self.ttft_error_mean_ms:+.3f} ms, p99 {self.ttft_error_p99_ms:.3f} "
            f"ms; ITL error p99 {self.itl_error_p99_ms:.3f} ms at {self.streams} streams"
        )


def host_info() -> dict[str, object]:
    return {
        "hostname": platform.node(),
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
    }


def _measure(url: str, streams: int, spec: CalibrationSpec) -> Accuracy:
    from sonic import client

    n = streams * spec.requests_per_stream
    config = client.RunConfig(
        base_url=url,
        endpoint="/v1/completions",
        api="completions",
        model="sonic-sim",
        body=client.BodyOptions(max_tokens_field="max_tokens", ignore_eos=True),
        requests=[client.RequestSpec(prompt="calibration", max_tokens=spec.output_len)] * n,
        schedule=client.ScheduleSpec(request_rate=None),
        max_concurrency=streams,
        warm_connections=streams,
    )
    cpu0 = time.process_time()
    rec = client.run(config)
    if rec.cancelled:  # the user's Ctrl-C, not the calibration's business to absorb
        raise KeyboardInterrupt
    cpu = time.process_time() - cpu0
    ok = rec.success
    ttft_err: list[float] = []
    itl_err: list[np.ndarray] = []
    chunks = 0
    for i in np.flatnonzero(ok):
        s = rec.chunk_slice(i)
        times = rec.chunk_ns[s][rec.chunk_kind[s] == CHUNK_TEXT]
        if times.size == 0:
            continue
        chunks += times.size
        ttft_err.append((times[0] - rec.sent_ns[i]) / 1e6 - spec.ttft_ms)
        itl_err.append(np.abs(np.diff(times) / 1e6 - spec.itl_ms))
    sent = rec.sent_ns[ok]
    span_s = (rec.end_ns[ok].max() - sent.min()) / 1e9 if sent.size else 0.0
    # Only the first wave is sent without waiting for a concurrency slot: its sent − intended
    # is the dispatcher's own lag, the later requests' is the wait for a slot.
    first = slice(0, streams)
    lag = (rec.sent_ns[first] - rec.intended_ns[first])[rec.sent_ns[first] >= 0] / 1e6
    tt = np.asarray(ttft_err) if ttft_err else np.full(1, np.nan)
    gaps = np.concatenate(itl_err) if itl_err else np.full(1, np.nan)
    return Accuracy(
        streams=streams,
        requests=n,
        failed=int((~ok).sum()),
        chunks_per_s=chunks / span_s if span_s > 0 else 0.0,
        ttft_error_mean_ms=float(np.mean(tt)),
        ttft_error_p99_ms=float(np.percentile(tt, 99)),
        ttft_error_max_ms=float(np.max(tt)),
        itl_error_p99_ms=float(np.percentile(gaps, 99)) if gaps.size else 0.0,
        dispatch_lag_p99_ms=float(np.percentile(lag, 99)) if lag.size else 0.0,
        client_cpu_s=cpu,
    )


def calibrate(spec: CalibrationSpec = CalibrationSpec()) -> list[Accuracy]:
    """Measure every stream count of ``spec`` against an exact-mode sim in this process."""
    import sonic.sim

    with sonic.sim.start(
        ttft_ms=spec.ttft_ms,
        itl_ms=spec.itl_ms,
        output_len=spec.output_len,
        max_num_seqs=max(spec.streams),
    ) as server:
        return [_measure(server.url, c, spec) for c in spec.streams]


def capacity_streams(results: list[Accuracy]) -> int | None:
    """The highest stream count at which the host kept within the bound (and all below it)."""
    best = None
    for acc in sorted(results, key=lambda a: a.streams):
        if not acc.within_bound:
            break
        best = acc.streams
    return best


def run_streams(max_concurrency: int | None, num_prompts: int) -> int:
    """Stream count a quick calibration uses for a run: its concurrency cap, else as many
    streams as requests up to 64 (the load an uncapped run usually keeps in flight here)."""
    if max_concurrency:
        return max(1, min(max_concurrency, 256))
    return max(1, min(num_prompts, 64))


def quick(streams: int) -> Accuracy:
    """A short calibration (a few hundred ms) at one stream count, for a run's result."""
    spec = CalibrationSpec(
        streams=(streams,), requests_per_stream=2, ttft_ms=5.0, itl_ms=1.0, output_len=8
    )
    return calibrate(spec)[0]


def run_accuracy(max_concurrency: int | None, num_prompts: int) -> dict[str, object]:
    """What a result file carries under ``sonic.client_accuracy``."""
    acc = quick(run_streams(max_concurrency, num_prompts))
    return {
        **acc.to_dict(),
        "line": acc.line(),
        "bound_ms": ACCURACY_BOUND_MS,
        "within_bound": acc.within_bound,
        "method": "exact-mode embedded sim, measured just before the run",
    }
