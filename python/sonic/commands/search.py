"""``sonic search``: the highest load a server carries within its SLOs.

Takes every ``sonic run`` flag (target, dataset, sampling, dialect) plus the search's own;
each probe is one full run at one load, kept as a result file in the search directory.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

DESCRIPTION = """\
Find the highest load (request rate, or with --search-over concurrency the highest
max-concurrency) at which every SLO holds. The search brackets the capacity by doubling (or
halving) the load, bisects the bracket to --search-resolution, then repeats the highest load
that met the SLOs --confirm-repeats times; a repeat that misses sends the search lower. Each
probe is a full `sonic run` with its warm-up, saved as a result file in --search-dir with its
console summary beside it; search.json holds every verdict, so an interrupted search continues
with --resume. The capacity's 95% CI comes from a bootstrap over each probe's requests.

Failed requests count as infinitely slow: an engine that drops requests under load does not
meet an SLO by dropping them. Use enough --num-prompts per probe for the statistic you bound
(a p99 needs at least 100 requests; the search notes when it has fewer).

All `sonic run` flags apply (see `sonic run --help`); --request-rate / --max-concurrency give
the first load probed.

example:
  sonic search --backend vllm --base-url http://gpu:8000 --model M --dataset-name random \\
      --random-input-len 512 --random-output-len 128 --num-prompts 300 \\
      --slo ttft:p99<=500ms,tpot:p99<=50ms
"""


def _parser() -> argparse.ArgumentParser:
    from sonic.search.plan import SEARCH_OVER, SearchSpec

    d = SearchSpec()
    p = argparse.ArgumentParser(
        prog="sonic search",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
        add_help=False,
    )
    p.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    p.add_argument(
        "--slo",
        action="append",
        metavar="SPEC",
        help="objectives, comma-separated: METRIC:STAT<=VALUE[ms|s|us] with METRIC one of "
        "ttft, tpot, itl, e2el and STAT pNN, mean or median (e.g. ttft:p99<=500ms,tpot:p99<=50ms); "
        "with --slo-attainment, METRIC<=VALUE bounds each request",
    )
    p.add_argument(
        "--slo-attainment",
        type=float,
        metavar="SHARE",
        help="goodput-style: a load meets the SLOs when at least SHARE (0-1] of its requests "
        "meet every bound",
    )
    p.add_argument(
        "--search-over",
        choices=SEARCH_OVER,
        default=d.over,
        help="search the request rate (default) or the max-concurrency (all requests at once)",
    )
    p.add_argument("--search-min", type=float, help="lowest load probed (default: start/16; 1)")
    p.add_argument("--search-max", type=float, help=f"highest load probed (default {d.maximum:g})")
    p.add_argument(
        "--search-resolution",
        type=float,
        default=d.resolution,
        help="relative width of the final rate bracket (default %(default)s = 5%%); "
        "a concurrency always resolves to 1",
    )
    p.add_argument(
        "--confirm-repeats",
        type=int,
        default=d.confirm_repeats,
        help="extra runs of the load found, each of which must meet the SLOs (default %(default)s)",
    )
    p.add_argument(
        "--search-max-probes",
        type=int,
        default=d.max_probes,
        help="stop after this many probes (default %(default)s)",
    )
    p.add_argument(
        "--search-dir",
        help="where probes and search.json go (default: RESULT_DIR/search-TIMESTAMP)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the search in --search-dir from its finished probes",
    )
    return p


def _spec(ns: argparse.Namespace, args) -> object:
    from sonic.errors import SonicError
    from sonic.search.plan import CONCURRENCY, SearchSpec

    tr = args.traffic
    if len(tr.request_rates) > 1 or len(tr.max_concurrencies) > 1:
        raise SonicError(
            "sonic search probes one load at a time: give one --request-rate and "
            "one --max-concurrency (the search chooses the loads)"
        )
    if tr.ramp_up_strategy:
        raise SonicError(
            "--ramp-up-strategy changes the load during a run; a capacity search "
            "needs a steady load per probe"
        )
    if ns.search_over == CONCURRENCY:
        if "request_rate" in args.explicit and not math.isinf(tr.request_rates[0]):
            raise SonicError(
                "--search-over concurrency sends every request at once: drop "
                "--request-rate (or search the rate)"
            )
        start = float(tr.max_concurrencies[0] or 1)
        minimum = 1.0 if ns.search_min is None else ns.search_min
    else:
        rate = tr.request_rates[0]
        start = rate if "request_rate" in args.explicit and math.isfinite(rate) else 1.0
        minimum = start / 16.0 if ns.search_min is None else ns.search_min
    maximum = SearchSpec().maximum if ns.search_max is None else ns.search_max
    if not (minimum > 0 and maximum >= minimum and minimum <= start <= maximum):
        raise SonicError(
            f"the search needs 0 < --search-min ({minimum:g}) <= start ({start:g}) <= "
            f"--search-max ({maximum:g})"
        )
    if not 0 < ns.search_resolution < 1:
        raise SonicError("--search-resolution must lie between 0 and 1 (e.g. 0.05 = 5%)")
    if ns.confirm_repeats < 0 or ns.search_max_probes < 1:
        raise SonicError("--confirm-repeats must be >= 0 and --search-max-probes >= 1")
    return SearchSpec(
        over=ns.search_over,
        start=start,
        minimum=minimum,
        maximum=maximum,
        resolution=ns.search_resolution,
        confirm_repeats=ns.confirm_repeats,
        max_probes=ns.search_max_probes,
    )


def main(argv: list[str]) -> int:
    parser = _parser()
    ns, rest = parser.parse_known_args(argv)
    if ns.help:
        parser.print_help()
        return 0
    from sonic.errors import SonicError

    if not ns.slo:
        raise SonicError("sonic search needs --slo, e.g. --slo ttft:p99<=500ms,tpot:p99<=50ms")
    if ns.slo_attainment is not None and not 0 < ns.slo_attainment <= 1:
        raise SonicError("--slo-attainment must lie in (0, 1], e.g. 0.99")
    from sonic.benchmark import prepare_run
    from sonic.compat import parse_run_args
    from sonic.search.runner import open_state, run_fingerprint, run_search
    from sonic.search.slo import parse_slos

    slos = parse_slos(ns.slo, attainment=ns.slo_attainment is not None)
    args = parse_run_args(rest)
    spec = _spec(ns, args)
    if ns.resume and not ns.search_dir:
        raise SonicError("--resume needs --search-dir (the directory of the search to continue)")
    base = Path(args.output.result_dir or ".")
    directory = (
        Path(ns.search_dir) if ns.search_dir else base / time.strftime("search-%Y%m%d-%H%M%S")
    )
    args, tokenizer, samples, simulated = prepare_run(args)
    spec, note = spec.within_requests(len(samples))
    if note:
        print(f"sonic search: {note}")
    state = open_state(
        directory, spec, slos, ns.slo_attainment, run_fingerprint(args), resume=ns.resume
    )
    return run_search(
        args, state, directory, tokenizer=tokenizer, samples=samples, simulated=simulated
    )
