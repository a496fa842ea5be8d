"""--flush-prefix-cache against the simulated engine: flushed, refused, or unknown."""

from __future__ import annotations

import json
from pathlib import Path

from simproc import TOKENIZER, run_sonic, sim_process
from sonic.compat.parser import parse_run_args

BASE = [
    "--model", "sonic-sim", "--tokenizer", str(TOKENIZER), "--dataset-name", "random",
    "--random-input-len", "8", "--random-output-len", "4", "--num-prompts", "3",
    "--no-collect-gpu-stats", "--disable-tqdm", "--save-result",
]  # fmt: skip


def _run(url: str, tmp_path: Path, name: str, *extra: str):
    cp = run_sonic("--base-url", url, *BASE, *extra, "--result-dir", str(tmp_path),
                   "--result-filename", name)  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    return cp, json.loads((tmp_path / name).read_text())["sonic"]["prefix_cache_flushed"]


def test_flush_is_on_for_max_benchmark_and_reported(tmp_path: Path):
    # `max benchmark` flushes by default; the 2025 MAX script and vLLM never did.
    assert parse_run_args(["--compat", "max-benchmark", "--model", "m"]).traffic.flush_prefix_cache
    assert not parse_run_args(["--backend", "modular", "--model", "m"]).traffic.flush_prefix_cache
    assert not parse_run_args(["--model", "m"]).traffic.flush_prefix_cache
    with sim_process() as url:
        cp, flushed = _run(url, tmp_path, "max.json", "--compat", "max-benchmark",
                           "--endpoint", "/v1/completions")  # fmt: skip
        assert flushed is True and "flush-prefix-cache" not in cp.stderr
        # SGLang's path is /flush_cache, which this engine does not serve: said, not fatal.
        cp, flushed = _run(url, tmp_path, "sgl.json", "--backend", "sglang", "--flush-prefix-cache")
        assert flushed is False
        assert "POST /flush_cache failed (HTTP Error 404" in cp.stderr
        cp, flushed = _run(url, tmp_path, "tgi.json", "--backend", "llama.cpp",
                           "--flush-prefix-cache")  # fmt: skip
        assert (
            flushed is False and "no prefix-cache reset is known for backend llama.cpp" in cp.stderr
        )
        _, flushed = _run(url, tmp_path, "off.json")
        assert flushed is None


def test_an_unknown_reset_is_said_once_per_process(tmp_path: Path):
    """A sweep (or a search) runs many points: the missing reset is said once, and every
    result still records that its cache was not flushed."""
    with sim_process() as url:
        cp = run_sonic(
            "--base-url", url, *BASE, "--backend", "llama.cpp", "--flush-prefix-cache",
            "--compat", "max-benchmark", "--endpoint", "/v1/completions",
            "--max-concurrency", "1,2", "--skip-first-n-requests", "0",
            "--skip-last-n-requests", "0", "--result-dir", str(tmp_path),
        )  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    assert cp.stderr.count("no prefix-cache reset is known for backend llama.cpp") == 1
    docs = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert len(docs) == 2, [p.name for p in tmp_path.glob("*")]
    assert all(d["sonic"]["prefix_cache_flushed"] is False for d in docs)
