"""Run-level metrics: counts, duration, throughputs, goodput, peaks and statistics.

Each definition lives here once; the vLLM and MAX writers only choose and rename.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sonic.metrics.requests import (
    CUT_OFF_ERRORS,
    NS,
    RequestMetrics,
    TokenCounter,
    compute_request_metrics,
)
from sonic.metrics.retok import DEFAULT_RETOKENIZE, Retokenize
from sonic.metrics.rules import MetricRules
from sonic.metrics.stats import Summary, summarize
from sonic.records import RunRecords


@dataclass(frozen=True)
class TokenDiscrepancy:
    """Server usage versus whole-text re-tokenization, over requests that have both."""

    compared: int
    usage_total: int
    retokenized_total: int
    mean_abs_diff: float | None
    max_abs_diff: int | None
    relative_diff: float | None  # (retokenized - usage) / usage over the totals
    requests_without_usage: int
    input_compared: int
    input_usage_total: int
    input_client_total: int
    input_relative_diff: float | None  # (usage - client) / client over the totals
    retokenize: str  # the policy (str of sonic.metrics.retok.Retokenize)
    retokenized: int  # answers re-tokenized


@dataclass
class BenchmarkMetrics:
    """Everything a result file or the console reports. Times in seconds, rates per second.

    ``stats`` holds one Summary per metric, over successful requests:
    ttft, tpot, itl (pooled gaps), e2el, client_queue_time, e2el_including_client_queue,
    ttft_intended, input_throughput / output_throughput (per-request tok/s, MAX August 2025), and
    dispatch_lag (sent - intended over every request that was sent, failed ones included).
    """

    rules: MetricRules
    num_requests: int
    completed: int
    failed: int
    not_sent: int
    cut_off: int  # requests stopped or never sent by --max-benchmark-duration-s
    cancelled: bool
    duration_s: float
    total_input_tokens: int
    total_output_tokens: int
    request_throughput: float
    input_throughput: float
    output_throughput: float
    total_token_throughput: float
    request_goodput: float | None
    good_requests: int | None
    goodput_slos_ms: dict[str, float]
    max_output_tokens_per_s: float
    max_concurrent_requests: int
    max_input_tokens: int
    max_output_tokens: int
    max_total_tokens: int
    nonempty_chunks: int
    successes_without_first_token: int
    stats: dict[str, Summary]
    tokens: TokenDiscrepancy
    requests: RequestMetrics
    # Requests that entered the aggregates: successful and not left out by the skips.
    measured: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    t0_unix_ns: int = 0
    percentiles: list[float] = field(default_factory=list)
    skipped: int = 0  # requests left out of the aggregates by SkipRules

    def errors(self, limit: int | None = None) -> list[tuple[int, str]]:
        """(request index, error) of failed requests, in request order."""
        out = [(i, e) for i, e in enumerate(self.requests.error) if e is not None]
        out += [
            (i, "not sent")
            for i in np.flatnonzero(~self.requests.success)
            if self.requests.error[i] is None
        ]
        out.sort()
        return out if limit is None else out[:limit]


def compute_metrics(
    records: RunRecords,
    rules: MetricRules,
    prompt_lens: Sequence[int] | np.ndarray,
    count_tokens: TokenCounter | None = None,
    goodput: dict[str, float] | None = None,
    percentiles: Sequence[float] = (99.0,),
    skip: SkipRules | None = None,
    retokenize: Retokenize = DEFAULT_RETOKENIZE,
) -> BenchmarkMetrics:
    """All metrics of a run. ``goodput`` is ``parse_goodput``'s dict (SLOs in ms);
    ``retokenize`` picks the answers ``count_tokens`` counts (``sonic.metrics.retok``).

    ``skip`` leaves warm-up and drain requests out of the aggregates (see SkipRules); the
    request counts (completed, failed) always cover every request, so no failure is hidden.
    """
    full = compute_request_metrics(records, rules, prompt_lens, count_tokens, retokenize)
    cut = np.array([e in CUT_OFF_ERRORS for e in full.error], dtype=bool)
    cut_off = int(cut.sum())
    # Excluded cut-off requests leave every count (MAX); otherwise they are failures.
    n = full.n - (cut_off if rules.cut_off == "excluded" else 0)
    completed = int(full.success.sum())
    skip = skip or SkipRules()
    req = _without(full, skip.aggregate_mask(records))
    ok = req.success
    sent_any = ~np.isnan(req.sent_s)

    duration = _duration_s(records, rules, measured=ok)
    total_in = int(req.input_len[ok].sum())
    total_out = int(req.output_len[ok].sum())

    def rate(x: float) -> float:
        return x / duration if duration > 0 else 0.0

    stats = _stats(req, percentiles, ttft_mask=skip.ttft_mask(full.n))
    good, goodput_rate = None, None
    if goodput:
        good = _good_requests(req, goodput)
        goodput_rate = rate(good)

    in_ok, out_ok = req.input_len[ok], req.output_len[ok]
    return BenchmarkMetrics(
        rules=rules,
        num_requests=n,
        completed=completed,
        failed=n - completed,
        not_sent=int((~sent_any).sum()),
        cut_off=cut_off,
        skipped=int(full.n - skip.aggregate_mask(records).sum()) if full.n else 0,
        cancelled=bool(records.cancelled),
        duration_s=duration,
        total_input_tokens=total_in,
        total_output_tokens=total_out,
        request_throughput=rate(completed),
        input_throughput=rate(total_in),
        output_throughput=rate(total_out),
        total_token_throughput=rate(total_in + total_out),
        request_goodput=goodput_rate,
        good_requests=good,
        goodput_slos_ms=dict(goodput or {}),
        max_output_tokens_per_s=_max_tokens_per_s(req),
        max_concurrent_requests=_max_concurrency(req),
        max_input_tokens=int(in_ok.max()) if completed else 0,
        max_output_tokens=int(out_ok.max()) if completed else 0,
        max_total_tokens=int((in_ok + out_ok).max()) if completed else 0,
        nonempty_chunks=int(req.nonempty_chunks[ok].sum()),
        successes_without_first_token=int((ok & np.isnan(req.ttft_s)).sum()),
        stats=stats,
        tokens=_token_discrepancy(req, retokenize),
        requests=full,
        measured=ok.copy(),
        t0_unix_ns=int(records.t0_unix_ns),
        percentiles=[float(p) for p in percentiles],
    )


@dataclass(frozen=True)
class SkipRules:
    """Requests left out of the aggregates, as MAX's scripts do.

    ``first``/``last`` (MAX 2026's --skip-first/last-n-requests): the first-submitted and the
    last-completed N requests leave every latency and token aggregate. ``ttft`` (MAX August 2025's
    --ttft-skip-requests): the first N requests leave the TTFT and per-request throughput
    distributions only.
    """

    first: int = 0
    last: int = 0
    ttft: int = 0
    # MAX's --ignore-first-turn-stats: every session's first measured turn leaves the
    # aggregates (turn k of a session warm-started at turn k).
    first_turns: bool = False

    def aggregate_mask(self, records: RunRecords) -> np.ndarray:
        n = records.n
        keep = np.ones(n, dtype=bool)
        if self.first_turns and n:
            session = np.asarray(records.session_index)
            keep &= np.r_[False, session[1:] == session[:-1]]  # records are session-major
        if self.first:
            sent = np.asarray(records.sent_ns, dtype=np.int64)
            order = np.argsort(np.where(sent >= 0, sent, np.iinfo(np.int64).max), kind="stable")
            keep[order[: self.first]] = False
        if self.last:
            end = np.asarray(records.end_ns, dtype=np.int64)
            order = np.argsort(np.where(end >= 0, end, np.iinfo(np.int64).min), kind="stable")
            keep[order[::-1][: self.last]] = False
        return keep

    def ttft_mask(self, n: int) -> np.ndarray:
        keep = np.ones(n, dtype=bool)
        keep[: self.ttft] = False
        return keep


def _without(req: RequestMetrics, keep: np.ndarray) -> RequestMetrics:
    """``req`` with the requests outside ``keep`` marked unsuccessful (out of aggregates)."""
    if keep.all():
        return req
    from dataclasses import replace

    return replace(req, success=req.success & keep)


def _duration_s(
    records: RunRecords, rules: MetricRules, measured: np.ndarray | None = None
) -> float:
    """From the rule's origin to the end of the last request (failed ones included); for
    ``measured_window``, first measured send to last measured end (run time when none)."""
    if rules.duration_start == "measured_window" and measured is not None and measured.any():
        sent = np.asarray(records.sent_ns, dtype=np.int64)[measured]
        end = np.asarray(records.end_ns, dtype=np.int64)[measured]
        return max(int(end.max()) - int(sent.min()), 1) / NS
    ends = [np.asarray(a, dtype=np.int64) for a in (records.end_ns, records.chunk_ns)]
    ends.append(np.asarray(records.sent_ns, dtype=np.int64))
    valid = [a[a >= 0] for a in ends]
    stop = max((int(a.max()) for a in valid if a.size), default=0)
    if rules.duration_start in ("run_start", "measured_window"):
        start = 0
    else:
        src = records.intended_ns if rules.duration_start == "first_intended" else records.sent_ns
        arr = np.asarray(src, dtype=np.int64)
        arr = arr[arr >= 0]
        start = int(arr.min()) if arr.size else 0
    return max(stop - start, 0) / NS


def _stats(
    req: RequestMetrics, percentiles: Sequence[float], ttft_mask: np.ndarray | None = None
) -> dict[str, Summary]:
    ok = req.success

    def sel(values: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
        m = ok & ~np.isnan(values)
        if extra is not None:
            m &= extra
        return values[m]

    sent = ~np.isnan(req.queue_s)
    p = list(percentiles)
    return {
        "ttft": summarize(sel(req.ttft_s, ttft_mask), p),
        "tpot": summarize(sel(req.tpot_s), p),
        "itl": req.chunks.itl_summary(ok, p),
        "e2el": summarize(sel(req.e2el_s), p),
        "client_queue_time": summarize(sel(req.queue_s), p),
        "e2el_including_client_queue": summarize(sel(req.e2el_intended_s), p),
        "ttft_intended": summarize(sel(req.ttft_intended_s), p),
        "input_throughput": summarize(sel(req.input_throughput, ttft_mask), p),
        "output_throughput": summarize(sel(req.output_throughput, ttft_mask), p),
        "dispatch_lag": summarize(req.queue_s[sent], p),
        # Each measured ITL over the tokens of the chunk that closed it (none without them).
        "step_tpot": req.chunks.step_tpot_summary(ok, p),
    }


def _good_requests(req: RequestMetrics, slos_ms: dict[str, float]) -> int:
    """Successful requests meeting every SLO (value <= SLO); TPOT counts as 0 when out <= 1."""
    good = req.success.copy()
    tpot = np.where(req.output_len > 1, req.tpot_s, 0.0)
    for name, values in (("ttft", req.ttft_s), ("tpot", tpot), ("e2el", req.e2el_s)):
        if name in slos_ms:
            with np.errstate(invalid="ignore"):
                good &= values <= slos_ms[name] / 1000.0  # NaN compares False: not good
    return int(good.sum())


def _max_tokens_per_s(req: RequestMetrics) -> float:
    """Largest count of token arrivals in one 1-second bucket, buckets counted from the
    earliest send of a successful request (vLLM's peak; each rule chunk counts as a token)."""
    ok = req.success
    if not ok.any():
        return 0.0
    return req.chunks.max_tokens_per_s(ok, np.nanmin(req.sent_s[ok]) * NS)


def _max_concurrency(req: RequestMetrics) -> int:
    """Exact peak of overlapping [send, end) intervals of successful requests."""
    m = req.success & ~np.isnan(req.e2el_s)
    return peak_overlap(req.sent_s[m], req.sent_s[m] + req.e2el_s[m])


def peak_overlap(starts: np.ndarray, ends: np.ndarray) -> int:
    """Exact peak of overlapping [start, end) intervals (an end and a start at the same
    instant do not overlap; 0 for none). The peak is reached at a start: the starts up to
    it minus the ends up to it, from the two sorted columns (no merged event array, which
    at 10^6 requests held about 100 MB for a moment)."""
    if not len(starts):
        return 0
    starts, ends = np.sort(starts), np.sort(ends)
    ended = np.searchsorted(ends, starts, side="right")
    # The last start of a tie counts every start at that instant.
    started = np.searchsorted(starts, starts, side="right")
    return int((started - ended).max())


def _token_discrepancy(req: RequestMetrics, retokenize: Retokenize) -> TokenDiscrepancy:
    ok = req.success
    both = ok & (req.usage_output_len > 0) & (req.retok_output_len >= 0)
    u = req.usage_output_len[both]
    r = req.retok_output_len[both]
    diff = np.abs(r - u)
    inp = ok & (req.usage_input_len > 0)
    ui = req.usage_input_len[inp]
    ci = req.client_input_len[inp]
    return TokenDiscrepancy(
        compared=int(both.sum()),
        usage_total=int(u.sum()),
        retokenized_total=int(r.sum()),
        mean_abs_diff=float(diff.mean()) if diff.size else None,
        max_abs_diff=int(diff.max()) if diff.size else None,
        relative_diff=float((r.sum() - u.sum()) / u.sum()) if u.sum() > 0 else None,
        requests_without_usage=int((ok & (req.usage_output_len <= 0)).sum()),
        input_compared=int(inp.sum()),
        input_usage_total=int(ui.sum()),
        input_client_total=int(ci.sum()),
        input_relative_diff=float((ui.sum() - ci.sum()) / ci.sum()) if ci.sum() > 0 else None,
        retokenize=str(retokenize),
        retokenized=int((ok & (req.retok_output_len >= 0)).sum()),
    )
