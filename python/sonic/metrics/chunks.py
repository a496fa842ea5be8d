"""Per-chunk metrics (ITL, step TPOT, token arrival times) behind one interface, whether the
chunks are in memory (``ChunkArrays``: exact percentiles) or in a file (``ChunkFile``, a
streamed run: exact counts, mean, std, min and max; percentiles from an HDR histogram at
``HDR_DIGITS`` significant digits). Every question takes the request mask it is asked over,
so skip rules and steady-state windows work the same way on both.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sonic.metrics.stats import BASE_PERCENTILES, Summary, summarize

NS = 1e9
# A streamed run's percentile is the sample at that rank, at most 0.1 % high (HdrHistogram's
# nearest rank; numpy's in-memory percentiles interpolate between the two samples around it).
HDR_DIGITS = 3


class ChunkStats:
    """What the aggregates ask of the per-chunk data; ``ok`` is a per-request mask."""

    # "exact", or how the percentiles were approximated (stated in the result).
    precision: str = "exact"
    itl_counts: np.ndarray  # ITL gaps per request

    def itl_summary(self, ok: np.ndarray, percentiles: Sequence[float]) -> Summary:
        raise NotImplementedError

    def step_tpot_summary(self, ok: np.ndarray, percentiles: Sequence[float]) -> Summary:
        raise NotImplementedError

    def max_tokens_per_s(self, ok: np.ndarray, start_ns: float) -> float:
        """Largest count of token arrivals in one 1-second bucket counted from ``start_ns``."""
        raise NotImplementedError

    def tokens_between(self, ok: np.ndarray, a_s: float, b_s: float) -> int:
        """Token arrivals in [a_s, b_s) (seconds from t0)."""
        raise NotImplementedError


def _peak(buckets: np.ndarray) -> float:
    buckets = buckets[buckets >= 0]
    return float(np.bincount(buckets).max()) if buckets.size else 0.0


@dataclass
class ChunkArrays(ChunkStats):
    """The chunks of a run held in memory (the pooled arrays of ``RequestMetrics``)."""

    itl_offsets: np.ndarray
    itl_s: np.ndarray
    token_offsets: np.ndarray
    token_ns: np.ndarray
    itl_tokens: np.ndarray | None = None

    @property
    def itl_counts(self) -> np.ndarray:  # type: ignore[override]
        return np.diff(np.asarray(self.itl_offsets))

    def _itl_mask(self, ok: np.ndarray) -> np.ndarray:
        return np.repeat(ok, np.diff(self.itl_offsets))

    def itl_summary(self, ok, percentiles):
        return summarize(self.itl_s[self._itl_mask(ok)], percentiles)

    def step_tpot_summary(self, ok, percentiles):
        if self.itl_tokens is None:
            return summarize(np.zeros(0), percentiles)
        keep = self._itl_mask(ok) & (self.itl_tokens > 0)
        return summarize(self.itl_s[keep] / self.itl_tokens[keep], percentiles)

    def _tokens(self, ok: np.ndarray) -> np.ndarray:
        return self.token_ns[np.repeat(ok, np.diff(self.token_offsets))]

    def max_tokens_per_s(self, ok, start_ns):
        t = self._tokens(ok)
        return _peak(np.floor((t - start_ns) / NS).astype(np.int64)) if t.size else 0.0

    def tokens_between(self, ok, a_s, b_s):
        t = np.asarray(self._tokens(ok), dtype=np.float64) / NS
        return int(((t >= a_s) & (t < b_s)).sum())


class Moments:
    """Exact count, mean, population std, min and max of values seen batch by batch (Chan's
    pairwise update: no cancellation when the spread is small against the mean)."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0
        self.min, self.max = np.inf, -np.inf

    def add(self, x: np.ndarray) -> None:
        if x.size == 0:
            return
        nb, mb = int(x.size), float(np.mean(x))
        m2b = float(np.sum((x - mb) ** 2))
        n = self.n + nb
        delta = mb - self.mean
        self.mean += delta * nb / n
        self.m2 += m2b + delta * delta * self.n * nb / n
        self.n = n
        self.min, self.max = min(self.min, float(x.min())), max(self.max, float(x.max()))


def hdr_summary(values_s: Any, percentiles: Sequence[float]) -> Summary:
    """A Summary from ``(Moments, Histogram)`` of values in seconds (histogram in ns)."""
    moments, hist = values_s
    if moments.n == 0:
        return Summary(n=0)
    qs = sorted(set(BASE_PERCENTILES) | {float(q) for q in percentiles})
    return Summary(
        n=moments.n,
        mean=moments.mean,
        median=hist.percentile(50.0) / NS,
        std=float(np.sqrt(moments.m2 / moments.n)),
        min=moments.min,
        max=moments.max,
        percentiles={q: hist.percentile(q) / NS for q in qs},
    )


class ChunkFile(ChunkStats):
    """The per-chunk metrics of a streamed run in an Arrow IPC file, one row per request
    (``record_index``, ``itl_s``, ``itl_tokens``, ``token_ns``), read back batch by batch for
    each question. The file is deleted with this object."""

    precision = f"hdr-{HDR_DIGITS}"

    def __init__(self, path: Path, itl_counts: np.ndarray, step_tpot: bool) -> None:
        self.path = Path(path)
        self.itl_counts = itl_counts
        self.step_tpot = step_tpot
        from sonic.recordfile import remove_quietly

        weakref.finalize(self, remove_quietly, str(self.path))

    def _batches(self):
        from sonic.recordfile import arrow_batches

        for b in arrow_batches(self.path):
            yield b.column("record_index").to_numpy(), b

    @staticmethod
    def _flat(batch, name: str, rows: np.ndarray) -> np.ndarray:
        """The values of list column ``name`` in the rows where ``rows`` is True."""
        arr = batch.column(name)
        offs = np.asarray(arr.offsets.to_numpy(), dtype=np.int64)
        vals = arr.values.to_numpy()[offs[0] : offs[-1]]
        return vals[np.repeat(rows, np.diff(offs))]

    def _hdr(self, ok: np.ndarray, per_token: bool):
        from sonic import _core

        moments, hist = Moments(), _core.Histogram(HDR_DIGITS)
        for index, b in self._batches():
            rows = ok[index]
            if not rows.any():
                continue
            itl = self._flat(b, "itl_s", rows)
            if per_token:
                tok = self._flat(b, "itl_tokens", rows)
                keep = tok > 0
                itl = itl[keep] / tok[keep]
            moments.add(itl)
            hist.record(np.rint(itl * NS).astype(np.int64))
        return moments, hist

    def itl_summary(self, ok, percentiles):
        return hdr_summary(self._hdr(np.asarray(ok, dtype=bool), False), percentiles)

    def step_tpot_summary(self, ok, percentiles):
        if not self.step_tpot:
            return summarize(np.zeros(0), percentiles)
        return hdr_summary(self._hdr(np.asarray(ok, dtype=bool), True), percentiles)

    def _token_times(self, ok: np.ndarray):
        ok = np.asarray(ok, dtype=bool)
        for index, b in self._batches():
            rows = ok[index]
            if rows.any():
                yield self._flat(b, "token_ns", rows)

    def max_tokens_per_s(self, ok, start_ns):
        counts = np.zeros(0, dtype=np.int64)
        for t in self._token_times(ok):
            buckets = np.floor((t - start_ns) / NS).astype(np.int64)
            c = np.bincount(buckets[buckets >= 0])
            if c.size > counts.size:
                c[: counts.size] += counts
                counts = c
            else:
                counts[: c.size] += c
        return float(counts.max()) if counts.size else 0.0

    def tokens_between(self, ok, a_s, b_s):
        total = 0
        for t in self._token_times(ok):
            s = t.astype(np.float64) / NS
            total += int(((s >= a_s) & (s < b_s)).sum())
        return total


class ChunkFileWriter:
    """Writes the derived per-chunk columns of each batch (``ChunkFile``'s layout)."""

    def __init__(self, path: Path, step_tpot: bool) -> None:
        import pyarrow as pa
        import pyarrow.ipc  # noqa: F401

        self.pa = pa
        self.path = Path(path)
        self.step_tpot = step_tpot
        fields = [
            pa.field("record_index", pa.int64()),
            pa.field("itl_s", pa.large_list(pa.float64())),
            pa.field("token_ns", pa.large_list(pa.int64())),
        ]
        if step_tpot:
            fields.append(pa.field("itl_tokens", pa.large_list(pa.int64())))
        self.schema = pa.schema(fields)
        self._sink = pa.OSFile(str(self.path), "wb")
        self._writer = pa.ipc.new_file(self._sink, self.schema)

    def write(self, index: np.ndarray, arrays: ChunkArrays) -> None:
        pa = self.pa
        cols = [
            pa.array(np.asarray(index, dtype=np.int64)),
            pa.LargeListArray.from_arrays(
                pa.array(np.asarray(arrays.itl_offsets, np.int64)), pa.array(arrays.itl_s)
            ),
            pa.LargeListArray.from_arrays(
                pa.array(np.asarray(arrays.token_offsets, np.int64)), pa.array(arrays.token_ns)
            ),
        ]
        if self.step_tpot:
            tokens = arrays.itl_tokens
            if tokens is None:
                tokens = np.zeros(arrays.itl_s.shape[0], dtype=np.int64)
            cols.append(
                pa.LargeListArray.from_arrays(
                    pa.array(np.asarray(arrays.itl_offsets, np.int64)),
                    pa.array(np.asarray(tokens, dtype=np.int64)),
                )
            )
        self._writer.write_batch(pa.record_batch(cols, schema=self.schema))

    def close(self) -> None:
        self._writer.close()
        self._sink.close()
