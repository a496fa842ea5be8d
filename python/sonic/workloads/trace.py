"""Trace replay: JSONL records with a timestamp, input and output lengths and ``hash_ids``.

Two datasets read this format:

- ``trace`` (sonic): the public Mooncake traces' format. ``timestamp`` in milliseconds,
  ``hash_ids`` one id per ``--trace-block-size`` prompt tokens (512 by default, Mooncake's),
  requests sent at the recorded times divided by ``--trace-speedup``. Records that carry a
  session (``session_id``, ``conversation_id``, or ``chat_id`` with ``parent_chat_id`` chains
  as in the Bailian traces) replay as sessions.
- ``timed_trace`` (vLLM): field names from ``--timed-trace-label-*``, blocks of
  ``--timed-trace-chunk-hash-size`` tokens (16 by default), seconds = timestamp *
  ``--timed-trace-sec-multiplier``, sent at those times only with ``--self-timed`` (else by
  ``--request-rate``). The first ``--num-prompts`` records in file order are used.

Prompts: block ``j`` of a request is a fixed sequence of whole-word tokens chosen by its hash id
(:mod:`sonic.workloads.blocks`), the last block cut to the record's ``input_length``. Two
requests therefore share exactly the blocks whose ids are equal, and each prompt re-tokenizes to
exactly ``input_length`` tokens of the run's tokenizer (checked on the first prompts of every
run). The number of ids must be ``ceil(input_length / block size)``: a mismatch means the block
size is wrong, and is refused rather than replayed with prompts of the wrong length (vLLM's
reader stops early and sends prompts 32 times too short when the Mooncake 512 is left at 16).

Sessions: the first turn is its record's prompt. A later turn carries the session's history
(earlier turns and their reference answers, fixed text of the recorded output length), and its
new text is the tail of its record's prompt that the history leaves room for, so the turn's
prompt has the record's ``input_length`` tokens as the client joins it for completions (texts
separated by a blank line, ``COMPLETIONS_JOINER``); the
think time before it is the gap between the two records' timestamps, which includes the
recorded response time (traces do not record when a response ended).
"""

from __future__ import annotations

import functools
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sonic.datasets.base import DatasetArgs, existing_file, read_text
from sonic.errors import SonicError
from sonic.workloads.blocks import AtomVocabulary
from sonic.workloads.types import (
    COMPLETIONS_JOINER,
    REQUESTS,
    SESSIONS,
    Workload,
    WorkloadRequest,
    WorkloadSession,
    WorkloadTurn,
)

if TYPE_CHECKING:
    from sonic.tokenizer import Tokenizer

SESSION_KEYS = ("session_id", "conversation_id")
VERIFY_FIRST = 8  # prompts re-tokenized on every run to check the construction


@dataclass(frozen=True)
class TraceFormat:
    """Where a trace's fields are and what its numbers mean."""

    what: str  # "trace" | "timed_trace", for messages
    timestamp: str = "timestamp"
    input_length: str = "input_length"
    output_length: str = "output_length"
    hash_ids: str = "hash_ids"
    block_size: int = 512
    seconds_per_unit: float = 0.001  # timestamp unit in seconds, speed-up included
    hash_ids_required: bool = True
    sessions: bool = True  # group records into sessions when they carry one


@dataclass(frozen=True)
class TraceRecord:
    line: int
    timestamp: float
    input_length: int
    output_length: int
    hash_ids: tuple[int | str, ...] | None
    session: str | None


def trace_format(args: DatasetArgs) -> TraceFormat:
    if args.name == "timed_trace":
        if args.timed_trace_chunk_hash_size < 1:
            raise SonicError("--timed-trace-chunk-hash-size must be at least 1")
        if not args.timed_trace_sec_multiplier > 0:
            raise SonicError("--timed-trace-sec-multiplier must be positive")
        return TraceFormat(
            what="timed_trace",
            timestamp=args.timed_trace_label_timestamp,
            input_length=args.timed_trace_label_input_length,
            output_length=args.timed_trace_label_output_length,
            hash_ids=args.timed_trace_label_hash_ids,
            block_size=args.timed_trace_chunk_hash_size,
            seconds_per_unit=args.timed_trace_sec_multiplier,
            sessions=False,
        )
    if args.trace_block_size < 1:
        raise SonicError(f"--trace-block-size must be at least 1, got {args.trace_block_size}")
    if not args.trace_speedup > 0:
        raise SonicError(f"--trace-speedup must be positive, got {args.trace_speedup}")
    return TraceFormat(
        what="trace",
        block_size=args.trace_block_size,
        seconds_per_unit=0.001 / args.trace_speedup,
        hash_ids_required=False,
    )


# -- reading -------------------------------------------------------------------------------------
def read_records(path: str, fmt: TraceFormat, limit: int | None = None) -> list[TraceRecord]:
    """The records of ``path`` in file order (the first ``limit``); a one-line error naming the
    file and line for anything malformed."""
    p = existing_file(path, f"{fmt.what} file")
    records: list[TraceRecord] = []
    parents: dict[str, str] = {}
    for lineno, line in enumerate(read_text(p, f"{fmt.what} file").splitlines(), start=1):
        if limit is not None and len(records) >= limit:
            break
        if not line.strip():
            continue
        where = f"{fmt.what} file {p} line {lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SonicError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise SonicError(f"{where}: expected a JSON object, got {type(row).__name__}")
        records.append(_record(row, lineno, where, fmt, parents))
    if not records:
        raise SonicError(f"{fmt.what} file {p} has no records")
    return records


def _number(row: dict[str, Any], key: str, where: str) -> float:
    value = row.get(key)
    if isinstance(value, str):  # some traces write nanosecond timestamps as strings
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        shown = "missing" if key not in row else f"{value!r}"
        raise SonicError(f'{where}: "{key}" must be a number ({shown})')
    return float(value)


def _count(row: dict[str, Any], key: str, where: str) -> int:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        shown = "missing" if key not in row else f"{value!r}"
        raise SonicError(f'{where}: "{key}" must be a positive integer ({shown})')
    return value


def _record(
    row: dict[str, Any], lineno: int, where: str, fmt: TraceFormat, parents: dict[str, str]
) -> TraceRecord:
    timestamp = _number(row, fmt.timestamp, where)
    if timestamp < 0:
        raise SonicError(f'{where}: "{fmt.timestamp}" is negative ({timestamp:g})')
    input_length = _count(row, fmt.input_length, where)
    output_length = _count(row, fmt.output_length, where)
    ids = row.get(fmt.hash_ids)
    hash_ids: tuple[int | str, ...] | None = None
    if ids is None:
        if fmt.hash_ids_required:
            raise SonicError(f'{where}: no "{fmt.hash_ids}" list')
    else:
        if not isinstance(ids, list) or not all(
            isinstance(i, (int, str)) and not isinstance(i, bool) for i in ids
        ):
            raise SonicError(f'{where}: "{fmt.hash_ids}" must be a list of integers')
        need = math.ceil(input_length / fmt.block_size)
        if len(ids) != need:
            flag = "--trace-block-size" if fmt.what == "trace" else "--timed-trace-chunk-hash-size"
            raise SonicError(
                f"{where}: {len(ids)} hash_ids for input_length {input_length}, but blocks of "
                f"{fmt.block_size} tokens need {need}; set {flag} to the trace's block size"
            )
        hash_ids = tuple(ids)
    return TraceRecord(
        lineno, timestamp, input_length, output_length, hash_ids, _session(row, fmt, parents)
    )


def _session(row: dict[str, Any], fmt: TraceFormat, parents: dict[str, str]) -> str | None:
    """The session a record belongs to: an explicit id, else the root of a chat_id chain."""
    if not fmt.sessions:
        return None
    for key in SESSION_KEYS:
        if row.get(key) is not None:
            return str(row[key])
    chat = row.get("chat_id")
    if chat is None:
        return None
    parent = row.get("parent_chat_id")
    root = parents.get(str(parent), str(parent)) if parent not in (None, -1, "-1") else str(chat)
    parents[str(chat)] = root
    return root


# -- prompts -------------------------------------------------------------------------------------
class PromptBuilder:
    """Token ids of a record's prompt from its hash ids (unique blocks when it has none)."""

    def __init__(self, tokenizer: Tokenizer, seed: int, block_size: int) -> None:
        self.atoms = AtomVocabulary(tokenizer, seed)
        self.block_size = block_size

    def _parts(self, record: TraceRecord) -> list[tuple[str, int]]:
        """(block key, tokens of it used) per block of the record's prompt."""
        bs = self.block_size
        n = math.ceil(record.input_length / bs)
        keys = (
            [f"trace:id:{h}" for h in record.hash_ids]
            if record.hash_ids is not None
            else [f"trace:line:{record.line}:{j}" for j in range(n)]
        )
        return [(key, min(bs, record.input_length - j * bs)) for j, key in enumerate(keys)]

    def ids(self, record: TraceRecord) -> list[int]:
        out: list[int] = []
        for key, size in self._parts(record):
            out += self.atoms.block(key, self.block_size)[:size]
        return out

    def prompt(self, record: TraceRecord) -> str:
        """The record's prompt text, without materialising its token ids."""
        return "".join(self._text(key, size) for key, size in self._parts(record))

    @functools.lru_cache(maxsize=8192)  # noqa: B019 - one builder per run, shared prefixes
    def _text(self, key: str, size: int) -> str:
        return self.atoms.text(self.atoms.block(key, self.block_size)[:size])

    def answer(self, key: str, length: int) -> list[int]:
        return self.atoms.block(f"trace:answer:{key}", length)

    def text(self, ids: list[int]) -> str:
        return self.atoms.text(ids)

    def verify(self, text: str, ids: list[int], what: str) -> None:
        if self.atoms.tokenizer.encode(text) != ids:
            raise SonicError(
                f"{what}: the generated prompt does not re-tokenize to its blocks with tokenizer "
                f"{self.atoms.tokenizer.name_or_path}"
            )


def build(args: DatasetArgs, tokenizer: Tokenizer) -> Workload:
    fmt = trace_format(args)
    if not args.path:
        raise SonicError(f"the {args.name} dataset needs --dataset-path (a JSONL trace)")
    path = str(args.path)
    records = read_records(path, fmt, args.num_prompts if args.num_prompts > 0 else None)
    builder = PromptBuilder(tokenizer, args.seed, fmt.block_size)
    t0 = min(r.timestamp for r in records)
    timed = args.name == "trace" or args.self_timed
    notes = [f"{fmt.what} {Path(path).name}: {len(records)} records, blocks of {fmt.block_size}"]
    if any(r.hash_ids is None for r in records):
        notes.append("records without hash_ids got unique blocks (no sharing invented)")
    if any(r.session is not None for r in records):
        return _sessions(records, builder, fmt, t0, args, notes)
    order = sorted(records, key=lambda r: r.timestamp) if timed else records
    requests = []
    block_ids = None
    if all(r.hash_ids is not None for r in order):
        block_ids = tuple((r.hash_ids or (), r.input_length) for r in order)
    for n, r in enumerate(order):
        text = builder.prompt(r)
        if n < VERIFY_FIRST:
            builder.verify(text, builder.ids(r), f"{fmt.what} file {path} line {r.line}")
        requests.append(WorkloadRequest(text, r.input_length, r.output_length))
    arrivals = tuple((r.timestamp - t0) * fmt.seconds_per_unit for r in order) if timed else None
    return Workload(
        kind=REQUESTS,
        source=args.name,
        requests=tuple(requests),
        arrivals_s=arrivals,
        block_size=fmt.block_size,
        block_ids=block_ids,
        notes=tuple(notes),
    )


def _sessions(
    records: list[TraceRecord],
    builder: PromptBuilder,
    fmt: TraceFormat,
    t0: float,
    args: DatasetArgs,
    notes: list[str],
) -> Workload:
    groups: dict[str, list[TraceRecord]] = {}
    for r in records:
        groups.setdefault(r.session or f"line:{r.line}", []).append(r)
    ordered = sorted(groups.items(), key=lambda kv: min(r.timestamp for r in kv[1]))
    sessions, starts = [], []
    verified = longer = 0
    tokenizer = builder.atoms.tokenizer
    sep = tokenizer.count(COMPLETIONS_JOINER)
    for key, group in ordered:
        group = sorted(group, key=lambda r: r.timestamp)
        texts: list[str] = []  # the session so far, as the client joins it
        used = 0  # its tokens, separators included (atoms' counts are exact)
        turns = []
        for k, r in enumerate(group):
            ids = builder.ids(r)
            start = used + sep if texts else 0
            longer += start >= len(ids)
            new = ids[min(start, len(ids) - 1) :]  # at least one token of its own
            text = builder.text(new)
            if verified < VERIFY_FIRST:
                builder.verify(builder.text(ids), ids, f"{fmt.what} line {r.line}")
                joined = tokenizer.count(COMPLETIONS_JOINER.join([*texts, text]))
                if joined != start + len(new):
                    raise SonicError(
                        f"tokenizer {tokenizer.name_or_path} merges the blank line between "
                        "turns with the text; session traces cannot keep their lengths"
                    )
                verified += 1
            answer = builder.text(builder.answer(f"{key}:{k}", r.output_length))
            think = 0.0 if k == 0 else (r.timestamp - group[k - 1].timestamp) * fmt.seconds_per_unit
            turns.append(WorkloadTurn(text, r.output_length, answer, think))
            texts += [text, answer]
            used = start + len(new) + sep + r.output_length
        sessions.append(WorkloadSession(tuple(turns), None, key))
        starts.append((group[0].timestamp - t0) * fmt.seconds_per_unit)
    notes.append("sessions: think time = gap between a session's records (includes response time)")
    if longer:
        notes.append(f"{longer} turns' history exceeds their input_length; they send 1 new token")
    return Workload(
        kind=SESSIONS,
        source=args.name,
        sessions=tuple(sessions),
        arrivals_s=tuple(starts),
        block_size=fmt.block_size,
        ignore_first_turn_stats=args.ignore_first_turn_stats,
        max_concurrent_sessions=args.max_concurrent_conversations,
        notes=tuple(notes),
    )


# -- fixtures ------------------------------------------------------------------------------------
def generate_trace(
    path: str | Path,
    *,
    num_requests: int = 24,
    block_size: int = 16,
    num_prefixes: int = 3,
    sessions: bool = False,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Write a small Mooncake-format trace with a known prefix structure; returns its records.

    Ids follow Mooncake's definition: a block's id names the block *and* everything before it,
    so equal ids mean an equal prefix up to that block. Single-turn: each request opens with one
    of ``num_prefixes`` shared prefixes (1 to 3 blocks), then 1 to 2 blocks of its own and a
    partial block. Sessions: each session's next record extends the previous prompt by its
    output and some new tokens, with ``session_id`` set. Timestamps in ms, increasing.
    """
    rng = random.Random(seed)
    chain_ids: dict[tuple[Any, ...], int] = {}

    def ids_for(blocks: list[Any]) -> list[int]:
        out = []
        for j in range(len(blocks)):
            out.append(chain_ids.setdefault(tuple(blocks[: j + 1]), len(chain_ids)))
        return out

    prefixes = [
        [f"p{p}b{j}" for j in range(rng.randint(1, 3))] for p in range(max(num_prefixes, 1))
    ]
    rows: list[dict[str, Any]] = []
    t = 0.0
    if not sessions:
        for i in range(num_requests):
            blocks = prefixes[rng.randrange(len(prefixes))] + [
                f"r{i}b{j}" for j in range(rng.randint(1, 2))
            ]
            tail = rng.randint(1, block_size - 1)
            blocks.append(f"r{i}tail")
            length = (len(blocks) - 1) * block_size + tail
            t += rng.randint(5, 60)
            rows.append(_row(t, length, rng.randint(4, 24), ids_for(blocks)))
    else:
        per = max(2, num_requests // max(num_prefixes, 1))
        n = 0
        for s in range(max(num_prefixes, 1)):
            t_s = t + rng.randint(5, 60)
            tokens: list[Any] = []  # one key per token keeps partial blocks exact
            for k in range(per):
                if n >= num_requests:
                    break
                new = rng.randint(block_size // 2, 2 * block_size)
                tokens += [f"s{s}t{k}n{j}" for j in range(new)]
                blocks = [
                    tuple(tokens[j : j + block_size]) for j in range(0, len(tokens), block_size)
                ]
                out = rng.randint(4, 24)
                row = _row(t_s, len(tokens), out, ids_for(blocks))
                row["session_id"] = f"s{s}"
                rows.append(row)
                tokens += [f"s{s}t{k}a{j}" for j in range(out)]
                t_s += rng.randint(100, 400)
                n += 1
            t = t_s
        rows.sort(key=lambda r: r["timestamp"])
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return rows


def _row(t: float, length: int, output: int, ids: list[int]) -> dict[str, Any]:
    return {"timestamp": int(t), "input_length": length, "output_length": output, "hash_ids": ids}
