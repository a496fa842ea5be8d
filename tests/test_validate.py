"""Validation checks that need no server: fairness of what each engine is asked, settings that
must match, workload identity, environment, and the judgement of probe answers."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from sonic.suite import plan as P
from sonic.suite.checks import FAIL, FAIRNESS, PASS, WARN, Validation
from sonic.suite.config import load_config
from sonic.suite.validate import (
    check_consistency,
    check_engines,
    check_environment,
    check_reported,
    check_settings,
    exit_code,
    prepare,
)
from sonic.suite.workloads import Workloads


def suite(tmp_path: Path, tokenizer_dir: Path, engines: str, extra: str = "") -> Path:
    text = f"""
[suite]
name = "v"
tokenizer = "{tokenizer_dir}"
temperature = 0.0

[scenarios.s]
dataset = "random"
input_len = 24
output_len = 12
num_prompts = 6
{extra}
{engines}
"""
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return path


def run_prepare(path: Path, allow_unfair: bool = False) -> Validation:
    cfg = load_config(path)
    v = Validation(allow_unfair=allow_unfair)
    check_settings(cfg, v)
    prepare(cfg, P.scenario_plans(cfg, quick=False), v, Workloads())
    return v


def by_name(v: Validation) -> dict:
    return {c.name: c for c in v.checks}


FAIR_PAIR = """
[engines.a]
preset = "sim"
profile = "fast-decode"
[engines.b]
preset = "sim"
profile = "fast-prefill"
"""


def test_a_fair_pair_passes(tmp_path, tokenizer_dir):
    v = run_prepare(suite(tmp_path, tokenizer_dir, FAIR_PAIR))
    checks = by_name(v)
    assert checks["workload.s"].status == PASS
    fps = checks["workload.s"].details["fingerprints"]
    assert set(fps) == {"a", "b"} and len(set(fps.values())) == 1
    assert checks["fairness.s.client"].status == PASS
    assert checks["settings.sampling_defaults"].status == PASS
    assert v.fair and not v.blocking()


def test_different_max_output_lengths_are_unfair(tmp_path, tokenizer_dir):
    unfair = FAIR_PAIR + "client = { max_output_len = 4 }\n"
    v = run_prepare(suite(tmp_path, tokenizer_dir, unfair))
    check = by_name(v)["fairness.s.max_tokens"]
    assert check.status == FAIL and check.scope == FAIRNESS
    assert "different output lengths" in check.reason
    assert "a: 72 tokens in all, at most 12" in check.reason
    assert "b: 24 tokens in all, at most 4" in check.reason
    assert not v.fair
    assert [c.name for c in v.blocking()] == ["fairness.s.max_tokens"]
    # --allow-unfair: still reported as a failure, but it no longer blocks.
    allowed = run_prepare(suite(tmp_path, tokenizer_dir, unfair), allow_unfair=True)
    assert not allowed.fair and allowed.blocking() == []
    assert exit_code(allowed) == 0 and exit_code(v) == 1


@pytest.mark.parametrize(
    "override,field",
    [
        ("client = { ignore_eos = false }", "ignore_eos"),
        ("client = { temperature = 0.7 }", "sampling"),
        ('endpoint = "/v1/chat/completions"', "api"),
    ],
)
def test_other_client_differences_are_unfair(tmp_path, tokenizer_dir, override, field):
    v = run_prepare(
        suite(tmp_path, tokenizer_dir, FAIR_PAIR + override + "\n", extra="ignore_eos = true")
    )
    assert by_name(v)[f"fairness.s.{field}"].status == FAIL
    assert not v.fair


def test_an_engine_cannot_have_its_own_dialect(tmp_path, tokenizer_dir):
    """Every engine of a suite is measured under one dialect: an engine's client table may
    not set compat (the suite or a scenario does, for all engines alike)."""
    from sonic.errors import SonicError

    path = suite(tmp_path, tokenizer_dir, FAIR_PAIR + 'client = { compat = "max" }\n')
    with pytest.raises(SonicError, match="client.compat: every engine is measured under one"):
        load_config(path)


def test_a_different_tokenizer_is_unfair(tmp_path, tokenizer_dir):
    copy = tmp_path / "tok-copy"
    shutil.copytree(tokenizer_dir, copy)
    v = run_prepare(suite(tmp_path, tokenizer_dir, FAIR_PAIR + f'tokenizer = "{copy}"\n'))
    assert by_name(v)["fairness.s.tokenizer"].status == FAIL


def test_settings_that_must_match(tmp_path, tokenizer_dir):
    pair = FAIR_PAIR.replace(
        'profile = "fast-decode"', 'profile = "fast-decode"\nsettings = { max_num_seqs = 8 }'
    ).replace(
        'profile = "fast-prefill"', 'profile = "fast-prefill"\nsettings = { max_num_seqs = 16 }'
    )
    checks = by_name(run_prepare(suite(tmp_path, tokenizer_dir, pair)))
    assert checks["settings.max_num_seqs"].status == FAIL
    assert "a=8, b=16" in checks["settings.max_num_seqs"].reason
    # Left at each engine's default: a warning, not a pass.
    assert checks["settings.max_model_len"].status == WARN
    # dtype means nothing to the simulated engine: no check at all.
    assert "settings.dtype" not in checks
    same = suite(tmp_path, tokenizer_dir, FAIR_PAIR, extra="")
    text = same.read_text().replace("[scenarios.s]", "[settings]\nmax_num_seqs = 8\n[scenarios.s]")
    same.write_text(text)
    assert by_name(run_prepare(same))["settings.max_num_seqs"].status == PASS


def test_vllm_and_max_matched_and_mismatched(tmp_path, tokenizer_dir):
    pair = """
[settings]
dtype = "bfloat16"
max_model_len = 8192
max_num_seqs = 256
prefix_caching = false
[engines.vllm]
preset = "vllm"
model = "org/m"
[engines.max]
preset = "max"
model = "org/m"
settings = { dtype = "bf16" }
"""
    cfg = load_config(suite(tmp_path, tokenizer_dir, pair))
    v = Validation()
    check_settings(cfg, v)
    checks = by_name(v)
    for key in ("dtype", "max_model_len", "max_num_seqs", "prefix_caching"):
        assert checks[f"settings.{key}"].status == PASS, key  # bf16 == bfloat16
    cfg = load_config(
        suite(tmp_path, tokenizer_dir, pair.replace('{ dtype = "bf16" }', '{ dtype = "float16" }'))
    )
    v = Validation()
    check_settings(cfg, v)
    assert by_name(v)["settings.dtype"].status == FAIL


def test_missing_temperature_warns_about_engine_defaults(tmp_path, tokenizer_dir):
    path = suite(tmp_path, tokenizer_dir, FAIR_PAIR)
    path.write_text(path.read_text().replace("temperature = 0.0\n", ""))
    check = by_name(run_prepare(path))["settings.sampling_defaults"]
    assert check.status == WARN and "generation_config.json" in check.reason


def test_missing_dataset_file_fails_the_suite(tmp_path, tokenizer_dir):
    path = suite(
        tmp_path,
        tokenizer_dir,
        FAIR_PAIR,
        extra="",
    )
    path.write_text(
        path.read_text().replace(
            'dataset = "random"\ninput_len = 24\n',
            f'dataset = "sharegpt"\ndataset_path = "{tmp_path / "missing.json"}"\n',
        )
    )
    v = run_prepare(path)
    check = by_name(v)["workload.s"]
    assert check.status == FAIL and check.scope == "suite"
    assert "missing.json" in check.reason
    assert v.blocking()


def test_executables_and_env_references(tmp_path, tokenizer_dir, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    pair = """
[engines.vllm]
preset = "vllm"
model = "org/m"
env = { TOKEN = "${NOT_SET_ANYWHERE}" }
[engines.sim]
preset = "sim"
"""
    cfg = load_config(suite(tmp_path, tokenizer_dir, pair))
    v = Validation()
    check_engines(cfg, v)
    checks = by_name(v)
    assert checks["engine.vllm.launch"].status == FAIL
    assert checks["engine.vllm.launch"].scope == "engine:vllm"
    assert "vllm: not found on PATH" in checks["engine.vllm.launch"].reason
    assert checks["engine.vllm.env"].status == FAIL
    assert "TOKEN (${NOT_SET_ANYWHERE})" in checks["engine.vllm.env"].reason
    assert checks["engine.sim.launch"].status == PASS  # sonic's own Python
    assert v.blocking() == [] and exit_code(v) == 1


def test_hf_token_for_gated_models_is_never_printed(tmp_path, tokenizer_dir, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    path = suite(tmp_path, tokenizer_dir, FAIR_PAIR)
    path.write_text(
        path.read_text().replace('name = "v"', 'name = "v"\nmodel = "meta-llama/Meta-Llama-3-8B"')
    )
    cfg = load_config(path)
    v = Validation()
    check_environment(cfg, v)
    check = by_name(v)["environment.hf_token"]
    assert check.status == FAIL and "meta-llama/Meta-Llama-3-8B is gated" in check.reason

    secret = "hf_ThisIsNotARealTokenButSecret"
    monkeypatch.setenv("HF_TOKEN", secret)
    out = io.StringIO()
    v = Validation(out=out)
    check_environment(cfg, v)
    assert by_name(v)["environment.hf_token"].status == PASS
    assert secret not in out.getvalue() and secret not in json.dumps(v.as_dict())


def test_reported_settings_and_consistency_probe():
    v = Validation()
    check_reported({"a": {"max_model_len": 4096}, "b": {"max_model_len": 2048}}, v)
    assert by_name(v)["settings.reported.max_model_len"].status == FAIL
    assert not v.fair

    v = Validation()
    check_consistency(
        {
            "a": {"ok": True, "text": "2, 3, 5, 7, 11", "completion_tokens": 9},
            "b": {"ok": True, "text": "2, 3, 5, 7, 11", "completion_tokens": 9},
        },
        v,
    )
    assert by_name(v)["consistency.probe"].status == PASS
    v = Validation()
    check_consistency(
        {
            "a": {"ok": True, "text": "2, 3, 5, 7, 11", "completion_tokens": 9},
            "b": {"ok": True, "text": "2, 3, 5, 7, 13", "completion_tokens": 9},
        },
        v,
    )
    check = by_name(v)["consistency.probe"]
    assert check.status == WARN and check.details["common_prefix_chars"] == {"b": 13}
    v = Validation()
    check_consistency({"a": {"ok": False, "error": "HTTP 500"}, "b": {"ok": True, "text": ""}}, v)
    check = by_name(v)["consistency.probe"]
    assert check.status == FAIL and "a (HTTP 500)" in check.reason
    assert not v.blocking()  # the probe informs; it does not stop the suite


def test_validation_json_round_trip(tmp_path):
    v = Validation(allow_unfair=True)
    v.add("x", PASS, "fine")
    v.add("y", FAIL, "unfair", "fix it", {"k": 1}, scope=FAIRNESS)
    path = tmp_path / "validation.json"
    v.write(path)
    doc = json.loads(path.read_text())
    assert doc["fair"] is False and doc["allow_unfair"] is True
    assert [c["name"] for c in doc["checks"]] == ["x", "y"]
    assert set(doc["checks"][1]) >= {"name", "status", "reason", "fix", "details"}
    again = Validation.load(path, allow_unfair=False)
    assert [c.name for c in again.checks] == ["x", "y"] and not again.fair
