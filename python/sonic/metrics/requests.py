"""Per-request metrics from the raw chunk log, vectorised over the columnar arrays.

A run can hold 10^6 chunks, so nothing here loops over chunks in Python: chunk positions are
selected with masks, grouped per request with the offsets, and reduced with numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

import numpy as np

from sonic.errors import SonicError
from sonic.metrics.chunks import ChunkArrays, ChunkFile, ChunkFileWriter, ChunkStats
from sonic.metrics.retok import DEFAULT_RETOKENIZE, Retokenize
from sonic.metrics.rules import MetricRules
from sonic.records import CHUNK_EMPTY_CHOICE, CHUNK_TEXT, RunRecords

# Counts the tokens of whole texts, encoded with add_special_tokens=False (one call per batch).
TokenCounter = Callable[[list[str]], Sequence[int]]

NO_TEXT_ERROR = "the response carried no generated text"
NO_CHOICE_ERROR = "the response streamed no choice chunk, so it has no first token"
# Errors the client records for requests that --max-benchmark-duration-s stopped or never sent.
CUT_OFF_ERRORS = ("not sent: max duration reached", "cancelled: max duration reached")
NS = 1e9


@dataclass
class RequestMetrics:
    """Index-aligned per-request arrays; times in seconds, NaN where a value is undefined.

    Latencies are measured from the actual send (``*_s``) and from the intended send
    (``*_intended_s``); ``queue_s`` = sent - intended is the gap (dispatch lag plus any wait
    for a ``--max-concurrency`` slot). Token counts: -1 where that source gave nothing.
    The per-chunk arrays (``itl_*``, ``token_*``) and ``generated_text`` are None for a
    streamed run, whose chunks stay on disk: ask ``chunks`` (``sonic.metrics.chunks``).
    """

    n: int
    success: np.ndarray
    error: list[str | None]
    sent_s: np.ndarray
    queue_s: np.ndarray
    ttft_s: np.ndarray
    e2el_s: np.ndarray
    tpot_s: np.ndarray
    ttft_intended_s: np.ndarray
    e2el_intended_s: np.ndarray
    input_len: np.ndarray
    output_len: np.ndarray
    client_input_len: np.ndarray
    usage_input_len: np.ndarray
    usage_output_len: np.ndarray
    retok_output_len: np.ndarray
    itl_offsets: np.ndarray
    itl_s: np.ndarray
    token_offsets: np.ndarray
    token_ns: np.ndarray
    input_throughput: np.ndarray
    output_throughput: np.ndarray
    nonempty_chunks: np.ndarray
    generated_text: list[str]
    # Tokens in the chunk that closes each ITL gap (rules.step_tpot only; MAX 2026's step TPOT).
    itl_tokens: np.ndarray | None = None
    # The finish_reason the server sent per request ("length", "stop", ...; None: none sent).
    # The output-length check trusts it over a re-tokenized count (sonic.metrics.outlen).
    finish_reason: list[str | None] | None = None
    # Prompt tokens the engine served from cache per request (-1: not reported), and each
    # request's session and turn (a plain request: its own session, turn 0).
    cached_tokens: np.ndarray | None = None
    session_index: np.ndarray | None = None
    turn_index: np.ndarray | None = None
    # Set for a streamed run; in memory it is built from the arrays above.
    chunk_stats: ChunkStats | None = None

    @property
    def chunks(self) -> ChunkStats:
        """The per-chunk metrics, in memory or in a file, behind one interface."""
        if self.chunk_stats is None:
            self.chunk_stats = ChunkArrays(
                itl_offsets=self.itl_offsets,
                itl_s=self.itl_s,
                token_offsets=self.token_offsets,
                token_ns=self.token_ns,
                itl_tokens=self.itl_tokens,
            )
        return self.chunk_stats

    @property
    def streamed(self) -> bool:
        return self.itl_s is None

    def itls(self, i: int) -> np.ndarray:
        """Request i's inter-token gaps in seconds."""
        return self.itl_s[self.itl_offsets[i] : self.itl_offsets[i + 1]]


def _per_request_positions(
    mask: np.ndarray, req_of_chunk: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Positions of the masked chunks, their per-request offsets, and first/last position
    per request (-1 where a request has none)."""
    pos = np.flatnonzero(mask)
    cnt = np.bincount(req_of_chunk[pos], minlength=n) if n else np.zeros(0, dtype=np.int64)
    off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(cnt, out=off[1:])
    has = cnt > 0
    first = np.full(n, -1, dtype=np.int64)
    last = np.full(n, -1, dtype=np.int64)
    first[has] = pos[off[:-1][has]]
    last[has] = pos[off[1:][has] - 1]
    return pos, off, first, last


def _times_at(times_ns: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Chunk times (ns, float) at idx, NaN where idx is -1."""
    out = np.full(idx.shape[0], np.nan)
    ok = idx >= 0
    out[ok] = times_ns[idx[ok]]
    return out


def compute_request_metrics(
    records: RunRecords,
    rules: MetricRules,
    prompt_lens: Sequence[int] | np.ndarray,
    count_tokens: TokenCounter | None = None,
    retokenize: Retokenize = DEFAULT_RETOKENIZE,
) -> RequestMetrics:
    """Per-request metrics of a run under ``rules``.

    ``prompt_lens`` are the client-side prompt token counts (one per request, from the
    dataset). When ``count_tokens`` is given, the successful responses that ``retokenize``
    picks are re-tokenized (whole text, once): those whose count needs it, and a sample (or
    all) of the others, so the usage and re-tokenized counts can be compared. A streamed
    run's records file is read batch by batch (``_streamed``).
    """
    n = records.n
    client_in = np.asarray(prompt_lens, dtype=np.int64)
    if client_in.shape != (n,):
        raise SonicError(f"prompt_lens has {client_in.shape[0]} entries for {n} requests")
    recount = _Recount(count_tokens, retokenize, n)
    if records.chunks_file is not None:
        return _streamed(records, rules, client_in, recount)
    return _in_memory(records, rules, client_in, recount, np.arange(n, dtype=np.int64))


@dataclass(frozen=True)
class _Recount:
    """The token counter (None: nothing is re-tokenized) and which answers it counts, in a
    run of ``n`` requests."""

    count: TokenCounter | None
    policy: Retokenize
    n: int


def _in_memory(
    records: RunRecords,
    rules: MetricRules,
    client_in: np.ndarray,
    recount: _Recount,
    index: np.ndarray,
) -> RequestMetrics:
    """Per-request metrics of ``records``, the requests at ``index`` of the run."""
    n = records.n
    count_tokens = recount.count
    offsets = np.asarray(records.chunk_offsets, dtype=np.int64)
    kinds = np.asarray(records.chunk_kind)
    times = np.asarray(records.chunk_ns, dtype=np.int64)
    req_of_chunk = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets))

    is_text = kinds == CHUNK_TEXT
    is_choice = is_text | (kinds == CHUNK_EMPTY_CHOICE)
    every = np.ones(kinds.shape[0], dtype=bool)

    _, _, first_ttft, _ = _per_request_positions(
        is_choice if rules.ttft_rule == "first_choice" else is_text, req_of_chunk, n
    )
    _, _, _, last_end = _per_request_positions(
        is_choice if rules.end_rule == "last_choice" else every, req_of_chunk, n
    )
    tok_pos, tok_off, _, _ = _per_request_positions(
        is_choice if rules.itl_rule == "choice" else is_text, req_of_chunk, n
    )
    nonempty = np.bincount(req_of_chunk[is_text], minlength=n) if n else np.zeros(0, np.int64)

    # Success: no error recorded, actually sent, and (MAX) some text received.
    intended = np.asarray(records.intended_ns, dtype=np.int64)
    sent = np.asarray(records.sent_ns, dtype=np.int64)
    error = list(records.error)
    success = np.array([e is None for e in error], dtype=bool) & (sent >= 0)
    if rules.require_text:
        no_text = success & (nonempty == 0)
        for i in np.flatnonzero(no_text):
            error[i] = NO_TEXT_ERROR
        success &= ~no_text
    if rules.choice_required:
        choices = np.bincount(req_of_chunk[is_choice], minlength=n) if n else nonempty
        no_choice = success & (choices == 0)
        for i in np.flatnonzero(no_choice):
            error[i] = NO_CHOICE_ERROR
        success &= ~no_choice

    sent_f = np.where(sent >= 0, sent.astype(np.float64), np.nan)
    t_first = _times_at(times, first_ttft)
    t_end = _times_at(times, last_end)
    ttft = (t_first - sent_f) / NS
    e2el = (t_end - sent_f) / NS
    ttft_int = (t_first - intended) / NS
    e2el_int = (t_end - intended) / NS
    queue = (sent_f - intended) / NS

    # ITLs: gaps between successive rule chunks of the same request.
    tok_times = times[tok_pos]
    tok_req = req_of_chunk[tok_pos]
    same = tok_req[1:] == tok_req[:-1]
    itl = (np.diff(tok_times)[same] / NS).astype(np.float64)
    itl_tokens = None
    if rules.step_tpot and count_tokens is not None:
        closing = tok_pos[1:][same]
        t_off = np.asarray(records.chunk_text_offsets, dtype=np.int64)
        chunk_texts = [
            records.text[int(t_off[c]) : int(t_off[c + 1])].decode("utf-8", errors="replace")
            for c in closing
        ]
        itl_tokens = np.asarray(list(count_tokens(chunk_texts)), dtype=np.int64)
    itl_cnt = np.maximum(np.diff(tok_off) - 1, 0)
    itl_off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(itl_cnt, out=itl_off[1:])

    texts = [records.generated_text(i) for i in range(n)]
    usage_in = np.asarray(records.prompt_tokens, dtype=np.int64)
    usage_out = np.asarray(records.completion_tokens, dtype=np.int64)
    retok = np.full(n, -1, dtype=np.int64)
    pick = recount.policy.select(index, recount.n, success, usage_out, rules)
    ok_idx = np.flatnonzero(pick)
    if count_tokens is not None and ok_idx.size:
        counts = list(count_tokens([texts[i] for i in ok_idx]))
        if len(counts) != ok_idx.size:
            raise SonicError("token counter returned a wrong number of counts")
        retok[ok_idx] = np.asarray(counts, dtype=np.int64)

    output_len, input_len = _token_counts(rules, success, client_in, usage_in, usage_out, retok)

    out_f = output_len.astype(np.float64)
    decode = e2el - ttft
    with np.errstate(divide="ignore", invalid="ignore"):
        tpot = np.where(success & (output_len > 1), decode / (out_f - 1.0), np.nan)
        in_tput = np.where(success & (ttft > 0), input_len / ttft, np.nan)
        out_tput = np.where(
            success & (output_len > 1) & (decode > 0), (out_f - 1.0) / decode, np.nan
        )

    return RequestMetrics(
        n=n,
        success=success,
        error=error,
        sent_s=sent_f / NS,
        queue_s=queue,
        ttft_s=ttft,
        e2el_s=e2el,
        tpot_s=tpot,
        ttft_intended_s=ttft_int,
        e2el_intended_s=e2el_int,
        input_len=input_len,
        output_len=output_len,
        client_input_len=client_in,
        usage_input_len=usage_in,
        usage_output_len=usage_out,
        retok_output_len=retok,
        itl_offsets=itl_off,
        itl_s=itl,
        token_offsets=tok_off,
        token_ns=tok_times,
        input_throughput=in_tput,
        output_throughput=out_tput,
        nonempty_chunks=nonempty.astype(np.int64),
        generated_text=texts,
        itl_tokens=itl_tokens,
        finish_reason=list(records.finish_reason),
        cached_tokens=np.asarray(records.cached_tokens, dtype=np.int64),
        session_index=np.asarray(records.session_index, dtype=np.int64),
        turn_index=np.asarray(records.turn_index, dtype=np.int64),
    )


# Per-request columns of a streamed run: name -> value of a request missing from the file.
_FLOAT_COLUMNS = (
    "sent_s",
    "queue_s",
    "ttft_s",
    "e2el_s",
    "tpot_s",
    "ttft_intended_s",
    "e2el_intended_s",
    "input_throughput",
    "output_throughput",
)
_INT_COLUMNS = {
    "output_len": 0,
    "usage_input_len": -1,
    "usage_output_len": -1,
    "retok_output_len": -1,
    "nonempty_chunks": 0,
}


def _streamed(
    records: RunRecords,
    rules: MetricRules,
    client_in: np.ndarray,
    recount: _Recount,
) -> RequestMetrics:
    """Per-request metrics of a streamed run: each batch of its records file goes through
    ``_in_memory``; the per-request values are kept, the per-chunk ones go to a ``ChunkFile``."""
    from sonic import recordfile

    n = records.n
    path = records.chunks_file
    assert path is not None
    cols: dict[str, np.ndarray] = {k: np.full(n, np.nan) for k in _FLOAT_COLUMNS}
    cols.update({k: np.full(n, v, dtype=np.int64) for k, v in _INT_COLUMNS.items()})
    cols["input_len"] = client_in.copy()
    success = np.zeros(n, dtype=bool)
    error = list(records.error)
    itl_counts = np.zeros(n, dtype=np.int64)
    step = bool(rules.step_tpot and recount.count is not None)
    derived = recordfile.scratch_path(path.parent)
    writer = ChunkFileWriter(derived, step_tpot=step)
    try:
        for index, batch in recordfile.batches(path):
            m = _in_memory(batch, rules, client_in[index], recount, index)
            for k in cols:
                cols[k][index] = getattr(m, k)
            success[index] = m.success
            for i, e in zip(index.tolist(), m.error):
                error[i] = e
            itl_counts[index] = np.diff(m.itl_offsets)
            writer.write(index, m.chunks)  # type: ignore[arg-type]
    finally:
        writer.close()
    recordfile.release_freed_memory()
    return RequestMetrics(
        n=n,
        success=success,
        error=error,
        client_input_len=client_in,
        itl_offsets=None,  # type: ignore[arg-type]  # per-chunk data: chunk_stats
        itl_s=None,  # type: ignore[arg-type]
        token_offsets=None,  # type: ignore[arg-type]
        token_ns=None,  # type: ignore[arg-type]
        generated_text=None,  # type: ignore[arg-type]
        finish_reason=list(records.finish_reason),
        cached_tokens=np.asarray(records.cached_tokens, dtype=np.int64),
        session_index=np.asarray(records.session_index, dtype=np.int64),
        turn_index=np.asarray(records.turn_index, dtype=np.int64),
        chunk_stats=ChunkFile(derived, itl_counts, step_tpot=step),
        **cols,
    )


def _token_counts(
    rules: MetricRules,
    success: np.ndarray,
    client_in: np.ndarray,
    usage_in: np.ndarray,
    usage_out: np.ndarray,
    retok: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Output and input token counts per request under the rule's counting mode.

    Failed requests get output 0 (as both tools report them) and the client prompt length.
    """
    if rules.token_count == "usage":
        out = np.where(usage_out > 0, usage_out, retok)
    else:
        out = retok.copy()
    missing = success & (out < 0)
    if missing.any():
        what = "usage" if rules.token_count == "usage" else rules.token_count
        raise SonicError(
            f"token counting mode {what!r} needs the tokenizer to count "
            f"{int(missing.sum())} response(s); none was given"
        )
    out = np.where(success, out, 0).astype(np.int64)
    if rules.token_count in ("usage", "hybrid"):
        inp = np.where(success & (usage_in > 0), usage_in, client_in)
    else:
        inp = client_in.copy()
    return out, inp.astype(np.int64)
