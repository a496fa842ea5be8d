"""Exit code and partial-result marking per dialect.

Results are always written when saving was asked for (also on failures and Ctrl-C), with
honest failed counts: a run that measured something keeps it. Only the exit code follows the
dialect: MAX exits 1 when any request failed or fewer than ``--num-prompts`` completed, vLLM
exits 0; an interrupted run exits 130 in both.
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
        reasons.append(f"{metrics.failed} of {metrics.num_requests} requests failed")
    if metrics.num_requests < num_prompts:
        reasons.append(f"{metrics.num_requests} of {num_prompts} prompts were dispatched")
    partial = bool(reasons)
    if metrics.cancelled:
        code = EXIT_INTERRUPTED
    elif dialect == "max" and (metrics.failed or metrics.completed != num_prompts):
        code = 1
    else:
        code = 0
    return Outcome(exit_code=code, partial=partial, reasons=tuple(reasons))


def should_save(
    dialect: str, save_result: bool, append_result: bool = False, result_filename: str | None = None
) -> bool:
    """Whether a result file is written: vLLM on ``--save-result``/``--append-result``;
    MAX on ``--save-result`` (G1/G2) or a ``--result-filename`` (G3 saves on that alone)."""
    check_dialect(dialect)
    if dialect == "vllm":
        return bool(save_result or append_result)
    return bool(save_result or result_filename)
