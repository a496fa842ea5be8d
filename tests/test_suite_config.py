"""Suite files: parsing into typed config, errors that name the key, hashing, presets and the
run plan. No servers here (see test_suite_run.py for those)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from sonic.errors import SonicError
from sonic.suite import plan as P
from sonic.suite.config import expand_env, load_config, missing_env_refs, secret_values
from sonic.suite.engines import launch_for
from sonic.suite.presets import PRESETS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

MINIMAL = """
[suite]
name = "t"
tokenizer = "tok"

[engines.a]
preset = "sim"

[scenarios.s]
dataset = "random"
input_len = 32
output_len = 8
"""


def write(tmp_path: Path, text: str, name: str = "suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str):
    return load_config(write(tmp_path, text))


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(SonicError) as info:
        load(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message, "config errors must be one line"
    return message


# ---------------------------------------------------------------- parsing


def test_minimal_config_fills_defaults(tmp_path):
    cfg = load(tmp_path, MINIMAL)
    assert cfg.name == "t"
    assert cfg.compat == "vllm" and cfg.seed == 0
    (e,) = cfg.engines
    assert e.preset == "sim" and e.backend == "openai" and e.port == 0 and not e.external
    assert e.host == "127.0.0.1" and e.stop_timeout_s == 30.0
    (s,) = cfg.scenarios
    assert s.dataset == "random" and s.input_len == 32 and s.client.output_len == 8
    assert s.repeats == 1 and s.warmups == 0 and s.request_rates is None


@pytest.mark.parametrize(
    "snippet,expected",
    [
        ('[engines.b]\npreset = "sim"\nport = "x"', "engines.b.port: expected an integer, got 'x'"),
        ('[engines.b]\npreset = "sim"\nport = 70000', "engines.b.port: must be at most 65535"),
        ('[engines.b]\npreset = "vlm"', "engines.b.preset: unknown preset 'vlm'; did you mean"),
        (
            '[engines.b]\npreset = "sim"\nprot = 1',
            "engines.b.prot: unknown key; did you mean 'port'?",
        ),
        ('[engines.b]\npreset = "sim"\nready_timeout_s = -1', "engines.b.ready_timeout_s: must be"),
        ('[engines.b]\npreset = "sim"\nenv = { A = 1 }', "engines.b.env.A: expected a string"),
        (
            '[engines.b]\npreset = "sim"\nsettings = { dtyp = "x" }',
            "engines.b.settings.dtyp: unknown",
        ),
        (
            '[engines.b]\npreset = "sim"\nsettings = { max_num_seqs = 0 }',
            "engines.b.settings.max_num_seqs: must be at least 1",
        ),
        ('[engines.b]\ncommand = "vllm serve x"', "engines.b.command: expected a list of strings"),
        ('[engines.b]\ncommand = ["srv", "{prot}"]', "engines.b.command[1]: unknown placeholder"),
        ("[engines.b]\nport = 9", "engines.b: needs a preset"),
        ('[engines.b]\npreset = "vllm"', "engines.b.model: the vllm preset needs a model"),
        ('[engines.b]\npreset = "sim"\nprofile = 3', "engines.b.profile: expected a string"),
        ('[engines.b]\npreset = "max"\nmodel = "m"\nprofile = "p"', "only the sim preset"),
        ("[engines.b]\nexternal = true", "engines.b.port: an external engine needs its port"),
        ('[engines.b]\npreset = "sim"\nclient = { compat = "tgi" }', "engines.b.client.compat"),
        ('[scenarios.t]\ndataset = "sharegtp"', "scenarios.t.dataset: expected one of"),
        ("[scenarios.t]\nnum_prompts = 3", "scenarios.t.dataset: missing"),
        ('[scenarios.t]\ndataset = "random"\nrequest_rates = [1, 0]', "request_rates[1]: must be"),
        ('[scenarios.t]\ndataset = "random"\nrequest_rates = [1, 1]', "contains a value twice"),
        ('[scenarios.t]\ndataset = "random"\nrequest_rates = 2', "expected a non-empty list"),
        ('[scenarios.t]\ndataset = "random"\nmax_concurrencies = [2, 0]', "max_concurrencies[1]"),
        ('[scenarios.t]\ndataset = "sharegpt"\ninput_len = 3', "scenarios.t.input_len: only"),
        ('[scenarios.t]\ndataset = "custom"', "scenarios.t.dataset_path: the custom dataset needs"),
        (
            '[scenarios.t]\ndataset = "random"\nignore_eos = "yes"',
            "scenarios.t.ignore_eos: expected",
        ),
        ('[scenarios.t]\ndataset = "random"\ntop_p = 2', "scenarios.t.top_p: must be in (0, 1]"),
        ('[scenarios."bad name"]\ndataset = "random"', "bad scenario name 'bad name'"),
        ('[quick]\nscenarios = ["nope"]', "quick.scenarios[0]: no scenario 'nope'"),
        ("[quick]\nnum_promts = 5", "quick.num_promts: unknown key; did you mean 'num_prompts'?"),
        ('[suites]\nname = "x"', "suites: unknown key; did you mean 'suite'?"),
    ],
)
def test_errors_name_the_key(tmp_path, snippet, expected):
    message = error_of(tmp_path, MINIMAL + "\n" + snippet + "\n")
    assert expected in message
    assert message.startswith("suite.toml: ")


def test_suite_level_errors(tmp_path):
    assert (
        "suite.compat: expected one of vllm, max, max-benchmark, got 'maxx'; did you mean 'max'?"
        in error_of(tmp_path, MINIMAL.replace('name = "t"', 'name = "t"\ncompat = "maxx"'))
    )
    assert "suite.seed: expected an integer, got 1.5" in error_of(
        tmp_path, MINIMAL.replace('name = "t"', 'name = "t"\nseed = 1.5')
    )
    assert "engines: declare at least one engine" in error_of(
        tmp_path, '[scenarios.s]\ndataset = "random"\n'
    )
    assert "scenarios: declare at least one scenario" in error_of(
        tmp_path, '[engines.a]\npreset = "sim"\n'
    )


def test_invalid_toml_and_missing_file(tmp_path):
    message = error_of(tmp_path, "[suite\nname=1")
    assert "invalid TOML" in message
    with pytest.raises(SonicError, match="suite file not found"):
        load_config(tmp_path / "nope.toml")


def test_settings_are_inherited_and_overridden(tmp_path):
    cfg = load(
        tmp_path,
        MINIMAL
        + '[settings]\ndtype = "bfloat16"\nmax_model_len = 4096\n'
        + '[engines.b]\npreset = "sim"\nsettings = { max_model_len = 2048 }\n',
    )
    a, b = cfg.engines
    assert a.settings.dtype == b.settings.dtype == "bfloat16"
    assert a.settings.max_model_len == 4096 and b.settings.max_model_len == 2048


def test_client_options_layering(tmp_path):
    cfg = load(
        tmp_path,
        MINIMAL.replace('tokenizer = "tok"', 'tokenizer = "tok"\ntemperature = 0.0')
        + '[engines.b]\npreset = "sim"\nclient = { max_output_len = 4 }\n',
    )
    a, b = cfg.engines
    (s,) = cfg.scenarios
    ca = P.client_options(cfg, a, s)
    cb = P.client_options(cfg, b, s)
    assert ca.temperature == cb.temperature == 0.0
    assert ca.compat == cb.compat == "vllm"
    assert ca.max_output_len is None and cb.max_output_len == 4


# ---------------------------------------------------------------- env and secrets


def test_env_values_expand_only_at_launch_and_are_never_recorded(tmp_path):
    cfg = load(
        tmp_path,
        MINIMAL + '[engines.b]\npreset = "sim"\nenv = { TOKEN = "${MY_SECRET}", PLAIN = "1" }\n',
    )
    b = cfg.engines[1]
    assert b.env["TOKEN"] == "${MY_SECRET}"
    assert missing_env_refs(b, {}) == ["TOKEN (${MY_SECRET})"]
    with pytest.raises(SonicError) as info:
        expand_env(b, {})
    assert "engines.b.env.TOKEN: ${MY_SECRET} is not set" in str(info.value)
    secret = "s3cr3t-value-123"
    assert expand_env(b, {"MY_SECRET": secret}) == {"TOKEN": secret, "PLAIN": "1"}
    assert secret in secret_values(b, {"MY_SECRET": secret})
    recorded = cfg.normalised()
    assert recorded["engines"][1]["env"] == ["PLAIN", "TOKEN"]
    assert "${MY_SECRET}" not in str(recorded)


def test_bad_env_reference_is_refused(tmp_path):
    assert "engines.b.env.X: bad reference ${1A}" in error_of(
        tmp_path, MINIMAL + '[engines.b]\npreset = "sim"\nenv = { X = "${1A}" }\n'
    )


# ---------------------------------------------------------------- hashing


def test_hash_ignores_formatting_and_engine_selection(tmp_path):
    a = load(tmp_path, MINIMAL + '[engines.b]\npreset = "sim"\n')
    reordered = (
        "# a comment\n"
        '[scenarios.s]\noutput_len = 8\ninput_len = 32\ndataset = "random"\n'
        '[engines.a]\npreset = "sim"\n[engines.b]\npreset = "sim"\n'
        '[suite]\ntokenizer = "tok"\nname = "t"\nseed = 0\n'
    )
    b = load(tmp_path, reordered)
    assert a.config_hash(False) == b.config_hash(False)
    assert a.select(["b"]).config_hash(False) == a.config_hash(False)
    assert a.config_hash(True) != a.config_hash(False)


@pytest.mark.parametrize(
    "change",
    [
        ("output_len = 8", "output_len = 9"),
        ('name = "t"', 'name = "t"\nseed = 1'),
        ('preset = "sim"', 'preset = "sim"\nenv = { X = "1" }'),
        ('preset = "sim"', 'preset = "sim"\nsettings = { max_num_seqs = 4 }'),
        ('dataset = "random"', 'dataset = "random"\nrepeats = 2'),
    ],
)
def test_hash_changes_with_what_is_measured(tmp_path, change):
    base = load(tmp_path, MINIMAL)
    changed = load(tmp_path, MINIMAL.replace(*change))
    assert base.config_hash(False) != changed.config_hash(False)


def test_select_unknown_engine(tmp_path):
    cfg = load(tmp_path, MINIMAL)
    with pytest.raises(SonicError, match="--engines: unknown engine 'b'"):
        cfg.select(["b"])


# ---------------------------------------------------------------- plan


def test_full_and_quick_plans(tmp_path):
    cfg = load(
        tmp_path,
        MINIMAL
        + '[scenarios.conc]\ndataset = "random"\nmax_concurrencies = [1, 4]\nnum_prompts = 7\n'
        + '[scenarios.own]\ndataset = "random"\nrequest_rates = [3, "inf"]\nrepeats = 2\n',
    )
    full = {p.name: p for p in P.scenario_plans(cfg, quick=False)}
    assert full["s"].request_rates == (0.5, 1.0, 2.0, 4.0, 8.0)
    assert full["s"].num_prompts == 100 and full["s"].max_concurrencies == (None,)
    assert full["conc"].request_rates == (math.inf,) and full["conc"].max_concurrencies == (1, 4)
    assert full["conc"].num_prompts == 7
    assert full["own"].request_rates == (3.0, math.inf) and full["own"].repeats == 2
    quick = {p.name: p for p in P.scenario_plans(cfg, quick=True)}
    assert quick["s"].request_rates == (1.0, 2.0) and quick["s"].num_prompts == 50
    assert quick["conc"].request_rates == (math.inf,)
    assert quick["own"].request_rates == (1.0, 2.0) and quick["own"].repeats == 2

    e = cfg.engines[0]
    runs = P.runs_for(e, [full["own"]])
    assert [r.id for r in runs] == [
        "a/own/rate-3.0_conc-none_rep-1",
        "a/own/rate-inf_conc-none_rep-1",
        "a/own/rate-3.0_conc-none_rep-2",
        "a/own/rate-inf_conc-none_rep-2",
    ]
    assert runs[0].rel_file == "runs/a/own/rate-3.0_conc-none_rep-1.json"


def test_quick_table_overrides(tmp_path):
    cfg = load(
        tmp_path,
        MINIMAL
        + '[scenarios.other]\ndataset = "sonnet"\n'
        + '[quick]\nrequest_rates = [5]\nnum_prompts = 4\nscenarios = ["other"]\n',
    )
    (only,) = P.scenario_plans(cfg, quick=True)
    assert only.name == "other" and only.request_rates == (5.0,) and only.num_prompts == 4


def test_run_flags_parse_with_sonic_run_semantics(tmp_path, tokenizer_dir):
    cfg = load(
        tmp_path,
        MINIMAL.replace('"tok"', f'"{tokenizer_dir}"').replace(
            "output_len = 8", "output_len = 8\nignore_eos = true\ntemperature = 0.0\nwarmups = 2"
        ),
    )
    (p,) = P.scenario_plans(cfg, quick=True)
    e = cfg.engines[0]
    flags = P.run_flags(
        cfg,
        e,
        p,
        url="http://127.0.0.1:9",
        model="sonic-sim",
        request_rate=2.0,
        max_concurrency=3,
        result_dir=str(tmp_path / "r"),
        result_filename="x.json",
        server_args="srv --flag",
    )
    args = P.parse_flags(e, p, flags)
    assert args.dialect.name == "vllm"
    assert args.target.base_url == "http://127.0.0.1:9" and args.target.model == "sonic-sim"
    assert args.target.tokenizer == str(tokenizer_dir)
    assert args.dataset.name == "random" and args.dataset.random_input_len == 32
    assert args.dataset.random_output_len == 8 and args.dataset.num_prompts == 50
    assert args.traffic.request_rates == (2.0,) and args.traffic.max_concurrencies == (3,)
    assert args.traffic.num_warmups == 2
    assert args.sampling.ignore_eos is True and args.sampling.temperature == 0.0
    assert args.output.save_result and args.output.save_detailed
    assert args.output.result_filename == "x.json" and args.target.server_args == "srv --flag"
    # The suite resets prefix caches itself (per engine), so a run never flushes again, not
    # even under MAX's compat, whose default is to flush.
    assert args.traffic.flush_prefix_cache is False
    max_flags = [*flags, "--compat", "max"]
    assert P.parse_flags(e, p, max_flags).traffic.flush_prefix_cache is False


# ---------------------------------------------------------------- presets


def _engine(tmp_path, body: str):
    cfg = load(tmp_path, MINIMAL.replace('[engines.a]\npreset = "sim"', "[engines.a]\n" + body))
    return cfg, cfg.engines[0]


def test_vllm_preset_argv(tmp_path):
    cfg, e = _engine(
        tmp_path,
        'preset = "vllm"\nmodel = "org/m"\nargs = ["--disable-log-stats"]\n'
        "reset_prefix_cache = true\n"
        'settings = { dtype = "bf16", max_model_len = 8192, max_num_seqs = 256, '
        "max_num_batched_tokens = 8192, gpu_memory_utilization = 0.9, chunked_prefill = true, "
        "prefix_caching = false }",
    )
    launch = launch_for(cfg, e, 8001)
    assert launch.argv[:7] == ["vllm", "serve", "org/m", "--host", "127.0.0.1", "--port", "8001"]
    text = " ".join(launch.argv)
    for piece in (
        "--dtype bf16",
        "--max-model-len 8192",
        "--max-num-seqs 256",
        "--max-num-batched-tokens 8192",
        "--gpu-memory-utilization 0.9",
        "--enable-chunked-prefill",
        "--no-enable-prefix-caching",
    ):
        assert piece in text
    assert launch.argv[-1] == "--disable-log-stats"
    assert launch.env["VLLM_SERVER_DEV_MODE"] == "1"
    # Always: no usage-stats upload, compile caches under sonic's cache (preset environment).
    assert launch.env["VLLM_NO_USAGE_STATS"] == "1" and "VLLM_CACHE_ROOT" in launch.env
    assert launch.uncontrolled == []


def test_max_preset_maps_matching_knobs(tmp_path):
    cfg, e = _engine(
        tmp_path,
        'preset = "max"\nmodel = "org/m"\n'
        'settings = { dtype = "bfloat16", max_model_len = 8192, max_num_seqs = 256, '
        "max_num_batched_tokens = 8192, prefix_caching = false, tensor_parallel_size = 1 }",
    )
    launch = launch_for(cfg, e, 8002)
    text = " ".join(launch.argv)
    assert text.startswith("max serve --model-path org/m --host 127.0.0.1 --port 8002")
    for piece in (
        "--quantization-encoding bfloat16",
        "--max-length 8192",
        "--max-batch-size 256",
        "--max-batch-input-tokens 8192",
        "--no-enable-prefix-caching",
    ):
        assert piece in text
    assert launch.uncontrolled == ["tensor_parallel_size"]


def test_llama_cpp_context_is_per_slot(tmp_path):
    cfg, e = _engine(
        tmp_path,
        'preset = "llama.cpp"\nmodel = "m.gguf"\n'
        "settings = { max_model_len = 2048, max_num_seqs = 4 }",
    )
    argv = launch_for(cfg, e, 9000).argv
    assert argv[0] == "llama-server" and "--metrics" in argv
    assert argv[argv.index("--parallel") + 1] == "4"
    assert argv[argv.index("-c") + 1] == "8192"


def test_sim_preset_uses_this_python_and_command_placeholders(tmp_path):
    cfg, e = _engine(tmp_path, 'preset = "sim"\nprofile = "fast-decode"')
    argv = launch_for(cfg, e, 1234).argv
    assert argv[:4] == [sys.executable, "-m", "sonic", "sim"]
    assert argv[argv.index("--port") + 1] == "1234"
    assert argv[argv.index("--profile") + 1] == "fast-decode"
    cfg, e = _engine(tmp_path, 'command = ["srv", "--listen={host}:{port}", "-m", "{model}"]')
    assert launch_for(cfg, e, 77).argv == ["srv", "--listen=127.0.0.1:77", "-m", ""]


def test_every_preset_builds_an_argv(tmp_path):
    for name, preset in PRESETS.items():
        cfg, e = _engine(tmp_path, f'preset = "{name}"\nmodel = "m"')
        launch = launch_for(cfg, e, 5000)
        assert "5000" in launch.argv, name
        assert preset.health_path.startswith("/")


# ---------------------------------------------------------------- examples


@pytest.mark.parametrize("name", ["sim-demo.toml", "vllm-vs-max.toml"])
def test_examples_parse(name):
    cfg = load_config(EXAMPLES / name)
    assert len(cfg.engines) == 2
    assert P.scenario_plans(cfg, quick=True) and P.scenario_plans(cfg, quick=False)


def test_vllm_vs_max_example_matches_the_original_settings():
    cfg = load_config(EXAMPLES / "vllm-vs-max.toml")
    vllm, mx = cfg.engines
    assert vllm.settings == mx.settings
    s = vllm.settings
    assert (s.dtype, s.max_model_len, s.max_num_seqs, s.max_num_batched_tokens) == (
        "bfloat16",
        8192,
        256,
        8192,
    )
    assert s.gpu_memory_utilization == 0.9 and s.chunked_prefill is True
    text = " ".join(launch_for(cfg, mx, 8002).argv)
    assert "--max-length 8192" in text and "--max-batch-size 256" in text
    (quick,) = P.scenario_plans(cfg, quick=True)
    assert quick.request_rates == (1.0, 2.0) and quick.num_prompts == 50
    full = P.scenario_plans(cfg, quick=False)
    assert full[0].request_rates == (0.5, 1.0, 2.0, 4.0, 8.0) and full[0].num_prompts == 100
    assert {p.scenario.dataset for p in full} == {"sharegpt", "sonnet"}


def test_stream_records_setting_reaches_every_run_and_refuses_workers(tmp_path, tokenizer_dir):
    cfg = load(
        tmp_path,
        MINIMAL.replace('"tok"', f'"{tokenizer_dir}"') + "[settings]\nstream_records = true\n",
    )
    assert cfg.load.stream_records and cfg.load.flags() == ["--stream-records"]
    (p,) = P.scenario_plans(cfg, quick=True)
    e = cfg.engines[0]
    flags = P.run_flags(
        cfg, e, p, url="http://127.0.0.1:9", model="sonic-sim", request_rate=2.0,
        max_concurrency=None,
    )  # fmt: skip
    assert P.parse_flags(e, p, flags).output.stream_records
    assert not load(tmp_path, MINIMAL).load.flags()
    message = error_of(tmp_path, MINIMAL + "[settings]\nstream_records = true\nworkers = 2\n")
    assert "stream_records" in message and "workers" in message
