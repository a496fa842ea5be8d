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
