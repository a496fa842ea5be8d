"""A fourth tool's conventions cost one module: a toy dialect defined in this file alone.

``ToyDialect`` below is everything a new benchmark tool needs: flag defaults, metric rules,
dataset rules, request-body policy, save policy, result document, file name, console block,
the keys ``sonic.analysis`` reads and ``owns()``. The ``toy`` fixture registers it for one
test and takes it out after, so no other test ever sees it. A whole ``sonic run --compat toy``
then goes through the real command-line code (``sonic.cli.main``, in this process because the
dialect exists only here) against a real ``sonic sim`` process, and its result file is read
back by ``sonic.analysis`` without a line of sonic changed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from simproc import TOKENIZER, sim_process
from sonic import analysis, cli, dialects
from sonic.compat import format_run_help, parse_run_args
from sonic.datasets.base import DatasetRules
from sonic.dialects.base import BodyPolicy, Dialect, rate_str
from sonic.errors import SonicError
from sonic.metrics.rules import MetricRules

TOY_BANNER = "~~~~~~~~~~~~ TOY BENCH v1 ~~~~~~~~~~~~"
# The toy's document, key-exact and in order.
TOY_KEYS = [
    "toy_version",
    "engine",
    "served",
    "dropped",
    "wall_s",
    "tokens_out",
    "mean_first_token_ms",
    "median_first_token_ms",
    "p99_first_token_ms",
    "sonic",
]
# The sim refuses unknown body fields (400), so the toy's fixed field is a standard one whose
# effect the server shows: with EOS after ~1 token (--eos-mean-len 1) every output is at least
# MIN_TOKENS long only if min_tokens arrived.
MIN_TOKENS = 12
OUTPUT_LEN = 16


class ToyDialect(Dialect):
    def result_filename(self, info, when: datetime) -> str:
        return f"toy-{info.backend}-n{info.num_prompts}-{rate_str(info.request_rate)}.json"

    def build_result(self, metrics, info) -> dict[str, Any]:
        from sonic.results.document import num, sonic_section

        m = metrics
        ttft = m.stats["ttft"].scaled(1000.0)
        return {
            "toy_version": 1,
            "engine": info.backend,
            "served": m.completed,
            "dropped": m.failed,
            "wall_s": m.duration_s,
            "tokens_out": m.total_output_tokens,
            "mean_first_token_ms": num(ttft.mean),
            "median_first_token_ms": num(ttft.median),
            "p99_first_token_ms": num(ttft.p(99.0)),
            "sonic": sonic_section(self, m, info),
        }

    def owns(self, doc: dict[str, Any]) -> bool:
        return "toy_version" in doc

    def console_lines(self, metrics, info) -> list[str]:
        m = metrics
        return [
            TOY_BANNER,
            f"toy served {m.completed}, dropped {m.failed}",
            f"toy median first token: {m.stats['ttft'].scaled(1000.0).median:.3f} ms",
        ]


TOY = ToyDialect(
    name="toy",
    title="Toy Bench 1.0",
    summary="a test-only tool: TTFT at the first text, usage token counts, min_tokens sent, "
    "saves whenever --result-dir is given.",
    defaults={
        "backend": "openai",
        "endpoint": "/v1/chat/completions",
        "host": "127.0.0.1",
        "dataset_name": "random",
        "seed": 4242,
        "num_prompts": 6,
        "percentile_metrics": ("ttft", "e2el"),
        "metric_percentiles": (50.0, 99.0),
        "random_range_ratio": 1.0,
        "temperature": 0.5,
    },
    metric_rules=MetricRules(
        ttft_rule="first_text",
        end_rule="last_choice",
        itl_rule="text",
        token_count="usage",
        require_text=True,
        duration_start="first_sent",
    ),
    dataset_rules=DatasetRules(
        range_ratio="lower_bound",
        oversample=False,
        sharegpt_hub_download=False,
        sonnet_strict=True,
        sonnet_template_on_chat=False,
    ),
    body=BodyPolicy(
        max_tokens_field={
            "completions": "max_tokens",
            "chat": "max_completion_tokens",
            "tgi": "parameters.max_new_tokens",
            "trtllm": "max_tokens",
        },
        include_usage=("chat",),  # a usage chunk on chat only
        fixed_fields={
            "completions": {"min_tokens": MIN_TOKENS},
            "chat": {"min_tokens": MIN_TOKENS},
        },
    ),
    ignore_eos_policy="completions",  # off on the chat endpoint the toy defaults to
    arrival="precomputed",
    test_prompt_default=False,
    model_required=False,
    saves_on=("result_dir",),
    unique_auto_names=False,
    keep_overwritten=True,
    strict_exit=True,
    metric_keys={
        "completed": "served",
        "failed": "dropped",
        "duration_s": "wall_s",
        "total_output_tokens": "tokens_out",
    },
    latency_stems={"ttft": "first_token"},
    chat_backend_suffix=False,
    aliases=("toybench",),
)


@pytest.fixture
def toy() -> Iterator[Dialect]:
    """The toy dialect, registered for one test only."""
    assert "toy" not in dialects.names()
    dialects.register(TOY)
    try:
        yield TOY
    finally:
        dialects.unregister(TOY)
    assert "toy" not in dialects.names() and "toybench" not in dialects.names()


def _parse(*flags: str):
    return parse_run_args(["--base-url", "http://127.0.0.1:9", *flags])


def test_flag_defaults_body_and_help_come_from_the_toy(toy):
    """Every default, the request body and the save policy are the toy's, by name or alias;
    --help lists the toy with its title and its per-flag defaults."""
    for word in ("toy", "TOYBENCH"):
        args = _parse("--compat", word)
        assert args.dialect is toy
    d, s, m = args.dataset, args.sampling, args.metrics
    assert (d.name, d.seed, d.num_prompts) == ("random", 4242, 6)
    assert d.random_range_ratio == (1.0, 1.0)
    assert s.temperature == 0.5
    assert m.percentile_metrics == ("ttft", "e2el")
    assert m.metric_percentiles == (50.0, 99.0)
    # The chat endpoint by default; the backend keeps its name (chat_backend_suffix=False).
    assert (args.target.backend, args.target.api) == ("openai", "chat")
    assert args.traffic.test_prompt is False and args.traffic.arrival == "precomputed"
    # ignore_eos policy "completions": off on chat, on for completions.
    assert s.ignore_eos is False
    completions = _parse("--compat", "toy", "--endpoint", "/v1/completions")
    assert completions.sampling.ignore_eos
    assert completions.static_body() == {
        "min_tokens": MIN_TOKENS,
        "ignore_eos": True,
        "temperature": 0.5,
    }  # no stream_options: the toy asks for usage on chat only
    assert args.max_tokens_field == "max_completion_tokens"
    assert args.static_body() == {
        "min_tokens": MIN_TOKENS,
        "stream_options": {"include_usage": True},
        "temperature": 0.5,
    }
    # Flags still override the toy's defaults.
    given = _parse("--compat", "toy", "--seed", "1", "--num-prompts", "3").dataset
    assert (given.seed, given.num_prompts) == (1, 3)
    # The toy's dataset rules: MAX-style lower-bound ratios, so 1.0 is a fixed length, which
    # vLLM's symmetric rule refuses.
    assert _parse("--compat", "toy", "--random-range-ratio", "1.0").dataset.random_range_ratio
    with pytest.raises(SonicError, match="must be in \\[0, 1\\)"):
        _parse("--compat", "vllm", "--random-range-ratio", "1.0")
    from sonic.datasets import DatasetArgs

    assert DatasetArgs(compat="toy").rules is toy.dataset_rules
    # Save policy: the toy saves on --result-dir alone and not on --save-result; vLLM the
    # other way round.
    assert toy.should_save(_parse("--compat", "toy", "--result-dir", "x").output)
    assert not toy.should_save(_parse("--compat", "toy", "--save-result").output)
    vllm = dialects.get("vllm")
    assert not vllm.should_save(_parse("--compat", "vllm", "--result-dir", "x").output)

    text = format_run_help()
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("toy "))
    assert "Toy Bench 1.0" in line
    flat = " ".join(text.split())  # entries wrap; the --seed entry lists every default
    seed = flat[flat.index("--seed ") :].split(" --", 1)[0]
    assert "toy 4242)" in seed, seed


def test_whole_run_through_the_toy(toy, tmp_path, capsys, monkeypatch):
    """``sonic run --compat toy`` against a real sim process: the toy's rules measure, its
    body fields reach the server, its file (name, keys, save and overwrite policy) and console
    block come out, and sonic.analysis reads the file through the toy's keys."""
    from sonic import client

    configs = []
    real_run = client.run

    def spy(config, *a, **kw):
        configs.append(config)
        return real_run(config, *a, **kw)

    monkeypatch.setattr(client, "run", spy)
    out_dir = tmp_path / "out"
    argv = [
        "run", "--compat", "toy", "--tokenizer", str(TOKENIZER),
        "--random-input-len", "32", "--random-output-len", str(OUTPUT_LEN),
        "--disable-tqdm", "--result-dir", str(out_dir),
    ]  # fmt: skip
    sim_flags = ["--ttft-ms", "2", "--itl-ms", "1", "--eos-mean-len", "1", "--seed", "5"]
    with sim_process(*sim_flags) as url:
        assert cli.main([*argv, "--base-url", url]) == 0
        first = capsys.readouterr()
        # A second run overwrites the file and, per keep_overwritten, keeps the first as .orig.
        assert cli.main([*argv, "--base-url", url]) == 0
        second = capsys.readouterr()

    # The file: the toy's name (no --result-filename), written on --result-dir alone.
    name = "toy-openai-n6-inf.json"
    assert sorted(p.name for p in out_dir.iterdir()) == [name, name + ".orig"]
    doc = json.loads((out_dir / name).read_text())
    assert list(doc) == TOY_KEYS
    assert doc["toy_version"] == 1 and doc["engine"] == "openai"
    assert doc["served"] == 6 and doc["dropped"] == 0
    assert list(json.loads((out_dir / (name + ".orig")).read_text())) == TOY_KEYS

    # The toy's metric rules measured the run, and the result records them.
    sonic = doc["sonic"]
    assert sonic["compat"] == "toy"
    assert sonic["rules"] == toy.metric_rules.as_dict()
    assert sonic["token_counts"]["mode"] == "usage"
    assert sonic["simulated"] is True and sonic["partial"] is False
    assert sonic["latency_ms"]["ttft"]["n"] == 6

    # Its body reached the server: the client sent min_tokens, and the sim, which would end
    # each response after ~1 token, produced at least MIN_TOKENS (below max_tokens: EOS, so
    # ignore_eos was off as the toy's policy says for chat).
    # The runs sent to the sim (the self-calibration's go to its own embedded sim).
    configs = [c for c in configs if c.base_url == url]
    assert len(configs) == 2  # no test prompt: toy's test_prompt_default is False
    body = configs[0].body
    assert body.fields["min_tokens"] == MIN_TOKENS and body.fields["temperature"] == 0.5
    assert body.max_tokens_field == "max_completion_tokens"
    assert configs[0].endpoint == "/v1/chat/completions"
    assert 6 * MIN_TOKENS <= doc["tokens_out"] < 6 * OUTPUT_LEN
    assert sonic["token_counts"]["output_usage_total"] == doc["tokens_out"]

    # The console: the toy's block, not vLLM's banner.
    for captured in (first, second):
        assert TOY_BANNER in captured.out
        assert "toy served 6, dropped 0" in captured.out
        assert "Serving Benchmark Result" not in captured.out
        assert f"Results saved to {out_dir / name}" in captured.out

    # sonic.analysis: the document says it is the toy's, and without that word owns() tells.
    assert analysis.doc_dialect(doc) == "toy"
    bare = {k: v for k, v in doc.items() if k != "sonic"}
    assert dialects.of_document(bare) is toy
    cols = analysis.normalise_metrics(doc, "toy")
    assert cols["completed"] == 6 and cols["failed"] == 0
    assert cols["duration_s"] == doc["wall_s"]
    assert cols["total_output_tokens"] == doc["tokens_out"]
    assert cols["mean_ttft_ms"] == doc["mean_first_token_ms"]
    assert cols["median_ttft_ms"] == doc["median_first_token_ms"]
    assert cols["p99_ttft_ms"] == doc["p99_first_token_ms"]
    assert cols["p90_ttft_ms"] == sonic["latency_ms"]["ttft"]["p90"]  # not a toy key
    # Read from the toy's keys, not from the sonic section.
    forged = {**doc, "served": 99, "mean_first_token_ms": 12345.0}
    cols = analysis.normalise_metrics(forged, "toy")
    assert cols["completed"] == 99 and cols["mean_ttft_ms"] == 12345.0

    # load_results on a results directory holding the toy's file.
    run_dir = tmp_path / "suite" / "runs" / "sim" / "short"
    run_dir.mkdir(parents=True)
    (run_dir / "rate-inf_conc-none_rep-0.json").write_text(json.dumps(doc))
    row = analysis.load_results(tmp_path / "suite").iloc[0]
    assert row["dialect"] == "toy" and row["status"] == "ok"
    assert row["completed"] == 6 and row["mean_ttft_ms"] == doc["mean_first_token_ms"]
    assert math.isinf(row["request_rate"]) and bool(row["simulated"])


def test_after_unregister_toy_is_an_unknown_compat(capsys):
    """Once taken out, --compat toy is a one-line error and nothing lists or reads the toy."""
    dialects.register(TOY)
    dialects.unregister(TOY)
    assert "toy" not in dialects.names() and TOY not in dialects.all_dialects()
    with pytest.raises(SonicError, match="unknown --compat 'toy'") as err:
        _parse("--compat", "toy")
    assert "\n" not in str(err.value)
    assert cli.main(["run", "--compat", "toy", "--base-url", "http://127.0.0.1:9"]) != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "unknown --compat 'toy'" in lines[0]
    assert "toy" not in format_run_help().splitlines()[0]
    with pytest.raises(SonicError, match="cannot tell which tool"):
        dialects.of_document({"toy_version": 1, "served": 1})
