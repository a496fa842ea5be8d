"""Output-length enforcement: a real run against a sim that stops early, and the verdict."""

from __future__ import annotations

import json
from pathlib import Path

from simproc import run_sonic, sim_process

BASE = [
    "--model", "sonic-sim", "--dataset-name", "random", "--random-input-len", "8",
    "--random-output-len", "12", "--num-prompts", "6", "--request-rate", "inf",
    "--disable-tqdm", "--save-result",
]  # fmt: skip


def _run(tmp_path: Path, name: str, sim_flags: list[str], *extra: str):
    with sim_process(*sim_flags) as url:
        cp = run_sonic(
            "--base-url", url, "--tokenizer", str(Path(__file__).parent / "fixtures" / "tokenizer"),
            *BASE, *extra, "--result-dir", str(tmp_path), "--result-filename", name,
        )  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    return cp, json.loads((tmp_path / name).read_text())["sonic"]["output_lengths"]


def test_an_engine_that_ignores_ignore_eos_is_named(tmp_path: Path):
    # The sim's fixed --output-len 5 stands for an engine that stops at EOS regardless.
    cp, got = _run(tmp_path, "short.json", ["--output-len", "5"], "--ignore-eos")
    assert got["ignore_eos"] and got["checked"] == 6 and got["short"] == 6 and got["long"] == 0
    assert got["by_usage"] == 6 and got["short_examples"][0][1:] == [5, 12]
    assert "did not honour ignore_eos" in cp.stderr


def test_without_server_usage_the_retokenized_count_is_judged(tmp_path: Path):
    # MAX's profile asks for no usage: the generated text is re-tokenized instead.
    cp, got = _run(tmp_path, "max.json", ["--output-len", "5"], "--backend", "modular",
                   "--ignore-eos")  # fmt: skip
    assert got["by_usage"] == 0 and got["checked"] == 6 and got["short"] == 6
    assert "did not honour ignore_eos" in cp.stderr
    cp, got = _run(tmp_path, "max-ok.json", [], "--backend", "modular", "--ignore-eos")
    assert (got["checked"], got["short"], got["long"]) == (6, 0, 0)


def test_an_engine_that_honours_it_passes_and_eos_without_it_is_only_counted(tmp_path: Path):
    cp, got = _run(tmp_path, "ok.json", [], "--ignore-eos")
    assert (got["checked"], got["short"], got["long"]) == (6, 0, 0)
    assert "ignore_eos" not in cp.stderr
    cp, got = _run(tmp_path, "eos.json", ["--output-len", "5"], "--no-ignore-eos")
    assert not got["ignore_eos"] and got["short"] == 6
    assert "did not honour" not in cp.stderr
