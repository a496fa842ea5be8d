"""Metric definitions on hand-built records, with answers worked out independently here."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
import pytest

from sonic.errors import SonicError
from sonic.metrics import (
    MetricRules,
    Retokenize,
    compute_metrics,
    parse_goodput,
    parse_metric_percentiles,
    parse_percentile_metrics,
    summarize,
    token_counter,
)
from sonic.records import (
    CHUNK_DONE,
    CHUNK_EMPTY_CHOICE,
    CHUNK_NO_CHOICE,
    CHUNK_TEXT,
    RunRecords,
)

MS = 1_000_000  # ns per ms
VLLM = MetricRules.for_compat("vllm")
MAX = MetricRules.for_compat("max")


# ------------------------------------------------------------------ record builder


@dataclass
class Req:
    """One request of a synthetic run; times in ms since t0, chunks as (ms, kind, text)."""

    sent: float | None
    chunks: list[tuple[float, int, str]] = field(default_factory=list)
    intended: float | None = None
    end: float | None = None
    error: str | None = None
    prompt_tokens: int = -1
    completion_tokens: int = -1
    status: int = 200


def stream(
    sent: float,
    ttft: float,
    itl: float,
    n_text: int,
    *,
    role_first: float | None = None,
    usage: bool = True,
    done_after: float = 1.0,
    **kw,
) -> Req:
    """A typical SSE stream: [role chunk], n_text text chunks ITL apart, usage chunk, [DONE]."""
    chunks: list[tuple[float, int, str]] = []
    if role_first is not None:
        chunks.append((sent + role_first, CHUNK_EMPTY_CHOICE, ""))
    t = sent + ttft
    for k in range(n_text):
        chunks.append((t, CHUNK_TEXT, f"w{k} "))
        t += itl
    last = chunks[-1][0] if chunks else sent
    if usage:
        chunks.append((last + done_after / 2, CHUNK_NO_CHOICE, ""))
    chunks.append((last + done_after, CHUNK_DONE, ""))
    kw.setdefault("intended", sent)
    kw.setdefault("end", last + done_after)
    if usage:
        kw.setdefault("completion_tokens", n_text)
        kw.setdefault("prompt_tokens", 10)
    return Req(sent=sent, chunks=chunks, **kw)


def build_records(reqs: list[Req], *, cancelled: bool = False) -> RunRecords:
    chunks = [c for r in reqs for c in r.chunks]
    offsets = np.cumsum([0] + [len(r.chunks) for r in reqs]).astype(np.int64)
    texts = [c[2].encode() for c in chunks]
    text_offsets = np.cumsum([0] + [len(t) for t in texts]).astype(np.int64)

    def ns(v: float | None) -> int:
        return -1 if v is None else int(round(v * MS))

    return RunRecords(
        t0_unix_ns=1_700_000_000_000_000_000,
        t0_mono_ns=123,
        cancelled=cancelled,
        intended_ns=np.array(
            [ns(r.intended if r.intended is not None else r.sent) for r in reqs], np.int64
        ),
        sent_ns=np.array([ns(r.sent) for r in reqs], np.int64),
        end_ns=np.array([ns(r.end) for r in reqs], np.int64),
        http_status=np.array([r.status for r in reqs], np.int32),
        prompt_tokens=np.array([r.prompt_tokens for r in reqs], np.int64),
        completion_tokens=np.array([r.completion_tokens for r in reqs], np.int64),
        error=[r.error for r in reqs],
        finish_reason=["length" if r.error is None else None for r in reqs],
        chunk_offsets=offsets,
        chunk_ns=np.array([ns(c[0]) for c in chunks], np.int64),
        chunk_kind=np.array([c[1] for c in chunks], np.uint8),
        chunk_text_offsets=text_offsets,
        text=b"".join(texts),
    )


def words(texts: list[str]) -> list[int]:
    """A deterministic whole-text counter for tests: whitespace-separated words."""
    return [len(t.split()) for t in texts]


def approx(x: float) -> object:
    return pytest.approx(x, rel=1e-9, abs=1e-12)


# ------------------------------------------------------------------ TTFT / end / ITL / TPOT


def test_ttft_rules_differ_when_a_role_only_chunk_arrives_first():
    # role chunk 5 ms after send, first text at 30 ms, 4 texts 10 ms apart, [DONE] 1 ms later.
    recs = build_records([stream(100.0, 30.0, 10.0, 4, role_first=5.0)])
    v = compute_metrics(recs, VLLM, [7], count_tokens=words)
    m = compute_metrics(recs, MAX, [7], count_tokens=words)
    assert v.requests.ttft_s[0] == approx(0.005)
    assert m.requests.ttft_s[0] == approx(0.030)
    # vLLM ends at the last choice chunk (30 + 3*10 = 60 ms); MAX at [DONE] (61 ms).
    assert v.requests.e2el_s[0] == approx(0.060)
    assert m.requests.e2el_s[0] == approx(0.061)
    # vLLM ITLs include the role->first-text gap; MAX only gaps between text chunks.
    assert v.requests.itls(0).tolist() == pytest.approx([0.025, 0.010, 0.010, 0.010])
    assert m.requests.itls(0).tolist() == pytest.approx([0.010, 0.010, 0.010])
    # TPOT = (e2el - ttft) / (out - 1) with out = 4 tokens either way.
    assert v.requests.tpot_s[0] == approx((0.060 - 0.005) / 3)
    assert m.requests.tpot_s[0] == approx((0.061 - 0.030) / 3)
    assert v.stats["tpot"].mean == approx((0.060 - 0.005) / 3)


def test_rules_agree_without_a_role_chunk_except_for_the_end():
    recs = build_records([stream(0.0, 20.0, 5.0, 3, done_after=2.0)])
    v = compute_metrics(recs, VLLM, [3], count_tokens=words)
    m = compute_metrics(recs, MAX, [3], count_tokens=words)
    assert v.requests.ttft_s[0] == m.requests.ttft_s[0] == approx(0.020)
    assert v.requests.e2el_s[0] == approx(0.030)
    assert m.requests.e2el_s[0] == approx(0.032)


def test_tpot_is_undefined_for_single_token_outputs():
    recs = build_records([stream(0.0, 10.0, 5.0, 1), stream(0.0, 10.0, 5.0, 5)])
    m = compute_metrics(recs, VLLM, [3, 3], count_tokens=words)
    assert math.isnan(m.requests.tpot_s[0])
    assert m.stats["tpot"].n == 1
    assert m.stats["tpot"].mean == approx(0.020 / 4)


def test_itl_pool_and_queue_and_intended_send():
    # intended at 0, actually sent 3 ms late (dispatch lag / queue).
    recs = build_records(
        [
            stream(3.0, 10.0, 4.0, 3, intended=0.0),
            stream(50.0, 20.0, 6.0, 2, intended=50.0),
        ]
    )
    m = compute_metrics(recs, VLLM, [1, 1], count_tokens=words)
    assert sorted(m.requests.itl_s.tolist()) == pytest.approx([0.004, 0.004, 0.006])
    assert m.requests.queue_s.tolist() == pytest.approx([0.003, 0.0])
    assert m.requests.ttft_intended_s[0] == approx(0.013)
    assert m.requests.e2el_intended_s[0] == approx(0.003 + 0.018)
    assert m.stats["dispatch_lag"].max == approx(0.003)
    assert m.stats["ttft_intended"].mean == approx((0.013 + 0.020) / 2)


# ------------------------------------------------------------------ token counts


def test_usage_mode_prefers_usage_and_falls_back_to_retokenization():
    reqs = [
        stream(0.0, 10.0, 5.0, 4, completion_tokens=6, prompt_tokens=12),  # server says 6
        stream(0.0, 10.0, 5.0, 3, usage=False),  # no usage: re-tokenized (3 words)
    ]
    m = compute_metrics(build_records(reqs), VLLM, [8, 9], count_tokens=words)
    assert m.requests.output_len.tolist() == [6, 3]
    assert m.requests.input_len.tolist() == [12, 9]  # usage prompt_tokens replaces client len
    assert m.total_output_tokens == 9
    assert m.total_input_tokens == 21
    t = m.tokens
    assert (t.compared, t.usage_total, t.retokenized_total) == (1, 6, 4)
    assert t.max_abs_diff == 2
    assert t.relative_diff == approx((4 - 6) / 6)
    assert t.requests_without_usage == 1
    assert t.input_relative_diff == approx((12 - 8) / 8)


def test_retokenize_and_hybrid_modes():
    reqs = [stream(0.0, 10.0, 5.0, 4, completion_tokens=6, prompt_tokens=12)]
    r = compute_metrics(build_records(reqs), MAX, [8], count_tokens=words)
    assert (r.requests.output_len[0], r.requests.input_len[0]) == (4, 8)
    hybrid = MetricRules(token_count="hybrid")
    h = compute_metrics(build_records(reqs), hybrid, [8], count_tokens=words)
    assert (h.requests.output_len[0], h.requests.input_len[0]) == (4, 12)


def test_missing_tokenizer_is_a_clear_error():
    reqs = [stream(0.0, 10.0, 5.0, 3, usage=False)]
    with pytest.raises(SonicError, match="tokenizer"):
        compute_metrics(build_records(reqs), VLLM, [5])
    with pytest.raises(SonicError, match="tokenizer"):
        compute_metrics(build_records([stream(0.0, 1.0, 1.0, 2)]), MAX, [5])
    # With usage on every response no tokenizer is needed in vLLM mode.
    ok = compute_metrics(build_records([stream(0.0, 1.0, 1.0, 2)]), VLLM, [5])
    assert ok.total_output_tokens == 2 and ok.tokens.compared == 0


def test_token_counter_uses_whole_text_without_special_tokens():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"[UNK]": 0, "[CLS]": 1, "hello": 2, "world": 3}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A", special_tokens=[("[CLS]", 1)]
    )
    assert len(tok.encode("hello world").ids) == 3  # the special token is there by default
    count = token_counter(tok)
    assert list(count(["hello world", "hello", ""])) == [2, 1, 0]
    # Split mid-word across chunks: the whole text is counted once, not per chunk.
    req = Req(
        sent=0.0,
        chunks=[(1.0, CHUNK_TEXT, "hel"), (2.0, CHUNK_TEXT, "lo wor"), (3.0, CHUNK_TEXT, "ld")],
        end=3.0,
    )
    m = compute_metrics(build_records([req]), MAX, [1], count_tokens=count)
    assert m.requests.output_len[0] == 2


def test_token_counter_with_the_project_tokenizer(tokenizer):
    texts = ["Shall I compare thee to a summer's day?", "", "Thou art more lovely"]
    count = token_counter(tokenizer)
    assert list(count(texts)) == [tokenizer.count(t) for t in texts]
    assert list(count(texts))[0] > 0


# ------------------------------------------------------------------ failures


def test_failed_requests_are_counted_and_excluded_from_latency_stats():
    reqs = [
        stream(0.0, 10.0, 5.0, 4),
        stream(0.0, 1.0, 1.0, 2, error="HTTP 500: boom"),
        Req(sent=None, error="cancelled before send"),
        stream(5.0, 30.0, 5.0, 4),
    ]
    m = compute_metrics(build_records(reqs), VLLM, [5, 5, 5, 5], count_tokens=words)
    assert (m.completed, m.failed, m.not_sent) == (2, 2, 1)
    assert m.requests.output_len.tolist() == [4, 0, 0, 4]
    assert m.stats["ttft"].n == 2
    assert m.stats["ttft"].mean == approx((0.010 + 0.030) / 2)
    assert m.stats["itl"].n == 6
    assert m.total_input_tokens == 20  # usage prompt_tokens=10 of the two successes
    assert [i for i, _ in m.errors()] == [1, 2]


def test_max_counts_a_response_without_text_as_failed():
    empty = Req(
        sent=0.0,
        chunks=[(5.0, CHUNK_EMPTY_CHOICE, ""), (6.0, CHUNK_NO_CHOICE, ""), (7.0, CHUNK_DONE, "")],
        end=7.0,
        completion_tokens=0,
    )
    recs = build_records([empty, stream(0.0, 10.0, 5.0, 2)])
    m = compute_metrics(recs, MAX, [3, 3], count_tokens=words)
    assert (m.completed, m.failed) == (1, 1)
    assert m.requests.error[0] and "no generated text" in m.requests.error[0]
    v = compute_metrics(recs, VLLM, [3, 3], count_tokens=words)
    assert v.completed == 2  # vLLM keeps it as a success (with TTFT at the role chunk)


def test_duration_runs_from_t0_to_the_end_of_the_last_request_failed_included():
    reqs = [stream(0.0, 10.0, 5.0, 2), stream(100.0, 0.0, 0.0, 0, usage=False, error="reset")]
    reqs[1].end = 250.0
    m = compute_metrics(build_records(reqs), VLLM, [1, 1], count_tokens=words)
    assert m.duration_s == approx(0.250)
    assert m.request_throughput == approx(1 / 0.250)
    assert m.output_throughput == approx(2 / 0.250)
    first_sent = compute_metrics(
        build_records(reqs), MetricRules(duration_start="first_intended"), [1, 1], words
    )
    assert first_sent.duration_s == approx(0.250)


# ------------------------------------------------------------------ goodput & peaks


def test_goodput_counts_requests_meeting_every_slo():
    reqs = [
        stream(0.0, 50.0, 10.0, 5),  # ttft 50, tpot 10, e2el 90
        stream(0.0, 80.0, 10.0, 5),  # ttft 80 (misses ttft:60)
        stream(0.0, 20.0, 30.0, 5),  # tpot 30 (misses tpot:20)
        stream(0.0, 40.0, 0.0, 1),  # one token: tpot counts as 0 -> good
    ]
    slos = parse_goodput("ttft:60 tpot:20")
    m = compute_metrics(build_records(reqs), VLLM, [1] * 4, words, goodput=slos)
    assert m.good_requests == 2
    assert m.request_goodput == approx(2 / m.duration_s)
    # A value exactly at the SLO meets it.
    exact = compute_metrics(
        build_records(reqs), VLLM, [1] * 4, words, goodput=parse_goodput(["ttft:50", "e2el:90"])
    )
    assert exact.good_requests == 2  # requests 0 (ttft 50, e2el 90) and 3 (ttft 40, e2el 40)
    none = compute_metrics(build_records(reqs), VLLM, [1] * 4, words)
    assert none.request_goodput is None


def _peak_overlap_bruteforce(intervals: list[tuple[float, float]]) -> int:
    """Peak number of half-open [s, e) intervals covering one instant (checked at starts)."""
    return max(sum(1 for s2, e2 in intervals if s2 <= s < e2) for s, _ in intervals)


def test_max_concurrent_requests_is_the_exact_peak_overlap():
    # [0,10) [5,15) [10,20): 2 at most; the end at 10 and the start at 10 do not overlap.
    reqs = [
        Req(sent=0.0, chunks=[(10.0, CHUNK_TEXT, "a")], end=10.0),
        Req(sent=5.0, chunks=[(15.0, CHUNK_TEXT, "a")], end=15.0),
        Req(sent=10.0, chunks=[(20.0, CHUNK_TEXT, "a")], end=20.0),
    ]
    m = compute_metrics(build_records(reqs), VLLM, [1] * 3, words)
    assert m.max_concurrent_requests == 2

    rng = random.Random(7)
    reqs, intervals = [], []
    for _ in range(200):
        s = rng.randrange(0, 5000)
        d = rng.randrange(1, 800)
        reqs.append(Req(sent=float(s), chunks=[(float(s + d), CHUNK_TEXT, "x")], end=s + d))
        intervals.append((s, s + d))
    m = compute_metrics(build_records(reqs), VLLM, [1] * 200, words)
    assert m.max_concurrent_requests == _peak_overlap_bruteforce(intervals)


def test_max_output_tokens_per_s_buckets_token_arrivals_by_second():
    # Request A sent at 100 ms: 30 tokens 10 ms apart from 200 ms (200..490 ms).
    # Request B sent at 500 ms: 50 tokens 12 ms apart from 1050 ms (1050..1638 ms).
    # Buckets count from the first send (100 ms): [100,1100) holds A's 30 + B's 1050..1098
    # (5 tokens); [1100,2100) holds the other 45 of B.
    reqs = [stream(100.0, 100.0, 10.0, 30), stream(500.0, 550.0, 12.0, 50)]
    m = compute_metrics(build_records(reqs), VLLM, [1, 1], words)
    times = [100.0 + 100.0 + 10.0 * k for k in range(30)] + [
        500.0 + 550.0 + 12.0 * k for k in range(50)
    ]
    buckets: dict[int, int] = {}
    for t in times:
        b = int((t - 100.0) // 1000.0)
        buckets[b] = buckets.get(b, 0) + 1
    assert buckets == {0: 35, 1: 45}
    assert m.max_output_tokens_per_s == max(buckets.values())


# ------------------------------------------------------------------ statistics


def test_statistics_equal_numpy_linear_percentiles():
    rng = np.random.default_rng(3)
    ttfts = rng.gamma(2.0, 20.0, size=301)
    reqs = [stream(float(i), float(t), 5.0, 3) for i, t in enumerate(ttfts)]
    m = compute_metrics(build_records(reqs), VLLM, [1] * 301, words, percentiles=[25, 99.9])
    expected = np.round(ttfts * MS) / 1e9  # what the records hold (ns resolution)
    s = m.stats["ttft"]
    assert s.mean == approx(float(np.mean(expected)))
    assert s.std == approx(float(np.std(expected)))  # population std
    assert s.median == approx(float(np.median(expected)))
    for q in (25, 50, 90, 99, 99.9):
        assert s.p(q) == approx(float(np.percentile(expected, q)))


def test_summarize_of_an_empty_set_is_none():
    s = summarize([], [99])
    assert s.n == 0 and s.mean is None and s.p(99) is None


def test_empty_run():
    m = compute_metrics(RunRecords.empty(), VLLM, [])
    assert (m.completed, m.failed, m.duration_s) == (0, 0, 0.0)
    assert m.request_throughput == 0.0 and m.output_throughput == 0.0
    assert m.max_concurrent_requests == 0 and m.max_output_tokens_per_s == 0.0
    assert all(s.n == 0 for s in m.stats.values())


def test_all_failed_run_has_no_latency_samples():
    reqs = [Req(sent=float(i), error="HTTP 503", end=float(i) + 1) for i in range(3)]
    m = compute_metrics(build_records(reqs), MAX, [4, 4, 4], words)
    assert (m.completed, m.failed) == (0, 3)
    assert m.stats["ttft"].n == 0 and m.stats["itl"].n == 0
    assert m.duration_s == approx(0.003)


# ------------------------------------------------------------------ reference implementation


def _reference(req: Req, rules: MetricRules) -> dict[str, float | None]:
    """Straight-line per-request definitions of each tool, one chunk at a time."""
    choice = (CHUNK_TEXT, CHUNK_EMPTY_CHOICE)
    ttft_kinds = choice if rules.ttft_rule == "first_choice" else (CHUNK_TEXT,)
    itl_kinds = choice if rules.itl_rule == "choice" else (CHUNK_TEXT,)
    first = next((t for t, k, _ in req.chunks if k in ttft_kinds), None)
    if rules.end_rule == "last_choice":
        end = next((t for t, k, _ in reversed(req.chunks) if k in choice), None)
    else:
        end = req.chunks[-1][0] if req.chunks else None
    toks = [t for t, k, _ in req.chunks if k in itl_kinds]
    return {
        "ttft": None if first is None else (first - req.sent) / 1e3,
        "e2el": None if end is None else (end - req.sent) / 1e3,
        "itl": [(b - a) / 1e3 for a, b in zip(toks, toks[1:])],
    }


@pytest.mark.parametrize("compat", ["vllm", "max"])
def test_vectorised_metrics_match_a_per_request_reference(compat):
    rules = MetricRules.for_compat(compat)
    rng = random.Random(11)
    reqs = []
    for i in range(250):
        sent = float(rng.randrange(0, 10_000))
        t = sent + rng.uniform(0.5, 50)
        chunks = []
        for _ in range(rng.randrange(0, 12)):
            kind = rng.choice([CHUNK_TEXT, CHUNK_TEXT, CHUNK_TEXT, CHUNK_EMPTY_CHOICE, 2])
            chunks.append((round(t, 3), kind, "tok " if kind == CHUNK_TEXT else ""))
            t += rng.uniform(0.1, 20)
        chunks.append((round(t, 3), CHUNK_DONE, ""))
        err = "boom" if i % 17 == 0 else None
        reqs.append(Req(sent=sent, chunks=chunks, end=t, error=err, completion_tokens=-1))
    m = compute_metrics(build_records(reqs), rules, [3] * len(reqs), words)
    r = m.requests
    for i, req in enumerate(reqs):
        ref = _reference(req, rules)
        for name, got in (("ttft", r.ttft_s[i]), ("e2el", r.e2el_s[i])):
            if ref[name] is None:
                assert math.isnan(got), (i, name)
            else:
                assert got == pytest.approx(ref[name], abs=1e-9), (i, name)
        assert r.itls(i).tolist() == pytest.approx(ref["itl"], abs=1e-9)
        has_text = any(k == CHUNK_TEXT for _, k, _ in req.chunks)
        has_choice = any(k in (CHUNK_TEXT, CHUNK_EMPTY_CHOICE) for _, k, _ in req.chunks)
        expect_ok = (
            req.error is None
            and (has_text or not rules.require_text)
            and (has_choice or not rules.choice_required)
        )
        assert bool(r.success[i]) == expect_ok
    pooled = [
        g for i, req in enumerate(reqs) if r.success[i] for g in _reference(req, rules)["itl"]
    ]
    assert m.stats["itl"].n == len(pooled)
    assert m.stats["itl"].mean == pytest.approx(float(np.mean(pooled)))


# ------------------------------------------------------------------ flag parsing


def test_parse_goodput():
    assert parse_goodput("ttft:500 tpot:50") == {"ttft": 500.0, "tpot": 50.0}
    assert parse_goodput(["e2el:1000.5"]) == {"e2el": 1000.5}
    assert parse_goodput(None) == {}
    for bad in ["ttft", "ttft:", "latency:5", "ttft:-1", "ttft:abc", "ttft:5 ttft:6", "tpot:nan"]:
        with pytest.raises(SonicError, match="goodput"):
            parse_goodput(bad)


def test_parse_percentiles_and_metrics():
    assert parse_metric_percentiles("50,99,99.9") == [50.0, 99.0, 99.9]
    assert parse_metric_percentiles(None) == [99.0]
    assert parse_percentile_metrics("ttft,e2el") == ["ttft", "e2el"]
    assert parse_percentile_metrics(None) == ["ttft", "tpot", "itl"]
    with pytest.raises(SonicError, match="metric-percentiles"):
        parse_metric_percentiles("101")
    with pytest.raises(SonicError, match="metric-percentiles"):
        parse_metric_percentiles("p99")
    with pytest.raises(SonicError, match="percentile-metrics"):
        parse_percentile_metrics("ttft,latency")


def test_unknown_rule_is_rejected():
    with pytest.raises(SonicError, match="ttft_rule"):
        MetricRules(ttft_rule="first_byte")
    with pytest.raises(SonicError, match="compat"):
        MetricRules.for_compat("sglang")


# ------------------------------------------------------------------ skip rules (MAX 2025/2026)


def _four_requests() -> RunRecords:
    # Sent at 0, 10, 20, 30 ms with TTFTs 10, 20, 30, 40 ms; the first sent ends last.
    return build_records(
        [
            stream(0.0, 10.0, 5.0, 4, done_after=200.0),
            stream(10.0, 20.0, 5.0, 4),
            stream(20.0, 30.0, 5.0, 4),
            stream(30.0, 40.0, 5.0, 4),
        ]
    )


def test_skip_first_and_last_leave_aggregates_but_not_counts():
    from sonic.metrics import SkipRules

    recs = _four_requests()
    m = compute_metrics(recs, VLLM, [5] * 4, words, skip=SkipRules(first=1, last=1))
    # first-submitted is request 0; last-completed is request 0 too, then request 3.
    assert (m.completed, m.failed, m.skipped) == (4, 0, 1)
    assert m.stats["ttft"].n == 3
    m2 = compute_metrics(recs, VLLM, [5] * 4, words, skip=SkipRules(first=2, last=1))
    assert m2.skipped == 2 and m2.stats["ttft"].n == 2
    assert m2.stats["ttft"].mean == approx((0.030 + 0.040) / 2)
    assert m2.total_output_tokens == 8


def test_ttft_skip_drops_only_ttft_and_per_request_throughput():
    from sonic.metrics import SkipRules

    m = compute_metrics(_four_requests(), VLLM, [5] * 4, words, skip=SkipRules(ttft=2))
    assert m.stats["ttft"].n == 2 and m.stats["ttft"].mean == approx(0.035)
    assert m.stats["e2el"].n == 4 and m.stats["tpot"].n == 4
    assert m.skipped == 0


# ------------------------------------------------------------------ which answers are re-tokenized


def _counting_words():
    """``words`` that also remembers how many texts it was given."""
    seen: list[int] = []

    def count(texts: list[str]) -> list[int]:
        seen.append(len(texts))
        return words(texts)

    return count, seen


def test_retokenize_policy_parses_and_refuses_bad_values():
    assert Retokenize.parse("all").sample is None
    assert Retokenize.parse(" Needed ").sample == 0
    assert Retokenize.parse("250").sample == 250
    for text in ("all", "needed", "0", "7"):
        assert str(Retokenize.parse(text)) in (text, "needed")
    for bad in ("-1", "some", "1.5", ""):
        with pytest.raises(SonicError, match="--retokenize"):
            Retokenize.parse(bad)


@pytest.mark.parametrize("n,k", [(10, 3), (1000, 1000), (1000, 37), (5, 9), (1, 1)])
def test_the_sample_is_exact_in_size_spread_and_the_same_in_any_batches(n, k):
    policy = Retokenize(k)
    ok = np.ones(n, dtype=bool)
    usage = np.full(n, 5)
    whole = policy.select(np.arange(n), n, ok, usage, VLLM)
    assert whole.sum() == min(k, n)
    picked = np.flatnonzero(whole)
    if picked.size > 1:  # evenly spread: gaps differ by at most one
        gaps = np.diff(picked)
        assert gaps.max() - gaps.min() <= 1
    order = np.random.default_rng(1).permutation(n)
    parts = np.array_split(order, 3)
    again = np.zeros(n, dtype=bool)
    for part in parts:
        again[part] = policy.select(part, n, ok[part], usage[part], VLLM)
    np.testing.assert_array_equal(whole, again)


def test_retokenize_counts_what_is_needed_plus_the_sample():
    """Usage mode: answers without usage are always counted (their count needs it); others
    only in the sample. Failed answers never. MAX's re-tokenize mode counts every answer."""
    reqs = [stream(float(i), 1.0, 1.0, 3) for i in range(10)]
    reqs[2] = stream(2.0, 1.0, 1.0, 3, usage=False)
    reqs[7] = Req(sent=7.0, error="HTTP 500", end=8.0)
    recs = build_records(reqs)
    count, seen = _counting_words()
    needed = compute_metrics(recs, VLLM, [8] * 10, count_tokens=count, retokenize=Retokenize(0))
    assert seen == [1]
    r = needed.requests
    assert r.retok_output_len[2] == 3 and (np.delete(r.retok_output_len, 2) == -1).all()
    assert r.output_len[2] == 3 and needed.tokens.compared == 0
    assert needed.tokens.retokenize == "needed" and needed.tokens.retokenized == 1

    seen.clear()
    some = compute_metrics(recs, VLLM, [8] * 10, count_tokens=count, retokenize=Retokenize(4))
    picked = set(np.flatnonzero(some.requests.retok_output_len >= 0).tolist())
    assert 2 in picked and 7 not in picked and 3 <= len(picked) <= 5
    assert some.tokens.compared == len(picked - {2}) and some.tokens.retokenized == len(picked)
    # The counts that matter are the same whichever answers were re-tokenized.
    every = compute_metrics(recs, VLLM, [8] * 10, count_tokens=words, retokenize=Retokenize(None))
    np.testing.assert_array_equal(every.requests.output_len, needed.requests.output_len)
    assert every.tokens.retokenized == 9 and every.tokens.retokenize == "all"

    seen.clear()
    m = compute_metrics(recs, MAX, [8] * 10, count_tokens=count, retokenize=Retokenize(0))
    assert seen == [9] and m.tokens.retokenized == 9
