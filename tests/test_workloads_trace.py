"""Trace replay (sonic.workloads.trace): prompts that share exactly the blocks their hash_ids
say, checked on the prompts' tokens with the fixture tokenizer; send times from timestamps;
session traces; vLLM's timed_trace; malformed files as one-line errors through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simproc import run_sonic, sim_process
from sonic.datasets.base import DatasetArgs
from sonic.errors import SonicError
from sonic.workloads import REQUESTS, SESSIONS, build_workload, expected_reuse
from sonic.workloads.reuse import block_reuse
from sonic.workloads.trace import generate_trace
from sonic.workloads.types import COMPLETIONS_JOINER

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TRACE = FIXTURES / "trace_small.jsonl"
SESSION_TRACE = FIXTURES / "trace_sessions.jsonl"
BLOCK = 16


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _trace(path: Path, **kw) -> DatasetArgs:
    return DatasetArgs(name="trace", path=str(path), trace_block_size=BLOCK, **kw)


def test_fixtures_are_what_the_generator_writes(tmp_path):
    assert generate_trace(tmp_path / "a.jsonl", num_requests=24, block_size=16, num_prefixes=3)
    assert (tmp_path / "a.jsonl").read_text() == TRACE.read_text()
    generate_trace(tmp_path / "b.jsonl", num_requests=12, num_prefixes=3, sessions=True, seed=1)
    assert (tmp_path / "b.jsonl").read_text() == SESSION_TRACE.read_text()


def test_prompts_share_exactly_the_blocks_with_equal_ids(tokenizer):
    records = _records(TRACE)
    w = build_workload(_trace(TRACE), tokenizer)
    assert w.kind == REQUESTS and len(w.requests) == len(records) == 24
    order = sorted(range(len(records)), key=lambda i: records[i]["timestamp"])
    blocks = []
    for req, i in zip(w.requests, order, strict=True):
        rec = records[i]
        ids = tokenizer.encode(req.prompt)
        assert len(ids) == req.prompt_len == rec["input_length"]
        assert req.max_tokens == rec["output_length"]
        blocks.append(
            [(h, ids[j * BLOCK : (j + 1) * BLOCK]) for j, h in enumerate(rec["hash_ids"])]
        )
    shared = 0
    for a in blocks:
        for b in blocks:
            for (ha, ta), (hb, tb) in zip(a, b, strict=False):
                n = min(len(ta), len(tb))
                assert (ha == hb) == (ta[:n] == tb[:n]), (ha, hb)
                shared += ha == hb and a is not b
    assert shared > 20  # the fixture has shared prefixes to check


def test_arrivals_follow_timestamps_and_speedup(tokenizer):
    stamps = sorted(r["timestamp"] for r in _records(TRACE))
    w = build_workload(_trace(TRACE, trace_speedup=4.0), tokenizer)
    expect = [(t - stamps[0]) / 1000 / 4.0 for t in stamps]
    assert w.arrivals_s == pytest.approx(expect)
    assert w.arrivals_s[0] == 0.0 and w.arrivals_s[-1] > 0
    short = build_workload(_trace(TRACE, num_prompts=5), tokenizer)
    assert len(short.requests) == 5  # the first --num-prompts records


def test_expected_reuse_matches_the_hash_ids(tokenizer):
    """On the raw prompts (no BOS, no template) the token-level reuse is the hash-level one:
    every full block whose id came earlier, times the block size."""
    records = sorted(_records(TRACE), key=lambda r: r["timestamp"])
    seen: set[int] = set()
    reused = 0
    for r in records:
        full = r["input_length"] // BLOCK
        reused += BLOCK * sum(h in seen for h in r["hash_ids"][:full])
        seen.update(r["hash_ids"])
    w = build_workload(_trace(TRACE), tokenizer)
    tokens = [tokenizer.encode(q.prompt) for q in w.requests]
    got = block_reuse(tokens, BLOCK)
    assert got.reused_tokens == reused > 0
    assert got.prompt_tokens == sum(r["input_length"] for r in records)
    summary = expected_reuse(w, tokenizer)  # default sizes: 16 and the trace's (also 16)
    assert [r.block_size for r in summary.by_block_size] == [16]
    assert 0 < summary.share(16) < 1


def test_session_traces_replay_as_sessions(tokenizer):
    records = _records(SESSION_TRACE)
    w = build_workload(_trace(SESSION_TRACE), tokenizer)
    assert w.kind == SESSIONS and len(w.sessions) == 3
    assert [s.num_turns for s in w.sessions] == [4, 4, 4]
    by_session: dict[str, list[dict]] = {}
    for r in records:
        by_session.setdefault(r["session_id"], []).append(r)
    t0 = min(r["timestamp"] for r in records)
    for start, s in zip(w.arrivals_s, w.sessions, strict=True):
        recs = sorted(by_session[s.session_id], key=lambda r: r["timestamp"])
        assert start == pytest.approx((recs[0]["timestamp"] - t0) / 1000)
        texts: list[str] = []
        for k, (turn, rec) in enumerate(zip(s.turns, recs, strict=True)):
            gap = 0.0 if k == 0 else (rec["timestamp"] - recs[k - 1]["timestamp"]) / 1000
            assert turn.think_s == pytest.approx(gap)
            assert turn.max_tokens == rec["output_length"]
            assert tokenizer.count(turn.reference_answer) == rec["output_length"]
            # joined as the client joins a completions prompt: the recorded length exactly
            texts.append(turn.content)
            assert tokenizer.count(COMPLETIONS_JOINER.join(texts)) == rec["input_length"]
            texts.append(turn.reference_answer)


def test_chat_id_chains_group_into_sessions(tmp_path, tokenizer):
    rows = [
        {
            "chat_id": 1,
            "parent_chat_id": -1,
            "timestamp": 0.0,
            "input_length": 20,
            "output_length": 4,
        },  # noqa: E501
        {
            "chat_id": 2,
            "parent_chat_id": -1,
            "timestamp": 50.0,
            "input_length": 8,
            "output_length": 4,
        },  # noqa: E501
        {
            "chat_id": 3,
            "parent_chat_id": 1,
            "timestamp": 900.0,
            "input_length": 40,
            "output_length": 4,
        },  # noqa: E501
        {
            "chat_id": 4,
            "parent_chat_id": 3,
            "timestamp": 2000.0,
            "input_length": 60,
            "output_length": 4,
        },  # noqa: E501
    ]
    path = tmp_path / "bailian.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    w = build_workload(_trace(path), tokenizer)
    assert [s.num_turns for s in w.sessions] == [3, 1]
    assert w.arrivals_s == pytest.approx((0.0, 0.05))
    assert [t.think_s for t in w.sessions[0].turns] == pytest.approx([0.0, 0.9, 1.1])
    assert any("unique blocks" in n for n in w.notes)  # no hash_ids: nothing shared invented


def test_timed_trace_labels_multiplier_and_self_timed(tmp_path, tokenizer):
    rows = [
        {"t": 10, "in": 40, "out": 3, "ids": [7, 8, 9]},
        {"t": 12, "in": 33, "out": 5, "ids": [7, 8, 1]},
        {"t": 11, "in": 10, "out": 2, "ids": [4]},
    ]
    path = tmp_path / "timed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = dict(
        name="timed_trace",
        path=str(path),
        timed_trace_label_timestamp="t",
        timed_trace_label_input_length="in",
        timed_trace_label_output_length="out",
        timed_trace_label_hash_ids="ids",
        timed_trace_sec_multiplier=0.5,
    )
    timed = build_workload(DatasetArgs(**base, self_timed=True), tokenizer)
    assert timed.arrivals_s == pytest.approx((0.0, 0.5, 1.0))  # sorted by time, x0.5 s
    assert [r.prompt_len for r in timed.requests] == [40, 10, 33]
    a, b = (tokenizer.encode(timed.requests[i].prompt) for i in (0, 2))
    assert a[:32] == b[:32] and a[32:33] != b[32:33]  # ids 7, 8 shared at 16 tokens a block
    untimed = build_workload(DatasetArgs(**base), tokenizer)
    assert untimed.arrivals_s is None and [r.prompt_len for r in untimed.requests] == [40, 33, 10]
    with pytest.raises(SonicError, match="--timed-trace-chunk-hash-size"):
        build_workload(DatasetArgs(**{**base, "timed_trace_chunk_hash_size": 512}), tokenizer)


@pytest.mark.parametrize(
    "line,message",
    [
        ("{not json", "line 2: not valid JSON"),
        ('{"timestamp": 1, "output_length": 3, "hash_ids": [1]}', 'line 2: "input_length" must'),
        ('{"timestamp": -5, "input_length": 3, "output_length": 3}', "is negative"),
        ('{"timestamp": 1, "input_length": 40, "output_length": 3, "hash_ids": [1]}', "need 3"),
        ('{"timestamp": 1, "input_length": 4, "output_length": 3, "hash_ids": [true]}', "list of"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_malformed_trace_lines(tmp_path, tokenizer, line, message):
    path = tmp_path / "bad.jsonl"
    good = '{"timestamp": 0, "input_length": 4, "output_length": 3, "hash_ids": [1]}'
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(SonicError) as err:
        build_workload(_trace(path), tokenizer)
    assert str(err.value).startswith(f"trace file {path} line 2") and message in str(err.value)


@pytest.fixture(scope="module")
def sim_url():
    with sim_process() as url:
        yield url


@pytest.mark.parametrize(
    "name,content,line,flags",
    [
        (
            "trace",
            '{"timestamp": 0, "input_length": 4, "output_length": 3, "hash_ids": [1]}\n'
            '\n{"timestamp": 1, "input_length": 40, "output_length": 2, "hash_ids": [1]}\n',
            3,
            ("--trace-block-size", "16"),
        ),
        ("sessions", '[{"role": "user", "content": "hi"}]\n[{"role": "user"}]\n', 2, ()),
        ("timed_trace", '{"timestamp": 0, "input_length": 4, "output_length": 1}\n', 1, ()),
    ],
)
def test_malformed_files_exit_2_with_one_line(
    sim_url, tmp_path, tokenizer_dir, name, content, line, flags
):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    proc = run_sonic(
        "run",
        "--base-url",
        sim_url,
        "--model",
        "m",
        "--tokenizer",
        str(tokenizer_dir),
        "--dataset-name",
        name,
        "--dataset-path",
        str(path),
        *flags,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert f"{path} line {line}" in lines[0] and lines[0].startswith("sonic run: error:")


def test_trace_replays_at_the_recorded_times(tmp_path, tokenizer_dir, tokenizer):
    """A timed trace against the exact-mode sim: every record sent at its timestamp (the
    intended times are the recorded ones, and sends follow within the dispatch-lag bound),
    each prompt with its recorded length, and the expected reuse in the result."""
    records = _records(TRACE)
    with sim_process("--ttft-ms", "5", "--itl-ms", "1") as url:
        proc = run_sonic(
            "run", "--base-url", url, "--model", "sonic-sim", "--tokenizer", str(tokenizer_dir),
            "--dataset-name", "trace", "--dataset-path", str(TRACE), "--trace-block-size", "16",
            "--trace-speedup", "4", "--save-result", "--save-detailed",
            "--result-dir", str(tmp_path), timeout=120,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Expected prefix reuse (16-token blocks)" in proc.stdout
    result = next(p for p in tmp_path.glob("*.json") if not p.name.endswith(".telemetry.json"))
    doc = json.loads(result.read_text())
    wl = doc["sonic"]["workload"]
    assert wl["kind"] == REQUESTS and wl["timed"] and wl["requests"] == len(records)
    w = build_workload(_trace(TRACE, trace_speedup=4.0), tokenizer)
    share = expected_reuse(w, tokenizer).share(16)
    assert wl["expected_prefix_reuse"]["by_block_size"]["16"]["share"] == pytest.approx(share)
    lines = [json.loads(x) for x in next(tmp_path.glob("*.jsonl")).read_text().splitlines()]
    intended = sorted(x["intended_ns"] for x in lines)
    stamps = sorted(r["timestamp"] for r in records)
    want = [(t - stamps[0]) / 1000 / 4 for t in stamps]  # ms, replayed 4x faster
    got = [(t - intended[0]) / 1e9 for t in intended]
    assert got == pytest.approx(want, abs=1e-6)
    lags = [(x["sent_ns"] - x["intended_ns"]) / 1e6 for x in lines]
    assert max(lags) < 50  # the dispatcher's lag, generous on a shared 2-core machine
    # Each prompt re-tokenizes to its recorded length (the sim counts the tokenizer's BOS too).
    by_time = sorted(lines, key=lambda x: x["intended_ns"])
    assert [x["usage"]["prompt_tokens"] for x in by_time] == [
        r["input_length"] + 1 for r in sorted(records, key=lambda r: r["timestamp"])
    ]


def test_block_size_mismatch_says_which_flag(tokenizer):
    with pytest.raises(SonicError, match="set --trace-block-size to the trace's block size"):
        build_workload(DatasetArgs(name="trace", path=str(TRACE)), tokenizer)  # default 512


@pytest.mark.parametrize("size", [16, 8, 4])
def test_hash_id_reuse_equals_the_token_count(tokenizer, monkeypatch, size):
    """Big traces are counted from their ids; on the raw prompts that is the token count."""
    from sonic.workloads import reuse

    w = build_workload(_trace(TRACE), tokenizer)
    tokens = [tokenizer.encode(q.prompt) for q in w.requests]
    assert reuse.hash_id_reuse(w, size) == block_reuse(tokens, size)
    monkeypatch.setattr(reuse, "RETOKENIZE_LIMIT", 0)
    fast = expected_reuse(w, tokenizer, block_sizes=(size,))
    assert fast.api == "raw" and fast.by_block_size[0] == block_reuse(tokens, size)


def test_session_flags_on_a_trace_without_sessions(tokenizer):
    with pytest.raises(SonicError, match="needs sessions, and trace .* has none"):
        build_workload(_trace(TRACE, max_concurrent_conversations=2), tokenizer)
    w = build_workload(_trace(SESSION_TRACE, max_concurrent_conversations=2), tokenizer)
    assert w.max_concurrent_sessions == 2
