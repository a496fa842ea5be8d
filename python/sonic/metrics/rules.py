"""How a dialect turns raw chunks into metrics, and parsing of the metric flags.

vLLM and MAX disagree on what TTFT, end of request, ITL and a token are;
each disagreement is one field here, so a run records exactly which definitions it used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sonic.errors import SonicError

TTFT_RULES = ("first_choice", "first_text")
END_RULES = ("last_choice", "last_event")
ITL_RULES = ("choice", "text")
TOKEN_COUNTS = ("usage", "retokenize", "hybrid")
DURATION_STARTS = ("run_start", "first_intended", "first_sent", "measured_window")
CUT_OFF_RULES = ("failed", "excluded")

# Metrics that --percentile-metrics may select (vLLM `bench serve` names).
PERCENTILE_METRICS = (
    "ttft",
    "tpot",
    "itl",
    "e2el",
    "client_queue_time",
    "e2el_including_client_queue",
)
GOODPUT_METRICS = ("ttft", "tpot", "e2el")


@dataclass(frozen=True)
class MetricRules:
    """Which chunks count for TTFT, end of request and ITL, and where token counts come from.

    - ``ttft_rule``: ``first_choice`` = first chunk carrying a choice, even with empty text
      (vLLM); ``first_text`` = first chunk with non-empty text (MAX).
    - ``end_rule``: ``last_choice`` = last chunk carrying a choice (vLLM); ``last_event`` = last
      SSE event of any kind, ``[DONE]`` included (MAX).
    - ``itl_rule``: gaps between successive ``choice`` chunks (vLLM) or non-empty ``text``
      chunks (MAX); the chunks of this rule are also the "token" arrivals of the per-second peak.
    - ``token_count``: ``usage`` = server usage, re-tokenized text when absent (vLLM);
      ``retokenize`` = whole generated text, client prompt length (MAX 2025); ``hybrid`` =
      input from usage, output re-tokenized (MAX 2026).
    - ``require_text``: a response without any text counts as failed (MAX does this).
    - ``duration_start``: origin of the benchmark duration. ``run_start`` (the run's t0, taken
      just before the first arrival is scheduled) matches vLLM and MAX 2025;
      ``measured_window`` = from the first measured request's send to the last measured
      request's end (MAX 2026: warm-up and tail requests left out by the skips).
    - ``cut_off``: requests stopped or never sent because ``--max-benchmark-duration-s`` ran
      out: ``failed`` (they count as failures) or ``excluded`` (left out of every count, MAX).
    - ``choice_required``: a 200 reply that streamed no choice chunk counts as failed (vLLM).
    - ``step_tpot``: also compute MAX 2026's step TPOT (each ITL over the tokens of the chunk
      that closed it, chunk texts re-tokenized).
    """

    ttft_rule: str = "first_choice"
    end_rule: str = "last_choice"
    itl_rule: str = "choice"
    token_count: str = "usage"
    require_text: bool = False
    duration_start: str = "run_start"
    cut_off: str = "failed"
    choice_required: bool = False
    step_tpot: bool = False

    def __post_init__(self) -> None:
        for name, allowed in (
            ("ttft_rule", TTFT_RULES),
            ("end_rule", END_RULES),
            ("itl_rule", ITL_RULES),
            ("token_count", TOKEN_COUNTS),
            ("duration_start", DURATION_STARTS),
            ("cut_off", CUT_OFF_RULES),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise SonicError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")

    @classmethod
    def for_compat(cls, compat: str) -> MetricRules:
        """The rules of the dialect called ``compat`` (see ``sonic.dialects``)."""
        from sonic import dialects

        return dialects.get(compat).metric_rules

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_goodput(spec: str | Sequence[str] | None) -> dict[str, float]:
    """Parse ``--goodput ttft:MS tpot:MS e2el:MS`` into ``{name: milliseconds}``.

    Accepts the argparse list or one whitespace-separated string; raises SonicError on a
    malformed pair, an unknown metric, a repeated metric or a negative/non-finite value.
    """
    if spec is None:
        return {}
    items = spec.split() if isinstance(spec, str) else [s for part in spec for s in part.split()]
    out: dict[str, float] = {}
    for item in items:
        name, sep, raw = item.partition(":")
        name = name.strip()
        if not sep or not name or not raw.strip():
            raise SonicError(
                f"bad --goodput item {item!r}: expected KEY:VALUE in milliseconds, "
                f"KEY one of {', '.join(GOODPUT_METRICS)}"
            )
        if name not in GOODPUT_METRICS:
            raise SonicError(
                f"bad --goodput metric {name!r}: expected one of {', '.join(GOODPUT_METRICS)}"
            )
        if name in out:
            raise SonicError(f"bad --goodput: {name} given twice")
        try:
            value = float(raw)
        except ValueError:
            raise SonicError(f"bad --goodput value {raw!r} for {name}: not a number") from None
        if not math.isfinite(value) or value < 0:
            raise SonicError(
                f"bad --goodput value {raw!r} for {name}: must be a non-negative number of ms"
            )
        out[name] = value
    if not out:
        raise SonicError("--goodput needs at least one KEY:VALUE pair (e.g. ttft:500)")
    return out


def parse_percentile_metrics(spec: str | Sequence[str] | None) -> list[str]:
    """Parse ``--percentile-metrics ttft,tpot,itl`` (default ttft,tpot,itl)."""
    if spec is None:
        return ["ttft", "tpot", "itl"]
    parts = spec.split(",") if isinstance(spec, str) else [p for s in spec for p in s.split(",")]
    names = [p.strip() for p in parts if p.strip()]
    if not names:
        raise SonicError("--percentile-metrics is empty")
    for name in names:
        if name not in PERCENTILE_METRICS:
            raise SonicError(
                f"unknown --percentile-metrics entry {name!r}: "
                f"expected some of {', '.join(PERCENTILE_METRICS)}"
            )
    return list(dict.fromkeys(names))


def parse_metric_percentiles(spec: str | Sequence[float] | None) -> list[float]:
    """Parse ``--metric-percentiles 50,99,99.9`` (default 99); each in [0, 100]."""
    if spec is None:
        return [99.0]
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[float] = []
    for raw in parts:
        text = str(raw).strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            raise SonicError(f"bad --metric-percentiles entry {text!r}: not a number") from None
        if not (0.0 <= value <= 100.0):
            raise SonicError(f"bad --metric-percentiles entry {text!r}: must be in [0, 100]")
        out.append(value)
    if not out:
        raise SonicError("--metric-percentiles is empty")
    return list(dict.fromkeys(out))
