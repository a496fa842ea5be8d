"""A capacity search run end to end: probe, judge, persist, decide, report.

Each probe is a full ``sonic run`` at one load (its warm-up, its result file in the search
directory, its console summary beside it as ``.txt``). After every probe the search state
(``search.json``) is rewritten atomically, so an interrupted search resumes with ``--resume``
from the probes it finished; the probe that was cut short is run again.
"""

from __future__ import annotations

import io
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from sonic.compat.runargs import RunArgs
from sonic.errors import SonicError
from sonic.search.plan import (
    CAPPED,
    CONCURRENCY,
    FOUND,
    LIMIT,
    NONE,
    SearchSpec,
    Step,
    capacity_samples,
    next_step,
)
from sonic.search.slo import LEVEL, N_BOOT, SLO, Verdict, judge

STATE_FILE = "search.json"
STATE_FORMAT = 1
EXIT_INTERRUPTED = 130
# client_args keys a probe sets itself (or drawn per run): not part of what must match on
# --resume.
_PROBE_KEYS = (
    "request_id_prefix",
    "request_rate",
    "max_concurrency",
    "result_dir",
    "result_filename",
    "save_result",
    "always_save_result",
    "disable_tqdm",
)


@dataclass
class Probe:
    """One run of the search: its load, the repeat number at that load, and its verdict."""

    index: int
    load: float
    repeat: int
    verdict: Verdict
    result_file: str | None
    exit_code: int
    completed: int
    failed: int
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "load": self.load,
            "repeat": self.repeat,
            "verdict": self.verdict.to_dict(),
            "result_file": self.result_file,
            "exit_code": self.exit_code,
            "completed": self.completed,
            "failed": self.failed,
            "duration_s": self.duration_s,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Probe:
        return cls(
            index=int(d["index"]),
            load=float(d["load"]),
            repeat=int(d["repeat"]),
            verdict=Verdict.from_dict(d["verdict"]),
            result_file=d.get("result_file"),
            exit_code=int(d["exit_code"]),
            completed=int(d["completed"]),
            failed=int(d["failed"]),
            duration_s=float(d["duration_s"]),
        )


@dataclass
class SearchState:
    """Everything ``search.json`` holds: the question, the probes, and (once done) the answer."""

    spec: SearchSpec
    slos: list[SLO]
    attainment: float | None
    run: dict[str, Any]  # the run settings every probe shares (secrets scrubbed)
    probes: list[Probe] = field(default_factory=list)
    status: str | None = None  # found | none | capped | limit; None while running
    capacity: float | None = None
    capacity_ci: tuple[float, float] | None = None
    capacity_samples: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def slo_text(self) -> str:
        words = " and ".join(s.label for s in self.slos)
        if self.attainment is None:
            return words
        return f"{self.attainment:.1%} of requests within {words}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "sonic_search": STATE_FORMAT,
            "spec": self.spec.to_dict(),
            "slos": [s.to_dict() for s in self.slos],
            "slo_text": self.slo_text,
            "attainment": self.attainment,
            "run": self.run,
            "probes": [p.to_dict() for p in self.probes],
            "status": self.status,
            "capacity": self.capacity,
            "capacity_unit": self.spec.unit,
            "capacity_ci": None if self.capacity_ci is None else list(self.capacity_ci),
            "ci_level": LEVEL,
            "capacity_samples": [float(x) for x in self.capacity_samples],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchState:
        if d.get("sonic_search") != STATE_FORMAT:
            raise SonicError("not a sonic search state file (or from another sonic version)")
        ci = d.get("capacity_ci")
        return cls(
            spec=SearchSpec.from_dict(d["spec"]),
            slos=[SLO.from_dict(s) for s in d["slos"]],
            attainment=d.get("attainment"),
            run=dict(d.get("run", {})),
            probes=[Probe.from_dict(p) for p in d.get("probes", [])],
            status=d.get("status"),
            capacity=d.get("capacity"),
            capacity_ci=None if ci is None else (float(ci[0]), float(ci[1])),
            capacity_samples=np.asarray(d.get("capacity_samples", []), dtype=float),
        )

    def next(self) -> Step:
        return next_step(
            self.spec, [p.load for p in self.probes], [p.verdict.met for p in self.probes]
        )

    def conclude(self, step: Step) -> None:
        """Record the answer and its bootstrap CI over the probes."""
        self.status, self.capacity = step.status, step.capacity
        samples = capacity_samples(
            [p.load for p in self.probes], [p.verdict.boot_met for p in self.probes], N_BOOT
        )
        self.capacity_samples = samples
        if step.capacity is not None and samples.size:
            tail = (1.0 - LEVEL) / 2.0 * 100.0
            lo, hi = np.percentile(samples, [tail, 100.0 - tail])
            self.capacity_ci = (float(lo), float(hi))

    def answer(self) -> str:
        """One line: the capacity and how sure, or why there is none."""
        unit = self.spec.unit
        if self.status == FOUND and self.capacity is not None:
            ci = self.capacity_ci or (math.nan, math.nan)
            res = (
                f"resolution {self.spec.resolution:.0%}"
                if self.spec.over != CONCURRENCY
                else "resolution 1"
            )
            return (
                f"capacity: {self.capacity:g} {unit} (95% CI [{ci[0]:g}, {ci[1]:g}], {res}) "
                f"at {self.slo_text}"
            )
        if self.status == CAPPED:
            return (
                f"capacity: at least {self.capacity:g} {unit}, the highest load searched "
                f"(--search-max), meets {self.slo_text}"
            )
        if self.status == NONE:
            low = min(p.load for p in self.probes)
            return (
                f"no capacity: even {low:g} {unit} (--search-min) misses {self.slo_text}; "
                "the SLO cannot be met at any load searched"
            )
        if self.status == LIMIT:
            best = "none met" if self.capacity is None else f"best met {self.capacity:g} {unit}"
            return f"search stopped after {len(self.probes)} probes (--search-max-probes); {best}"
        return "search not finished"


def run_fingerprint(args: RunArgs) -> dict[str, Any]:
    """The settings every probe shares; a resumed search must be asked the same question."""
    d = args.client_args()
    for key in _PROBE_KEYS:
        d.pop(key, None)
    return json.loads(json.dumps(d, default=str))


def load_state(directory: Path) -> SearchState:
    path = directory / STATE_FILE
    try:
        return SearchState.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise SonicError(f"{path} does not exist: nothing to resume") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SonicError(f"cannot read search state {path}: {exc}") from None


def save_state(directory: Path, state: SearchState) -> Path:
    from sonic.results import write_atomic

    path = directory / STATE_FILE
    write_atomic(path, [json.dumps(state.to_dict(), indent=2, allow_nan=False)])
    return path


def open_state(
    directory: Path,
    spec: SearchSpec,
    slos: list[SLO],
    attainment: float | None,
    fingerprint: dict[str, Any],
    *,
    resume: bool,
) -> SearchState:
    """A fresh state, or (``resume``) the one in ``directory`` after checking it asks the
    same question of the same server with the same workload."""
    fresh = SearchState(spec, slos, attainment, fingerprint)
    if not resume:
        if (directory / STATE_FILE).exists():
            raise SonicError(
                f"{directory / STATE_FILE} exists: pass --resume to continue that search, "
                "or choose another --search-dir"
            )
        return fresh
    old = load_state(directory)
    mine, theirs = fresh.to_dict(), old.to_dict()
    for key in ("spec", "slos", "attainment"):
        if mine[key] != theirs[key]:
            raise SonicError(
                f"--resume: the search in {directory} used other {key} ({theirs[key]}); "
                "pass the same search flags or choose another --search-dir"
            )
    changed = sorted(
        k for k in set(fingerprint) | set(old.run) if fingerprint.get(k) != old.run.get(k)
    )
    if changed:
        raise SonicError(
            f"--resume: the search in {directory} ran with other settings "
            f"({', '.join(changed)}); pass the same flags or choose another --search-dir"
        )
    return old


def probe_args(args: RunArgs, spec: SearchSpec, load: float, directory: Path, name: str) -> RunArgs:
    """The run of one probe: the searched load set, its result file in the search dir."""
    tr = args.traffic
    if spec.over == CONCURRENCY:
        traffic = replace(tr, request_rates=(math.inf,), max_concurrencies=(int(load),))
    else:
        traffic = replace(
            tr, request_rates=(float(load),), max_concurrencies=tr.max_concurrencies[:1]
        )
    # Every probe replays the same prompts: without a reset, a later probe would be served from
    # an earlier one's prefix cache. Flush unless the user said not to (the suite resets itself).
    if "flush_prefix_cache" not in args.explicit:
        traffic = replace(traffic, flush_prefix_cache=True)
    output = replace(
        args.output,
        save_result=True,
        always_save_result=True,
        append_result=False,
        result_dir=str(directory),
        result_filename=name,
    )
    return replace(args, traffic=traffic, output=output)


def probe_name(index: int, spec: SearchSpec, load: float, repeat: int) -> str:
    tag = f"c{int(load)}" if spec.over == CONCURRENCY else f"{load:g}qps"
    return f"probe-{index:02d}-{tag}" + (f"-r{repeat}" if repeat else "")


def run_search(
    args: RunArgs,
    state: SearchState,
    directory: Path,
    *,
    tokenizer: Any,
    samples: Any,
    simulated: bool,
    out: TextIO | None = None,
    resume_hint: str | None = None,
    before_probe: Callable[[], None] | None = None,
) -> int:
    """Probe until the search concludes; returns the exit code (0 when it concluded)."""
    from sonic.benchmark import run_point

    out = sys.stdout if out is None else out
    directory.mkdir(parents=True, exist_ok=True)
    for p in state.probes:
        print(
            f"sonic search: probe {p.index} at {p.load:g} {state.spec.unit}: "
            f"{p.verdict.summary()} (resumed)",
            file=out,
        )
    seed = args.dataset.seed
    while True:
        step = state.next()
        if step.load is None:
            break
        index = len(state.probes)
        repeat = sum(1 for p in state.probes if p.load == step.load)
        name = probe_name(index, state.spec, step.load, repeat)
        point = probe_args(args, state.spec, step.load, directory, name + ".json")
        console = io.StringIO()
        if before_probe is not None:
            before_probe()
        began = time.monotonic()
        outcome = run_point(point, tokenizer, samples, simulated=simulated, out=console)
        (directory / f"{name}.txt").write_text(console.getvalue(), encoding="utf-8")
        if outcome.exit_code == EXIT_INTERRUPTED:
            save_state(directory, state)
            print(
                f"sonic search: interrupted during probe {index}; the {len(state.probes)} "
                "finished probes are kept: continue with "
                + (resume_hint or f"--resume --search-dir {directory}"),
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
        m = outcome.metrics
        if m.completed == 0 and not any(p.verdict.met for p in state.probes):
            save_state(directory, state)
            first = next((e for _, e in m.errors(1)), "no response")
            raise SonicError(
                f"every request of probe {index} at {step.load:g} {state.spec.unit} failed "
                f"({first}): the server is not serving, so there is no capacity to search"
            )
        verdict = judge(m, state.slos, attainment=state.attainment, seed=seed + index)
        probe = Probe(
            index=index,
            load=step.load,
            repeat=repeat,
            verdict=verdict,
            result_file=None if outcome.result_path is None else Path(outcome.result_path).name,
            exit_code=outcome.exit_code,
            completed=m.completed,
            failed=m.failed,
            duration_s=round(time.monotonic() - began, 3),
        )
        state.probes.append(probe)
        save_state(directory, state)
        label = f"{step.load:g} {state.spec.unit}" + (f" (repeat {repeat})" if repeat else "")
        print(f"sonic search: probe {index} at {label}: {verdict.summary()}", file=out, flush=True)
        for note in verdict.notes:
            print(f"sonic search:   note: {note}", file=out)
    state.conclude(step)
    save_state(directory, state)
    print(f"sonic search: {state.answer()}", file=out)
    print(f"sonic search: probes and state in {directory}", file=out)
    try:
        from sonic.search.plot import plot_search

        png = plot_search(state, directory)
        print(f"sonic search: plot {png}", file=out)
    except ImportError:  # matplotlib is a dependency; a broken install still gets the answer
        print("sonic search: no plot (matplotlib is not importable)", file=sys.stderr)
    return 0
