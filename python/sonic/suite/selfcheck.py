"""Client self-check: can this machine generate the load a suite asks for?

The heaviest scenario's prompts are sent at its highest rate (or concurrency) to an embedded
``sonic sim`` in exact-timing mode, which answers with a fixed TTFT and inter-token gap
independent of load. Whatever lag appears between the intended and the actual send times is
then the client's own (this machine's CPUs), not a server's; if it is large, the suite's
numbers at that rate would measure the client, not the engines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from sonic.errors import SonicError
from sonic.metrics.lag import behind_schedule, dispatch_lag_ms, lag_is_meaningful, where

# Exact-mode timings of the embedded engine: short answers, so the check takes seconds.
TTFT_MS = 20.0
ITL_MS = 5.0
OUTPUT_LEN = 8
TARGET_SECONDS = 3.0
MIN_REQUESTS, MAX_REQUESTS = 20, 3000


@dataclass
class SelfCheck:
    status: str
    reason: str
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def request_count(rate: float, concurrency: int | None) -> int:
    if math.isinf(rate):
        n = 3 * (concurrency or 100)
    else:
        n = int(rate * TARGET_SECONDS)
    return max(MIN_REQUESTS, min(MAX_REQUESTS, n))


def run_self_check(
    args: Any, samples: list[Any], rate: float, concurrency: int | None
) -> SelfCheck:
    from sonic import client, sim
    from sonic.benchmark import build_run_config

    n = request_count(rate, concurrency)
    repeated = (samples * (n // max(len(samples), 1) + 1))[:n]
    model = args.target.request_model or "sonic-sim"
    try:
        server = sim.start(
            host="127.0.0.1",
            port=0,
            ttft_ms=TTFT_MS,
            itl_ms=ITL_MS,
            output_len=OUTPUT_LEN,
            model=model,
        )
    except Exception as exc:  # the core's CoreError or a bad option: say so, do not crash
        raise SonicError(f"cannot start the embedded sim: {exc}") from None
    try:
        run_args = replace(
            args,
            target=replace(args.target, base_url=server.url.rstrip("/"), headers={}),
            dataset=replace(args.dataset, num_prompts=n),
            traffic=replace(
                args.traffic,
                request_rates=(rate,),
                max_concurrencies=(concurrency,),
                num_warmups=0,
                test_prompt=False,
                ready_check_timeout_s=0.0,
            ),
        )
        config = build_run_config(run_args, repeated)
        records = client.run(config, progress=False)
    finally:
        server.stop()
    return judge(records, rate, concurrency, n)


def judge(records: Any, rate: float, concurrency: int | None, n: int) -> SelfCheck:
    lag_ms = dispatch_lag_ms(records)
    errors = [e for e in records.error if e is not None]
    at = where(rate, concurrency)
    details: dict[str, Any] = {
        "requests": n,
        "request_rate": "inf" if math.isinf(rate) else rate,
        "max_concurrency": concurrency,
        "errors": len(errors),
        "sim": {"ttft_ms": TTFT_MS, "itl_ms": ITL_MS, "output_len": OUTPUT_LEN},
    }
    if not lag_ms.size:
        return SelfCheck("fail", f"no request was sent to the embedded sim ({at})", "", details)
    p50, p99 = (float(x) for x in np.percentile(lag_ms, [50, 99]))
    details.update({"dispatch_lag_p50_ms": round(p50, 3), "dispatch_lag_p99_ms": round(p99, 3)})
    if errors:
        return SelfCheck(
            "warn",
            f"{len(errors)} of {n} requests to the embedded sim failed ({errors[0][:80]})",
            "the client could not sustain this load here; lower the rate or use a bigger client",
            details,
        )
    behind = behind_schedule(records, rate, concurrency)
    if behind is not None:
        return SelfCheck(
            "warn",
            behind,
            "results at this rate include client delay; use fewer rates, a quieter machine, "
            "or more CPU for the client",
            details,
        )
    if not lag_is_meaningful(rate, concurrency):
        # Under a concurrency cap (or rate inf) waiting for a slot is intended, not lag.
        return SelfCheck(
            "pass",
            f"{n} requests at {at} to an embedded sim completed without errors",
            "",
            details,
        )
    return SelfCheck(
        "pass",
        f"{n} requests at {at} to an embedded sim: dispatch lag p99 {p99:.2f} ms",
        "",
        details,
    )
