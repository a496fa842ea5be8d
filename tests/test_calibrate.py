"""``sonic calibrate``: the client's timing error against the exact-mode sim, per stream count."""

from __future__ import annotations

import json

from simproc import run_sonic
from sonic.calibrate import Accuracy, capacity_streams


def test_calibrate_measures_every_stream_count():
    proc = run_sonic(
        "calibrate", "--streams", "1,4", "--requests-per-stream", "3", "--ttft-ms", "20",
        "--itl-ms", "4", "--output-len", "6", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [r["streams"] for r in doc["results"]] == [1, 4]
    for r in doc["results"]:
        assert r["requests"] == 3 * r["streams"] and r["failed"] == 0
        # The sim sends the first token 20 ms after the request arrived, so a client that
        # timed from its own send cannot see less; a client that mis-timed would.
        assert -0.2 < r["ttft_error_mean_ms"] <= r["ttft_error_p99_ms"] <= r["ttft_error_max_ms"]
        assert r["ttft_error_max_ms"] < 200  # generous: the machine is shared
        # Six tokens 4 ms apart per response: chunk rate bounded by the exact timing.
        assert 0 < r["chunks_per_s"] <= r["streams"] * 1000 / 4 * 1.5
    assert doc["capacity_streams"] in (None, 1, 4)
    assert doc["bound_ms"] == 1.0


def test_calibrate_table_and_bad_flags():
    proc = run_sonic("calibrate", "--streams", "2", "--requests-per-stream", "2")
    assert proc.returncode == 0, proc.stderr
    assert "streams" in proc.stdout.splitlines()[0]
    assert "concurrent streams within 1 ms" in proc.stdout or "exceed" in proc.stderr
    bad = run_sonic("calibrate", "--streams", "0")
    assert bad.returncode == 2 and "stream counts must lie in" in bad.stderr
    assert "Traceback" not in bad.stderr


def _acc(streams: int, p99: float, failed: int = 0) -> Accuracy:
    return Accuracy(streams, streams, failed, 1.0, 0.1, p99, p99, 0.1, 0.0, 0.0)


def test_capacity_is_the_last_count_before_the_first_miss():
    assert capacity_streams([_acc(1, 0.2), _acc(8, 0.5), _acc(64, 3.0), _acc(256, 0.5)]) == 8
    assert capacity_streams([_acc(1, 2.0), _acc(8, 0.5)]) is None
    assert capacity_streams([_acc(1, 0.2), _acc(8, 0.2, failed=1)]) == 1
