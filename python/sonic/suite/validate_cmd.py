"""``sonic validate``: the static checks, then (unless ``--no-servers``) each engine brought up
briefly, one at a time, for the live checks and the response-consistency probe."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from sonic.suite import plan as P
from sonic.suite.checks import FAIL, SUITE, Validation, engine_scope, print_summary
from sonic.suite.config import load_config
from sonic.suite.workloads import Workloads


def validate_suite(
    config_path: str,
    *,
    output: str | None = None,
    allow_unfair: bool = False,
    servers: bool = True,
    quick: bool = False,
    engines: list[str] | None = None,
    out: TextIO | None = None,
) -> int:
    from sonic.suite.validate import (
        check_consistency,
        check_reported,
        exit_code,
        static_checks,
    )

    out = sys.stdout if out is None else out
    cfg = load_config(config_path).select(engines)
    plans = P.scenario_plans(cfg, quick)
    v = Validation(allow_unfair=allow_unfair, out=out)
    print(f"validating {cfg.path} ({len(cfg.engines)} engines, {len(plans)} scenarios)", file=out)
    static_checks(cfg, plans, v, Workloads())
    if servers and not v.failures(SUITE):
        answers, reported = live_round(cfg, v, out)
        check_reported(reported, v)
        check_consistency(answers, v)
    print_summary(v, out)
    if output:
        v.write(Path(output))
        print(f"checks written to {output}", file=out)
    return exit_code(v)


def live_round(cfg, v: Validation, out: TextIO) -> tuple[dict, dict]:
    """Start each engine in turn (logs to a temporary directory), check it, stop it."""
    from sonic.suite.engines import EngineSession
    from sonic.suite.lifecycle import EngineFailed
    from sonic.suite.validate import check_live, probe_engine

    answers: dict = {}
    reported: dict = {}
    logs = Path(tempfile.mkdtemp(prefix="sonic-validate-"))
    try:
        for e in cfg.engines:
            if v.failures(engine_scope(e.name)):
                print(f"  engine {e.name}: not started (see the failures above)", file=out)
                continue
            session = EngineSession(cfg, e, logs / f"{e.name}.log")
            if not e.external:
                print(f"  starting {e.name} (up to {_timeout(e):g} s)...", file=out, flush=True)
            try:
                session.start()
                check_live(session, v)
                reported[e.name] = dict(session.reported)
                answers[e.name] = probe_engine(session, v)
            except EngineFailed as exc:
                v.add(
                    f"engine.{e.name}.health",
                    FAIL,
                    str(exc),
                    "see the log tail in the details; raise ready_timeout_s if it only needs "
                    "longer",
                    {"log_tail": exc.log_tail},
                    scope=engine_scope(e.name),
                )
                for line in exc.log_tail.splitlines()[-10:]:
                    print(f"        | {line}", file=out)
            finally:
                session.stop()
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    return answers, reported


def _timeout(e) -> float:
    from sonic.suite.engines import ready_timeout

    return ready_timeout(e)
