"""`sonic run` flag parsing: both flag syntaxes, profiles and their defaults, validation."""

from __future__ import annotations

import json
import math
import re

import pytest

from sonic.compat import parse_run_args
from sonic.compat.flags import ACCEPTED, FLAGS, IMPLEMENTED, REFUSED
from sonic.dialects.max import MAX
from sonic.dialects.vllm import VLLM
from sonic.errors import SonicError
from sonic.metrics import Retokenize

FIXED_PREFIX = ["--request-id-prefix", "t-"]


def parse(*argv: str):
    return parse_run_args(list(argv))


def error_of(*argv: str) -> str:
    with pytest.raises(SonicError) as info:
        parse_run_args(list(argv))
    message = str(info.value)
    assert "\n" not in message, "errors must be one line"
    return message


# --- syntax ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag,value",
    [
        ("--request-rate", "12.5"),
        ("--max-concurrency", "7"),
        ("--num-prompts", "33"),
        ("--endpoint", "/v1/chat/completions"),
        ("--dataset-name", "sonnet"),
        ("--metric-percentiles", "50,99.9"),
        ("--percentile-metrics", "ttft,e2el"),
        ("--seed", "42"),
        ("--extra-body", '{"top_k": 3}'),
        ("--random-range-ratio", "0.25"),
        ("--base-url", "http://10.0.0.2:9000"),
    ],
)
def test_space_and_equals_forms_agree(flag, value):
    spaced = parse(*FIXED_PREFIX, flag, value)
    joined = parse(*FIXED_PREFIX, f"{flag}={value}")
    assert spaced.client_args() == joined.client_args()
    assert flag.lstrip("-").replace("-", "_") in spaced.explicit


@pytest.mark.parametrize(
    "argv,expected",
    [
        ([], False),
        (["--save-result"], True),
        (["--save-result=true"], True),
        (["--save-result=false"], False),
        (["--no-save-result"], False),
        (["--save-result", "--no-save-result"], False),
    ],
)
def test_boolean_forms(argv, expected):
    assert parse(*argv).output.save_result is expected


def test_bad_boolean_value():
    assert "--save-result" in error_of("--save-result=maybe")


def test_abbreviations_are_not_accepted():
    assert "unknown flag --num-prom" in error_of("--num-prom", "5")


def test_values_that_look_like_flags():
    args = parse("--server-args", "--tp 2 --max-model-len 4096", "--top-k", "-1")
    assert args.target.server_args == "--tp 2 --max-model-len 4096"
    assert args.sampling.top_k == -1
    assert parse("--server-args=--quantization").target.server_args == "--quantization"
    assert "write --server-args=VALUE" in error_of("--server-args", "--quantization")


def test_stray_positional_is_an_error():
    assert "unexpected argument" in error_of("--num-prompts", "5", "extra")


@pytest.mark.parametrize(
    "argv,suggestion",
    [
        (["--request-rat", "5"], "--request-rate"),
        (["--request-rat=5"], "--request-rate"),
        (["--num_prompts", "5"], "--num-prompts"),
        (["--max-concurency", "4"], "--max-concurrency"),
    ],
)
def test_unknown_flag_suggests(argv, suggestion):
    message = error_of(*argv)
    assert message.startswith(f"unknown flag {argv[0].split('=')[0]}")
    assert f"did you mean {suggestion}?" in message


def test_unknown_flag_without_close_match():
    message = error_of("--zzzz-qqqq")
    assert "unknown flag --zzzz-qqqq" in message
    assert "did you mean" not in message


@pytest.mark.parametrize(
    "argv",
    [
        ["--port"],
        ["--port", "abc"],
        ["--port", "70000"],
        ["--no-save-result=x"],
        ["--num-prompts", "1.5"],
        ["--host", "a b"],
    ],
)
def test_malformed_values_raise_sonic_error(argv):
    error_of(*argv)


# --- profiles ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv,profile",
    [
        ([], "vllm"),
        (["--backend", "vllm"], "vllm"),
        (["--backend", "openai-chat"], "vllm"),
        (["--backend", "sglang"], "vllm"),
        (["--backend", "modular", "--model", "m"], "max"),
        (["--backend=modular-chat", "--model", "m"], "max"),
        (["--compat", "max", "--backend", "vllm", "--model", "m"], "max"),
        (["--compat", "vllm", "--backend", "modular"], "vllm"),
        (["--compat=MAX", "--model", "m"], "max"),
    ],
)
def test_profile_selection(argv, profile):
    assert parse(*argv).dialect.name == profile


def test_other_generations_are_refused_by_name():
    message = error_of("--compat", "vllm-legacy")
    assert "--compat vllm-legacy is not implemented" in message
    assert "use one of vllm, max" in message


def test_unknown_compat():
    assert "unknown --compat" in error_of("--compat", "sglang")


def test_vllm_defaults():
    args = parse()
    assert args.dialect is VLLM
    assert args.target.backend == "openai"
    assert args.target.endpoint == "/v1/completions"
    assert args.target.api == "completions"
    assert args.target.url == "http://127.0.0.1:8000/v1/completions"
    assert args.target.model is None and args.target.tokenizer is None
    assert args.dataset.name == "random"
    assert args.dataset.seed == 0 and not args.dataset.seed_drawn
    assert args.dataset.num_prompts == 1000
    assert args.dataset.random_range_ratio == (0.0, 0.0)
    assert args.dialect.dataset_rules.range_ratio == "symmetric"
    assert args.traffic.request_rates == (math.inf,)
    assert args.traffic.max_concurrencies == (None,)
    assert args.traffic.burstiness == 1.0
    assert args.traffic.arrival == "precomputed"
    assert args.traffic.test_prompt is False
    assert args.sampling.temperature is None
    assert args.sampling.ignore_eos is True  # vLLM forces it for the random dataset
    assert args.metrics.percentile_metrics == ("ttft", "tpot", "itl")
    assert args.metrics.metric_percentiles == (99.0,)
    assert args.output.label == "openai"
    assert args.target.request_timeout_s == 6 * 3600
    assert re.fullmatch(r"bench-[0-9a-f]{8}-", args.target.request_id_prefix)
    assert args.accepted_ignored == ()


def test_max_defaults():
    args = parse("--backend", "modular", "--model", "org/m")
    assert args.dialect is MAX
    assert args.target.backend == "modular"
    assert args.target.endpoint == "/v1/completions"
    assert args.target.url == "http://localhost:8000/v1/completions"
    assert args.target.tokenizer == "org/m"
    assert args.dataset.name == "sharegpt"
    assert args.dataset.seed == 0
    assert args.dataset.random_range_ratio == (1.0, 1.0)
    assert args.dialect.dataset_rules.range_ratio == "lower_bound"
    assert args.dialect.dataset_rules.sharegpt_hub_download is True
    assert args.traffic.arrival == "sequential"
    assert args.traffic.test_prompt is True
    assert args.sampling.temperature == 0.0
    assert args.sampling.ignore_eos is True  # MAX July 2025 completions always ignore EOS
    assert args.metrics.metric_percentiles == (90.0, 95.0, 99.0)
    assert "e2el" in args.metrics.percentile_metrics


def test_max_requires_model():
    assert "--model is required with --compat max" in error_of("--backend", "modular")


def test_recorded_rules_are_the_applied_rules():
    """What a run records (describe) is what compute_metrics is given (metric_rules)."""
    from sonic.metrics.rules import MetricRules

    for dialect in (VLLM, MAX):
        applied = MetricRules.for_compat(dialect.name)
        assert applied is dialect.metric_rules
        recorded = dialect.describe()
        for name, value in applied.as_dict().items():
            assert recorded[name] == value
    assert VLLM.metric_rules.choice_required and not MAX.metric_rules.choice_required
    assert MAX.metric_rules.cut_off == "excluded" and VLLM.metric_rules.cut_off == "failed"


# --- request bodies ------------------------------------------------------------------------


def test_vllm_completions_body():
    args = parse()
    assert args.static_body() == {
        "repetition_penalty": 1.0,
        "ignore_eos": True,
        "stream_options": {"include_usage": True},
    }
    assert args.max_tokens_field == "max_tokens"


def test_vllm_chat_body_uses_max_completion_tokens():
    args = parse("--backend", "openai-chat", "--dataset-name", "sonnet")
    assert args.target.api == "chat"
    assert args.max_tokens_field == "max_completion_tokens"
    assert args.static_body() == {"stream_options": {"include_usage": True}}


def test_max_bodies():
    comp = parse("--backend", "modular", "--model", "m")
    assert comp.static_body() == {"temperature": 0.0, "best_of": 1, "ignore_eos": True}
    chat = parse("--backend", "modular-chat", "--model", "m")
    assert chat.target.endpoint == "/v1/chat/completions"
    assert chat.static_body() == {"temperature": 0.0}
    assert chat.max_tokens_field == "max_tokens"
    no_eos = parse("--backend", "modular", "--model", "m", "--ignore-eos=false")
    assert "ignore_eos" not in no_eos.static_body()


def test_sampling_flags_and_extra_body_precedence():
    args = parse(
        "--backend",
        "modular",
        "--model",
        "m",
        "--temperature",
        "0.7",
        "--top-p=0.9",
        "--extra-body",
        '{"top_p": 0.5, "seed": 3}',
    )
    body = args.static_body()
    assert body["temperature"] == 0.7  # the flag beats the profile's fixed 0.0
    assert body["top_p"] == 0.5  # --extra-body is applied last
    assert body["seed"] == 3


def test_extra_body_from_file(tmp_path):
    path = tmp_path / "body.json"
    path.write_text(json.dumps({"min_tokens": 5}))
    assert parse("--extra-body", str(path)).sampling.extra_body == {"min_tokens": 5}


@pytest.mark.parametrize("value", ["{not json", "[1, 2]", "no-such-file.json"])
def test_bad_extra_body(value):
    assert "--extra-body" in error_of("--extra-body", value)


def test_tgi_and_trtllm_bodies():
    tgi = parse("--backend", "tgi")
    assert tgi.target.api == "tgi"
    assert tgi.max_tokens_field == "parameters.max_new_tokens"
    assert tgi.static_body()["parameters"]["temperature"] == 0.01
    trt = parse("--backend", "trt-llm", "--temperature", "0.3")
    assert trt.target.api == "trtllm"
    assert trt.static_body() == {"accumulate_tokens": True, "temperature": 0.3, "top_p": 1.0}


def test_openai_only_sampling_flags_need_openai_api():
    assert "--min-p needs an OpenAI-style endpoint" in error_of(
        "--backend", "tgi", "--min-p", "0.1"
    )


def test_chat_template_kwargs_feed_the_client_side_template():
    """As in vLLM: the kwargs go to the prompt's chat template, not into the request body,
    and they work on completions endpoints (vLLM's main use: custom datasets)."""
    args = parse("--chat-template-kwargs", '{"enable_thinking": false}')
    assert args.dataset.chat_template_kwargs == {"enable_thinking": False}
    assert "chat_template_kwargs" not in args.static_body()
    assert "JSON object" in error_of("--chat-template-kwargs", "[1]")


def test_percentile_flags_are_refused_under_max():
    for flag, value in (("--percentile-metrics", "ttft"), ("--metric-percentiles", "50")):
        message = error_of("--compat", "max", "--model", "m", flag, value)
        assert f"{flag} is not supported with --compat max" in message
        assert "p90/p95/p99" in message


# --- refused and accepted flags ------------------------------------------------------------


@pytest.mark.parametrize(
    "argv,reason",
    [
        (["--use-beam-search"], "beam search"),
        (["--profile"], "profiling"),
        (["--lora-modules", "a=/p"], "LoRA"),
        (["--probe-request-rate", "2"], "probe"),
        (["--warmup-delay-biased"], "biased"),
        (["--tokenizer-mode", "slow"], "tokenizer"),
        (["--num-iters", "3"], "iterations"),
    ],
)
def test_refused_flag_message(argv, reason):
    message = error_of(*argv)
    flag = argv[0].split("=")[0]
    assert message.startswith(f"{flag} is not supported:")
    assert reason in message


@pytest.mark.parametrize(
    "argv",
    [
        ["--probe-request-rate", "0"],
        ["--num-iters=1"],
        ["--dry-run=false"],
        ["--use-beam-search=false"],
        ["--tokenizer-mode", "auto"],
        ["--benchmark-task", "text-generation"],
    ],
)
def test_refused_flag_with_default_value_is_accepted(argv):
    args = parse(*argv)
    flag = argv[0].split("=")[0].replace("--no-", "--")
    assert args.accepted_ignored == (flag,)


def test_accepted_flags_change_nothing():
    base = parse(*FIXED_PREFIX)
    extra = parse(
        *FIXED_PREFIX,
        "--plot-timeline",
        "--verbose",
        "--print-inputs-and-outputs",
        "--timeline-itl-thresholds",
        "25,50",
    )
    assert set(extra.accepted_ignored) == {
        "--plot-timeline",
        "--verbose",
        "--print-inputs-and-outputs",
        "--timeline-itl-thresholds",
    }
    left, right = base.client_args(), extra.client_args()
    left.pop("accepted_ignored")
    right.pop("accepted_ignored")
    assert left == right


def _sample(flag):
    if flag.kind == "bool":
        return [flag.name]
    if flag.kind == "list":
        return [flag.name, "k=v"]
    return [flag.name, "7"]


@pytest.mark.parametrize("flag", [f for f in FLAGS if f.status == REFUSED], ids=lambda f: f.name)
def test_every_refused_flag_is_refused(flag):
    message = error_of(*_sample(flag))
    assert message.startswith(f"{flag.name} is not supported: {flag.reason}")


@pytest.mark.parametrize("flag", [f for f in FLAGS if f.status == ACCEPTED], ids=lambda f: f.name)
def test_every_accepted_flag_is_listed(flag):
    assert parse(*_sample(flag)).accepted_ignored == (flag.name,)


def test_table_covers_compat_minimum():
    # Flags a drop-in tool must accept.
    minimum = """--backend --base-url --host --port --endpoint --model --tokenizer
    --trust-remote-code --dataset-name --dataset-path --num-prompts --request-rate --burstiness
    --max-concurrency --seed --disable-tqdm --save-result --save-detailed --append-result
    --result-dir --result-filename --metadata --percentile-metrics --metric-percentiles --goodput
    --ignore-eos --ramp-up-strategy --ramp-up-start-rps --ramp-up-end-rps
    --ready-check-timeout-sec --num-warmups --served-model-name --label --header --extra-body
    --temperature --top-p --top-k --min-p --logprobs --sharegpt-output-len --sonnet-input-len
    --sonnet-output-len --sonnet-prefix-len --random-input-len --random-output-len
    --random-prefix-len --random-range-ratio --max-benchmark-duration-s --output-lengths
    --max-output-len --skip-test-prompt --collect-gpu-stats --server-args
    --skip-first-n-requests --skip-last-n-requests --ttft-skip-requests
    --always-save-result""".split()
    implemented = {f.name for f in FLAGS if f.status == IMPLEMENTED}
    # --print-inputs-and-outputs is in the list too; it is accepted (console only).
    assert set(minimum) <= implemented


# --- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--request-rate", "0"],
        ["--request-rate", "-1"],
        ["--request-rate", "nan"],
        ["--request-rate", "1,,2"],
        ["--max-concurrency", "0"],
        ["--max-concurrency", "-3"],
        ["--num-prompts", "0"],
        ["--num-prompts", "-5"],
        ["--burstiness", "0"],
        ["--request-timeout-s", "0"],
        ["--max-benchmark-duration-s", "0"],
    ],
)
def test_non_positive_values(argv):
    message = error_of(*argv)
    assert message.startswith(argv[0])


def test_rate_and_concurrency_sweeps():
    args = parse("--request-rate", "1,2.5,inf", "--max-concurrency=1,none,8")
    assert args.traffic.request_rates == (1.0, 2.5, math.inf)
    assert args.traffic.max_concurrencies == (1, None, 8)
    assert args.traffic.is_sweep
    points = [(p.traffic.max_concurrency, p.traffic.request_rate) for p in args.points()]
    assert points[:3] == [(1, 1.0), (1, 2.5), (1, math.inf)]
    assert len(points) == 9 and not any(p.traffic.is_sweep for p in args.points())
    assert args.client_args()["request_rate"] == "1.0,2.5,inf"


def test_none_concurrency_and_inf_burstiness():
    args = parse("--max-concurrency", "None", "--burstiness", "inf", "--request-rate", "4")
    assert args.traffic.max_concurrencies == (None,)
    assert args.traffic.burstiness == math.inf
    assert args.client_args()["request_rate"] == "4.0"


def test_seed_none_draws_and_records_a_seed():
    args = parse("--seed", "none")
    assert args.dataset.seed_drawn
    assert 0 <= args.dataset.seed < 2**32
    assert args.client_args()["seed"] == args.dataset.seed
    assert "--seed" in error_of("--seed", "-1")
    assert "--seed" in error_of("--seed", str(2**32))


@pytest.mark.parametrize(
    "spec",
    [["ttft500"], ["foo:5"], ["ttft:-1"], ["ttft:abc"], ["ttft:5", "ttft:6"], []],
)
def test_bad_goodput(spec):
    message = error_of("--goodput", *spec)
    assert "goodput" in message


def test_goodput():
    args = parse("--goodput", "ttft:500", "tpot:50", "--goodput=e2el:2000")
    assert args.metrics.goodput == {"ttft": 500.0, "tpot": 50.0, "e2el": 2000.0}
    assert parse().metrics.goodput is None


@pytest.mark.parametrize("value", ["101", "-1", "abc", "99,nope"])
def test_bad_metric_percentiles(value):
    assert "--metric-percentiles" in error_of("--metric-percentiles", value)


def test_retokenize_flag():
    assert parse().metrics.retokenize == Retokenize(100)
    assert parse("--retokenize", "all").metrics.retokenize == Retokenize(None)
    assert parse("--retokenize=needed").client_args()["retokenize"] == "needed"
    for bad in ("-2", "most"):
        message = error_of("--retokenize", bad)
        assert message.startswith("--retokenize") and "\n" not in message


def test_percentile_metrics_aliases_and_validation():
    args = parse("--percentile-metrics", "ttft,latency", "--metric-percentiles", "50,99.9")
    assert args.metrics.percentile_metrics == ("ttft", "e2el")
    assert args.metrics.metric_percentiles == (50.0, 99.9)
    assert "bogus" in error_of("--percentile-metrics", "ttft,bogus")


def test_metadata_accumulates():
    args = parse("--metadata", "a=1", "b=x=y", "--metadata=c=3")
    assert args.output.metadata == {"a": "1", "b": "x=y", "c": "3"}
    assert args.client_args()["metadata"] == ["a=1", "b=x=y", "c=3"]
    assert "KEY=VALUE" in error_of("--metadata", "novalue")


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["--ramp-up-strategy", "linear"], "needs both"),
        (["--ramp-up-start-rps", "1", "--ramp-up-end-rps", "5"], "need --ramp-up-strategy"),
        (
            [
                "--ramp-up-strategy",
                "exponential",
                "--ramp-up-start-rps",
                "0",
                "--ramp-up-end-rps=5",
            ],
            "exponential",
        ),
        (
            ["--ramp-up-strategy", "linear", "--ramp-up-start-rps", "1", "--ramp-up-end-rps=5"]
            + ["--request-rate", "3"],
            "remove --request-rate",
        ),
        (
            ["--ramp-up-strategy", "linear", "--ramp-up-start-rps", "9", "--ramp-up-end-rps=5"],
            "must not exceed",
        ),
        (["--ramp-up-strategy", "cubic", "--ramp-up-start-rps", "1"], "linear or exponential"),
    ],
)
def test_ramp_up_consistency(argv, fragment):
    assert fragment in error_of(*argv)


def test_ramp_up():
    args = parse(
        "--ramp-up-strategy=exponential",
        "--ramp-up-start-rps",
        "1",
        "--ramp-up-end-rps",
        "20",
        "--request-rate",
        "inf",
    )
    assert args.traffic.ramp_up_strategy == "exponential"
    assert (args.traffic.ramp_up_start_rps, args.traffic.ramp_up_end_rps) == (1.0, 20.0)


def test_random_range_ratio_semantics():
    assert parse("--random-range-ratio", "0.5").dataset.random_range_ratio == (0.5, 0.5)
    pair = parse("--random-range-ratio", '{"input": 0.1, "output": 0.2}').dataset
    assert pair.random_range_ratio == (0.1, 0.2)
    assert "[0, 1)" in error_of("--random-range-ratio", "1.0")  # vLLM: symmetric range
    max_args = parse("--compat", "max", "--model", "m", "--random-range-ratio", "1.0")
    assert max_args.dataset.random_range_ratio == (1.0, 1.0)


def test_generic_lengths():
    args = parse("--input-len", "64", "--output-len", "16", "--dataset-name", "sharegpt")
    assert args.dataset.random_input_len == 64
    assert args.dataset.random_output_len == 16
    assert args.dataset.sharegpt_output_len == 16
    assert "contradicts" in error_of("--output-len", "16", "--random-output-len", "32")


def test_datasets():
    args = parse("--dataset", "/data/sg.json")
    assert (args.dataset.name, args.dataset.path) == ("sharegpt", "/data/sg.json")
    assert "not implemented" in error_of("--dataset-name", "burstgpt")
    assert "did you mean sonnet?" in error_of("--dataset-name", "sonet")
    assert "needs --dataset-path" in error_of("--dataset-name", "hf")
    assert "cannot be combined" in error_of("--dataset", "x.json", "--dataset-name", "random")


def test_output_lengths(tmp_path):
    assert parse("--output-lengths", "32").dataset.output_lengths == 32
    path = tmp_path / "lens.json"
    path.write_text(json.dumps({"output_lengths": [3, 4, 5]}))
    assert parse("--output-lengths", str(path)).dataset.output_lengths == (3, 4, 5)
    path.write_text("[0]")
    assert "positive" in error_of("--output-lengths", str(path))


def test_test_prompt_policy():
    assert parse("--ready-check-timeout-sec", "30").traffic.test_prompt is True
    assert parse("--server-ready-timeout-s=5").traffic.ready_check_timeout_s == 5.0
    assert parse("--skip-test-prompt=false").traffic.test_prompt is True
    max_skip = parse("--compat", "max", "--model", "m", "--skip-test-prompt")
    assert max_skip.traffic.test_prompt is False
    assert "contradicts" in error_of("--skip-test-prompt", "--ready-check-timeout-sec", "3")


def test_skip_counts_must_leave_requests():
    assert "leave none" in error_of(
        "--num-prompts", "4", "--skip-first-n-requests", "2", "--skip-last-n-requests", "2"
    )


# --- target --------------------------------------------------------------------------------


def test_base_url_and_host_port():
    args = parse("--base-url", "http://10.1.2.3:9000/", "--endpoint", "/v1/completions")
    assert (args.target.host, args.target.port) == ("10.1.2.3", 9000)
    assert args.target.url == "http://10.1.2.3:9000/v1/completions"
    assert parse("--base-url", "https://api.example.com").target.port == 443
    assert parse("--base-url", "http://h:9000", "--port", "9000").target.port == 9000
    assert "disagrees" in error_of("--base-url", "http://h:9000", "--port", "8000")
    assert "disagrees" in error_of("--base-url", "http://h:9000", "--host", "other")
    assert "http(s)://" in error_of("--base-url", "ftp://h")
    ipv6 = parse("--host", "::1", "--port", "8001")
    assert ipv6.target.base_url == "http://[::1]:8001"


def test_url_password_is_scrubbed():
    args = parse("--base-url", "http://user:hunter2@h:9000")
    assert "hunter2" not in json.dumps(args.client_args())
    assert "hunter2" not in error_of("--base-url", "http://user:hunter2@h:9000", "--port", "1")


def test_tokenizer_label_and_served_name():
    args = parse("--model", "org/m", "--served-model-name", "m-served")
    assert args.target.tokenizer == "org/m"
    assert args.target.request_model == "m-served"
    assert parse("--model", "a", "--tokenizer", "b").target.tokenizer == "b"
    discovered = parse().with_model("found/m")
    assert (discovered.target.model, discovered.target.tokenizer) == ("found/m", "found/m")
    kept = parse("--tokenizer", "tok").with_model("found/m")
    assert kept.target.tokenizer == "tok"
    assert parse("--endpoint", "/v1/chat/completions").output.label == "openai-chat"
    assert parse("--label", "mine").output.label == "mine"


SECRET = "sk-TOPSECRET-123"


@pytest.mark.parametrize(
    "argv",
    [
        ["--header", SECRET],
        ["--header", f"Authorization: Bearer {SECRET}"],
        ["--header", f"Authorization=Bearer {SECRET}", "--bogus-flag"],
        ["--header", f"Authorization=Bearer {SECRET}", "--request-rate", "0"],
        ["--header", f"X=a\n{SECRET}"],
        [f"--header=Authorization=Bearer {SECRET}", f"X={SECRET}"],
    ],
)
def test_header_values_never_in_errors(argv):
    assert SECRET not in error_of(*argv)


def test_headers_are_parsed_and_scrubbed():
    args = parse("--header", f"Authorization=Bearer {SECRET}", "X-Trace=1", "--header=Y=2")
    assert args.target.headers == {"Authorization": f"Bearer {SECRET}", "X-Trace": "1", "Y": "2"}
    assert SECRET not in repr(args)
    assert SECRET not in json.dumps(args.client_args())
    assert args.client_args()["header"] == {
        "Authorization": "<redacted>",
        "X-Trace": "<redacted>",
        "Y": "<redacted>",
    }


def test_client_args_is_json_and_complete():
    args = parse("--backend", "modular", "--model", "m", "--request-rate", "inf")
    data = json.loads(json.dumps(args.client_args()))
    assert data["request_rate"] == "inf"
    assert data["backend"] == "modular" and data["compat"] == "max"
    assert data["max_concurrency"] is None


def test_import_and_help_stay_light():
    """`sonic run --help` must not pay for numpy/tokenizers (parsing may: metrics need them)."""
    import subprocess
    import sys
    from pathlib import Path

    import sonic

    code = (
        "import sys\n"
        "from sonic.compat import parse_run_args, format_run_help\n"
        "format_run_help()\n"
        "heavy = sorted(m for m in ('numpy', 'tokenizers', 'transformers', 'pandas')"
        " if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    root = str(Path(sonic.__file__).resolve().parent.parent)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": root, "PATH": ""},
        check=True,
    )
    assert out.stdout.strip() == ""
