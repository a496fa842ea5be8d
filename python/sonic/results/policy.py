"""Exit code, partial-result marking and save decision, as the run's dialect rules them.

Thin entry points over ``Dialect.outcome`` and ``Dialect.should_save`` that accept a dialect
object or its name, so callers never branch on a tool's name themselves.
"""

from __future__ import annotations

from typing import Any

from sonic.dialects.base import EXIT_INTERRUPTED, Outcome
from sonic.metrics import BenchmarkMetrics

__all__ = ["EXIT_INTERRUPTED", "Outcome", "run_outcome", "should_save"]


def run_outcome(dialect: Any, metrics: BenchmarkMetrics, num_prompts: int) -> Outcome:
    from sonic import dialects

    return dialects.get(dialect).outcome(metrics, num_prompts)


def should_save(
    dialect: Any,
    save_result: bool,
    append_result: bool = False,
    result_filename: str | None = None,
) -> bool:
    """Whether a result file is written: vLLM on ``--save-result``/``--append-result``;
    MAX on ``--save-result`` (2025) or a ``--result-filename`` (the 2026 tool saves on that
    alone)."""
    from types import SimpleNamespace

    from sonic import dialects

    output = SimpleNamespace(
        save_result=save_result, append_result=append_result, result_filename=result_filename
    )
    return dialects.get(dialect).should_save(output)
