"""GPU sampling through the Rust core (NVML), and MAX's per-GPU summary keys.

Without the NVIDIA driver ``probe()`` says "no NVIDIA GPU/driver found" and
``GpuRecorder.start()`` records that once as a warning: no thread, no exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_HZ = 10.0
# Columns of the sampler's output (besides device / t_mono_ns), for documentation and tests.
FIELDS = (
    "gpu_util_pct",
    "mem_util_pct",
    "mem_used_mib",
    "mem_free_mib",
    "mem_total_mib",
    "power_w",
    "energy_mj",
    "sm_clock_mhz",
    "temperature_c",
)


def probe() -> tuple[bool, str]:
    """``(available, reason)``; never raises."""
    try:
        from sonic._core import gpu_probe
    except ImportError as exc:  # the extension is not built
        return False, f"no NVIDIA GPU/driver found (sonic._core unavailable: {exc})"
    return gpu_probe()


@dataclass
class GpuData:
    """What a recorder gathered: device list, columnar samples and per-device summaries."""

    devices: list[dict[str, Any]] = field(default_factory=list)
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    summaries: list[dict[str, Any]] = field(default_factory=list)
    hz: float = 0.0

    @property
    def n_samples(self) -> int:
        t = self.columns.get("t_mono_ns")
        return 0 if t is None else int(t.shape[0])


class GpuRecorder:
    """Start/stop wrapper around ``sonic._core.start_gpu_sampler``."""

    def __init__(self, hz: float = DEFAULT_HZ, devices: list[int] | None = None) -> None:
        self.hz = float(hz)
        self.devices = devices
        self.available = False
        self.reason = ""
        self.warnings: list[str] = []
        self._sampler: Any = None

    def start(self) -> GpuRecorder:
        self.available, self.reason = probe()
        if not self.available:
            self.warnings.append(f"GPU stats: {self.reason}; the run goes on without them")
            return self
        from sonic._core import CoreError, start_gpu_sampler

        try:
            self._sampler = start_gpu_sampler(self.hz, self.devices)
        except CoreError as exc:
            self.available = False
            self.reason = str(exc)
            self.warnings.append(f"GPU stats: {exc}; the run goes on without them")
        return self

    @property
    def running(self) -> bool:
        return self._sampler is not None and bool(self._sampler.running)

    def stop(self, start_ns: int | None = None, end_ns: int | None = None) -> GpuData:
        """Stop sampling; summaries cover ``[start_ns, end_ns]`` (monotonic ns)."""
        if self._sampler is None:
            return GpuData(hz=self.hz)
        raw = dict(self._sampler.stop())
        devices = list(raw.pop("devices"))
        hz = float(raw.pop("hz"))
        raw.pop("started_ns", None)
        summaries = [dict(s) for s in self._sampler.summary(start_ns, end_ns)]
        return GpuData(devices=devices, columns=raw, summaries=summaries, hz=hz)


def _num(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def max_gpu_keys(summaries: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """MAX's keys, one value per GPU: peak used MiB, minimum free MiB, mean utilisation %."""
    return {
        "peak_gpu_memory_mib": [_num(s["peak_used_mib"]) for s in summaries],
        "available_gpu_memory_mib": [_num(s["min_free_mib"]) for s in summaries],
        "gpu_utilization": [_num(s["mean_util_pct"]) for s in summaries],
    }


def total_energy_j(summaries: list[dict[str, Any]]) -> float | None:
    """Energy of every GPU over the window (None when no GPU reported any)."""
    vals = [s["energy_j"] for s in summaries if math.isfinite(s["energy_j"])]
    return float(sum(vals)) if vals else None


def tokens_per_joule(output_tokens: int, energy_j: float | None) -> float | None:
    if energy_j is None or energy_j <= 0:
        return None
    return output_tokens / energy_j
