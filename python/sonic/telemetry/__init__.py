"""Telemetry beside every client measurement: GPU samples (NVML, in the Rust core) and the
engine's Prometheus ``/metrics``, all on the run records' monotonic clock."""

from __future__ import annotations

from sonic.telemetry.align import align, in_flight, plot_timeline, run_window_ns
from sonic.telemetry.gpu import GpuData, GpuRecorder, max_gpu_keys, probe
from sonic.telemetry.names import normalize, parse_metrics
from sonic.telemetry.scrape import MetricsScraper, Scrape
from sonic.telemetry.session import (
    SIDECAR_SUFFIX,
    EndpointTelemetry,
    TelemetryResult,
    TelemetrySession,
)

__all__ = [
    "SIDECAR_SUFFIX",
    "EndpointTelemetry",
    "GpuData",
    "GpuRecorder",
    "MetricsScraper",
    "Scrape",
    "TelemetryResult",
    "TelemetrySession",
    "align",
    "in_flight",
    "max_gpu_keys",
    "normalize",
    "parse_metrics",
    "plot_timeline",
    "probe",
    "run_window_ns",
]
