"""``TelemetrySession``: GPU sampling and engine-metrics scraping around one run.

    with TelemetrySession(gpu=True, metrics_url=base_url + "/metrics") as tel:
        records = client.run(config)
        tel.set_window(*run_window_ns(records))
    result = tel.result()

Several ``/metrics`` endpoints (MAX's ``--metrics-urls.<label>=<url>``, e.g. the prefill and
decode servers of a disaggregated deployment) are scraped side by side with
``metrics_endpoints={label: url}``; the first is the primary one that the console, the
normalised summary and the timeline plots use.

Nothing here can fail a run: every problem becomes a line in ``result().warnings``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sonic.telemetry.cpu import CpuMetrics, CpuRecorder
from sonic.telemetry.gpu import (
    DEFAULT_HZ,
    GpuData,
    GpuRecorder,
    max_gpu_keys,
    tokens_per_joule,
    total_energy_j,
)
from sonic.telemetry.scrape import DEFAULT_INTERVAL_S, MetricsScraper, Scrape

SIDECAR_SUFFIX = ".telemetry.json"
# vLLM's result keys for speculative decoding (written only when the counters exist).
VLLM_SPEC_KEYS = (
    "spec_decode_acceptance_rate",
    "spec_decode_acceptance_length",
    "spec_decode_num_drafts",
    "spec_decode_draft_tokens",
    "spec_decode_accepted_tokens",
    "spec_decode_per_position_acceptance_rates",
)


def _json_num(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_json_num(v) for v in obj.tolist()] if obj.dtype.kind == "f" else obj.tolist()
    return _json_num(obj)


DEFAULT_ENDPOINT_LABEL = "server"  # MAX's label for the one endpoint it derives itself


@dataclass
class EndpointTelemetry:
    """What one scraped ``/metrics`` endpoint gave over the session."""

    label: str
    url: str | None  # None only for the empty stand-in when nothing was scraped
    engine: str | None
    deltas: dict[str, Any]
    series: dict[str, Any]
    scrapes: list[Scrape]
    max_server_metrics: dict[str, Any] | None = None  # MAX's ``server_metrics`` object

    @property
    def has_data(self) -> bool:
        return any(s.ok for s in self.scrapes)

    def gauge_stats(self, window_ns: tuple[int, int] | None) -> dict[str, dict[str, float | None]]:
        """Mean and max of each normalised gauge over the scrapes inside the run window."""
        from sonic.telemetry.names import GAUGES

        inside = [s for s in self.scrapes if s.ok]
        if window_ns is not None:
            a, b = window_ns
            w = [s for s in inside if a <= s.t_ns <= b]
            inside = w or inside
        out: dict[str, dict[str, float | None]] = {}
        for g in GAUGES:
            vals = [s.values[g] for s in inside if g in s.values and math.isfinite(s.values[g])]
            if vals:
                out[g] = {"mean": float(np.mean(vals)), "max": float(np.max(vals)), "n": len(vals)}
        return out

    def summary(self, window_ns: tuple[int, int] | None) -> dict[str, Any]:
        return {
            "url": self.url,
            "engine": self.engine,
            "scrapes": len(self.scrapes),
            "failed_scrapes": sum(1 for s in self.scrapes if not s.ok),
            "deltas": self.deltas.get("normalized", {}),
            "rates": self.deltas.get("rates", {}),
            "gauges": self.gauge_stats(window_ns),
            "raw_deltas": self.deltas.get("raw", {}),
        }

    def sidecar(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "engine": self.engine,
            "series": self.series,
            "deltas": self.deltas,
            "scrapes": [s.as_json(raw=True) for s in self.scrapes],
        }


@dataclass
class TelemetryResult:
    """What a session gathered. Times are CLOCK_MONOTONIC ns."""

    gpu_requested: bool
    gpu_available: bool
    gpu_reason: str
    gpu: GpuData
    endpoints: list[EndpointTelemetry] = field(default_factory=list)  # the primary first
    cpu_requested: bool = False
    cpu: CpuMetrics | None = None  # the server's CPU over the run (MAX's cpu_metrics)
    cpu_pids: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    window_ns: tuple[int, int] | None = None
    session_ns: tuple[int, int] = (0, 0)

    @property
    def primary(self) -> EndpointTelemetry | None:
        """The first endpoint (None when no /metrics was scraped)."""
        return self.endpoints[0] if self.endpoints else None

    # ---------------------------------------------------------------- GPU

    @property
    def has_gpu_data(self) -> bool:
        return self.gpu.n_samples > 0

    @property
    def has_server_data(self) -> bool:
        return any(e.has_data for e in self.endpoints)

    def max_gpu_keys(self) -> dict[str, list[float | None]]:
        """``peak_gpu_memory_mib``, ``available_gpu_memory_mib``, ``gpu_utilization``: lists,
        one value per GPU (empty when nothing was sampled), as MAX's newer scripts write."""
        return max_gpu_keys(self.gpu.summaries)

    def energy_j(self) -> float | None:
        return total_energy_j(self.gpu.summaries)

    # ---------------------------------------------------------------- engine

    def vllm_spec_decode(self) -> dict[str, Any]:
        """vLLM's ``spec_decode_*`` result keys from the counter deltas (empty when the engine
        has no speculative decoding): acceptance rate = accepted/draft tokens, acceptance
        length = 1 + accepted/drafts, per position = accepted at position / drafts."""
        deltas = self._primary_or_empty().deltas
        norm = deltas.get("normalized") or {}
        drafts = norm.get("spec_drafts_total")
        draft_tokens = norm.get("spec_draft_tokens_total")
        accepted = norm.get("spec_accepted_tokens_total")
        if drafts is None or draft_tokens is None or accepted is None:
            return {}
        raw = deltas.get("raw") or {}
        per_pos: dict[int, float] = {}
        prefix = "vllm:spec_decode_num_accepted_tokens_per_pos_total{"
        for key, value in raw.items():
            if key.startswith(prefix) and value is not None and 'position="' in key:
                pos = key.split('position="', 1)[1].split('"', 1)[0]
                if pos.isdigit():
                    per_pos[int(pos)] = per_pos.get(int(pos), 0.0) + value
        return {
            "spec_decode_acceptance_rate": (accepted / draft_tokens * 100.0)
            if draft_tokens
            else float("nan"),
            "spec_decode_acceptance_length": (1.0 + accepted / drafts) if drafts else float("nan"),
            "spec_decode_num_drafts": int(drafts),
            "spec_decode_draft_tokens": int(draft_tokens),
            "spec_decode_accepted_tokens": int(accepted),
            "spec_decode_per_position_acceptance_rates": [
                per_pos[p] / drafts if drafts else float("nan") for p in sorted(per_pos)
            ],
        }

    def _primary_or_empty(self) -> EndpointTelemetry:
        """The primary endpoint, or an empty one, so documents keep one shape."""
        return self.primary or EndpointTelemetry(DEFAULT_ENDPOINT_LABEL, None, None, {}, {}, [])

    def max_server_metrics(self) -> dict[str, Any]:
        """MAX's ``server_metrics`` (the first endpoint) and ``server_metrics_by_endpoint``
        (all, by label); empty when no endpoint was scraped twice around the run."""
        by_label = {e.label: e.max_server_metrics for e in self.endpoints}
        by_label = {k: v for k, v in by_label.items() if v is not None}
        if not by_label:
            return {}
        return _clean(
            {
                "server_metrics": next(iter(by_label.values())),
                "server_metrics_by_endpoint": by_label,
            }
        )

    # ---------------------------------------------------------------- documents

    def summary(self, output_tokens: int | None = None) -> dict[str, Any]:
        """The compact object for the result JSON (``sonic.telemetry``)."""
        energy = self.energy_j()
        gpus = [{k: _json_num(v) for k, v in s.items() if k != "uuid"} for s in self.gpu.summaries]
        return _clean(
            {
                "gpu": {
                    "collected": self.gpu_requested,
                    "available": self.gpu_available,
                    "reason": self.gpu_reason,
                    "sample_hz": self.gpu.hz if self.gpu_requested else None,
                    "samples": self.gpu.n_samples,
                    "devices": gpus,
                    "energy_j": energy,
                    "output_tokens_per_joule": tokens_per_joule(output_tokens or 0, energy),
                },
                "server_cpu": {
                    "collected": self.cpu_requested,
                    "pids": list(self.cpu_pids),
                    **(self.cpu.as_dict() if self.cpu else {}),
                },
                "server_metrics": self._primary_or_empty().summary(self.window_ns),
                **(
                    {
                        "server_metrics_by_endpoint": {
                            e.label: e.summary(self.window_ns) for e in self.endpoints
                        }
                    }
                    if len(self.endpoints) > 1
                    else {}
                ),
                "window_mono_ns": list(self.window_ns) if self.window_ns else None,
                "warnings": list(self.warnings),
            }
        )

    def sidecar(self) -> dict[str, Any]:
        """Everything, time series included (the ``*.telemetry.json`` beside a result)."""
        gpu_series = {k: v for k, v in self.gpu.columns.items()}
        return _clean(
            {
                "clock": "CLOCK_MONOTONIC ns (time.monotonic_ns)",
                "window_mono_ns": list(self.window_ns) if self.window_ns else None,
                "session_mono_ns": list(self.session_ns),
                "gpu": {
                    "devices": self.gpu.devices,
                    "hz": self.gpu.hz,
                    "series": gpu_series,
                    "summaries": self.gpu.summaries,
                },
                "server": self._primary_or_empty().sidecar(),
                **(
                    {"server_by_endpoint": {e.label: e.sidecar() for e in self.endpoints[1:]}}
                    if len(self.endpoints) > 1
                    else {}
                ),
                "warnings": self.warnings,
            }
        )

    def console_lines(self) -> list[str]:
        """A short "GPU / engine" block, only for what has data."""
        lines: list[str] = []
        if self.has_gpu_data:
            lines.append("{s:{c}^{n}}".format(s=" GPU ", n=50, c="-"))
            for s in self.gpu.summaries:
                lines.append(
                    f"GPU {s['device']} util mean/max (%):".ljust(40)
                    + f"{s['mean_util_pct']:.1f}/{s['max_util_pct']:.1f}"
                )
                lines.append(
                    f"GPU {s['device']} peak memory (MiB):".ljust(40) + f"{s['peak_used_mib']:.0f}"
                )
            e = self.energy_j()
            if e is not None:
                lines.append("GPU energy (J):".ljust(40) + f"{e:.1f}")
        if self.cpu is not None:  # MAX's section and labels
            lines.append("{s:{c}^{n}}".format(s="CPU Statistics", n=50, c="-"))
            lines.append(
                "{:<40} {:<10.2f}".format("CPU utilization user (%):", self.cpu.user_percent)
            )
            lines.append(
                "{:<40} {:<10.2f}".format("CPU utilization system (%):", self.cpu.system_percent)
            )
        for e in self.endpoints:
            if not e.has_data:
                continue
            g = e.gauge_stats(self.window_ns)
            title = f" Engine /metrics ({e.engine}) "
            if len(self.endpoints) > 1:
                title = f" Engine /metrics {e.label} ({e.engine}) "
            lines.append("{s:{c}^{n}}".format(s=title, n=50, c="-"))
            for key, label in (
                ("running", "Engine running reqs mean/max:"),
                ("waiting", "Engine waiting reqs mean/max:"),
                ("kv_cache_usage", "Engine KV cache usage mean/max:"),
            ):
                if key in g:
                    lines.append(label.ljust(40) + f"{g[key]['mean']:.2f}/{g[key]['max']:.2f}")
            d = e.deltas.get("normalized") or {}
            if d.get("preemptions_total") is not None:
                lines.append("Engine preemptions:".ljust(40) + f"{d['preemptions_total']:.0f}")
        return lines


class TelemetrySession:
    """Start GPU sampling and ``/metrics`` scraping on enter, stop them on exit.

    ``metrics_url`` is shorthand for ``metrics_endpoints={"server": metrics_url}``; given both,
    ``metrics_url`` is scraped first, under that label.
    """

    def __init__(
        self,
        gpu: bool = True,
        *,
        gpu_hz: float = DEFAULT_HZ,
        gpu_devices: list[int] | None = None,
        metrics_url: str | None = None,
        metrics_endpoints: Mapping[str, str] | None = None,
        metrics_interval_s: float = DEFAULT_INTERVAL_S,
        metrics_timeout_s: float = 2.0,
        metrics_insecure: bool = False,
        engine: str | None = None,
        cpu: bool = False,
        cpu_pids: list[int] | None = None,
        server_host: str | None = None,
        server_port: int | None = None,
    ) -> None:
        self.gpu_requested = bool(gpu)
        self._cpu = CpuRecorder(cpu_pids, server_host, server_port) if cpu else None
        endpoints = dict(metrics_endpoints or {})
        if metrics_url:
            if DEFAULT_ENDPOINT_LABEL in endpoints:
                raise ValueError(f"metrics endpoint label {DEFAULT_ENDPOINT_LABEL!r} given twice")
            endpoints = {DEFAULT_ENDPOINT_LABEL: metrics_url, **endpoints}
        self._gpu = GpuRecorder(gpu_hz, gpu_devices) if gpu else None
        self._scrapers = {
            label: MetricsScraper(
                url,
                interval_s=metrics_interval_s,
                timeout_s=metrics_timeout_s,
                engine=engine,
                insecure=metrics_insecure,
            )
            for label, url in endpoints.items()
        }
        self._window: tuple[int, int] | None = None
        self._t_start = 0
        self._t_stop = 0
        self._result: TelemetryResult | None = None
        self._started = False

    def set_window(self, start_ns: int | None, end_ns: int | None = None) -> None:
        """The run's interval (monotonic ns) for summaries and deltas."""
        if start_ns is not None and end_ns is not None and end_ns >= start_ns:
            self._window = (int(start_ns), int(end_ns))

    def start(self) -> TelemetrySession:
        if self._started:
            return self
        self._started = True
        self._t_start = time.monotonic_ns()
        if self._gpu is not None:
            self._gpu.start()
        if self._cpu is not None:
            self._cpu.start()
        for scraper in self._scrapers.values():
            scraper.start()
        return self

    def stop(self) -> TelemetryResult:
        if self._result is not None:
            return self._result
        self._t_stop = time.monotonic_ns()
        window = self._window or (self._t_start, self._t_stop)
        warnings: list[str] = []
        gpu = GpuData()
        available, reason = False, "not collected"
        if self._gpu is not None:
            gpu = self._gpu.stop(*window)
            available, reason = self._gpu.available, self._gpu.reason
            warnings += self._gpu.warnings
        cpu = self._cpu.stop() if self._cpu is not None else None
        if self._cpu is not None:
            warnings += self._cpu.warnings
        endpoints: list[EndpointTelemetry] = []
        for label, scraper in self._scrapers.items():
            scraper.stop()
            endpoints.append(
                EndpointTelemetry(
                    label=label,
                    url=scraper.url,
                    engine=scraper.engine,
                    deltas=scraper.deltas(*window),
                    series=scraper.series(),
                    scrapes=list(scraper.scrapes),
                    max_server_metrics=scraper.max_server_metrics(*window),
                )
            )
            warnings += scraper.warnings
            if scraper.ok_scrapes and scraper.engine is None:
                warnings.append(
                    f"engine metrics: {scraper.url} has no metric names sonic knows "
                    "(vLLM, MAX, SGLang, TGI, llama.cpp); raw series kept"
                )
        self._result = TelemetryResult(
            gpu_requested=self.gpu_requested,
            gpu_available=available,
            gpu_reason=reason,
            gpu=gpu,
            endpoints=endpoints,
            cpu_requested=self._cpu is not None,
            cpu=cpu,
            cpu_pids=list(self._cpu.pids or []) if self._cpu is not None else [],
            warnings=warnings,
            window_ns=self._window,
            session_ns=(self._t_start, self._t_stop),
        )
        return self._result

    def result(self) -> TelemetryResult:
        return self.stop()

    def __enter__(self) -> TelemetrySession:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
