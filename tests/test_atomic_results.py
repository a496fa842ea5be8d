"""A result file survives a SIGKILL in the middle of its write: at every moment the file holds
a whole document, the previous one or the new one (and under MAX's conventions the previous
one is also kept as ``.orig``)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

import pytest

WRITER = """
import sys
from sonic.results.files import save_result
dialect, path = sys.argv[1], sys.argv[2]
payload = "x" * 4_000_000  # a few MB: the write takes long enough to be cut
gen = 0
while True:
    gen += 1
    save_result(dialect, {"gen": gen, "payload": payload}, path)
    print(gen, flush=True)
"""


@pytest.mark.parametrize("dialect", ["vllm", "max-benchmark"])
def test_sigkill_during_writes_leaves_a_whole_document(tmp_path, dialect):
    target = tmp_path / "result.json"
    rng = random.Random(7)
    last_gen = 0
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, dialect, str(target)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # one write done: the next ones are under way
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        doc = json.loads(target.read_text())  # whole, never a torn write
        assert doc["gen"] >= 1 and len(doc["payload"]) == 4_000_000
        last_gen = doc["gen"]
        if dialect == "max-benchmark" and last_gen > 1:
            orig = json.loads((tmp_path / "result.json.orig").read_text())
            assert len(orig["payload"]) == 4_000_000  # the kept previous file is whole too
    assert last_gen >= 1
