"""``sonic validate SUITE.toml``: is the comparison fair, and can it run here?"""

from __future__ import annotations

import argparse
from typing import NoReturn


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        from sonic.errors import SonicError

        raise SonicError(message.splitlines()[0] if message else "bad arguments")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sonic validate",
        description=(
            "Check a suite file before spending GPU hours: environment, model and tokenizer, "
            "identical workloads, fair settings, client capacity; with servers (started "
            "briefly unless external): health, /v1/models, reported settings and a "
            "response-consistency probe. Exit 0 when usable, 1 when a check fails."
        ),
        allow_abbrev=False,
    )
    parser.add_argument("config", metavar="SUITE.toml", help="the suite file")
    parser.add_argument("--output", metavar="FILE", help="write the checks as JSON to FILE")
    parser.add_argument(
        "--allow-unfair",
        action="store_true",
        help="fairness failures do not fail validation (they are still reported)",
    )
    parser.add_argument(
        "--no-servers", action="store_true", help="skip the checks that need servers up"
    )
    parser.add_argument("--quick", action="store_true", help="validate the --quick scenarios")
    parser.add_argument("--engines", metavar="A,B", help="only these engines")
    return parser


def main(argv: list[str]) -> int:
    ns = _parser().parse_args(argv)
    from sonic.suite.validate_cmd import validate_suite

    engines = None
    if ns.engines is not None:
        engines = [n.strip() for n in ns.engines.split(",") if n.strip()]
    return validate_suite(
        ns.config,
        output=ns.output,
        allow_unfair=ns.allow_unfair,
        servers=not ns.no_servers,
        quick=ns.quick,
        engines=engines,
    )
