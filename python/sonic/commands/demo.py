"""``sonic demo``: start ``sonic sim`` as a real process and benchmark it with a short streamed run.

The quickest way to see sonic work end to end on any machine; no GPU, model or network needed.
"""

from __future__ import annotations

import argparse
import sys

DEFAULT_RUN = [
    "--backend", "openai-chat",
    "--endpoint", "/v1/chat/completions",
    "--dataset-name", "sonnet",
    "--num-prompts", "40",
    "--request-rate", "8",
    "--ignore-eos",
    "--sonnet-output-len", "64",
]  # fmt: skip


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sonic demo",
        description="Start the simulated engine (`sonic sim`) in a subprocess and run a short "
        "streamed chat benchmark against it with the vLLM-compatible client. Extra arguments "
        "after `--` are passed to `sonic run`.",
    )
    parser.add_argument("--profile", default="default", help="sim engine profile")
    parser.add_argument("run_args", nargs="*", help="extra `sonic run` flags (after --)")
    ns = parser.parse_args(argv)

    from sonic.benchmark import run_benchmark
    from sonic.compat import parse_run_args
    from sonic.resources import resolve
    from sonic.sim import SimProcess

    # The small byte-level BPE shipped in the package: the sim counts prompt tokens with it and
    # the client re-tokenizes outputs with it, so both sides agree without any download.
    tokenizer = resolve("sonic:demo")

    with SimProcess("--profile", ns.profile, "--tokenizer", tokenizer) as server:
        url = server.url
        args = parse_run_args(
            ["--base-url", url, "--model", "sonic-sim", "--tokenizer", tokenizer]
            + DEFAULT_RUN
            + ns.run_args
        )
        print(f"sonic demo: simulated engine at {url} (profile {ns.profile})", file=sys.stderr)
        return run_benchmark(args)
