"""``sonic report DIR``: rebuild summary.md, report.html and plots/ from a results directory."""

from __future__ import annotations

import argparse

DESCRIPTION = (
    "Rebuild summary.md, report.html and plots/ of a suite results directory (also a partial "
    "one, from an interrupted suite) and print a short summary."
)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sonic report", description=DESCRIPTION)
    parser.add_argument("results_dir", metavar="DIR", help="a results/<timestamp>-<suite>/ folder")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="bootstrap seed (default: the suite's seed from manifest.json)",
    )
    args = parser.parse_args(argv)
    from sonic.report import build_report

    build_report(args.results_dir, quiet=args.quiet, seed=args.seed)
    return 0
