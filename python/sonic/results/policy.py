"""Exit code and partial-result marking per dialect.

Results are always written when saving was asked for (also on failures and Ctrl-C), with
honest failed counts: a run that measured something keeps it. The exit code follows the
dialect: MAX exits 1 when any request failed or fewer than ``--num-prompts`` completed, vLLM
exits 0; an interrupted run exits 130 in both. A run in which no request succeeded measured
nothing about the engine and exits 1 in both (vLLM would exit 0).
"""

from __future__ import annotations

from dataclasses import dataclass

from sonic.errors import SonicError
from sonic.metrics import BenchmarkMetrics

DIALECTS = ("vllm", "max")
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Outcome:
    """How a finished run ends: exit code, whether its results are partial, and why."""

    exit_code: int
    partial: bool
    reasons: tuple[str, ...]


def check_dialect(dialect: str) -> str:
    if dialect not in DIALECTS:
        raise SonicError(f"unknown result dialect {dialect!r} (expected vllm or max)")
    return dialect


def run_outcome(dialect: str, metrics: BenchmarkMetrics, num_prompts: int) -> Outcome:
    check_dialect(dialect)
    reasons: list[str] = []
    if metrics.cancelled:
        reasons.append("interrupted: dispatch stopped before the run finished")
    if metrics.failed:
        reasons.append(
            f"{metrics.failed} of {metrics.num_requests} requests failed"
            + (f" (most often: {common})" if (common := _most_common_error(metrics)) else "")
        )
    if metrics.num_requests < num_prompts:
        reasons.append(f"{metrics.num_requests} of {num_prompts} prompts were dispatched")
    partial = bool(reasons)
    if metrics.cancelled:
        code = EXIT_INTERRUPTED
    elif metrics.num_requests and not metrics.completed:
        code = 1
    elif dialect == "max" and (metrics.failed or metrics.completed != num_prompts):
        code = 1
    else:
        code = 0
    return Outcome(exit_code=code, partial=partial, reasons=tuple(reasons))


def _most_common_error(metrics: BenchmarkMetrics, width: int = 160) -> str | None:
    counts: dict[str, int] = {}
    for _, err in metrics.errors():
        line = err.strip().splitlines()[0][:width] if err.strip() else ""
        if line:
            counts[line] = counts.get(line, 0) + 1
    return max(counts, key=lambda k: counts[k]) if counts else None


def should_save(
    dialect: str, save_result: bool, append_result: bool = False, result_filename: str | None = None
) -> bool:
    """Whether a result file is written: vLLM on ``--save-result``/``--append-result``;
    MAX on ``--save-result`` (G1/G2) or a ``--result-filename`` (G3 saves on that alone)."""
    check_dialect(dialect)
    if dialect == "vllm":
        return bool(save_result or append_result)
    return bool(save_result or result_filename)
