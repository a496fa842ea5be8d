"""``sonic suite run``: validate, then for each engine in turn start it, run every scenario ×
rate/concurrency × repeat against it with the same prompts, stop it, and keep everything in a
resumable results directory.

One engine is on the machine at a time. A failing engine (does not start, never ready, dies)
is recorded with the reason and its log tail, and the suite goes on with the next one.
Ctrl-C or SIGTERM, in any phase, stops the current server, keeps every finished run, writes
the manifest as ``interrupted`` and exits 130 with one line saying how to ``--resume`` (the
report is left to the resume or ``sonic report``: an interrupted suite should exit promptly).
Before anything starts, the servers of an earlier suite that died without stopping them
(``kill -9``) are stopped (``sonic.suite.leftovers``).
"""

from __future__ import annotations

import contextlib
import io
import math
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sonic.errors import SonicError
from sonic.suite import plan as P
from sonic.suite.checks import FAIL, Validation, engine_scope
from sonic.suite.config import EngineConfig, SuiteConfig, load_config
from sonic.suite.engines import EngineSession, health_path, launch_for, ready_timeout
from sonic.suite.layout import Manifest, ResultsDir, now_iso
from sonic.suite.lifecycle import EngineFailed, signals_deferred, stop_all
from sonic.suite.workloads import Workloads

EXIT_INTERRUPTED = 130


@dataclass
class SuiteOptions:
    quick: bool = False
    output_dir: str = "results"
    resume: str | None = None
    allow_unfair: bool = False
    engines: list[str] | None = None
    dry_run: bool = False
    verbose: bool = False


class Interrupts:
    """SIGINT and SIGTERM both raise KeyboardInterrupt in the main thread, so a suite stopped by
    a service manager (or ``kill``) cleans up exactly like one stopped with Ctrl-C. Which signal
    came is remembered: a layer below may take the KeyboardInterrupt as "stop this run" and
    return (the client cancels its run and hands back what it measured), and the suite must
    still stop (``check``)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.phase = "setup"  # what the suite is doing (set by the runner)
        self.during = ""  # the phase the first signal came in
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(s) is not signal.SIG_IGN:  # nohup, `&`: left ignored
                    self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._old.items():
            if handler is not None:
                signal.signal(s, handler)
        self._old = {}
        if self.signum is not None:
            # CPython remembers a KeyboardInterrupt that went through code run by exec() of a
            # string (dataclasses make their methods so) even once it is caught, and then ends
            # a `python -m` process with SIGINT instead of its exit code; such code clears it.
            exec("")

    def _handler(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum, self.during = signum, self.phase
        raise KeyboardInterrupt

    def check(self) -> None:
        """Raise KeyboardInterrupt if a signal came, even one a lower layer absorbed."""
        if self.signum is not None:
            raise KeyboardInterrupt

    @property
    def name(self) -> str:
        if self.signum == signal.SIGTERM:
            return "SIGTERM"
        return "Ctrl-C"


def run_suite(config_path: str, opts: SuiteOptions, out: TextIO | None = None) -> int:
    out = sys.stdout if out is None else out
    with Interrupts() as interrupts:
        return _run_suite(config_path, opts, out, interrupts)


def _run_suite(config_path: str, opts: SuiteOptions, out: TextIO, interrupts: Interrupts) -> int:
    full = load_config(config_path)
    cfg = full.select(opts.engines)
    plans = P.scenario_plans(cfg, opts.quick)
    chash = full.config_hash(opts.quick)
    if opts.dry_run:
        print_plan(cfg, plans, opts.quick, out)
        return 0

    if opts.resume:
        rd = ResultsDir.existing(opts.resume)
        manifest = Manifest.load(rd.manifest_path)
        if manifest.doc.get("config_hash") != chash:
            raise SonicError(
                f"--resume {rd.root}: the suite config changed since that run started "
                f"(config hash {str(manifest.doc.get('config_hash'))[:12]}… there, {chash[:12]}… "
                f"now{'; --quick differs' if manifest.doc.get('quick') != opts.quick else ''}); "
                "restore the config or start a new results directory"
            )
        manifest.doc["status"] = "running"
        manifest.doc["finished_at"] = None
        manifest.doc["allow_unfair"] = opts.allow_unfair
        manifest.doc.pop("error", None)
        validation = Validation.load(rd.validation_path, allow_unfair=opts.allow_unfair)
    else:
        from sonic.suite.lifecycle import gpu_info

        rd = ResultsDir.create(opts.output_dir, cfg.name)
        gpus = gpu_info()
        if gpus is not None:
            gpus = [{k: g[k] for k in ("index", "name", "memory_total_mib")} for g in gpus]
        manifest = Manifest.new(
            rd.manifest_path,
            suite=cfg.name,
            config_path=str(Path(config_path).resolve()),
            config_hash=chash,
            config=full.normalised(),
            seed=cfg.seed,
            quick=opts.quick,
            allow_unfair=opts.allow_unfair,
            gpu=gpus,
        )
        validation = Validation(allow_unfair=opts.allow_unfair)
    session: dict[str, Any] = {
        "started_at": now_iso(),
        "engines": cfg.engine_names,
        "argv": sys.argv[1:],
    }
    stopped = stop_leftovers(out)
    if stopped:
        session["leftovers_stopped"] = stopped
    manifest.doc["sessions"].append(session)
    manifest.save()
    validation.out = out
    runner = SuiteRunner(
        cfg,
        plans,
        rd,
        manifest,
        validation,
        opts,
        out,
        interrupts=interrupts,
        config_path=config_path,
    )
    return runner.run()


def stop_leftovers(out: TextIO) -> list[str]:
    """Before anything starts: stop the servers of earlier suites that died without stopping
    them (``sonic.suite.leftovers``), one line each."""
    from sonic.suite import leftovers

    lines = [x.line() for x in leftovers.reap()]
    for line in lines:
        print(f"sonic suite: {line}", file=out, flush=True)
    return lines


def ensure_alive(session: EngineSession, during: str) -> None:
    """Raise EngineFailed when the engine's server has exited (before its next run)."""
    if not session.alive():
        code = session.server.exit_code() if session.server else None
        raise EngineFailed(f"the server exited (code {code}) during {during}", session.log_tail())


def searches_text(n: int) -> str:
    return f"{n} search" + ("es" if n != 1 else "")


def print_plan(cfg: SuiteConfig, plans: list[P.ScenarioPlan], quick: bool, out: TextIO) -> None:
    """``--dry-run``: what would be launched and run; every run's flags are parsed."""
    from sonic.suite.engines import request_model

    mode = "quick" if quick else "full"
    print(
        f"suite {cfg.name} ({mode}): {len(cfg.engines)} engines, {len(plans)} scenarios", file=out
    )
    total = 0
    for e in cfg.engines:
        if e.external:
            print(f"engine {e.name}: external at {e.base_url or f'{e.host}:{e.port}'}", file=out)
        else:
            launch = launch_for(cfg, e, e.port or 0)
            port_note = "" if e.port else " (port 0 = a free port is picked at launch)"
            print(f"engine {e.name}: {shlex.join(launch.argv)}{port_note}", file=out)
            if e.env:
                print(f"  env: {', '.join(e.env_names)} (values not shown)", file=out)
        print(
            f"  health {health_path(e)}, ready timeout {ready_timeout(e):g} s, backend {e.backend}",
            file=out,
        )
        for p in plans:
            points = [p.first_point() + (1,)] if p.is_search else list(p.points())
            for rate, conc, _rep in points:
                flags = P.run_flags(
                    cfg,
                    e,
                    p,
                    url="http://127.0.0.1:8000",
                    model=request_model(e),
                    request_rate=rate,
                    max_concurrency=conc,
                )
                P.parse_flags(e, p, flags)
                total += 1
        for p in plans:
            if p.search_line():
                print(f"  scenario {p.name}: {p.scenario.dataset}, {p.search_line()}", file=out)
                continue
            rates = ", ".join(P.rate_text(r) for r in p.request_rates)
            concs = ", ".join("none" if c is None else str(c) for c in p.max_concurrencies)
            print(
                f"  scenario {p.name}: {p.scenario.dataset}, {p.num_prompts} prompts, "
                f"rates [{rates}], concurrency [{concs}], {p.repeats} repeat(s)",
                file=out,
            )
    searches = sum(len(P.searches_for(e, plans)) for e in cfg.engines)
    total -= searches  # a search's first probe was parsed above, not counted as a run
    also = f" and {searches} capacity searches" if searches else ""
    print(f"{total} runs{also}; nothing was started (--dry-run)", file=out)


@dataclass
class SuiteRunner:
    cfg: SuiteConfig
    plans: list[P.ScenarioPlan]
    rd: ResultsDir
    manifest: Manifest
    v: Validation
    opts: SuiteOptions
    out: TextIO
    workloads: Workloads = field(default_factory=Workloads)
    prepared: dict[tuple[str, str], Any] = field(default_factory=dict)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    reported: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "partial": 0, "failed": 0})
    engine_failures: int = 0
    total_runs: int = 0
    done_runs: int = 0
    interrupts: Interrupts = field(default_factory=Interrupts)
    config_path: str = ""
    pgids: list[int] = field(default_factory=list)  # of the servers this session started

    # ------------------------------------------------------------ top level

    def run(self) -> int:
        self.say(f"sonic suite {self.cfg.name}: results in {self.rd.root}")
        interrupted = False
        failed: BaseException | None = None
        try:
            self.interrupts.phase = "setup"
            self.validate()
            self.interrupts.check()  # the client self-check takes a Ctrl-C as "stop the check"
            for e in self.cfg.engines:
                self.run_engine(e)
        except KeyboardInterrupt:
            interrupted = True
        except BaseException as exc:  # recorded, then re-raised below
            failed = exc
        try:
            with signals_deferred():
                stop_all()  # normally none left: run_engine stops its own
                self.finish(interrupted, failed)
        except KeyboardInterrupt:
            interrupted = True  # during the cleanup, which has finished: stop here
        if failed is not None:
            raise failed
        if interrupted:
            self.summary()
            self.say_interrupted()
            return EXIT_INTERRUPTED
        self.interrupts.phase = "report"
        self.say("report: writing summary.md, report.html and plots")
        try:
            code = self.build_report()
        except KeyboardInterrupt:
            self.say_interrupted()
            return EXIT_INTERRUPTED
        self.summary()
        if self.engine_failures or self.counts["failed"]:
            return 1
        return code

    def summary(self) -> None:
        self.say(
            f"{self.counts['ok']} runs ok, {self.counts['partial']} partial, "
            f"{self.counts['failed']} failed"
            + (f", {self.engine_failures} engine(s) failed" if self.engine_failures else "")
            + f"; results in {self.rd.root}"
        )

    def say_interrupted(self) -> None:
        """One line on stderr: what was cut short, what is kept, how to go on."""
        from sonic.suite.lifecycle import group_members

        kept = len(self.manifest.finished(self.rd.root))
        left = [pid for pgid in self.pgids for pid in group_members(pgid)]
        servers = f"server processes still running: {left}" if left else "no server is left running"
        if self.interrupts.during == "report":
            todo = f"build the report with `sonic report {self.rd.root}`"
        else:
            resume = ["sonic", "suite", "run", self.config_path or "SUITE.toml"]
            resume += ["--resume", str(self.rd.root)] + (["--quick"] if self.opts.quick else [])
            resume += ["--engines", ",".join(self.opts.engines)] if self.opts.engines else []
            resume += ["--allow-unfair"] if self.opts.allow_unfair else []
            todo = f"continue with `{shlex.join(resume)}`"
        print(
            f"sonic suite: interrupted by {self.interrupts.name} during "
            f"{self.interrupts.during or self.interrupts.phase}; {servers}, "
            f"{kept} finished run(s) are kept in {self.rd.root}; {todo}",
            file=sys.stderr,
            flush=True,
        )

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def validate(self) -> None:
        from sonic.suite.validate import static_checks

        self.say("validation:")
        self.prepared = static_checks(self.cfg, self.plans, self.v, self.workloads)
        self.v.write(self.rd.validation_path)
        doc = self.manifest.doc
        doc["fair"] = self.v.fair
        # Merged, not replaced: a resume with --engines keeps the other engines' records.
        workloads = doc.setdefault("workloads", {})
        for p in self.plans:
            w = workloads.setdefault(p.name, {"fingerprints": {}})
            w.update({"dataset": p.scenario.dataset, "num_prompts": p.num_prompts})
            for e in self.cfg.engines:
                x = self.prepared.get((e.name, p.name))
                if x is not None and x.workload is not None:
                    w["fingerprints"][e.name] = x.workload.fingerprint
            w["identical"] = len(set(w["fingerprints"].values())) <= 1
        blocking = self.v.blocking()
        if blocking:
            doc["status"] = "failed"
            doc["error"] = "validation failed: " + "; ".join(c.name for c in blocking)
            doc["finished_at"] = now_iso()
            self.manifest.save()
            unfair = any(c.scope == "fairness" for c in blocking)
            hint = " (or pass --allow-unfair to run an unfair comparison anyway)" if unfair else ""
            raise SonicError(
                f"validation failed ({', '.join(c.name for c in blocking)}); see "
                f"{self.rd.validation_path}{hint}"
            )
        self.manifest.save()
        self.total_runs = sum(len(P.runs_for(e, self.plans)) for e in self.cfg.engines)

    def finish(self, interrupted: bool, failed: BaseException | None) -> None:
        from sonic.suite.validate import check_consistency, check_reported

        doc = self.manifest.doc
        if self.answers:
            check_consistency(self.answers, self.v)
        if self.reported:
            check_reported(self.reported, self.v)
        if doc.get("status") == "failed" and isinstance(failed, SonicError):
            pass  # validation already recorded why
        elif interrupted:
            doc["status"] = "interrupted"
        elif failed is not None:
            doc["status"] = "failed"
            doc["error"] = f"{type(failed).__name__}: {failed}"
        else:
            doc["status"] = "finished"
        doc["fair"] = self.v.fair
        doc["finished_at"] = now_iso()
        if doc["sessions"]:
            doc["sessions"][-1]["finished_at"] = doc["finished_at"]
            doc["sessions"][-1]["status"] = doc["status"]
        self.manifest.save()
        with contextlib.suppress(SonicError):
            self.v.write(self.rd.validation_path)

    def build_report(self) -> int:
        """``sonic.report.build_report(dir)`` when the report package is there."""
        try:
            from sonic.report import build_report
        except ImportError:
            return 0
        try:
            build_report(self.rd.root, out=self.out)
            return 0
        except SonicError as exc:
            print(f"sonic suite: report: {exc}", file=sys.stderr)
            return 1
        except Exception as exc:  # the results are safe on disk; say so instead of a traceback
            print(
                f"sonic suite: report failed ({type(exc).__name__}: {exc}); the results are "
                f"complete, rebuild the report with `sonic report {self.rd.root}`",
                file=sys.stderr,
            )
            return 1

    # ------------------------------------------------------------ one engine

    def run_engine(self, e: EngineConfig) -> None:
        from sonic.suite.searches import search_finished

        runs = P.runs_for(e, self.plans)
        finished = self.manifest.finished(self.rd.root)
        todo = [r for r in runs if r.id not in finished]
        searches = P.searches_for(e, self.plans)
        search_todo = [s for s in searches if not search_finished(self.rd.root, s)]
        self.done_runs += len(runs) - len(todo)
        entry = self.manifest.engine(e.name)
        entry.update(
            {
                "preset": e.preset,
                "external": e.external,
                "log": self.rd.rel(self.rd.log_path(e.name)),
                "env": e.env_names,
                "settings": e.settings.as_dict(),
                "simulated": bool(entry.get("simulated", e.preset == "sim")),
            }
        )
        entry.setdefault("version", None)
        entry.setdefault("error", None)
        if not todo and not search_todo:
            entry.setdefault("status", "ok")
            what = f"all {len(runs)} runs" + (
                f" and {searches_text(len(searches))}" if searches else ""
            )
            self.say(f"engine {e.name}: {what} already finished; not started")
            self.manifest.save()
            return
        # Only this session's static checks block an engine (live failures of an earlier
        # session are exactly what a resume retries).
        static = (f"engine.{e.name}.launch", f"engine.{e.name}.env")
        blocked = [c for c in self.v.engine_failures(e.name) if c.name in static]
        if blocked:
            why = "; ".join(f"{c.name}: {c.reason}" for c in blocked)
            self.fail_engine(entry, e, why, status="skipped")
            return
        session = EngineSession(self.cfg, e, self.rd.log_path(e.name))
        session.plan_launch()
        entry.update(
            {
                "argv": session.argv,
                "server_args": session.server_args,
                "base_url": session.url,
                "port": session.port,
                "metrics_url": session.metrics_url,
                "install": session.install_info(),
                "uncontrolled": session.launch.uncontrolled if session.launch else [],
                "status": "starting",
                "error": None,
                "started_at": now_iso(),
            }
        )
        entry.pop("interrupted", None)
        self.say(
            f"engine {e.name}: "
            + ("external at " + session.url if e.external else f"starting on {session.url}")
            + f" ({len(todo)} runs"
            + (f", {searches_text(len(search_todo))})" if search_todo else ")")
        )
        self.interrupts.phase = f"the start of engine {e.name}"
        try:
            try:
                session.launch_process()
                if session.server is not None:
                    entry["pid"] = session.server.pid
                    entry["pgid"] = session.server.pgid
                    self.pgids.append(session.server.pid)
                    self.interrupts.phase = f"the health wait of engine {e.name}"
                self.manifest.save()
                session.wait()
            except EngineFailed as exc:
                self.v.add(
                    f"engine.{e.name}.health",
                    FAIL,
                    str(exc),
                    f"see {self.rd.rel(self.rd.log_path(e.name))}; raise ready_timeout_s if it "
                    "only needs longer",
                    {"log_tail": exc.log_tail},
                    scope=engine_scope(e.name),
                )
                self.fail_engine(entry, e, str(exc), exc.log_tail)
                return
            self.engine_ready(session, entry)
            self.interrupts.phase = f"the runs of engine {e.name}"
            for run in todo:
                ensure_alive(session, "the runs")
                self.do_run(session, run)
            for search in search_todo:
                ensure_alive(session, "a search")
                self.do_search(session, search)
            entry["status"] = "ok"
            self.v.drop(f"engine.{e.name}.runtime")
        except EngineFailed as exc:
            self.v.add(
                f"engine.{e.name}.runtime",
                FAIL,
                str(exc),
                f"see {self.rd.rel(self.rd.log_path(e.name))}",
                {"log_tail": exc.log_tail},
                scope=engine_scope(e.name),
            )
            self.fail_engine(entry, e, str(exc), exc.log_tail)
        except KeyboardInterrupt:
            # Not the engine's fault: it stays "ok", marked as cut short.
            entry.update({"status": "ok", "interrupted": True, "error": "interrupted"})
            raise
        except BaseException as exc:
            entry.update({"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
            raise
        finally:
            if session.server is not None:
                self.interrupts.phase = f"the stop of engine {e.name}"
                stop = session.stop()
                entry["stop"] = stop
                entry["stopped_at"] = now_iso()
                how = stop.get("how", "")
                left = stop.get("left") or []
                self.say(
                    f"engine {e.name}: stopped ({how})"
                    + (f"; processes left: {left}" if left else "")
                )
            with contextlib.suppress(SonicError):
                self.manifest.save()
                self.v.write(self.rd.validation_path)

    def fail_engine(
        self,
        entry: dict[str, Any],
        e: EngineConfig,
        error: str,
        tail: str = "",
        status: str = "failed",
    ) -> None:
        """Record why an engine did not (fully) run; the suite goes on with the next one."""
        self.engine_failures += 1
        entry["status"] = status
        entry["error"] = error
        self.say(f"engine {e.name}: {status.upper()}: {error}; going on without it")
        if tail:
            for line in tail.splitlines()[-10:]:
                self.say(f"  | {line}")
        self.manifest.save()

    def engine_ready(self, session: EngineSession, entry: dict[str, Any]) -> None:
        from sonic.suite.validate import check_live, probe_engine

        e = session.engine
        check_live(session, self.v)
        self.reported[e.name] = dict(session.reported)
        self.answers[e.name] = probe_engine(session, self.v)
        entry.update(
            {
                "status": "running",
                "version": session.version,
                "simulated": session.simulated,
                "ready_s": session.ready_s,
                "served_models": session.models.ids if session.models else [],
                "reported": session.reported,
            }
        )
        note = " (simulated engine)" if session.simulated else ""
        version = f", version {session.version}" if session.version else ""
        self.say(f"engine {e.name}: ready in {session.ready_s:.1f} s{version}{note}")
        self.manifest.save()
        self.v.write(self.rd.validation_path)

    # ------------------------------------------------------------ one run

    def do_run(self, session: EngineSession, run: P.RunSpec) -> None:
        from sonic.benchmark import run_point

        e = session.engine
        p = next(x for x in self.plans if x.name == run.scenario)
        run_dir = self.rd.root / run.rel_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        filename = f"{run.stem}.json"
        for stale in (run_dir / filename, run_dir / f"{run.stem}.requests.jsonl"):
            stale.unlink(missing_ok=True)
        flags = P.run_flags(
            self.cfg,
            e,
            p,
            url=session.url,
            model=session.request_model(),
            request_rate=run.request_rate,
            max_concurrency=run.max_concurrency,
            result_dir=str(run_dir),
            result_filename=filename,
            server_args=session.server_args,
            metrics_url=session.metrics_url,
        )
        args = P.parse_flags(e, p, flags)
        wl = self.workloads.get(args)
        entry: dict[str, Any] = {
            "id": run.id,
            "engine": run.engine,
            "scenario": run.scenario,
            "dataset": run.dataset,
            "request_rate": "inf" if math.isinf(run.request_rate) else run.request_rate,
            "max_concurrency": run.max_concurrency,
            "repeat": run.repeat,
            "status": "failed",
            "file": None,
            "raw_file": None,
            "error": None,
            "dialect": args.dialect.name,
            "fingerprint": wl.fingerprint,
            "simulated": session.simulated,
            "started_at": now_iso(),
            "warnings": [],
        }
        expected = self.manifest.doc["workloads"].get(run.scenario, {}).get("fingerprints", {})
        if expected.get(e.name) not in (None, wl.fingerprint):
            entry["warnings"].append("workload differs from the one validated")
        why = self.reset_prefix_cache(session)
        if why:
            entry["warnings"].append(why)
        buf: TextIO = self.out if self.opts.verbose else io.StringIO()
        t = time.monotonic()
        interrupted = False
        try:
            outcome = run_point(
                args, wl.tokenizer, wl.samples, simulated=session.simulated, progress=False, out=buf
            )
        except SonicError as exc:
            entry["error"] = str(exc)
            outcome = None
        except KeyboardInterrupt:
            entry["error"] = "interrupted"
            entry["interrupted"] = True
            interrupted = True
            outcome = None
        if outcome is not None:
            self._record_outcome(entry, outcome)
            interrupted = interrupted or outcome.exit_code == EXIT_INTERRUPTED
        entry["finished_at"] = now_iso()
        entry["seconds"] = round(time.monotonic() - t, 3)
        self.manifest.set_run(entry)
        self.manifest.save()
        self.counts[entry["status"]] = self.counts.get(entry["status"], 0) + 1
        self.done_runs += 1
        self.say(self._run_line(run, entry, outcome))
        if interrupted:
            raise KeyboardInterrupt
        if entry["status"] == "failed" and not session.alive():
            raise EngineFailed("the server exited during a run", session.log_tail())

    def reset_prefix_cache(self, session: EngineSession) -> str | None:
        """Empty the engine's prefix cache when the engine asks for it (``reset_prefix_cache``),
        so that no run is served from an earlier one's cache; returns a warning, or None."""
        from sonic.suite import probes

        e = session.engine
        if not e.reset_prefix_cache:
            return None
        preset = session.preset
        path = e.reset_path or (preset.reset_path if preset else None)
        if path is None:
            return "reset_prefix_cache: no reset endpoint known (set reset_path)"
        why = probes.reset_prefix_cache(session.url, path)
        return f"prefix cache reset failed: {why}" if why else None

    def do_search(self, session: EngineSession, search: P.SearchRun) -> None:
        """One engine's capacity search; every probe starts from an empty prefix cache."""
        from sonic.suite.searches import run_search_scenario

        def before_probe() -> None:
            why = self.reset_prefix_cache(session)
            if why:
                self.say(f"{search.id}: {why}")

        self.say(f"{search.id}: searching")
        buf: TextIO = self.out if self.opts.verbose else io.StringIO()
        try:
            code = run_search_scenario(self, session, search, buf, before_probe=before_probe)
        except SonicError as exc:
            self.counts["failed"] += 1
            self.say(f"{search.id}: failed: {exc}")
            return
        answer = self.manifest.doc.get("searches", {}).get(search.id, {}).get("answer")
        self.say(f"{search.id}: {answer or 'no answer'}")
        if code == EXIT_INTERRUPTED:
            raise KeyboardInterrupt
        if code != 0 and not session.alive():
            raise EngineFailed("the server exited during a search", session.log_tail())

    def _record_outcome(self, entry: dict[str, Any], outcome: Any) -> None:
        m = outcome.metrics
        if outcome.result_path is not None:
            path = Path(outcome.result_path)
            entry["file"] = self.rd.rel(path)
            raw = path.with_name(path.name[: -len(".json")] + ".requests.jsonl")
            if raw.is_file():
                entry["raw_file"] = self.rd.rel(raw)
        entry["exit_code"] = outcome.exit_code
        entry["completed"] = m.completed
        entry["failed"] = m.failed
        if m.cancelled or outcome.exit_code == EXIT_INTERRUPTED:
            entry["status"] = "partial"
            entry["interrupted"] = True
            entry["error"] = "interrupted"
        elif m.completed == 0:
            entry["status"] = "failed"
            errors = m.errors(1)
            entry["error"] = errors[0][1] if errors else "no request completed"
        elif outcome.reasons:
            entry["status"] = "partial"
            entry["error"] = "; ".join(outcome.reasons)
        else:
            entry["status"] = "ok"
        if entry["file"] is None and entry["status"] != "failed":
            entry["status"] = "failed"
            entry["error"] = "no result file was written"

    def _run_line(self, run: P.RunSpec, entry: dict[str, Any], outcome: Any) -> str:
        head = f"[{self.done_runs}/{self.total_runs}] {run.id}: {entry['status']}"
        if outcome is None or outcome.metrics is None:
            return f"{head}: {entry.get('error')}"
        m = outcome.metrics
        ttft = m.stats["ttft"].mean
        tpot = m.stats["tpot"].mean
        parts = [
            f"{m.completed}/{m.num_requests} ok",
            f"{m.request_throughput:.2f} req/s",
            f"{m.output_throughput:.1f} tok/s",
        ]
        if ttft is not None:
            parts.append(f"TTFT {ttft * 1000:.1f} ms")
        if tpot is not None:
            parts.append(f"TPOT {tpot * 1000:.2f} ms")
        tail = f" ({entry['error']})" if entry.get("error") else ""
        return f"{head}: " + ", ".join(parts) + tail
