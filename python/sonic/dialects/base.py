"""What a dialect is: the conventions of one benchmark tool, held by one object.

vLLM's `bench serve`, MAX's 2025 benchmark_serving.py and MAX's 2026 `max benchmark` disagree on
flag defaults, on what TTFT and a token are, on how prompts are drawn and requests are filled,
on when a result is saved and what the exit code says, and on every key of the result file.
Each such decision is a field or a method here; a tool's module (``vllm.py``, ``max.py``,
``max_benchmark.py``) fills them in, and every other layer asks the run's dialect instead of
testing a tool's name. A new tool's conventions are one new module and one ``register`` call.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sonic.datasets.base import DatasetRules
from sonic.metrics.rules import MetricRules

if TYPE_CHECKING:  # pragma: no cover
    from sonic.metrics import BenchmarkMetrics
    from sonic.results.info import RunInfo

EXIT_INTERRUPTED = 130
# Settings every dialect must give (the parser has no neutral default for them).
REQUIRED_DEFAULTS = (
    "backend",
    "host",
    "dataset_name",
    "seed",
    "num_prompts",
    "percentile_metrics",
    "metric_percentiles",
)
IGNORE_EOS_POLICIES = ("flag_or_random", "completions", "always")
ARRIVALS = ("precomputed", "sequential")
# OutputArgs flags that may make a dialect write its result file.
SAVE_TRIGGERS = ("save_result", "append_result", "result_filename", "result_dir", "save_detailed")


@dataclass(frozen=True)
class BodyPolicy:
    """How a dialect fills request bodies, per API kind (see ``backends.API_KINDS``).

    ``fixed_fields`` are sent with every request of that API kind; the sampling flags override
    them and ``--extra-body`` overrides everything (last writer wins).
    """

    max_tokens_field: Mapping[str, str] = field(hash=False)
    # API kinds whose requests ask for a usage chunk (stream_options.include_usage).
    include_usage: tuple[str, ...]
    fixed_fields: Mapping[str, Mapping[str, Any]] = field(hash=False)

    def fixed(self, api: str) -> dict[str, Any]:
        """A private deep copy of the fixed fields for ``api`` (callers may mutate it)."""
        return copy.deepcopy(dict(self.fixed_fields.get(api, {})))


@dataclass(frozen=True)
class Outcome:
    """How a finished run ends: exit code, whether its results are partial, and why."""

    exit_code: int
    partial: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True, repr=False)
class Dialect:
    """The conventions of one benchmark tool. Subclasses write and read its result files."""

    name: str
    title: str
    # One line for --help: what differs from the other tools.
    summary: str
    # Flag defaults that differ between tools, keyed by argparse dest; a flag absent here has
    # the default written in flags.py.
    defaults: Mapping[str, Any] = field(hash=False)
    metric_rules: MetricRules
    dataset_rules: DatasetRules
    body: BodyPolicy
    # "flag_or_random": --ignore-eos, forced on for the random dataset (vLLM);
    # "completions": always on for the completions API, off for chat unless --ignore-eos (MAX).
    ignore_eos_policy: str
    # "precomputed": all arrival times drawn up front and rescaled so the last lands at N/rate
    # (vLLM); "sequential": sleep after each send, first request immediate (MAX).
    arrival: str
    # Whether one test request is sent before timing by default.
    test_prompt_default: bool
    model_required: bool
    # Save policy: which flags make a result file; whether an auto-named file gets -2, -3 …
    # instead of overwriting, and whether an overwritten file is kept as ``.orig``.
    saves_on: tuple[str, ...]
    unique_auto_names: bool
    keep_overwritten: bool
    # Exit policy: nonzero when any request failed or fewer than --num-prompts completed.
    strict_exit: bool
    # Whether a run that exits nonzero still writes its file under the tool's name; when not,
    # sonic keeps it beside as ``<name>.partial`` unless --always-save-result.
    failed_runs_saved: bool = True
    # Where its documents carry the catalogue's metrics (sonic.metrics.catalogue): scalar
    # column -> key, latency metric -> stem of {stat}_{stem}_ms. Absent ones are read from
    # the ``sonic`` section.
    metric_keys: Mapping[str, str] = field(hash=False, default_factory=dict)
    latency_stems: Mapping[str, str] = field(hash=False, default_factory=dict)
    # Flags (dests) this dialect refuses with a reason although other dialects take them.
    refused: Mapping[str, str] = field(hash=False, default_factory=dict)
    # Whether a chat endpoint renames the backend to its -chat variant in results (vLLM, MAX
    # 2025) or the backend keeps the name it was given (MAX 2026).
    chat_backend_suffix: bool = True
    # --max-benchmark-duration-s when neither it nor --num-prompts is given.
    duration_cap_without_num_prompts_s: float | None = None
    # Other spellings accepted by --compat.
    aliases: tuple[str, ...] = ()
    # Backends whose users run this tool (the default dialect for them).
    backends: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Dialect({self.name!r})"

    def __post_init__(self) -> None:
        """A dialect that lacks a setting the parser needs fails here, at registration,
        with its name, rather than as a crash in the middle of a run."""
        from sonic.errors import SonicError

        missing = [k for k in REQUIRED_DEFAULTS if k not in self.defaults]
        problems = [f"defaults lack {', '.join(missing)}"] if missing else []
        for name, value, allowed in (
            ("ignore_eos_policy", self.ignore_eos_policy, IGNORE_EOS_POLICIES),
            ("arrival", self.arrival, ARRIVALS),
        ):
            if value not in allowed:
                problems.append(f"{name} {value!r} is not one of {', '.join(allowed)}")
        bad = [k for k in self.saves_on if k not in SAVE_TRIGGERS]
        if bad:
            problems.append(f"saves_on {bad} are not among {', '.join(SAVE_TRIGGERS)}")
        if problems:
            raise SonicError(f"dialect {self.name!r}: " + "; ".join(problems))

    # ------------------------------------------------------------------ flags

    def default(self, dest: str, fallback: Any = None) -> Any:
        """This dialect's default for a flag dest (``fallback`` when it sets none)."""
        return copy.deepcopy(self.defaults.get(dest, fallback))

    def resolve_skip(self, given: int | None, rate: float, max_concurrency: int | None) -> int:
        """--skip-first/last-n-requests when not given: 0 (a dialect may default otherwise)."""
        return 0 if given is None else given

    def describe(self) -> dict[str, Any]:
        """The conventions as a JSON-able dict, for recording in results and the fairness
        signature: exactly the rules that the run applies."""
        return {
            "compat": self.name,
            "range_ratio_semantics": self.dataset_rules.range_ratio,
            "temperature_default": self.default("temperature"),
            "ignore_eos_policy": self.ignore_eos_policy,
            "include_usage": list(self.body.include_usage),
            **{k: v for k, v in self.metric_rules.as_dict().items()},
            "arrival": self.arrival,
        }

    # ------------------------------------------------------------------ save and exit

    def should_save(self, output: Any) -> bool:
        """Whether a result file is written, from the run's OutputArgs."""
        return any(bool(getattr(output, dest)) for dest in self.saves_on)

    def outcome(self, metrics: BenchmarkMetrics, num_prompts: int) -> Outcome:
        """Exit code and partial marker. An interrupted run exits 130; a run in which nothing
        succeeded measured nothing about the engine and exits 1 in every dialect."""
        m = metrics
        reasons: list[str] = []
        if m.cancelled:
            reasons.append("interrupted: dispatch stopped before the run finished")
        if m.failed:
            reasons.append(
                f"{m.failed} of {m.num_requests} requests failed"
                + (f" (most often: {common})" if (common := _most_common_error(m)) else "")
            )
        excluded = m.cut_off if self.metric_rules.cut_off == "excluded" else 0
        expected = num_prompts - excluded
        if m.cut_off:
            reasons.append(
                f"{m.cut_off} requests were cut off by --max-benchmark-duration-s "
                f"({'left out of every count' if excluded else 'counted as failed'})"
            )
        if m.num_requests + excluded < num_prompts:
            reasons.append(f"{m.num_requests} of {num_prompts} prompts were dispatched")
        if m.cancelled:
            code = EXIT_INTERRUPTED
        elif m.num_requests and not m.completed:
            code = 1
        elif self.strict_exit and (m.failed or m.completed < expected):
            code = 1
        else:
            code = 0
        return Outcome(exit_code=code, partial=bool(reasons), reasons=tuple(reasons))

    # ------------------------------------------------------------------ files

    def result_filename(self, info: RunInfo, when: datetime) -> str:
        raise NotImplementedError

    # ------------------------------------------------------------------ documents

    def build_result(self, metrics: BenchmarkMetrics, info: RunInfo) -> dict[str, Any]:
        """The result document, key-exact in the tool's order, ``sonic`` last."""
        raise NotImplementedError

    def add_telemetry(self, doc: dict[str, Any], telemetry: Any) -> None:
        """The tool's own keys for GPU/CPU/engine telemetry (``sonic.telemetry`` is added by
        the caller). Default: none."""

    def add_steady_state(self, doc: dict[str, Any], state: Any) -> None:
        """The tool's own steady-state keys from sonic's window (``sonic.metrics.steady``;
        ``sonic.steady_state`` is added by the caller). Default: none."""

    def read_metrics(self, doc: dict[str, Any]) -> dict[str, float]:
        """The normalised columns of ``sonic.analysis`` from a document of this dialect:
        every catalogue metric from the key this dialect writes it under."""
        from sonic.metrics.catalogue import read_columns

        return read_columns(doc, self.metric_keys, self.latency_stems)

    def owns(self, doc: dict[str, Any]) -> bool:
        """Whether a document without a ``sonic.compat`` word looks like this dialect's."""
        return False

    # ------------------------------------------------------------------ console

    def console_lines(self, metrics: BenchmarkMetrics, info: RunInfo) -> list[str]:
        raise NotImplementedError


def _most_common_error(metrics: BenchmarkMetrics, width: int = 160) -> str | None:
    counts: dict[str, int] = {}
    for _, err in metrics.errors():
        line = err.strip().splitlines()[0][:width] if err.strip() else ""
        if line:
            counts[line] = counts.get(line, 0) + 1
    return max(counts, key=lambda k: counts[k]) if counts else None


def rate_str(rate: float) -> str:
    """A rate in file names: ``inf`` or Python's float text (``4.0``)."""
    return "inf" if math.isinf(rate) else str(float(rate))
