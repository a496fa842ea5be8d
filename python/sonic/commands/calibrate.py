"""``sonic calibrate``: the client's own timing error on this host, and how many streams the
host can time within 1 ms (see ``sonic.calibrate``)."""

from __future__ import annotations

import argparse
import json
import sys


def _streams(text: str) -> tuple[int, ...]:
    from sonic.calibrate import MAX_STREAMS

    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a comma list of integers, got {text!r}"
        ) from None
    if not values or any(not 1 <= v <= MAX_STREAMS for v in values):
        raise argparse.ArgumentTypeError(f"stream counts must lie in 1..{MAX_STREAMS}")
    return tuple(sorted(set(values)))


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def main(argv: list[str]) -> int:
    from sonic.calibrate import ACCURACY_BOUND_MS, CalibrationSpec

    d = CalibrationSpec()
    p = argparse.ArgumentParser(
        prog="sonic calibrate",
        description="Measure the client's timing error on this host against the embedded "
        "simulated engine in exact mode (first token after --ttft-ms, then one every "
        "--itl-ms, independent of load), at each stream count. The error includes the "
        "sim's own lateness, so it bounds the client's error from above. Prints chunks/s, "
        f"TTFT and ITL error and dispatch lag per stream count, and the highest count at "
        f"which the p99 TTFT error stays within {ACCURACY_BOUND_MS:g} ms. Every `sonic run` "
        "does a short calibration at its own concurrency and records it in its result.",
        allow_abbrev=False,
    )
    p.add_argument(
        "--streams",
        type=_streams,
        default=d.streams,
        help="comma list of concurrent streams (default 1,8,64,256)",
    )
    p.add_argument(
        "--requests-per-stream",
        type=_positive(int),
        default=d.requests_per_stream,
        help="requests each stream sends (default %(default)s)",
    )
    p.add_argument(
        "--ttft-ms",
        type=_positive(float),
        default=d.ttft_ms,
        help="exact first-token time of the sim (default %(default)s)",
    )
    p.add_argument(
        "--itl-ms",
        type=_positive(float),
        default=d.itl_ms,
        help="exact inter-token time of the sim (default %(default)s)",
    )
    p.add_argument(
        "--output-len",
        type=_positive(int),
        default=d.output_len,
        help="tokens per response (default %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print the measurements as JSON")
    ns = p.parse_args(argv)

    from sonic.calibrate import calibrate, capacity_streams, host_info

    spec = CalibrationSpec(
        streams=ns.streams,
        requests_per_stream=ns.requests_per_stream,
        ttft_ms=ns.ttft_ms,
        itl_ms=ns.itl_ms,
        output_len=ns.output_len,
    )
    results = calibrate(spec)
    best = capacity_streams(results)
    if ns.json:
        doc = {
            "host": host_info(),
            "bound_ms": ACCURACY_BOUND_MS,
            "capacity_streams": best,
            "results": [a.to_dict() for a in results],
        }
        print(json.dumps(doc, indent=2))
        return 0
    print(
        f"{'streams':>7} {'requests':>8} {'chunks/s':>9} {'TTFT err mean':>13} "
        f"{'p99':>8} {'max':>8} {'ITL err p99':>11} {'lag p99':>8} {'CPU s':>6}"
    )
    for a in results:
        flag = "" if a.failed == 0 else f"  ({a.failed} failed)"
        print(
            f"{a.streams:>7} {a.requests:>8} {a.chunks_per_s:>9.0f} "
            f"{a.ttft_error_mean_ms:>+10.3f} ms {a.ttft_error_p99_ms:>5.3f} ms "
            f"{a.ttft_error_max_ms:>5.3f} ms {a.itl_error_p99_ms:>8.3f} ms "
            f"{a.dispatch_lag_p99_ms:>5.3f} ms {a.client_cpu_s:>6.2f}{flag}"
        )
    if best is None:
        print(
            f"sonic calibrate: even {results[0].streams} stream(s) exceed a p99 TTFT error of "
            f"{ACCURACY_BOUND_MS:g} ms on this host now (busy machine?)",
            file=sys.stderr,
        )
    else:
        print(
            f"this host times up to {best} concurrent streams within {ACCURACY_BOUND_MS:g} ms "
            "(p99 TTFT error)"
        )
    return 0
