"""Command dispatch for ``sonic`` / ``python -m sonic``.

``sonic [run] ARGS`` runs one benchmark (benchmark_serving.py-compatible flags); the other
subcommands each live in ``sonic.commands.<name>`` and are imported only when used, which keeps
``--help`` fast.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "run": "run one benchmark against a serving engine (default command)",
    "calibrate": "measure the client's own timing error on this host (self-certification)",
    "search": "find the highest load a server carries within SLOs (capacity search)",
    "sim": "start the embedded simulated OpenAI-compatible engine",
    "demo": "start `sonic sim` and run a short streamed benchmark against it",
    "suite": "run a fair comparison of several engines (sonic suite run SUITE.toml)",
    "validate": "check that a suite comparison is fair and can run here",
    "report": "rebuild summary.md, report.html and plots of a suite results directory",
}

USAGE = """usage: sonic [COMMAND] [OPTIONS]

Benchmarks for LLM serving engines.

commands:
{commands}

Without a command, `sonic` behaves like `sonic run` (vLLM `bench serve` / MAX
benchmark_serving.py flags). `sonic COMMAND --help` explains each command.
"""


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = "\n".join(f"  {name.ljust(width)}  {desc}" for name, desc in COMMANDS.items())
    return USAGE.format(commands=lines)


def main(argv: list[str] | None = None) -> int:
    from sonic.errors import SonicError

    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help", "help") and len(args) == 1:
        print(_usage())
        return 0
    if args and args[0] in ("-V", "--version"):
        from sonic import __version__

        print(f"sonic-bench {__version__}")
        return 0
    name = "run"
    if args and args[0] in COMMANDS:
        name = args.pop(0)
    module = importlib.import_module(f"sonic.commands.{name}")
    try:
        return int(module.main(args) or 0)
    except SonicError as exc:
        print(f"sonic {name}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"sonic {name}: interrupted", file=sys.stderr)
        return 130
