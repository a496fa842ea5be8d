"""Shared pytest fixtures: paths to the files under tests/fixtures and the fixture tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

# Real engines: llama.cpp (tests/conftest_llamacpp.py), vLLM and MAX on the CPU
# (tests/conftest_cpu_engines.py).
pytest_plugins = ["conftest_llamacpp", "conftest_cpu_engines"]

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    """A directory with tokenizer.json + tokenizer_config.json (ChatML template, BOS, 2000 ids)."""
    return FIXTURES / "tokenizer"


@pytest.fixture(scope="session")
def tokenizer_json(tokenizer_dir: Path) -> Path:
    return tokenizer_dir / "tokenizer.json"


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir: Path):
    from sonic.tokenizer import load_tokenizer

    return load_tokenizer(str(tokenizer_dir))


@pytest.fixture(scope="session")
def sharegpt_path() -> Path:
    return FIXTURES / "sharegpt.json"


@pytest.fixture(scope="session")
def code_debug_path() -> Path:
    return FIXTURES / "code_debug.jsonl"


@pytest.fixture(scope="session")
def custom_path() -> Path:
    return FIXTURES / "custom.jsonl"


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Force Hugging Face Hub lookups offline against an empty cache; nothing is downloaded."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    try:
        import huggingface_hub.constants as constants
    except ImportError:
        return cache
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache), raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True, raising=False)
    return cache
