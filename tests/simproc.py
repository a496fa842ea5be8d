"""``python -m sonic sim`` as a real separate process, for end-to-end tests of the client."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

TOKENIZER = Path(__file__).parent / "fixtures" / "tokenizer"


@contextmanager
def sim_process(*flags: str, tokenizer: bool = True) -> Iterator[str]:
    """Start the simulated engine on a free port; yields its base URL; stops it after."""
    from sonic.sim import SimProcess

    extra = ["--tokenizer", str(TOKENIZER)] if tokenizer else []
    with SimProcess(*extra, *flags) as server:
        yield server.url


def scrape(url: str) -> dict[str, float]:
    """The sim's /metrics as {sample name: summed value} (labels summed over)."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name] = out.get(s.name, 0.0) + s.value
    return out


def run_sonic(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m sonic ARGS`` as a user would run it. Past ``timeout`` it gets Ctrl-C twice
    (abort what is in flight, save, say what failed), and the test fails with what it said."""
    cmd = [sys.executable, "-m", "sonic", *args]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for _ in range(2):
                proc.send_signal(signal.SIGINT)
                time.sleep(1.0)
            try:
                out, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            raise AssertionError(
                f"sonic ran past {timeout:.0f} s and was interrupted; it said:\n"
                f"{out[-2000:]}\n{err[-4000:]}"
            ) from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def run_suite_text(tmp: Path, name: str, text: str, timeout: float = 600):
    """Write a suite file into ``tmp`` and ``sonic suite run`` it into ``tmp/results``: the
    file's path, the finished process and the results directory (None unless exactly one)."""
    path = tmp / name
    path.write_text(text)
    out = tmp / "results"
    cp = run_sonic("suite", "run", str(path), "--output-dir", str(out), timeout=timeout)
    dirs = [p for p in out.iterdir() if p.is_dir()] if out.is_dir() else []
    return path, cp, (dirs[0] if len(dirs) == 1 else None)


def load_json(path: Path) -> dict:
    return json.loads(path.read_text())
