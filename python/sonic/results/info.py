"""What a run was asked to do: the header fields that result files and the console repeat."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sonic.errors import SonicError


@dataclass
class RunInfo:
    """Run settings as the user gave them (not measured values).

    ``client_args`` is the full parsed argument dict (MAX writes it; secrets are redacted on
    write); ``metadata`` comes from ``parse_metadata``; ``date`` stamps both the file content
    and the file name, so it is taken once.
    """

    backend: str
    model_id: str
    num_prompts: int
    # Requests the workload holds when it is not --num-prompts (sessions: every turn of the
    # sessions kept); what the outcome counts as "all dispatched". None: num_prompts.
    expected_requests: int | None = None
    request_rate: float = math.inf
    tokenizer_id: str | None = None
    label: str | None = None
    endpoint_type: str | None = None
    dataset_name: str | None = None
    burstiness: float = 1.0
    max_concurrency: int | None = None
    ramp_up_strategy: str | None = None
    ramp_up_start_rps: float | None = None
    ramp_up_end_rps: float | None = None
    rps_change_events: list[dict[str, Any]] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    server_args: str = ""
    client_args: dict[str, Any] = field(default_factory=dict)
    percentile_metrics: list[str] = field(default_factory=lambda: ["ttft", "tpot", "itl"])
    metric_percentiles: list[float] = field(default_factory=lambda: [99.0])
    save_detailed: bool = False
    simulated: bool = False
    skip_first_n_requests: int = 0
    skip_last_n_requests: int = 0
    peak_gpu_memory_mib: float = 0.0
    available_gpu_memory_mib: float = 0.0
    gpu_utilization: float = 0.0
    raw_records_file: str | None = None
    date: datetime = field(default_factory=datetime.now)


def parse_metadata(items: Sequence[str] | None) -> dict[str, str]:
    """``--metadata KEY=VALUE ...`` -> dict (split at the first '=', both sides stripped)."""
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SonicError(f"bad --metadata item {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def rps_change_events(
    strategy: str, start_rps: float, end_rps: float, records: Any
) -> list[dict[str, Any]]:
    """vLLM's ``rps_change_events`` of a ramp-up run: the start rate stamped with the run's
    start, then one ``{"rps", "timestamp"}`` entry each time the ramp's rate passes a whole
    number, stamped with the wall-clock time at which the request that carried it was due. The
    rate of request i follows the schedule's own rule (linear or exponential in i / (N - 1))."""
    n = int(records.n)
    last = int(start_rps)
    start = datetime.fromtimestamp(int(records.t0_unix_ns) / 1e9).isoformat()
    events: list[dict[str, Any]] = [{"rps": last, "timestamp": start}]
    for i in range(n):
        progress = i / max(n - 1, 1)
        if strategy == "exponential" and start_rps > 0:
            rate = start_rps * (end_rps / start_rps) ** progress
        else:
            rate = start_rps + (end_rps - start_rps) * progress
        whole = int(rate)
        if whole > last:
            ns = int(records.t0_unix_ns) + int(records.intended_ns[i])
            stamp = datetime.fromtimestamp(ns / 1e9).isoformat()
            events += [{"rps": r, "timestamp": stamp} for r in range(last + 1, whole + 1)]
            last = whole
    return events
