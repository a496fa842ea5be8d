"""Typed stub of the Rust extension ``sonic._core`` (see src/lib.rs for the boundary)."""

from collections.abc import Iterable
from typing import TypedDict

import numpy as np
import numpy.typing as npt

from sonic.errors import SonicError

__version__: str

class CoreError(SonicError):
    """Bad configuration handed to the core (message says which field and why). A
    ``SonicError``, so the CLI reports it as one line with exit code 2."""

# ---------------------------------------------------------------- simulated engine

class SimServer:
    """A running simulated engine on a background runtime."""

    @property
    def url(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    def stop(self) -> None: ...

def start_sim(options_json: str) -> SimServer:
    """Start the simulated engine in the background; ``options_json`` is a JSON object of
    SimOptions (see sonic/sim.py). Port 0 picks a free port."""

def serve_sim(options_json: str) -> None:
    """Run the simulated engine in the foreground until SIGINT (or a signal handler raising
    KeyboardInterrupt, as ``sonic sim`` installs for SIGTERM); prints
    ``sonic sim listening on URL`` once bound. GIL released; returns after a clean stop."""

# ---------------------------------------------------------------- benchmark run

class Progress(TypedDict):
    total: int
    dispatched: int
    completed: int
    failed: int
    in_flight: int
    elapsed_s: float
    finished: bool

class Records(TypedDict):
    """Columnar per-request and per-chunk records of one run.

    Times are int64 nanoseconds on one monotonic clock, relative to the run's t0.
    ``chunk_offsets[i]:chunk_offsets[i+1]`` are request i's chunks (in arrival order);
    ``text[chunk_text_offsets[j]:chunk_text_offsets[j+1]]`` is chunk j's text (UTF-8).
    chunk_kind: 0 = choice with non-empty text, 1 = choice with empty text (e.g. role-only
    delta), 2 = event without choices (usage-only, keep-alive), 3 = ``[DONE]``.
    -1 in sent_ns/end_ns means never sent / never ended; -1 in token counts means no usage.
    t0_mono_ns is on CLOCK_MONOTONIC, the clock of ``time.monotonic_ns()``. dispatched_ns is
    when the dispatcher released a request (after any max-concurrency wait), sent_ns just before
    the HTTP send. error is None on success, else one line: ``connect error: …``,
    ``HTTP 500: <body excerpt ≤ 200 chars>``, ``timeout after 1.5 s``, ``stream error: …``
    (reset, truncated body), ``malformed chunk: …``, ``server error in stream: …``,
    ``cancelled``, ``cancelled: max duration reached``, ``not sent: run cancelled``,
    ``not sent: max duration reached``, ``not sent: turn K of this session failed``
    (header values are redacted from every message).
    One record per request, or per turn of a run of sessions (session-major: session 0's
    turns, then session 1's, ...); session_index / turn_index say which (a plain request is
    a one-turn session: its own index, turn 0). A session turn's intended_ns is the previous
    turn's end plus its think time (-1 if it never became due).
    """

    t0_unix_ns: int
    t0_mono_ns: int
    cancelled: bool
    deadline_reached: bool
    client_threads: int  # tokio worker threads the client ran with
    # Each row's record index: 0..n for a whole run; a streamed run's batches say which.
    record_index: npt.NDArray[np.int64]
    intended_ns: npt.NDArray[np.int64]
    session_index: npt.NDArray[np.int64]
    turn_index: npt.NDArray[np.int64]
    dispatched_ns: npt.NDArray[np.int64]
    sent_ns: npt.NDArray[np.int64]
    end_ns: npt.NDArray[np.int64]
    http_status: npt.NDArray[np.int32]
    prompt_tokens: npt.NDArray[np.int64]
    completion_tokens: npt.NDArray[np.int64]
    cached_tokens: npt.NDArray[np.int64]  # usage prompt_tokens_details.cached_tokens; -1: none
    error: list[str | None]
    finish_reason: list[str | None]
    chunk_offsets: npt.NDArray[np.int64]
    chunk_ns: npt.NDArray[np.int64]
    chunk_kind: npt.NDArray[np.uint8]
    chunk_text_offsets: npt.NDArray[np.int64]
    text: bytes

class RunHandle:
    """A run in progress on the core's runtime."""

    def poll(self) -> Progress: ...
    def cancel(self, abort_in_flight: bool = False) -> None:
        """Stop dispatching; with ``abort_in_flight`` also cancel requests in flight
        (recorded as cancelled errors)."""
    def take_finished(self) -> Records | None:
        """A run with ``stream_records``: the requests that finished since the last call, in
        record order (``record_index``), removed from the core; ``None`` when there are none.
        Run-level fields (t0, cancelled, ...) are meaningful only in ``wait``'s records."""
    def done_fd(self) -> int:
        """A descriptor that turns readable when the run has ended, and stays so while the
        handle lives: wait on it with ``select.poll``, which Ctrl-C interrupts (``wait`` is not
        interrupted until its timeout passes)."""
    def wait(self, timeout_s: float | None = None) -> Records | None:
        """Block (GIL released) until the run ends; ``None`` if ``timeout_s`` passed first.
        With ``stream_records`` its records are those not taken by ``take_finished``."""

class Histogram:
    """Non-negative integer latencies (ns) at ``significant_digits`` (1-5) of precision
    (HdrHistogram): count, min and max exact, a percentile within 10^-digits relative."""

    def __init__(self, significant_digits: int = 3) -> None: ...
    @property
    def significant_digits(self) -> int: ...
    def record(self, values: npt.NDArray[np.int64]) -> None:
        """Record every value (CoreError on a negative one; then nothing is recorded)."""
    def __len__(self) -> int: ...
    def percentile(self, p: float) -> int | None:
        """The value at percentile p (0-100); None when empty."""
    @property
    def min(self) -> int | None: ...
    @property
    def max(self) -> int | None: ...

def start_run(config_json: str, request_parts: Iterable[str] | None = None) -> RunHandle:
    """Start a run described by a JSON RunConfig (see sonic/client.py): requests or
    sessions; Progress counts one request per session turn. ``request_parts``: more requests,
    after the configuration's, as JSON arrays (any iterable, taken one at a time); each is
    checked now and parsed again when the run reaches it (a long run's workload never held
    parsed whole)."""

def schedule_preview(schedule_json: str, n: int) -> npt.NDArray[np.float64]:
    """Intended arrival offsets in seconds for n requests of a JSON ScheduleSpec (its own
    convention: precomputed or sequential; its ``arrivals_s`` as given, which must hold n)."""

# ---------------------------------------------------------------- telemetry

class GpuSampler:
    """A background thread sampling NVML (see ``start_gpu_sampler``)."""

    @property
    def devices(self) -> list[dict[str, object]]:
        """``[{index (logical), nvml_index, name, uuid}]``."""
    @property
    def hz(self) -> float: ...
    @property
    def started_ns(self) -> int: ...
    @property
    def running(self) -> bool: ...
    def stop(self) -> dict[str, object]:
        """Stop (idempotent); columns as numpy arrays: device (uint32), t_mono_ns (int64),
        gpu_util_pct, mem_util_pct, mem_used_mib, mem_free_mib, mem_total_mib, power_w
        (float64, NaN = unsupported), energy_mj, sm_clock_mhz, temperature_c (int64, -1 =
        unsupported); plus devices, hz, started_ns."""
    def summary(
        self, start_ns: int | None = None, end_ns: int | None = None
    ) -> list[dict[str, object]]:
        """Per device over the window: samples, peak_used_mib, min_free_mib, mean_util_pct,
        max_util_pct, mean_mem_util_pct, mean_power_w, max_temperature_c, mean_sm_clock_mhz,
        energy_j, energy_source ("counter" | "power" | "none"), energy_span_s, name, uuid."""

def gpu_probe() -> tuple[bool, str]:
    """``(available, reason)``; never raises ("no NVIDIA GPU/driver found (...)")."""

def start_gpu_sampler(hz: float = 10.0, devices: list[int] | None = None) -> GpuSampler:
    """Sample the visible GPUs (CUDA_VISIBLE_DEVICES) or the logical ``devices``; raises
    CoreError without NVML or a device."""

def monotonic_ns() -> int:
    """CLOCK_MONOTONIC ns (the clock of ``time.monotonic_ns()``)."""
