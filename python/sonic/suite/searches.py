"""Search scenarios of a suite: each engine's capacity search, resumable, its probes listed in
the manifest as runs (so ``sonic.load_results`` has them) and its answer under ``searches``.

The suite's config hash already guarantees that a resumed suite asks the same question, so a
search resumes from its ``search.json`` without re-checking the run settings (the engine's port
may differ from the last session's).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from sonic.errors import SonicError
from sonic.search.plan import CONCURRENCY
from sonic.search.runner import EXIT_INTERRUPTED, STATE_FILE, load_state, open_state, run_search
from sonic.search.slo import parse_slos
from sonic.suite import plan as P

if TYPE_CHECKING:
    from sonic.suite.engines import EngineSession

PROBE_FILE = "probe.json"  # the name the flags carry; each probe names its own file


def search_finished(root, s: P.SearchRun) -> bool:
    """Whether ``s`` reached an answer in an earlier session."""
    path = root / s.rel_dir / STATE_FILE
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("status") is not None
    except (OSError, ValueError):
        return False


def run_search_scenario(
    runner: Any,
    session: EngineSession,
    s: P.SearchRun,
    out: TextIO,
    before_probe: Callable[[], None] | None = None,
) -> int:
    """Run (or resume) one engine's search; returns its exit code (130: interrupted)."""
    e = session.engine
    p = next(x for x in runner.plans if x.name == s.scenario)
    search = p.scenario.search
    assert search is not None
    spec = search.spec()
    slos = parse_slos(search.slo, attainment=search.attainment is not None)
    directory = runner.rd.root / s.rel_dir
    directory.mkdir(parents=True, exist_ok=True)
    rate, conc = p.first_point()
    flags = P.run_flags(
        runner.cfg,
        e,
        p,
        url=session.url,
        model=session.request_model(),
        request_rate=rate,
        max_concurrency=conc,
        result_dir=str(directory),
        result_filename=PROBE_FILE,
        server_args=session.server_args,
        metrics_url=session.metrics_url,
    )
    args = P.parse_flags(e, p, flags)
    wl = runner.workloads.get(args)
    spec, note = spec.within_requests(len(wl.samples))
    if note:
        print(f"{s.id}: {note}", file=out)
    resume = (directory / STATE_FILE).is_file()
    fingerprint = load_state(directory).run if resume else {"suite": runner.cfg.name}
    state = open_state(directory, spec, slos, search.attainment, fingerprint, resume=resume)
    try:
        return run_search(
            args,
            state,
            directory,
            tokenizer=wl.tokenizer,
            samples=wl.samples,
            simulated=session.simulated,
            out=out,
            resume_hint="sonic suite run --resume",
            before_probe=before_probe,
        )
    except SonicError as exc:
        record(runner, s, wl.fingerprint, args.dialect.name, session.simulated, error=str(exc))
        raise
    finally:
        if (directory / STATE_FILE).is_file():
            record(runner, s, wl.fingerprint, args.dialect.name, session.simulated)


def record(
    runner: Any,
    s: P.SearchRun,
    fingerprint: str,
    dialect: str,
    simulated: bool,
    *,
    error: str | None = None,
) -> None:
    """The search's probes as manifest runs and its answer under ``searches``."""
    directory = runner.rd.root / s.rel_dir
    state = load_state(directory)
    for p in state.probes:
        rate: Any = "inf" if state.spec.over == CONCURRENCY else p.load
        conc = int(p.load) if state.spec.over == CONCURRENCY else None
        file = directory / p.result_file if p.result_file else None
        raw = None
        if file is not None:
            candidate = file.with_name(file.name[: -len(".json")] + ".requests.jsonl")
            raw = runner.rd.rel(candidate) if candidate.is_file() else None
        runner.manifest.set_run(
            {
                "id": f"{s.id}/probe-{p.index:02d}",
                "engine": s.engine,
                "scenario": s.scenario,
                "dataset": s.dataset,
                "request_rate": rate,
                "max_concurrency": conc,
                "repeat": p.repeat + 1,
                "status": "ok" if p.exit_code == 0 else "partial",
                "file": runner.rd.rel(file) if file is not None else None,
                "raw_file": raw,
                "error": None,
                "dialect": dialect,
                "fingerprint": fingerprint,
                "simulated": simulated,
                "search": s.id,
                "completed": p.completed,
                "failed": p.failed,
            }
        )
    searches = runner.manifest.doc.setdefault("searches", {})
    searches[s.id] = {
        "engine": s.engine,
        "scenario": s.scenario,
        "status": "failed" if error else state.status,
        "error": error,
        "capacity": state.capacity,
        "capacity_ci": list(state.capacity_ci) if state.capacity_ci else None,
        "unit": state.spec.unit,
        "slo": state.slo_text,
        "probes": len(state.probes),
        "file": runner.rd.rel(directory / STATE_FILE),
        "answer": state.answer(),
    }
    runner.manifest.save()


__all__ = ["EXIT_INTERRUPTED", "record", "run_search_scenario", "search_finished"]
