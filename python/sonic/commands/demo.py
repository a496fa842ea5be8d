"""``sonic demo``: start ``sonic sim`` as a real process and benchmark it with a short streamed run.

The quickest way to see sonic work end to end on any machine; no GPU, model or network needed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

DEFAULT_RUN = [
    "--backend", "openai-chat",
    "--endpoint", "/v1/chat/completions",
    "--dataset-name", "sonnet",
    "--num-prompts", "40",
    "--request-rate", "8",
    "--ignore-eos",
    "--sonnet-output-len", "64",
]  # fmt: skip


def _start_sim(profile: str, tokenizer: str) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "sonic", "sim", "--host", "127.0.0.1", "--port", "0"]
    cmd += ["--profile", profile, "--tokenizer", tokenizer]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 30
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if "listening on" in line:
            return proc, line.strip().rsplit(" ", 1)[-1]
    proc.kill()
    from sonic.errors import SonicError

    raise SonicError("the simulated engine did not start (run `python -m sonic sim` to see why)")


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

    from importlib.resources import files

    from sonic.benchmark import run_benchmark
    from sonic.compat import parse_run_args

    # The small byte-level BPE shipped in the package: the sim counts prompt tokens with it and
    # the client re-tokenizes outputs with it, so both sides agree without any download.
    tokenizer = str(files("sonic") / "data" / "demo_tokenizer")
    proc, url = _start_sim(ns.profile, tokenizer)
    try:
        args = parse_run_args(
            ["--base-url", url, "--model", "sonic-sim", "--tokenizer", tokenizer]
            + DEFAULT_RUN
            + ns.run_args
        )
        print(f"sonic demo: simulated engine at {url} (profile {ns.profile})", file=sys.stderr)
        return run_benchmark(args)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
