"""Output-length enforcement: a real run against a sim that stops early, and the verdict."""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from pathlib import Path

import numpy as np

from simproc import run_sonic, sim_process
from sonic.metrics.outlen import RETOK_FAR_SHARE, check_output_lengths
from sonic.metrics.requests import RequestMetrics

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
    # The sim sends finish_reason "stop" when it stops early: that, not the count, is judged.
    assert got["by_finish_reason"] == 6 and got["short_by"]["finish_reason"] == 6
    assert got["short_examples_by"][0] == "finish_reason"
    assert "did not honour ignore_eos" in cp.stderr and "by finish_reason" in cp.stderr
    cp, got = _run(tmp_path, "max-ok.json", [], "--backend", "modular", "--ignore-eos")
    assert (got["checked"], got["short"], got["long"], got["by_finish_reason"]) == (6, 0, 0, 6)


def test_an_engine_that_honours_it_passes_and_eos_without_it_is_only_counted(tmp_path: Path):
    cp, got = _run(tmp_path, "ok.json", [], "--ignore-eos")
    assert (got["checked"], got["short"], got["long"]) == (6, 0, 0)
    assert "ignore_eos" not in cp.stderr
    cp, got = _run(tmp_path, "eos.json", ["--output-len", "5"], "--no-ignore-eos")
    assert not got["ignore_eos"] and got["short"] == 6
    assert "did not honour" not in cp.stderr


# ------------------------------------------------------------------ the rule, request by request


def _req(usage: list[int], retok: list[int], reasons: list[str | None] | None) -> RequestMetrics:
    """RequestMetrics of successful requests with these counts (-1: none) and finish reasons."""
    n = len(usage)
    kw = {f.name: np.zeros(n) for f in fields(RequestMetrics) if f.default is MISSING}
    kw.update(
        n=n,
        success=np.ones(n, dtype=bool),
        error=[None] * n,
        generated_text=[""] * n,
        usage_output_len=np.array(usage, dtype=np.int64),
        retok_output_len=np.array(retok, dtype=np.int64),
        finish_reason=reasons,
    )
    return RequestMetrics(**kw)


def test_issue_16_retokenized_25_of_32_that_stopped_at_length_is_not_accused():
    # MAX's rule: no usage; a real 32-token answer re-tokenized to 25; the server said "length".
    c = check_output_lengths(_req([-1], [25], ["length"]), [32], ignore_eos=True)
    assert (c.checked, c.short, c.long, c.by_usage, c.by_finish_reason) == (1, 0, 0, 0, 1)
    assert c.warning() is None


def test_a_stop_finish_reason_is_short_even_when_the_count_is_within_noise():
    # 28 of 32 re-tokenized would pass by the count alone; "stop" says the engine hit EOS.
    c = check_output_lengths(_req([-1, -1], [28, 32], ["stop", "length"]), [32, 32], True)
    assert (c.checked, c.short, c.by_finish_reason) == (2, 1, 2)
    assert c.short_by == {"usage": 0, "finish_reason": 1, "retok": 0}
    assert c.short_examples == [(0, 28, 32)] and c.short_examples_by == ["finish_reason"]
    w = c.warning()
    assert w is not None and "did not honour ignore_eos" in w
    assert "by finish_reason" in w and "usage count" not in w and "under 50%" not in w
    # TGI's name for the same thing.
    assert check_output_lengths(_req([-1], [3], ["eos_token"]), [32], True).short == 1


def test_without_a_finish_reason_retokenized_noise_is_not_evidence():
    c = check_output_lengths(_req([-1], [25], [None]), [32], ignore_eos=True)
    assert (c.checked, c.short, c.by_finish_reason) == (1, 0, 0)
    assert c.warning() is None
    # No finish reasons at all (RequestMetrics built without them), and unknown ones: the same.
    assert check_output_lengths(_req([-1], [25], None), [32], True).short == 0
    assert check_output_lengths(_req([-1], [25], ["abort"]), [32], True).short == 0
    # The boundary: exactly RETOK_FAR_SHARE of max_tokens passes, one token less is short.
    edge = int(RETOK_FAR_SHARE * 32)
    assert check_output_lengths(_req([-1], [edge], [None]), [32], True).short == 0
    assert check_output_lengths(_req([-1], [edge - 1], [None]), [32], True).short == 1


def test_without_a_finish_reason_far_short_is_flagged_and_says_re_tokenized():
    c = check_output_lengths(_req([-1], [5], [None]), [32], ignore_eos=True)
    assert (c.checked, c.short, c.long) == (1, 1, 0)
    assert c.short_by["retok"] == 1 and c.short_examples_by == ["retok"]
    w = c.warning()
    assert w is not None and "did not honour ignore_eos" in w
    assert "re-tokenized text" in w and "5 of 32 tokens" in w and "by finish_reason" not in w
    # Never "long" by a re-tokenized count.
    assert check_output_lengths(_req([-1], [40], [None]), [32], True).long == 0


def test_the_server_usage_count_is_still_judged_exactly():
    # usage beats both the finish reason and the re-tokenized count.
    c = check_output_lengths(_req([31, 33], [32, 33], ["length", "length"]), [32, 32], True)
    assert (c.checked, c.short, c.long, c.by_usage, c.by_finish_reason) == (2, 1, 1, 2, 0)
    assert c.short_by == {"usage": 1, "finish_reason": 0, "retok": 0}
    assert c.short_examples == [(0, 31, 32)] and c.short_examples_by == ["usage"]
    w = c.warning()
    assert w is not None and "by the server's usage count" in w and "31 of 32 tokens" in w
    assert "more than max_tokens" in w
    # Without ignore_eos, stopping early is only counted, never warned about.
    quiet = check_output_lengths(_req([5], [5], ["stop"]), [32], ignore_eos=False)
    assert quiet.short == 1 and quiet.warning() is None


def test_mixed_evidence_counts_each_kind_and_the_result_stays_json():
    req = _req([10, -1, -1, -1], [10, 20, 3, -1], [None, "stop", None, "stop"])
    c = check_output_lengths(req, [32] * 4, ignore_eos=True)
    assert (c.checked, c.short, c.unchecked) == (4, 4, 0)
    assert c.short_by == {"usage": 1, "finish_reason": 2, "retok": 1}
    assert c.short_examples_by == ["usage", "finish_reason", "retok"]
    w = c.warning()
    assert w is not None
    assert "1 by the server's usage count" in w and "2 by finish_reason" in w
    assert "1 by re-tokenized text" in w
    d = json.loads(json.dumps(c.as_dict()))
    assert d["short"] == 4 and d["ignore_eos"] is True and d["short_examples"][0] == [0, 10, 32]
