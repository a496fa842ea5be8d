"""A run's records on disk: an Arrow IPC file, one row per request, written batch by batch
while the run goes (``--stream-records``) and read back batch by batch after it, so memory
holds the per-request scalars and never every chunk. pandas (``pd.read_feather``) and polars
(``pl.read_ipc``) read it.

Columns (times in ns since the run's t0): the per-request scalars of ``RunRecords``
(``record_index`` first: rows are in the order requests finished), then per request its
chunks: ``chunk_ns`` and ``chunk_kind`` (``sonic.records`` kinds), ``chunk_text_end`` (end of
each chunk's text in ``text``), and ``text``, the generated text, which is dropped from a kept
file unless it was asked for (``--save-detailed``).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sonic.errors import SonicError
from sonic.records import RunRecords

SUFFIX = ".records.arrow"
# Rows gathered before a batch is written: the core hands over what finished each poll
# (0.1 s), which at low rates is a few rows; reading back 10^5 tiny batches would be slow.
WRITE_ROWS = 8192

# Batches appended between two returns of freed memory to the system (about a second of a
# run: the core hands over a batch every poll).
RELEASE_EVERY = 10

# Per-request scalar columns: name -> (numpy dtype, value of a request never reported).
SCALARS: dict[str, tuple[type, int]] = {
    "intended_ns": (np.int64, -1),
    "session_index": (np.int64, -1),
    "turn_index": (np.int64, -1),
    "dispatched_ns": (np.int64, -1),
    "sent_ns": (np.int64, -1),
    "end_ns": (np.int64, -1),
    "http_status": (np.int32, 0),
    "prompt_tokens": (np.int64, -1),
    "completion_tokens": (np.int64, -1),
    "cached_tokens": (np.int64, -1),
}
STRINGS = ("error", "finish_reason")
# Scalars that RunRecords keeps in ``extra``.
EXTRA = ("dispatched_ns",)


def _get(rec: RunRecords, name: str) -> Any:
    return rec.extra[name] if name in EXTRA else getattr(rec, name)


LOST = "lost: the run was interrupted while this record was being saved"


def _pa():
    try:
        import pyarrow as pa
        import pyarrow.ipc  # noqa: F401
    except ImportError:
        raise SonicError(
            "--stream-records writes an Arrow file and needs pyarrow: pip install pyarrow"
        ) from None
    return pa


def _schema(pa, text: bool):
    fields = [pa.field("record_index", pa.int64())]
    fields += [pa.field(k, pa.from_numpy_dtype(t)) for k, (t, _) in SCALARS.items()]
    fields += [pa.field(k, pa.string()) for k in STRINGS]
    fields += [
        pa.field("chunk_ns", pa.large_list(pa.int64())),
        pa.field("chunk_kind", pa.large_list(pa.uint8())),
        pa.field("chunk_text_end", pa.large_list(pa.int64())),
    ]
    if text:
        fields.append(pa.field("text", pa.large_string()))
    return pa.schema(fields)


def _text_starts(rec: Any) -> np.ndarray:
    """Offset of each request's text in ``rec.text`` (n + 1 entries)."""
    offsets = np.asarray(rec.chunk_offsets, dtype=np.int64)
    return np.asarray(rec.chunk_text_offsets, dtype=np.int64)[offsets]


def to_batch(pa, rec: Any, index: np.ndarray, text: bool = True):
    """One Arrow record batch of a core batch (``RunRecords``) whose rows are ``index``."""
    offsets = pa.array(np.asarray(rec.chunk_offsets, dtype=np.int64))
    starts = _text_starts(rec)
    ends = np.asarray(rec.chunk_text_offsets, dtype=np.int64)[1:]
    rel = ends - np.repeat(starts[:-1], np.diff(np.asarray(rec.chunk_offsets)))
    cols = [pa.array(np.asarray(index, dtype=np.int64))]
    cols += [pa.array(np.asarray(_get(rec, k), dtype=t)) for k, (t, _) in SCALARS.items()]
    cols += [pa.array(list(getattr(rec, k)), type=pa.string()) for k in STRINGS]
    cols += [
        pa.LargeListArray.from_arrays(offsets, pa.array(np.asarray(rec.chunk_ns, np.int64))),
        pa.LargeListArray.from_arrays(offsets, pa.array(np.asarray(rec.chunk_kind, np.uint8))),
        pa.LargeListArray.from_arrays(offsets, pa.array(rel.astype(np.int64))),
    ]
    if text:
        n = len(index)
        body = bytes(rec.text)[: int(starts[-1])] if n else b""
        cols.append(
            pa.LargeStringArray.from_buffers(
                n, pa.py_buffer(starts.astype(np.int64).tobytes()), pa.py_buffer(body)
            )
        )
    return pa.record_batch(cols, schema=_schema(pa, text))


def from_batch(batch) -> tuple[np.ndarray, RunRecords]:
    """(record indices, RunRecords of those rows) of one Arrow batch."""
    pa = _pa()
    n = batch.num_rows
    col = {name: batch.column(name) for name in batch.schema.names}

    def values(name: str, dtype) -> np.ndarray:
        return np.asarray(col[name].to_numpy(zero_copy_only=False), dtype=dtype)

    def flat(name: str, dtype) -> tuple[np.ndarray, np.ndarray]:
        arr = col[name]
        offs = np.asarray(arr.offsets.to_numpy(), dtype=np.int64)
        vals = np.asarray(arr.values.to_numpy(zero_copy_only=False), dtype=dtype)
        return offs - offs[0], vals[offs[0] : offs[-1]]

    chunk_offsets, chunk_ns = flat("chunk_ns", np.int64)
    _, chunk_kind = flat("chunk_kind", np.uint8)
    _, rel_end = flat("chunk_text_end", np.int64)
    if "text" in col:
        texts = col["text"]
        if not isinstance(texts, pa.LargeStringArray):
            texts = texts.cast(pa.large_string())
        t_off = np.frombuffer(texts.buffers()[1], dtype=np.int64)[
            texts.offset : texts.offset + n + 1
        ]
        data = texts.buffers()[2]
        text = memoryview(data)[int(t_off[0]) : int(t_off[-1])].tobytes() if data else b""
        starts = t_off - t_off[0]
    else:
        text, starts, rel_end = b"", np.zeros(n + 1, dtype=np.int64), np.zeros_like(rel_end)
    chunk_text = np.repeat(starts[:-1], np.diff(chunk_offsets)) + rel_end
    chunk_text_offsets = np.concatenate([[0], chunk_text]).astype(np.int64)
    rec = RunRecords(
        extra={k: values(k, np.int64) for k in EXTRA},
        t0_unix_ns=0,
        t0_mono_ns=0,
        cancelled=False,
        intended_ns=values("intended_ns", np.int64),
        sent_ns=values("sent_ns", np.int64),
        end_ns=values("end_ns", np.int64),
        http_status=values("http_status", np.int32),
        prompt_tokens=values("prompt_tokens", np.int64),
        completion_tokens=values("completion_tokens", np.int64),
        error=col["error"].to_pylist(),
        finish_reason=col["finish_reason"].to_pylist(),
        chunk_offsets=chunk_offsets,
        chunk_ns=chunk_ns,
        chunk_kind=chunk_kind,
        chunk_text_offsets=chunk_text_offsets,
        text=text,
        session_index=values("session_index", np.int64),
        turn_index=values("turn_index", np.int64),
        cached_tokens=values("cached_tokens", np.int64),
    )
    return values("record_index", np.int64), rec


class RecordWriter:
    """Appends core batches to an Arrow IPC file and keeps every request's scalars in memory
    (the run's ``RunRecords`` without chunks, ``chunks_file`` pointing here)."""

    def __init__(self, path: str | os.PathLike[str], total: int) -> None:
        self.pa = _pa()
        self.path = Path(path)
        self.total = int(total)
        self.rows = 0
        self.chunks = 0
        self.appended = 0
        self._sink = self.pa.OSFile(str(self.path), "wb")
        self._writer = self.pa.ipc.new_file(self._sink, _schema(self.pa, True))
        self.scalars = {k: np.full(self.total, fill, dtype=t) for k, (t, fill) in SCALARS.items()}
        self.strings: dict[str, list[str | None]] = {k: [None] * self.total for k in STRINGS}
        self._interned: dict[str, str] = {}
        self.seen = np.zeros(self.total, dtype=bool)
        self._pending: list[Any] = []
        self._pending_rows = 0

    def append(self, rec: RunRecords, index: np.ndarray) -> None:
        """Write one batch (rows ``index`` of the run) and keep its scalars."""
        index = np.asarray(index, dtype=np.int64)
        if index.size == 0:
            return
        if int(index.min()) < 0 or int(index.max()) >= self.total or self.seen[index].any():
            raise SonicError("the core handed over a record twice or out of range")
        self._pending.append(to_batch(self.pa, rec, index))
        self._pending_rows += int(index.size)
        if self._pending_rows >= WRITE_ROWS:
            self._flush()
        self.appended += 1
        if self.appended % RELEASE_EVERY == 0:
            release_freed_memory()  # the records and batches freed since the last time
        self.seen[index] = True
        self.rows += int(index.size)
        self.chunks += int(np.asarray(rec.chunk_ns).shape[0])
        for k in SCALARS:
            self.scalars[k][index] = _get(rec, k)
        intern = self._interned.setdefault
        for k in STRINGS:
            column = self.strings[k]
            for i, v in zip(index.tolist(), getattr(rec, k)):
                if v is not None:
                    column[i] = intern(v, v)  # a few distinct reasons, 10^6 requests

    def _flush(self) -> None:
        if self._pending:
            table = self.pa.Table.from_batches(self._pending).combine_chunks()
            for b in table.to_batches():
                self._writer.write_batch(b)
        self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        if self._writer is not None:
            self._flush()
            self._writer.close()
            self._sink.close()
            self._writer = None

    def records(self, run: dict[str, Any]) -> RunRecords:
        """The run's records: scalars in memory, chunks in this file (``chunks_file``)."""
        self.close()
        lost = ~self.seen
        if lost.any():  # a Ctrl-C between taking a batch and writing it
            error = self.strings["error"]
            for i in np.flatnonzero(lost).tolist():
                error[i] = LOST
        empty = np.zeros(0, dtype=np.int64)
        scalars = dict(self.scalars)
        extra = {k: scalars.pop(k) for k in EXTRA}
        return RunRecords(
            extra=extra,
            t0_unix_ns=int(run["t0_unix_ns"]),
            t0_mono_ns=int(run["t0_mono_ns"]),
            cancelled=bool(run["cancelled"]),
            chunk_offsets=None,  # type: ignore[arg-type]  # on disk: chunks_file
            chunk_ns=empty,
            chunk_kind=np.zeros(0, dtype=np.uint8),
            chunk_text_offsets=None,  # type: ignore[arg-type]
            text=b"",
            chunks_file=self.path,
            **scalars,
            **self.strings,
        )


# Rows per batch read back: what the metrics hold per chunk at once (a 2,048-request batch of
# 64-token answers is about 130,000 chunks).
READ_ROWS = 2048


def arrow_batches(path: str | os.PathLike[str], rows: int = READ_ROWS) -> Iterator[Any]:
    """The Arrow batches of an IPC file (a records file, or ``ChunkFile``'s), at most ``rows``
    rows each, read from disk one at a time: a mapped file would count its pages as resident."""
    pa = _pa()
    with pa.OSFile(str(path), "r") as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            for at in range(0, batch.num_rows, rows):
                yield batch.slice(at, rows)


def batches(
    path: str | os.PathLike[str], rows: int = READ_ROWS
) -> Iterator[tuple[np.ndarray, RunRecords]]:
    """(record indices, RunRecords) of each batch of a records file, in file order, at most
    ``rows`` requests each."""
    for batch in arrow_batches(path, rows):
        yield from_batch(batch)


def scalar_columns(path: str | os.PathLike[str], names: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-request columns ``names`` of a records file, in record order (the file is in the
    order requests finished), read batch by batch without the chunk lists."""
    index_parts: list[np.ndarray] = []
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for batch in arrow_batches(path):
        index_parts.append(batch.column("record_index").to_numpy())
        for n in names:
            parts[n].append(batch.column(n).to_numpy(zero_copy_only=False))
    if not index_parts:
        return {n: np.zeros(0, dtype=np.int64) for n in names}
    order = np.argsort(np.concatenate(index_parts), kind="stable")
    return {n: np.concatenate(parts[n])[order] for n in names}


def drop_text(path: str | os.PathLike[str]) -> None:
    """Rewrite a records file without its generated texts (atomically)."""
    pa = _pa()
    path = Path(path)
    scratch = path.with_name(path.name + ".tmp")
    with pa.OSFile(str(path), "r") as source:
        reader = pa.ipc.open_file(source)
        if "text" not in reader.schema.names:
            return
        schema = _schema(pa, False)
        with pa.OSFile(str(scratch), "wb") as sink, pa.ipc.new_file(sink, schema) as w:
            for i in range(reader.num_record_batches):
                b = reader.get_batch(i)
                w.write_batch(pa.record_batch([b.column(n) for n in schema.names], schema=schema))
    os.replace(scratch, path)


def scratch_path(directory: str | os.PathLike[str] | None) -> Path:
    """A new, empty records file in ``directory`` (the system's temporary one when None)."""
    where = Path(directory) if directory is not None else Path(tempfile.gettempdir())
    where.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".sonic-records-", suffix=".arrow", dir=where)
    os.close(fd)
    return Path(name)


def keep_beside(records: RunRecords, result: str | os.PathLike[str], text: bool) -> Path:
    """Move a streamed run's records file beside its result (``<result>.records.arrow``),
    without the generated texts unless ``text``; returns the new path."""
    src = records.chunks_file
    if src is None:
        raise SonicError("this run's records are in memory, not in a file")
    result = Path(result)
    dest = result.with_name(result.name.removesuffix(".json") + SUFFIX)
    if not text:
        drop_text(src)
    shutil.move(str(src), str(dest))
    records.chunks_file = dest
    return dest


def remove_with(records: RunRecords, path: str | os.PathLike[str]) -> None:
    """Delete ``path`` when ``records`` goes, unless it was moved beside a result first."""
    weakref.finalize(records, remove_quietly, str(path))


def remove_quietly(path: str) -> None:
    """Delete a scratch file that may already be gone (moved beside a result, or removed)."""
    try:
        os.unlink(path)
    except OSError:
        pass


def release_freed_memory() -> None:
    """Hand freed pages back to the system: Arrow's pool keeps freed buffers for reuse, and
    glibc keeps the holes that records and bodies freed by a streamed run leave (malloc_trim
    returns them). Called during a streamed run, after it and after its metrics, whose
    batches would otherwise stay resident. Nothing happens where there is no glibc."""
    _pa().default_memory_pool().release_unused()
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def warn_unstreamed(total: int, threshold: int = 500_000) -> None:
    """Say when a run is big enough that keeping every chunk in memory may not fit."""
    if total >= threshold:
        print(
            f"sonic: {total} requests keep every chunk in memory (about 6 KB each); "
            "--stream-records keeps them in a file instead",
            file=sys.stderr,
        )
