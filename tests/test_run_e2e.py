"""``python -m sonic`` end to end against ``python -m sonic sim`` as a separate process: timing
accuracy in exact mode, failures, the concurrency cap, reproducible schedules, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simproc import TOKENIZER, load_json, run_sonic, scrape, sim_process

BASE = [
    "--model", "sonic-sim",
    "--tokenizer", str(TOKENIZER),
    "--dataset-name", "random",
    "--random-input-len", "32",
    "--random-output-len", "64",
    "--ignore-eos",
    "--disable-tqdm",
    "--seed", "7",
]  # fmt: skip


def _raw_lines(result: Path) -> list[dict]:
    doc = load_json(result)
    raw = result.parent / doc["sonic"]["raw_records"]
    return [json.loads(line) for line in raw.read_text().splitlines() if line.strip()]


def _exact_run(tmp_path: Path, attempt: int) -> tuple[dict, str]:
    with sim_process("--ttft-ms", "50", "--itl-ms", "10", "--output-len", "64") as url:
        cp = run_sonic(
            "--base-url", url, *BASE,
            "--request-rate", "20", "--num-prompts", "200",
            "--save-result", "--result-dir", str(tmp_path),
            "--result-filename", f"exact{attempt}.json",
        )  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    return load_json(tmp_path / f"exact{attempt}.json"), cp.stdout


def test_exact_mode_ttft_and_tpot_match_the_engine(tmp_path):
    """Issue 3's accuracy check: TTFT 50 ms, ITL 10 ms, 64 tokens, 20 req/s, 200 requests.

    On a shared 2-core host another process can take a core for a few ms and put a couple of
    requests into the p99 (on an idle host here the p99 read 50.6-51.1 ms over 7 runs, the
    mean 50.33-50.38); such a run is repeated, up to three attempts. A client that is
    systematically off fails them all.
    """
    for attempt in range(3):
        doc, stdout = _exact_run(tmp_path, attempt)
        assert doc["completed"] == 200 and doc["failed"] == 0
        assert doc["total_output_tokens"] == 200 * 64
        errors = [abs(doc[k] - 50.0) for k in ("mean_ttft_ms", "p99_ttft_ms")]
        lagging = doc["sonic"]["client_lag_warning"]
        if max(errors) < 1.0 and abs(doc["mean_tpot_ms"] - 10.0) < 0.2 and not lagging:
            break
    assert doc["sonic"]["client_lag_warning"] is None  # 20 req/s: the client keeps its schedule
    assert abs(doc["mean_ttft_ms"] - 50.0) < 1.0, doc["mean_ttft_ms"]
    assert abs(doc["p99_ttft_ms"] - 50.0) < 1.0, doc["p99_ttft_ms"]
    assert abs(doc["mean_tpot_ms"] - 10.0) < 0.2, doc["mean_tpot_ms"]
    # The vLLM console banner that log scrapers read.
    assert "Successful requests:" in stdout and "Mean TTFT (ms):" in stdout
    assert "simulated" in stdout.lower()


def test_failures_finish_the_run_with_partial_results(tmp_path):
    """500s, resets and stalls past the timeout: a finished run, honest counts, no traceback."""
    faults = ["--fail-500", "0.15", "--fail-reset", "0.1", "--fail-stall", "0.1", "--seed", "3"]
    with sim_process("--ttft-ms", "5", "--itl-ms", "2", "--output-len", "16", *faults) as url:
        cp = run_sonic(
            "--base-url", url, *BASE, "--random-output-len", "16",
            "--request-rate", "50", "--num-prompts", "60", "--request-timeout-s", "2",
            "--skip-test-prompt", "--save-result", "--save-detailed",
            "--result-dir", str(tmp_path), "--result-filename", "faults.json",
        )  # fmt: skip
        served_ok = scrape(url).get("vllm:request_success_total")
    assert "Traceback" not in cp.stderr
    assert cp.returncode == 0, cp.stderr  # vLLM's policy: failures are reported, exit 0
    doc = load_json(tmp_path / "faults.json")
    assert doc["completed"] + doc["failed"] == 60
    assert doc["failed"] > 0 and doc["completed"] > 0
    assert doc["sonic"].get("partial") is True
    if served_ok is not None:
        assert doc["completed"] == int(served_ok)
    lines = _raw_lines(tmp_path / "faults.json")
    errors = [ln["error"] for ln in lines if ln["error"]]
    assert len(errors) == doc["failed"]
    kinds = " ".join(errors).lower()
    assert "500" in kinds
    assert "timeout" in kinds or "timed out" in kinds
    assert f"{doc['failed']} of 60 requests failed" in cp.stderr


def test_max_dialect_exits_1_when_requests_fail(tmp_path):
    """MAX writes no result for a failed run unless --always-save-result; sonic keeps what it
    measured beside it (``.partial``, which *.json globs skip) and says where."""
    flags = ["--ttft-ms", "2", "--itl-ms", "1", "--output-len", "4", "--fail-500", "1"]
    with sim_process(*flags) as u:
        for extra, name in (((), "max.json.partial"), (("--always-save-result",), "max.json")):
            cp = run_sonic(
                "--backend", "modular", "--base-url", u, *BASE, "--random-output-len", "4",
                "--request-rate", "inf", "--num-prompts", "5", "--skip-test-prompt",
                "--result-dir", str(tmp_path), "--result-filename", "max.json", *extra,
            )  # fmt: skip
            assert cp.returncode == 1 and "Traceback" not in cp.stderr
            doc = load_json(tmp_path / name)
            assert doc["failures"] == 5 and doc["completed"] == 0
            if not extra:
                assert not (tmp_path / "max.json").exists()
                assert "max.json.partial" in cp.stderr and "--always-save-result" in cp.stderr


def test_max_concurrency_is_never_exceeded_and_schedule_is_reproducible(tmp_path):
    intended = []
    with sim_process("--ttft-ms", "20", "--itl-ms", "5", "--output-len", "8") as url:
        for k in range(2):
            out = tmp_path / f"mc{k}.json"
            cp = run_sonic(
                "--base-url", url, *BASE, "--random-output-len", "8",
                "--request-rate", "200", "--num-prompts", "40", "--max-concurrency", "3",
                "--save-result", "--save-detailed", "--result-dir", str(tmp_path),
                "--result-filename", out.name,
            )  # fmt: skip
            assert cp.returncode == 0, cp.stderr
            lines = _raw_lines(out)
            starts = np.array([ln["sent_ns"] for ln in lines])
            ends = np.array([ln["end_ns"] for ln in lines])
            t = np.concatenate([starts, ends])
            d = np.concatenate([np.ones_like(starts), -np.ones_like(ends)])
            peak = np.cumsum(d[np.lexsort((d, t))]).max()
            assert peak <= 3
            assert load_json(out)["max_concurrent_requests"] <= 3
            intended.append([ln["intended_ns"] for ln in lines])
    # Same seed, same schedule; the cap delays sends but never moves intended times.
    assert intended[0] == intended[1]
    gaps = np.diff(intended[0]) / 1e9
    assert 0.2 / 200 < gaps.mean() < 5 / 200


def test_sweep_with_result_filename_writes_one_file_per_point(tmp_path):
    with sim_process("--ttft-ms", "2", "--itl-ms", "1", "--output-len", "4") as url:
        cp = run_sonic(
            "--base-url", url, *BASE, "--random-output-len", "4",
            "--request-rate", "50,100", "--num-prompts", "10",
            "--save-result", "--result-dir", str(tmp_path), "--result-filename", "sweep.json",
        )  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    names = sorted(p.name for p in tmp_path.glob("sweep*.json"))
    assert names == ["sweep-100qps.json", "sweep-50qps.json"]
    assert load_json(tmp_path / "sweep-100qps.json")["request_rate"] == 100


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--dataset-name", "sharegpt", "--dataset-path", "/nonexistent/sg.json"], "sg.json"),
        (["--goodput", "ttft:abc"], "goodput"),
        (["--request-rate", "0"], "request-rate"),
        (["--request-rate", "-2"], "request-rate"),
        (["--client-threads", "0"], "--client-threads"),
        (["--client-threads", "257"], "--client-threads"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(extra, needle):
    with sim_process("--ttft-ms", "1", "--itl-ms", "1", "--output-len", "2") as url:
        cp = run_sonic("--base-url", url, *BASE, "--num-prompts", "3", *extra)
    assert cp.returncode == 2, (cp.returncode, cp.stderr)
    lines = [ln for ln in cp.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in cp.stderr, cp.stderr
    assert needle in lines[0]


def test_unreachable_server_is_one_line_and_exit_2():
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cp = run_sonic("--base-url", f"http://127.0.0.1:{port}", *BASE, "--num-prompts", "3")
    assert cp.returncode == 2
    lines = [ln for ln in cp.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "cannot connect" in lines[0]


def test_client_threads_default_to_the_host_and_are_recorded(tmp_path):
    """The client's worker threads: the host's available cores (at most 16) unless
    --client-threads says otherwise; the result says how many the run had."""
    import os

    host = min(max(len(os.sched_getaffinity(0)), 1), 16)
    with sim_process("--ttft-ms", "5", "--itl-ms", "1", "--output-len", "8") as url:
        for name, extra, expected in (
            ("default", [], host),
            ("three", ["--client-threads", "3"], 3),
        ):
            cp = run_sonic(
                "--base-url", url, *BASE, "--num-prompts", "16", "--request-rate", "inf",
                "--max-concurrency", "8", "--save-result", "--result-dir", str(tmp_path),
                "--result-filename", f"{name}.json", *extra,
            )  # fmt: skip
            assert cp.returncode == 0, cp.stderr
            doc = load_json(tmp_path / f"{name}.json")
            assert doc["completed"] == 16
            assert doc["sonic"]["client_threads"] == expected
