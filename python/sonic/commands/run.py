"""``sonic run`` (also plain ``sonic`` / ``python -m sonic``): one benchmark against a server."""

from __future__ import annotations


def main(argv: list[str]) -> int:
    from sonic.compat import parse_run_args

    if any(a in ("-h", "--help") for a in argv):
        from sonic.compat import format_run_help

        print(format_run_help())
        return 0
    args = parse_run_args(argv)
    from sonic.benchmark import run_benchmark

    return run_benchmark(args)
