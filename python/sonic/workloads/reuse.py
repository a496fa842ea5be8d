"""Expected prefix reuse, from the workload alone: the share of prompt tokens that sit in
blocks an engine's prefix cache could already hold because an earlier request sent them.

The model is the one prefix caches implement (vLLM, SGLang, MAX, the sim): a prompt is cut into
full blocks of ``block_size`` tokens, a block is identified by its tokens *and* everything
before it, and a block is reusable when an earlier request had the same one. The cache is taken
as unbounded and every request as finished before the next starts, so this is the ceiling that
measured hit rates are compared with; eviction and concurrency only lower the measured one. On
an unbounded cache the count does not depend on the order requests are sent in (each distinct
block misses exactly once), so sessions running side by side give the same number.

For sessions the history each turn carries is the dataset's (``--history dataset``): with
``--history live`` the answers differ per engine and the number is an estimate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sonic.workloads.types import COMPLETIONS_JOINER, SESSIONS, Workload

if TYPE_CHECKING:
    from sonic.tokenizer import Tokenizer

DEFAULT_BLOCK_SIZES = (16,)
# Above this many prompt tokens a trace's reuse is counted from its hash ids (``api`` "raw")
# instead of re-tokenizing every prompt: a full Mooncake trace is ~180 M tokens.
RETOKENIZE_LIMIT = 2_000_000


@dataclass(frozen=True)
class BlockReuse:
    """Reuse at one block size."""

    block_size: int
    prompt_tokens: int
    reused_tokens: int

    @property
    def share(self) -> float:
        return self.reused_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


@dataclass(frozen=True)
class ExpectedReuse:
    """Reuse per block size, with how the prompts were rendered (``api``, ``history``)."""

    by_block_size: tuple[BlockReuse, ...]
    requests: int
    api: str
    history: str = "dataset"

    def share(self, block_size: int) -> float:
        for r in self.by_block_size:
            if r.block_size == block_size:
                return r.share
        raise KeyError(block_size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "api": self.api,
            "history": self.history,
            "by_block_size": {
                str(r.block_size): {
                    "prompt_tokens": r.prompt_tokens,
                    "reused_tokens": r.reused_tokens,
                    "share": r.share,
                }
                for r in self.by_block_size
            },
        }


def block_reuse(
    sequences: Iterable[Sequence[int]], block_size: int, primed: Iterable[Sequence[int]] = ()
) -> BlockReuse:
    """Tokens in full blocks whose whole prefix an earlier sequence already had. ``primed``:
    sequences sent before, uncounted (the warm-up's untimed requests)."""
    if block_size < 1:
        raise ValueError("block_size must be positive")
    seen: dict[tuple[int, tuple[int, ...]], int] = {}
    for seq in primed:
        parent = -1
        for start in range(0, len(seq) - block_size + 1, block_size):
            key = (parent, tuple(seq[start : start + block_size]))
            parent = seen.setdefault(key, len(seen))
    total = reused = 0
    for seq in sequences:
        total += len(seq)
        parent = -1
        for start in range(0, len(seq) - block_size + 1, block_size):
            key = (parent, tuple(seq[start : start + block_size]))
            node = seen.get(key)
            if node is None:
                node = seen[key] = len(seen)
            else:
                reused += block_size
            parent = node
    return BlockReuse(block_size, total, reused)


def hash_id_reuse(workload: Workload, block_size: int) -> BlockReuse:
    """Reuse of a trace's raw prompts counted from its hash ids, without tokenizing: exact for
    the prompts sonic builds (a block's tokens are chosen by its id) when ``block_size``
    divides the trace's block size; the server's BOS or chat template is not counted."""
    trace_block = workload.block_size or 0
    if workload.block_ids is None or not trace_block or trace_block % block_size:
        raise ValueError("hash-id reuse needs a trace whose block size the size divides")
    longest: dict[int | str, int] = {}  # id -> longest prompt part of that block sent so far
    total = reused = 0
    for ids, length in workload.block_ids:
        total += length
        for j, h in enumerate(ids):
            size = min(trace_block, length - j * trace_block)
            seen = longest.get(h, 0)
            reused += block_size * (min(size, seen) // block_size)
            longest[h] = max(seen, size)
    return BlockReuse(block_size, total, reused)


def turn_messages(workload: Workload) -> Iterable[list[dict[str, str]]]:
    """Each request's chat messages with the dataset's history, session by session (the
    turns a session sends: from its ``start_turn`` on)."""
    if workload.kind != SESSIONS:
        for r in workload.requests:
            yield [{"role": "user", "content": r.prompt}]
        return
    for s in workload.sessions:
        yield from _session_messages(s, s.start_turn)


def prerun_messages(workload: Workload) -> Iterable[list[dict[str, str]]]:
    """The untimed warm-up request of each session that starts mid-way
    (:func:`sonic.workloads.warmup.prerun_sessions`)."""
    from sonic.workloads.warmup import prerun_sessions

    if workload.kind != SESSIONS:
        return
    for s in prerun_sessions(workload.sessions, workload.warm_started):
        yield from _session_messages(s, s.start_turn)


def _session_messages(s, first: int) -> Iterable[list[dict[str, str]]]:
    """Messages of session ``s``'s requests from turn ``first`` on."""
    messages = [{"role": "system", "content": s.system}] if s.system else []
    for k, turn in enumerate(s.turns):
        messages = messages + [{"role": "user", "content": turn.content}]
        if k >= first:
            yield messages
        messages = messages + [{"role": "assistant", "content": turn.reference_answer}]


def prompt_ids(
    workload: Workload,
    tokenizer: Tokenizer,
    api: str = "completions",
    render: Callable[[list[dict[str, str]]], str] | None = None,
    *,
    messages: Iterable[list[dict[str, str]]] | None = None,
) -> Iterable[list[int]]:
    """The token ids each request's prompt has on the server (``messages``: other requests'
    messages than the workload's, e.g. :func:`prerun_messages`).

    ``chat``: the tokenizer's chat template (as the server applies it), when it has one.
    ``completions``: the texts joined as the client sends them (``render``, default: joined by
    ``COMPLETIONS_JOINER``), encoded with the special tokens the server adds.
    """
    templated = api == "chat" and tokenizer.has_chat_template and render is None
    for msgs in turn_messages(workload) if messages is None else messages:
        if templated:
            text = tokenizer.apply_chat_template(msgs, add_generation_prompt=True)
            yield tokenizer.encode(text, add_special_tokens=False)
        else:
            text = render(msgs) if render else COMPLETIONS_JOINER.join(m["content"] for m in msgs)
            yield tokenizer.encode(text, add_special_tokens=api == "completions")


def expected_reuse(
    workload: Workload,
    tokenizer: Tokenizer,
    *,
    api: str = "completions",
    block_sizes: Sequence[int] | None = None,
    history: str = "dataset",
    render: Callable[[list[dict[str, str]]], str] | None = None,
) -> ExpectedReuse:
    """Expected prefix reuse of ``workload`` at each block size (default: 16, plus the trace's
    block size when the workload came from a trace). Large traces are counted from their hash
    ids (:func:`hash_id_reuse`, ``api`` "raw") rather than re-tokenized."""
    sizes = list(block_sizes or DEFAULT_BLOCK_SIZES)
    if block_sizes is None and workload.block_size and workload.block_size not in sizes:
        sizes.append(workload.block_size)
    trace_block = workload.block_size or 0
    if (
        workload.block_ids is not None
        and all(trace_block % b == 0 for b in sizes)
        and sum(n for _, n in workload.block_ids) > RETOKENIZE_LIMIT
    ):
        return ExpectedReuse(
            by_block_size=tuple(hash_id_reuse(workload, b) for b in sizes),
            requests=len(workload.block_ids),
            api="raw",
            history=history,
        )
    sequences = list(prompt_ids(workload, tokenizer, api, render))
    primed = list(prompt_ids(workload, tokenizer, api, render, messages=prerun_messages(workload)))
    return ExpectedReuse(
        by_block_size=tuple(block_reuse(sequences, b, primed) for b in sizes),
        requests=len(sequences),
        api=api,
        history=history,
    )
