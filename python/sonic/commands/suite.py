"""``sonic suite run|setup|lock SUITE.toml``: the fair comparison suite (see ``sonic.suite``)."""

from __future__ import annotations

import argparse
from typing import NoReturn

USAGE_EPILOG = """\
Runs every scenario of SUITE.toml against each engine in turn (one server at a time, same
prompts for every engine), after validating that the comparison is fair. Results go to
OUTPUT_DIR/<timestamp>-<suite>/ (manifest.json, validation.json, runs/, logs/, report).
"""

RUN_EPILOG = (
    USAGE_EPILOG
    + """
Ctrl-C or SIGTERM at any point stops the engine server, keeps every finished run and exits
130 with the --resume command to continue; a run cut short is run again by the resume. Each
server runs in its own process group and is recorded (in $XDG_RUNTIME_DIR/sonic-bench/servers,
else the sonic cache directory) until it is stopped: a suite that finds a record whose suite
died (kill -9) stops that server's group first and says so.
"""
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        from sonic.errors import SonicError

        raise SonicError(message.splitlines()[0] if message else "bad arguments")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sonic suite",
        description="The fair comparison suite.",
        epilog=USAGE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    run = sub.add_parser(
        "run",
        help="validate, then run every engine x scenario",
        description="Validate SUITE.toml, then run every engine x scenario x rate x repeat.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    run.error = parser.error  # type: ignore[method-assign]
    run.add_argument("config", metavar="SUITE.toml", help="the suite file")
    run.add_argument(
        "--quick", action="store_true", help="1 and 2 req/s x 50 prompts (or the file's [quick])"
    )
    run.add_argument(
        "--output-dir",
        default="results",
        metavar="DIR",
        help="parent of the results directory (default: results)",
    )
    run.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the results directory DIR, skipping finished runs (same config only)",
    )
    run.add_argument(
        "--allow-unfair",
        action="store_true",
        help="run even when validation finds the comparison unfair (reported prominently)",
    )
    run.add_argument("--engines", metavar="A,B", help="only these engines (comma-separated names)")
    run.add_argument(
        "--dry-run", action="store_true", help="print what would be launched and run, start nothing"
    )
    run.add_argument("--verbose", action="store_true", help="print each run's full result banner")
    setup = _venv_command(
        sub,
        parser,
        "setup",
        help="install each engine into its own virtualenv from the file's pinned spec",
        description="Create (or reuse) one virtualenv per engine from its `install` spec, under "
        "the sonic cache directory (venvs/<package>-<spec hash>), and record the versions.",
    )
    setup.add_argument(
        "--force", action="store_true", help="rebuild the virtualenvs even when they are complete"
    )
    lock = _venv_command(
        sub,
        parser,
        "lock",
        help="record each engine's constraints (lock) file from a known-good install",
        description="For each engine with `install` and `constraints`: install its spec without "
        "the lock (or reuse that virtualenv when complete), then write its `pip freeze` (less "
        "pip, setuptools, wheel and local/editable lines) to the constraints file. `sonic suite "
        "setup` then passes the file to every pip install as -c. The lock is specific to the "
        "Python version and platform it was recorded on.",
    )
    lock.add_argument(
        "--force",
        action="store_true",
        help="re-resolve from today's releases even when an unlocked install is cached",
    )
    return parser


def _venv_command(sub, parser, name: str, *, help: str, description: str):
    """A subcommand over the engines' virtualenvs: SUITE.toml and --engines."""
    cmd = sub.add_parser(name, help=help, description=description, allow_abbrev=False)
    cmd.error = parser.error  # type: ignore[method-assign]
    cmd.add_argument("config", metavar="SUITE.toml", help="the suite file")
    cmd.add_argument("--engines", metavar="A,B", help="only these engines (comma-separated)")
    return cmd


def _engine_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    engines = [n.strip() for n in value.split(",") if n.strip()]
    if not engines:
        from sonic.errors import SonicError

        raise SonicError("--engines: expected comma-separated engine names")
    return engines


def main(argv: list[str]) -> int:
    parser = _parser()
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    ns = parser.parse_args(argv)
    if ns.action == "setup":
        from sonic.suite.provision import setup_suite

        return setup_suite(ns.config, engines=_engine_list(ns.engines), force=ns.force)
    if ns.action == "lock":
        from sonic.suite.provision import lock_suite

        return lock_suite(ns.config, engines=_engine_list(ns.engines), force=ns.force)
    if ns.action != "run":
        parser.print_help()
        return 2
    from sonic.suite.runner import SuiteOptions, run_suite

    engines = _engine_list(ns.engines)
    opts = SuiteOptions(
        quick=ns.quick,
        output_dir=ns.output_dir,
        resume=ns.resume,
        allow_unfair=ns.allow_unfair,
        engines=engines,
        dry_run=ns.dry_run,
        verbose=ns.verbose,
    )
    return run_suite(ns.config, opts)
