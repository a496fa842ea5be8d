"""RunRecords: the raw per-request, per-chunk log of one run, as returned by the Rust core.

This is the source of truth that every metric is computed from (see ``sonic.metrics``).
Columnar numpy arrays; Python objects only for the rare strings (errors, finish reasons).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# chunk_kind values (mirror of src/recorder.rs)
CHUNK_TEXT = 0  # a choice carrying non-empty text
CHUNK_EMPTY_CHOICE = 1  # a choice with empty text (role-only delta, empty first chunk)
CHUNK_NO_CHOICE = 2  # an event without choices (usage-only chunk, keep-alive)
CHUNK_DONE = 3  # the `[DONE]` sentinel


@dataclass
class RunRecords:
    """Per-request and per-chunk records; times are ns since the run's t0 (one monotonic clock)."""

    t0_unix_ns: int
    t0_mono_ns: int
    cancelled: bool
    intended_ns: np.ndarray
    sent_ns: np.ndarray
    end_ns: np.ndarray
    http_status: np.ndarray
    prompt_tokens: np.ndarray
    completion_tokens: np.ndarray
    error: list[str | None]
    finish_reason: list[str | None]
    chunk_offsets: np.ndarray
    chunk_ns: np.ndarray
    chunk_kind: np.ndarray
    chunk_text_offsets: np.ndarray
    text: bytes
    extra: dict[str, Any] = field(default_factory=dict)
    # Session of each record and turn within it (one record per turn, session-major); a
    # plain request is a one-turn session: session_index = its index, turn_index = 0.
    # None when built: filled in as that plain-request layout.
    session_index: np.ndarray | None = None
    turn_index: np.ndarray | None = None
    # Prompt tokens the engine served from its prefix cache (usage
    # prompt_tokens_details.cached_tokens); -1 where not reported. None when built: all -1.
    cached_tokens: np.ndarray | None = None
    # A streamed run (--stream-records): the chunks are in this Arrow file
    # (``sonic.recordfile``), not in the chunk columns, which are None.
    chunks_file: Path | None = None

    def __post_init__(self) -> None:
        n = int(np.asarray(self.intended_ns).shape[0])
        if self.session_index is None:
            self.session_index = np.arange(n, dtype=np.int64)
        if self.turn_index is None:
            self.turn_index = np.zeros(n, dtype=np.int64)
        if self.cached_tokens is None:
            self.cached_tokens = np.full(n, -1, dtype=np.int64)

    @classmethod
    def from_core(cls, raw: dict[str, Any]) -> RunRecords:
        names = {f for f in cls.__dataclass_fields__ if f != "extra"}
        return cls(**{k: raw[k] for k in names if k in raw})

    @property
    def n(self) -> int:
        return int(self.intended_ns.shape[0])

    @property
    def success(self) -> np.ndarray:
        """True where the request finished without error."""
        return np.array([e is None for e in self.error], dtype=bool)

    def chunk_slice(self, i: int) -> slice:
        if self.chunks_file is not None:
            from sonic.errors import SonicError

            raise SonicError(
                f"this run's chunks are in {self.chunks_file} (sonic.recordfile.batches)"
            )
        return slice(int(self.chunk_offsets[i]), int(self.chunk_offsets[i + 1]))

    def chunk_text(self, j: int) -> str:
        a, b = self.chunk_text_offsets[j], self.chunk_text_offsets[j + 1]
        return self.text[a:b].decode("utf-8", errors="replace")

    def generated_text(self, i: int) -> str:
        """The concatenated text of request i's chunks (bytes sliced once, decoded once)."""
        s = self.chunk_slice(i)
        if s.start == s.stop:
            return ""
        a, b = self.chunk_text_offsets[s.start], self.chunk_text_offsets[s.stop]
        return self.text[a:b].decode("utf-8", errors="replace")

    @classmethod
    def empty(cls) -> RunRecords:
        i64 = np.zeros(0, dtype=np.int64)
        return cls(
            t0_unix_ns=0,
            t0_mono_ns=0,
            cancelled=False,
            intended_ns=i64,
            sent_ns=i64,
            end_ns=i64,
            http_status=np.zeros(0, dtype=np.int32),
            prompt_tokens=i64,
            completion_tokens=i64,
            error=[],
            finish_reason=[],
            chunk_offsets=np.zeros(1, dtype=np.int64),
            chunk_ns=i64,
            chunk_kind=np.zeros(0, dtype=np.uint8),
            chunk_text_offsets=np.zeros(1, dtype=np.int64),
            text=b"",
        )
