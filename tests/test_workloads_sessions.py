"""Multi-turn session workloads (sonic.workloads): ShareGPT conversations with all their turns,
MAX's synthetic multi-turn chat, custom session files, vLLM's prefix_repetition, the expected
prefix reuse, and the CLI flags. Trace replay is in test_workloads_trace.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sonic.compat.parser import parse_run_args
from sonic.datasets import sample_requests
from sonic.datasets.base import DatasetArgs
from sonic.errors import SonicError
from sonic.workloads import (
    SESSIONS,
    Workload,
    WorkloadSession,
    WorkloadTurn,
    build_workload,
    expected_reuse,
)
from sonic.workloads.blocks import AtomVocabulary
from sonic.workloads.distribution import parse_distribution
from sonic.workloads.reuse import block_reuse
from sonic.workloads.types import COMPLETIONS_JOINER


def _sharegpt(tmp_path: Path, conversations: list[list[tuple[str, str]]]) -> Path:
    path = tmp_path / "sharegpt.json"
    data = [
        {"id": f"c{i}", "conversations": [{"from": r, "value": v} for r, v in conv]}
        for i, conv in enumerate(conversations)
    ]
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# --- ShareGPT conversations with all their turns ---------------------------------------------


def test_sharegpt_sessions_keep_every_turn_and_reference_answers(tmp_path, tokenizer):
    conv = [
        ("system", "You are terse."),
        ("human", "What is the capital of France?"),
        ("gpt", "Paris, a city on the Seine."),
        ("human", "And of Italy?"),
        ("gpt", "Rome."),
        ("human", "Thanks"),
    ]
    broken = [("human", "one"), ("gpt", "two"), ("gpt", "three"), ("human", "four")]
    path = _sharegpt(tmp_path, [conv, broken])
    args = DatasetArgs(name="sharegpt", path=str(path), num_chat_sessions=5, disable_shuffle=True)
    w = build_workload(args, tokenizer)
    assert w is not None and w.kind == SESSIONS and w.source == "sharegpt"
    assert [s.num_turns for s in w.sessions] == [2, 1]  # trailing question dropped, cut at break
    first = w.sessions[0]
    assert first.system == "You are terse." and first.session_id == "sharegpt-c0"
    assert [t.content for t in first.turns] == ["What is the capital of France?", "And of Italy?"]
    assert [t.reference_answer for t in first.turns] == ["Paris, a city on the Seine.", "Rome."]
    # max_tokens counted as the single-turn sampler counts the reply (special tokens included)
    assert [t.max_tokens for t in first.turns] == [
        tokenizer.count(t.reference_answer, add_special_tokens=True) for t in first.turns
    ]
    assert w.notes == ("only 2 usable conversations of 5 requested",)


def test_sharegpt_sessions_pinned_output_and_delay(tmp_path, tokenizer):
    conv = [("human", "a b c"), ("gpt", "d e f"), ("human", "g h"), ("gpt", "i j")]
    path = _sharegpt(tmp_path, [conv] * 3)
    args = DatasetArgs(
        name="sharegpt",
        path=str(path),
        num_chat_sessions=2,
        sharegpt_output_len=7,
        delay_between_chat_turns="250",
    )
    w = build_workload(args, tokenizer)
    assert len(w.sessions) == 2
    for s in w.sessions:
        assert [t.max_tokens for t in s.turns] == [7, 7]
        assert [t.think_s for t in s.turns] == [0.0, 0.25]


def test_sharegpt_sessions_stop_at_the_model_length(tmp_path, tokenizer):
    long = " ".join(["verse"] * 1500)  # ~1500 tokens per message; the fixture allows 4096
    conv = [("human", long), ("gpt", long), ("human", long), ("gpt", long)]
    w = build_workload(
        DatasetArgs(name="sharegpt", path=str(_sharegpt(tmp_path, [conv])), num_chat_sessions=1),
        tokenizer,
    )
    assert tokenizer.model_max_length == 4096
    assert w.sessions[0].num_turns == 1


# --- MAX's synthetic multi-turn chat ---------------------------------------------------------


def _synthetic(tokenizer, **kw):
    base = dict(
        name="random",
        compat="max-benchmark",
        num_chat_sessions=12,
        random_input_len=40,
        random_output_len=6,
        seed=5,
    )
    return build_workload(DatasetArgs(**{**base, **kw}), tokenizer)


def test_synthetic_sessions_counts_and_lengths(tokenizer):
    w = _synthetic(tokenizer, random_num_turns="3", random_first_turn_ratio=2.5)
    assert w.kind == SESSIONS and len(w.sessions) == 12
    assert all(s.num_turns == 3 for s in w.sessions)
    for s in w.sessions:
        lens = [tokenizer.count(t.content) for t in s.turns]
        assert lens == [100, 40, 40]  # int(40 * 2.5) first, then 40 (fixed: ratio 1.0 in MAX)
        assert [t.max_tokens for t in s.turns] == [6, 6, 6]
        assert [tokenizer.count(t.reference_answer) for t in s.turns] == [6, 6, 6]
        assert [t.think_s for t in s.turns] == [0.0, 0.0, 0.0]


def test_synthetic_turn_distribution_and_delays(tokenizer):
    w = _synthetic(
        tokenizer,
        num_chat_sessions=60,
        random_num_turns="DU(2,5)",
        delay_between_chat_turns="U(100,300)",
    )
    turns = [s.num_turns for s in w.sessions]
    assert set(turns) <= {2, 3, 4, 5} and len(set(turns)) >= 3
    for s in w.sessions:
        assert s.turns[0].think_s == 0.0
        assert all(0.1 <= t.think_s <= 0.3 for t in s.turns[1:])
    again = _synthetic(
        tokenizer,
        num_chat_sessions=60,
        random_num_turns="DU(2,5)",
        delay_between_chat_turns="U(100,300)",
    )
    assert again == w  # same seed, same workload


def test_synthetic_shared_system_prefix(tokenizer):
    w = _synthetic(
        tokenizer,
        random_num_turns="2",
        random_sys_prompt_ratio=0.5,
        random_max_num_unique_sys_prompt=1,
    )
    firsts = [tokenizer.encode(s.turns[0].content) for s in w.sessions]
    assert all(ids[:20] == firsts[0][:20] for ids in firsts)  # floor(40 * 0.5) shared tokens
    assert len({tuple(ids[20:]) for ids in firsts}) == len(firsts)  # the rest is their own
    seconds = [tokenizer.encode(s.turns[1].content)[:20] for s in w.sessions]
    assert len({tuple(ids) for ids in seconds}) == len(seconds)  # later turns: no prefix
    two = _synthetic(
        tokenizer,
        random_sys_prompt_ratio=0.5,
        random_max_num_unique_sys_prompt=2,
        num_chat_sessions=40,
    )
    prefixes = {tuple(tokenizer.encode(s.turns[0].content)[:20]) for s in two.sessions}
    assert len(prefixes) == 2


def test_synthetic_rejects_bad_ratios(tokenizer):
    with pytest.raises(SonicError, match="--random-sys-prompt-ratio"):
        _synthetic(tokenizer, random_sys_prompt_ratio=1.0)
    with pytest.raises(SonicError, match="--random-num-turns: expected a number"):
        _synthetic(tokenizer, random_num_turns="Z(1,2)")


def test_distribution_forms():
    import numpy as np

    rng = np.random.default_rng(0)
    assert parse_distribution("--x", "4").draw(rng) == 4.0
    assert all(2 <= parse_distribution("--x", "DU(2,3)").draw(rng) <= 3 for _ in range(20))
    assert parse_distribution("--x", "N(10, 0)").draw(rng) == 10.0
    assert parse_distribution("--x", "ln(0,1)").draw(rng) > 0
    for bad, why in (("U(3,1)", "lower bound"), ("G(0,1)", "positive"), ("DU(1.5,2)", "integer")):
        with pytest.raises(SonicError, match=why):
            parse_distribution("--x", bad)


# --- custom session files ---------------------------------------------------------------------


def _sessions_file(tmp_path: Path, lines: list) -> Path:
    path = tmp_path / "sessions.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


def test_custom_sessions_from_agent_transcripts(tmp_path, tokenizer):
    transcript = [
        {"role": "system", "content": "You run tools."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "list "}, {"type": "text", "text": "files"}],
        },  # noqa: E501
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "1", "function": {"name": "ls"}}],
        },  # noqa: E501
        {"role": "tool", "content": "a.txt b.txt"},
        {"role": "assistant", "content": "Two files."},
        {"role": "user", "content": "Delete them?"},
    ]
    path = _sessions_file(tmp_path, [transcript, {"session_id": "x", "messages": transcript[1:3]}])
    w = build_workload(DatasetArgs(name="sessions", path=str(path)), tokenizer)
    assert w.kind == SESSIONS and [s.num_turns for s in w.sessions] == [3, 1]
    s = w.sessions[0]
    assert s.system == "You run tools." and s.session_id == "line-1"
    assert [t.content for t in s.turns] == ["list files", "a.txt b.txt", "Delete them?"]
    assert json.loads(s.turns[0].reference_answer) == [{"function": {"name": "ls"}, "id": "1"}]
    assert s.turns[1].reference_answer == "Two files."
    assert s.turns[1].max_tokens == tokenizer.count("Two files.", add_special_tokens=True)
    assert s.turns[2].reference_answer == "" and s.turns[2].max_tokens is None
    assert w.sessions[1].session_id == "x"


@pytest.mark.parametrize(
    "line,message",
    [
        ({"role": "user"}, "non-empty list of messages"),
        ([{"role": "wizard", "content": "x"}], "message 1: unknown role 'wizard'"),
        ([{"role": "assistant", "content": "x"}], "assistant message without a user"),
        (
            [{"role": "user", "content": "a"}, {"role": "system", "content": "s"}],
            "only supported first",
        ),  # noqa: E501
        ([{"role": "user", "content": [{"type": "image_url"}]}], "only text content parts"),
    ],
)
def test_custom_sessions_errors_name_the_line(tmp_path, tokenizer, line, message):
    ok = [{"role": "user", "content": "hi"}]
    path = _sessions_file(tmp_path, [ok, line])
    with pytest.raises(SonicError) as err:
        build_workload(DatasetArgs(name="sessions", path=str(path)), tokenizer)
    assert f"{path} line 2" in str(err.value) and message in str(err.value)


# --- prefix_repetition -----------------------------------------------------------------------


def test_prefix_repetition_shape(tokenizer):
    args = DatasetArgs(
        name="prefix_repetition",
        num_prompts=23,
        prefix_repetition_prefix_len=24,
        prefix_repetition_suffix_len=9,
        prefix_repetition_num_prefixes=4,
        prefix_repetition_output_len=5,
    )
    reqs = sample_requests(args, tokenizer)
    assert len(reqs) == 20  # 4 prefixes x (23 // 4)
    groups: dict[tuple[int, ...], int] = {}
    for r in reqs:
        ids = tokenizer.encode(r.prompt)
        assert len(ids) == r.prompt_len == 33 and r.expected_output_len == 5
        groups[tuple(ids[:24])] = groups.get(tuple(ids[:24]), 0) + 1
    assert sorted(groups.values()) == [5, 5, 5, 5]
    assert len({r.prompt for r in reqs}) == 20
    unshuffled = sample_requests(
        DatasetArgs(**{**args.__dict__, "disable_shuffle": True}), tokenizer
    )
    assert [r.prompt for r in unshuffled] != [r.prompt for r in reqs]
    assert sorted(r.prompt for r in unshuffled) == sorted(r.prompt for r in reqs)
    with pytest.raises(SonicError, match="below --prefix-repetition-num-prefixes"):
        sample_requests(DatasetArgs(**{**args.__dict__, "num_prompts": 3}), tokenizer)


# --- expected reuse --------------------------------------------------------------------------


def test_block_reuse_counts_whole_prefix_blocks():
    a, b, c = list(range(32)), list(range(100, 116)), list(range(200, 216))
    r = block_reuse([a, a + b, c, b], 16)
    # second request reuses a's two blocks; the last b has no earlier prefix of its own
    assert (r.prompt_tokens, r.reused_tokens) == (32 + 48 + 16 + 16, 32)
    assert r.share == pytest.approx(32 / 112)
    assert block_reuse([a + [1, 2, 3], a], 16).reused_tokens == 32  # partial tail not cached
    assert block_reuse([a, a], 64).reused_tokens == 0  # no full block at 64


def test_expected_reuse_of_sessions_counts_the_history(tokenizer):
    atoms = AtomVocabulary(tokenizer, 0)

    def words(key: str, n: int) -> str:
        return atoms.text(atoms.block(key, n))

    turns = (
        WorkloadTurn(words("u1", 32), 16, words("a1", 16)),
        WorkloadTurn(words("u2", 16), 16, words("a2", 16)),
    )
    w = Workload(kind=SESSIONS, source="test", sessions=(WorkloadSession(turns),))
    r = expected_reuse(w, tokenizer, api="completions", block_sizes=(16,))
    # BOS + 32 tokens, then BOS + 32 + 16 + 16 and two blank lines: the second turn finds
    # the first's 2 blocks
    sep = tokenizer.count(COMPLETIONS_JOINER)
    assert r.by_block_size[0].prompt_tokens == 33 + 65 + 2 * sep
    assert r.by_block_size[0].reused_tokens == 32
    templated = expected_reuse(w, tokenizer, api="chat", block_sizes=(16, 8))
    assert templated.requests == 2 and 0 < templated.share(16) <= templated.share(8) < 1
    assert templated.to_dict()["by_block_size"]["8"]["share"] == templated.share(8)


# --- flags -----------------------------------------------------------------------------------


def test_session_flags_parse_under_max_2026():
    args = parse_run_args(
        [
            "--compat",
            "max-benchmark",
            "--model",
            "m",
            "--dataset-name",
            "random",
            "--num-chat-sessions",
            "8",
            "--random-num-turns",
            "N(4,1)",
            "--delay-between-chat-turns",
            "DU(10,20)",
            "--random-first-turn-ratio",
            "3",
            "--random-sys-prompt-ratio",
            "0.25",
            "--random-max-num-unique-sys-prompt",
            "4",
            "--ignore-first-turn-stats",
            "--max-concurrent-conversations",
            "2",
        ]
    )
    d = args.dataset
    assert (d.num_chat_sessions, d.random_num_turns, d.delay_between_chat_turns) == (
        8,
        "N(4,1)",
        "DU(10,20)",
    )
    assert (d.random_first_turn_ratio, d.random_sys_prompt_ratio) == (3.0, 0.25)
    assert (d.random_max_num_unique_sys_prompt, d.ignore_first_turn_stats) == (4, True)
    assert d.max_concurrent_conversations == 2
    assert args.client_args()["num_chat_sessions"] == 8
    plain = parse_run_args(["--compat", "max-benchmark", "--model", "m"])
    assert "num_chat_sessions" not in plain.client_args()


def test_session_flags_without_sessions_are_refused(tokenizer):
    args = DatasetArgs(name="random", random_num_turns="3")
    with pytest.raises(SonicError, match="--random-num-turns applies to --dataset-name random"):
        build_workload(args, tokenizer)
    with pytest.raises(SonicError, match="--random-sys-prompt-ratio applies"):
        build_workload(DatasetArgs(name="sessions", random_sys_prompt_ratio=0.5), tokenizer)
    with pytest.raises(SonicError, match="--max-concurrent-conversations needs a multi-turn"):
        build_workload(DatasetArgs(name="random", max_concurrent_conversations=2), tokenizer)
    with pytest.raises(SonicError, match="--ignore-first-turn-stats needs a multi-turn"):
        build_workload(DatasetArgs(name="timed_trace", ignore_first_turn_stats=True), tokenizer)
    with pytest.raises(SonicError, match="recorded gaps"):
        build_workload(DatasetArgs(name="trace", delay_between_chat_turns="5"), tokenizer)
    with pytest.raises(SonicError, match="not sonnet"):
        build_workload(DatasetArgs(name="sonnet", num_chat_sessions=2), tokenizer)
    with pytest.raises(SonicError, match="its sessions come from the file"):
        build_workload(DatasetArgs(name="sessions", num_chat_sessions=2), tokenizer)
    assert build_workload(DatasetArgs(name="random"), tokenizer) is None
    with pytest.raises(SonicError, match="--num-chat-sessions"):
        parse_run_args(["--num-chat-sessions", "0"])


def test_client_conversion(tokenizer):
    from sonic import client
    from sonic.workloads.convert import to_client_sessions

    w = _synthetic(tokenizer, random_num_turns="2", delay_between_chat_turns="50")
    out = to_client_sessions(w)
    assert len(out) == 12 and isinstance(out[0], client.Session)
    assert out[0].turns[1].think_s == pytest.approx(0.05)
    assert out[0].turns[0].content == w.sessions[0].turns[0].content
    assert math.isclose(sum(len(s.turns) for s in out), w.num_requests)


def test_fingerprint_follows_the_seed_and_the_history(tokenizer):
    a = _synthetic(tokenizer, random_num_turns="2")
    assert a.fingerprint() == _synthetic(tokenizer, random_num_turns="2").fingerprint()
    assert a.fingerprint() != _synthetic(tokenizer, random_num_turns="2", seed=6).fingerprint()
    s = a.sessions[0]
    changed = s.turns[0].__class__(s.turns[0].content, s.turns[0].max_tokens, "other answer")
    other = Workload(
        kind=SESSIONS,
        source="random",
        sessions=(
            WorkloadSession((changed, *s.turns[1:]), s.system, s.session_id),
            *a.sessions[1:],
        ),
    )
    assert other.fingerprint() != a.fingerprint()
    assert a.describe()["sessions"] == 12 and a.describe()["requests"] == 24


def test_max_2025_refuses_sessions_it_would_draw_differently():
    with pytest.raises(SonicError, match="--num-chat-sessions is not supported with --compat max"):
        parse_run_args(["--compat", "max", "--model", "m", "--num-chat-sessions", "3"])


def test_measured_hit_rate_from_counters_else_a_gauge_and_usage_share():
    """The engine's own measures: vLLM-style counters first, SGLang's hit-rate gauge (mean over
    the run) where there are no counters, nothing without either; and the share of prompt
    tokens the responses' usage reported as cached (-1: not reported)."""
    import types

    import numpy as np

    from sonic.telemetry.scrape import Scrape
    from sonic.telemetry.session import EndpointTelemetry
    from sonic.workloads.section import measured_hit_rate, reported_cached_share

    def scrape(t: int, **values: float) -> Scrape:
        return Scrape("during", t, t + 1, True, values=values)

    def tel(deltas: dict, scrapes: list) -> types.SimpleNamespace:
        primary = EndpointTelemetry("server", "http://x/metrics", "sglang", deltas, {}, scrapes)
        return types.SimpleNamespace(primary=primary, window_ns=(0, 100))

    counters = {
        "normalized": {"prefix_cache_hits_total": 30.0, "prefix_cache_queries_total": 120.0}
    }
    gauge = [scrape(10, prefix_cache_hit_rate=0.2), scrape(20, prefix_cache_hit_rate=0.6)]
    assert measured_hit_rate(tel(counters, gauge)) == pytest.approx(0.25)
    assert measured_hit_rate(tel({}, gauge)) == pytest.approx(0.4)
    assert measured_hit_rate(tel({}, [scrape(10, running=1.0)])) is None
    assert measured_hit_rate(types.SimpleNamespace(primary=None)) is None

    records = types.SimpleNamespace(
        cached_tokens=np.array([-1, 0, 40, 30]), prompt_tokens=np.array([50, 50, 50, 0])
    )
    assert reported_cached_share(records) == pytest.approx(40 / 100)
    none = types.SimpleNamespace(cached_tokens=np.array([-1, -1]), prompt_tokens=np.array([5, 5]))
    assert reported_cached_share(none) is None
