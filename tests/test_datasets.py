"""Dataset samplers: counts, determinism, each profile's filters, lengths and templating rules."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from sonic.datasets import (
    DATASET_NAMES,
    DatasetArgs,
    SampleRequest,
    fingerprint,
    sample_requests,
)
from sonic.datasets.sonnet import BASE_PROMPT, default_text
from sonic.errors import SonicError
from sonic.tokenizer import load_tokenizer

CHATML_START = "<|im_start|>user\n"


@pytest.fixture
def paths(sharegpt_path, code_debug_path, custom_path, tmp_path) -> dict[str, str | None]:
    hf_file = tmp_path / "questions.jsonl"
    with hf_file.open("w") as f:
        for i in range(12):
            f.write(
                json.dumps({"id": i, "question": f"Question number {i}: why is {i} odd?"}) + "\n"
            )
    return {
        "sharegpt": str(sharegpt_path),
        "sonnet": None,
        "random": None,
        "code_debug": str(code_debug_path),
        "custom": str(custom_path),
        "hf": str(hf_file),
        "prefix_repetition": None,
    }


def small_args(name: str, paths: dict, **overrides) -> DatasetArgs:
    """Arguments that fit the small fixtures (fewer prompts than usable records)."""
    base = dict(
        name=name,
        path=paths[name],
        num_prompts=4,
        random_input_len=64,
        random_output_len=16,
        sonnet_input_len=300,
        sonnet_prefix_len=120,
        prefix_repetition_num_prefixes=2,
    )
    base.update(overrides)
    return DatasetArgs(**base)


def expect_error(match: str, args: DatasetArgs, tokenizer) -> str:
    with pytest.raises(SonicError, match=match) as err:
        sample_requests(args, tokenizer)
    message = str(err.value)
    assert "\n" not in message
    return message


# -- every dataset -------------------------------------------------------------------------------
@pytest.mark.parametrize("compat", ["vllm", "max"])
@pytest.mark.parametrize("name", DATASET_NAMES)
def test_samples_num_prompts(name, compat, paths, tokenizer):
    requests = sample_requests(small_args(name, paths, compat=compat), tokenizer)
    assert len(requests) == 4
    for r in requests:
        assert isinstance(r, SampleRequest)
        assert isinstance(r.prompt, str) and r.prompt
        assert r.prompt_len > 0
        assert r.expected_output_len is None or r.expected_output_len > 0


@pytest.mark.parametrize("compat", ["vllm", "max"])
@pytest.mark.parametrize("name", DATASET_NAMES)
def test_same_seed_same_prompts_other_seed_other_prompts(name, compat, paths, tokenizer):
    def run(seed: int) -> str:
        return fingerprint(
            sample_requests(small_args(name, paths, compat=compat, seed=seed), tokenizer)
        )

    assert run(0) == run(0)
    assert run(0) != run(1)


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_global_random_state_is_neither_used_nor_touched(name, paths, tokenizer):
    args = small_args(name, paths)
    random.seed(123)
    np.random.seed(123)
    first = fingerprint(sample_requests(args, tokenizer))
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(999)
    np.random.seed(999)
    py_state2, np_state2 = random.getstate(), np.random.get_state()
    second = fingerprint(sample_requests(args, tokenizer))
    assert first == second
    assert random.getstate() == py_state2 and py_state != py_state2
    assert np.array_equal(np.random.get_state()[1], np_state2[1])
    assert not np.array_equal(np_state[1], np_state2[1])


# -- sharegpt ------------------------------------------------------------------------------------
def _sharegpt_valid_prompts(path: Path, tokenizer, fixed: int | None = None) -> list[str]:
    """The fixture's usable prompts in vLLM's order: filter turns, random.seed(0) + shuffle,
    then the length rules, computed here independently of the sampler."""
    data = [e for e in json.loads(path.read_text()) if len(e.get("conversations", [])) >= 2]
    state = random.getstate()
    random.seed(0)
    random.shuffle(data)
    random.setstate(state)
    out = []
    for e in data:
        prompt, completion = e["conversations"][0]["value"], e["conversations"][1]["value"]
        p = len(tokenizer.encode(prompt, add_special_tokens=True))
        o = (
            fixed
            if fixed is not None
            else len(tokenizer.encode(completion, add_special_tokens=True))
        )
        if p < 4 or p > 1024 or p + o > 2048 or (fixed is None and o < 4):
            continue
        out.append(prompt)
    return out


def test_sharegpt_filters_and_order_match_vllm(sharegpt_path, tokenizer):
    args = DatasetArgs(
        name="sharegpt", path=str(sharegpt_path), num_prompts=100, no_oversample=True
    )
    requests = sample_requests(args, tokenizer)
    expected = _sharegpt_valid_prompts(sharegpt_path, tokenizer)
    assert [r.prompt for r in requests] == expected
    assert len(requests) == 19  # 26 records: 3 without two turns, 4 failing the length rules
    for r in requests:
        assert 4 <= r.prompt_len <= 1024
        assert r.expected_output_len >= 4
        assert r.prompt_len + r.expected_output_len <= 2048
        assert r.prompt_len == tokenizer.count(r.prompt, add_special_tokens=True)
    for filtered in ("only one turn", "is water wet", "harbour master"):
        assert not any(filtered in r.prompt for r in requests)
    assert "Hi" not in {r.prompt for r in requests}


def test_sharegpt_fixed_output_len_skips_output_checks(sharegpt_path, tokenizer):
    args = DatasetArgs(
        name="sharegpt",
        path=str(sharegpt_path),
        num_prompts=100,
        no_oversample=True,
        sharegpt_output_len=100,
    )
    requests = sample_requests(args, tokenizer)
    assert [r.prompt for r in requests] == _sharegpt_valid_prompts(sharegpt_path, tokenizer, 100)
    # The one-word answer and the long-answer story now qualify; the long prompt still does not.
    assert len(requests) == 21
    assert all(r.expected_output_len == 100 for r in requests)
    assert any("is water wet" in r.prompt for r in requests)
    assert any(r.prompt.startswith("Continue this story") for r in requests)
    assert not any(r.prompt.startswith("Summarise this text") for r in requests)


def test_sharegpt_oversampling_per_profile(sharegpt_path, tokenizer):
    valid = set(_sharegpt_valid_prompts(sharegpt_path, tokenizer))
    vllm = sample_requests(
        DatasetArgs(name="sharegpt", path=str(sharegpt_path), num_prompts=60), tokenizer
    )
    assert len(vllm) == 60 and {r.prompt for r in vllm} <= valid
    assert len({r.prompt for r in vllm}) == 19
    max_ = sample_requests(
        DatasetArgs(name="sharegpt", path=str(sharegpt_path), num_prompts=60, compat="max"),
        tokenizer,
    )
    assert len(max_) == 19  # MAX never oversamples


def test_sharegpt_disable_shuffle_keeps_file_order(sharegpt_path, tokenizer):
    args = DatasetArgs(
        name="sharegpt", path=str(sharegpt_path), num_prompts=3, disable_shuffle=True
    )
    requests = sample_requests(args, tokenizer)
    data = json.loads(sharegpt_path.read_text())
    assert [r.prompt for r in requests] == [data[i]["conversations"][0]["value"] for i in range(3)]


def test_sharegpt_path_rules(tokenizer, offline_hub):
    msg = expect_error("--dataset-path", DatasetArgs(name="sharegpt", num_prompts=2), tokenizer)
    assert "under --compat vllm" in msg
    # MAX downloads it; offline with an empty cache that is a one-line error naming the fix.
    msg = expect_error(
        "ShareGPT_V3_unfiltered_cleaned_split.json",
        DatasetArgs(name="sharegpt", num_prompts=2, compat="max"),
        tokenizer,
    )
    assert "--dataset-path" in msg and "offline" in msg


def test_sharegpt_bad_files(tmp_path, tokenizer):
    missing = DatasetArgs(name="sharegpt", path=str(tmp_path / "nope.json"), num_prompts=2)
    expect_error("does not exist", missing, tokenizer)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"conversations": [}')
    expect_error(
        "not valid JSON", DatasetArgs(name="sharegpt", path=str(bad), num_prompts=2), tokenizer
    )
    bad.write_text('{"conversations": []}')
    expect_error("JSON list", DatasetArgs(name="sharegpt", path=str(bad), num_prompts=2), tokenizer)
    bad.write_text('[{"conversations": [{"from": "human", "value": "only one"}]}]')
    expect_error("two turns", DatasetArgs(name="sharegpt", path=str(bad), num_prompts=2), tokenizer)
    short = [{"conversations": [{"value": "Hi"}, {"value": "Hello there my friend"}]}]
    bad.write_text(json.dumps(short))
    expect_error(
        "no usable prompts", DatasetArgs(name="sharegpt", path=str(bad), num_prompts=2), tokenizer
    )


# -- random --------------------------------------------------------------------------------------
def test_random_vllm_range_semantics(tokenizer):
    L, OUT, prefix, r = 128, 32, 16, 0.3
    args = DatasetArgs(
        name="random",
        num_prompts=300,
        random_input_len=L,
        random_output_len=OUT,
        random_prefix_len=prefix,
        random_range_ratio=r,
    )
    requests = sample_requests(args, tokenizer)
    real = L - tokenizer.num_special_tokens_to_add()  # the server adds the BOS back
    lo, hi = math.floor(real * (1 - r)) + prefix, math.ceil(real * (1 + r)) + prefix
    lens = [x.prompt_len for x in requests]
    assert all(lo - 3 <= n <= hi + 3 for n in lens)
    # Spread over the whole symmetric range, above L included (MAX's range never exceeds L).
    assert min(lens) < lo + (hi - lo) / 4 and max(lens) > hi - (hi - lo) / 4
    assert max(lens) > L + prefix
    outs = [x.expected_output_len for x in requests]
    assert all(math.floor(OUT * (1 - r)) <= n <= math.ceil(OUT * (1 + r)) for n in outs)
    assert min(outs) < OUT < max(outs)
    # prompt_len is the re-tokenized length of the text that is sent.
    assert all(x.prompt_len == tokenizer.count(x.prompt) for x in requests)
    # The drawn lengths are numpy default_rng(seed) integers, as in vLLM.
    rng = np.random.default_rng(0)
    targets = rng.integers(math.floor(real * (1 - r)), math.ceil(real * (1 + r)) + 1, size=300)
    close = sum(abs(n - (int(t) + prefix)) <= 1 for n, t in zip(lens, targets))
    assert close >= 0.9 * len(lens)


def test_random_vllm_fixed_length_prefix_and_no_special_tokens(tokenizer):
    args = DatasetArgs(
        name="random",
        num_prompts=100,
        random_input_len=128,
        random_output_len=8,
        random_prefix_len=16,
    )
    requests = sample_requests(args, tokenizer)
    target = 127 + 16
    lens = [x.prompt_len for x in requests]
    assert sum(n == target for n in lens) >= 0.8 * len(lens)
    assert all(abs(n - target) <= 3 for n in lens)
    assert all(x.expected_output_len == 8 for x in requests)
    encoded = [tokenizer.encode(x.prompt) for x in requests]
    specials = set(tokenizer.special_ids)
    assert not any(i in specials for ids in encoded for i in ids)
    # The random prefix is shared: all prompts begin with the same tokens.
    assert len(os.path.commonprefix(encoded)) >= 12


def test_random_max_range_semantics(tokenizer):
    L, OUT = 100, 20
    fixed = sample_requests(
        DatasetArgs(
            name="random", compat="max", num_prompts=50, random_input_len=L, random_output_len=OUT
        ),
        tokenizer,
    )
    # MAX's default ratio 1.0 means fixed lengths; prompt_len is the drawn length.
    assert all(x.prompt_len == L and x.expected_output_len == OUT for x in fixed)
    args = DatasetArgs(
        name="random",
        compat="max",
        num_prompts=300,
        random_input_len=L,
        random_output_len=OUT,
        random_range_ratio=0.5,
    )
    ranged = sample_requests(args, tokenizer)
    lens = [x.prompt_len for x in ranged]
    assert all(50 <= n <= L for n in lens) and min(lens) < 60 and max(lens) > 90
    assert all(10 <= x.expected_output_len <= OUT for x in ranged)
    # Same draws as MAX July 2025 after np.random.seed(seed).
    state = np.random.get_state()
    np.random.seed(0)
    expected = np.random.randint(50, L + 1, size=300)
    np.random.set_state(state)
    assert lens == expected.tolist()


def test_random_range_ratio_validation(tokenizer):
    expect_error(
        "range-ratio", DatasetArgs(name="random", num_prompts=2, random_range_ratio=1.0), tokenizer
    )
    expect_error(
        "range-ratio",
        DatasetArgs(name="random", num_prompts=2, compat="max", random_range_ratio=1.5),
        tokenizer,
    )
    expect_error(
        "random-input-len", DatasetArgs(name="random", num_prompts=2, random_input_len=0), tokenizer
    )


# -- sonnet --------------------------------------------------------------------------------------
def test_sonnet_ships_the_text():
    text = default_text()
    assert text.startswith("FROM fairest creatures we desire increase,")
    assert text.rstrip().endswith("This wish I have; then ten times happy me!")
    assert len(text.splitlines()) == 518


@pytest.mark.parametrize("compat", ["vllm", "max"])
def test_sonnet_lengths_and_shared_prefix(compat, tokenizer):
    args = DatasetArgs(
        name="sonnet", num_prompts=40, compat=compat, endpoint_is_chat=compat == "vllm"
    )
    requests = sample_requests(args, tokenizer)  # raw prompts in both cases
    lens = [r.prompt_len for r in requests]
    upper = 550 if compat == "vllm" else 1.1 * 550  # vLLM redraws prompts over input_len
    assert all(0.85 * 550 <= n <= upper for n in lens)
    assert all(r.expected_output_len == 150 for r in requests)
    for r in requests:
        assert r.prompt.startswith(BASE_PROMPT)
        assert r.prompt_len == tokenizer.count(
            tokenizer.apply_chat_template([{"role": "user", "content": r.prompt}]),
            add_special_tokens=True,
        )
    shared = os.path.commonprefix([r.prompt for r in requests])
    assert shared.startswith(BASE_PROMPT + "FROM fairest creatures we desire increase,\n")
    assert 0.6 * 200 <= tokenizer.count(shared) <= 1.2 * 200


@pytest.mark.parametrize(
    ("compat", "chat", "templated"),
    [("vllm", False, True), ("vllm", True, False), ("max", False, False), ("max", True, True)],
)
def test_sonnet_templating_rules(compat, chat, templated, tokenizer):
    args = DatasetArgs(name="sonnet", num_prompts=3, compat=compat, endpoint_is_chat=chat)
    for r in sample_requests(args, tokenizer):
        assert r.prompt.startswith(CHATML_START) is templated
        assert r.prompt.startswith(BASE_PROMPT) is not templated


def test_sonnet_options_and_errors(tokenizer, tokenizer_dir, tmp_path):
    unbounded = sample_requests(
        DatasetArgs(name="sonnet", num_prompts=2, sonnet_output_len=None), tokenizer
    )
    assert all(r.expected_output_len is None for r in unbounded)
    custom_text = tmp_path / "lines.txt"
    custom_text.write_text("".join(f"line number {i} of my own poem\n" for i in range(200)))
    own = sample_requests(
        DatasetArgs(
            name="sonnet",
            path=str(custom_text),
            num_prompts=2,
            sonnet_input_len=200,
            sonnet_prefix_len=80,
        ),
        tokenizer,
    )
    assert all("of my own poem" in r.prompt for r in own)
    expect_error(
        "greater than",
        DatasetArgs(name="sonnet", num_prompts=2, sonnet_input_len=100, sonnet_prefix_len=100),
        tokenizer,
    )
    expect_error(
        "does not exist", DatasetArgs(name="sonnet", path=str(tmp_path / "x.txt")), tokenizer
    )
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(tokenizer_dir / "tokenizer.json", bare / "tokenizer.json")
    expect_error(
        "chat template", DatasetArgs(name="sonnet", num_prompts=2), load_tokenizer(str(bare))
    )


# -- custom --------------------------------------------------------------------------------------
def _custom_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_custom_templating_and_output_lengths(custom_path, tokenizer):
    rows = _custom_rows(custom_path)
    by_prompt = {r["prompt"]: r["output_tokens"] for r in rows}
    templated = sample_requests(
        DatasetArgs(name="custom", path=str(custom_path), num_prompts=5), tokenizer
    )
    for r in templated:
        assert r.prompt.startswith(CHATML_START) and r.expected_output_len == 256
        inner = r.prompt[len(CHATML_START) :].split("<|im_end|>")[0]
        assert inner in by_prompt
        assert r.prompt_len == tokenizer.count(r.prompt, add_special_tokens=True)
    raw = sample_requests(
        DatasetArgs(
            name="custom",
            path=str(custom_path),
            num_prompts=5,
            custom_output_len=-1,
            endpoint_is_chat=True,
        ),
        tokenizer,
    )
    for r in raw:
        assert r.prompt in by_prompt and r.expected_output_len == by_prompt[r.prompt]
    skipped = sample_requests(
        DatasetArgs(
            name="custom",
            path=str(custom_path),
            num_prompts=3,
            skip_chat_template=True,
            custom_output_len=7,
        ),
        tokenizer,
    )
    assert all(r.prompt in by_prompt and r.expected_output_len == 7 for r in skipped)


def test_custom_all_records_and_oversampling(custom_path, tokenizer):
    every = sample_requests(
        DatasetArgs(name="custom", path=str(custom_path), num_prompts=0, skip_chat_template=True),
        tokenizer,
    )
    assert sorted(r.prompt for r in every) == sorted(r["prompt"] for r in _custom_rows(custom_path))
    more = sample_requests(
        DatasetArgs(name="custom", path=str(custom_path), num_prompts=20, skip_chat_template=True),
        tokenizer,
    )
    assert len(more) == 20 and len({r.prompt for r in more}) == 8


def test_custom_errors(tmp_path, tokenizer):
    expect_error("--dataset-path", DatasetArgs(name="custom", num_prompts=2), tokenizer)
    expect_error(
        "does not exist", DatasetArgs(name="custom", path=str(tmp_path / "x.jsonl")), tokenizer
    )
    wrong = tmp_path / "prompts.json"
    wrong.write_text("[]")
    expect_error(r"\.jsonl", DatasetArgs(name="custom", path=str(wrong)), tokenizer)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"prompt": broken}\n')
    expect_error("line 2", DatasetArgs(name="custom", path=str(bad)), tokenizer)
    bad.write_text('{"text": "no prompt key"}\n')
    expect_error('"prompt"', DatasetArgs(name="custom", path=str(bad)), tokenizer)
    bad.write_text('{"prompt": "no output tokens"}\n')
    expect_error(
        "output_tokens", DatasetArgs(name="custom", path=str(bad), custom_output_len=-1), tokenizer
    )


# -- code_debug ----------------------------------------------------------------------------------
def test_code_debug_license_rule_and_answers(code_debug_path, tokenizer):
    items = [json.loads(line) for line in code_debug_path.read_text().splitlines()]
    with_license = sum("LICENSE" in i["context"] for i in items)
    assert 0 < with_license < len(items)
    dropped = sample_requests(
        DatasetArgs(
            name="code_debug", path=str(code_debug_path), num_prompts=50, no_oversample=True
        ),
        tokenizer,
    )
    assert len(dropped) == len(items) - with_license
    assert not any("LICENSE" in r.prompt for r in dropped)
    kept = sample_requests(
        DatasetArgs(
            name="code_debug",
            path=str(code_debug_path),
            num_prompts=50,
            code_debug_keep_license=True,
        ),
        tokenizer,
    )
    assert len(kept) == 50 and all("LICENSE" in r.prompt for r in kept)  # oversampled from 2
    letter_len = tokenizer.count("A", add_special_tokens=True)
    for r in dropped:
        assert r.prompt.startswith("There is ONLY ONE function in the large project")
        assert "Which function has deliberate error?\nA. " in r.prompt
        assert r.expected_output_len == letter_len
        assert r.prompt_len == tokenizer.count(r.prompt, add_special_tokens=True)
    pinned = sample_requests(
        DatasetArgs(
            name="code_debug", path=str(code_debug_path), num_prompts=3, sharegpt_output_len=64
        ),
        tokenizer,
    )
    assert all(r.expected_output_len == 64 for r in pinned)


def test_code_debug_drops_items_over_model_max_length(
    code_debug_path, tokenizer, tokenizer_dir, tmp_path
):
    lens = sorted(
        r.prompt_len
        for r in sample_requests(
            DatasetArgs(
                name="code_debug", path=str(code_debug_path), num_prompts=50, no_oversample=True
            ),
            tokenizer,
        )
    )
    limit = lens[len(lens) // 2]
    d = tmp_path / "tok"
    d.mkdir()
    shutil.copy(tokenizer_dir / "tokenizer.json", d / "tokenizer.json")
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    config["model_max_length"] = limit
    (d / "tokenizer_config.json").write_text(json.dumps(config))
    short = load_tokenizer(str(d))
    requests = sample_requests(
        DatasetArgs(
            name="code_debug", path=str(code_debug_path), num_prompts=50, no_oversample=True
        ),
        short,
    )
    assert requests and len(requests) < len(lens)
    assert all(r.prompt_len + r.expected_output_len <= limit for r in requests)


def test_code_debug_errors(tmp_path, tokenizer):
    expect_error(
        "does not exist", DatasetArgs(name="code_debug", path=str(tmp_path / "c.jsonl")), tokenizer
    )
    bad = tmp_path / "c.jsonl"
    bad.write_text(
        json.dumps({"context": "x", "options": ["a", "b", "c", "d"], "answer": ["z"]}) + "\n"
    )
    expect_error("answer", DatasetArgs(name="code_debug", path=str(bad)), tokenizer)
    bad.write_text(json.dumps({"context": "x", "options": ["a", "b"], "answer": ["a"]}) + "\n")
    expect_error("four strings", DatasetArgs(name="code_debug", path=str(bad)), tokenizer)


def test_code_debug_hub_fallback_is_offline_friendly(tokenizer, offline_hub):
    msg = expect_error("InfiniteBench", DatasetArgs(name="code_debug", num_prompts=2), tokenizer)
    assert "--dataset-path" in msg


# -- hf ------------------------------------------------------------------------------------------
def test_hf_local_files(tmp_path, tokenizer):
    jsonl = tmp_path / "q.jsonl"
    rows = [{"question": f"What is {i} plus {i}?", "answer": f"It is {2 * i}."} for i in range(10)]
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = DatasetArgs(name="hf", path=str(jsonl), num_prompts=6, skip_chat_template=True)
    requests = sample_requests(args, tokenizer)
    questions = {r["question"] for r in rows}
    assert len(requests) == 6 and all(r.prompt in questions for r in requests)
    assert all(r.expected_output_len == 256 for r in requests)
    counted = sample_requests(
        DatasetArgs(name="hf", path=str(jsonl), num_prompts=3, hf_output_column="answer"), tokenizer
    )
    answers = {r["question"]: r["answer"] for r in rows}
    for r in counted:
        question = r.prompt[len(CHATML_START) :].split("<|im_end|>")[0]
        assert r.expected_output_len == tokenizer.count(answers[question], add_special_tokens=True)
    csv_file = tmp_path / "t.csv"
    csv_file.write_text("id,body\n1,First body text\n2,Second body text\n3,Third body text\n")
    from_csv = sample_requests(
        DatasetArgs(
            name="hf",
            path=str(csv_file),
            num_prompts=3,
            hf_text_column="body",
            hf_output_len=9,
            endpoint_is_chat=True,
        ),
        tokenizer,
    )
    assert sorted(r.prompt for r in from_csv) == [
        "First body text",
        "Second body text",
        "Third body text",
    ]
    assert all(r.expected_output_len == 9 for r in from_csv)


def test_hf_errors(tmp_path, tokenizer):
    expect_error("--dataset-path", DatasetArgs(name="hf", num_prompts=2), tokenizer)
    expect_error(
        "does not exist", DatasetArgs(name="hf", path=str(tmp_path / "none.jsonl")), tokenizer
    )
    f = tmp_path / "cols.jsonl"
    f.write_text(json.dumps({"a": 1, "b": [2]}) + "\n")
    expect_error("--hf-text-column", DatasetArgs(name="hf", path=str(f)), tokenizer)
    expect_error("no column", DatasetArgs(name="hf", path=str(f), hf_text_column="zzz"), tokenizer)


def test_hf_hub_and_parquet_need_datasets(tmp_path, tokenizer, offline_hub, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    try:
        import datasets  # noqa: F401
    except ImportError:
        expect_error(
            "pip install datasets", DatasetArgs(name="hf", path="some-org/some-dataset"), tokenizer
        )
        parquet = tmp_path / "t.parquet"
        parquet.write_bytes(b"PAR1")
        expect_error("pip install datasets", DatasetArgs(name="hf", path=str(parquet)), tokenizer)
        return
    import datasets

    parquet = tmp_path / "t.parquet"
    datasets.Dataset.from_list([{"prompt": f"Parquet prompt {i}"} for i in range(5)]).to_parquet(
        str(parquet)
    )
    requests = sample_requests(
        DatasetArgs(name="hf", path=str(parquet), num_prompts=5, skip_chat_template=True), tokenizer
    )
    assert sorted(r.prompt for r in requests) == [f"Parquet prompt {i}" for i in range(5)]
    expect_error(
        "could not load", DatasetArgs(name="hf", path="sonic-tests/no-such-dataset"), tokenizer
    )


# -- registry ------------------------------------------------------------------------------------
def test_registry_errors(tokenizer):
    msg = expect_error("unknown dataset", DatasetArgs(name="sharegtp"), tokenizer)
    assert "'sharegpt'" in msg
    expect_error("not supported by sonic yet", DatasetArgs(name="burstgpt"), tokenizer)
    expect_error("compat", DatasetArgs(name="random", compat="trt"), tokenizer)
    expect_error("num-prompts", DatasetArgs(name="random", num_prompts=0), tokenizer)


def test_fingerprint_is_order_and_content_sensitive():
    a = [SampleRequest("x", 1, 2), SampleRequest("y", 1, 2)]
    assert fingerprint(a) == fingerprint([SampleRequest("x", 1, 2), SampleRequest("y", 1, 2)])
    assert fingerprint(a) != fingerprint(a[::-1])
    assert fingerprint(a) != fingerprint([SampleRequest("x", 1, 3), SampleRequest("y", 1, 2)])
