"""MAX's synthetic multi-turn chat: ``--dataset-name random --num-chat-sessions N``.

The facts follow MAX's `max benchmark` (2026): ``--num-chat-sessions`` sessions; each session's
number of turns drawn from ``--random-num-turns`` (a number or a distribution, rounded, at least
1); the first turn's input length is ``--random-input-len`` scaled by
``--random-first-turn-ratio`` (MAX 2025's first-turn ratio), later turns' the plain input length,
output lengths ``--random-output-len`` (lengths at least 4 and 1 tokens); on the first turn a
shared "system prompt" of ``floor(input_len * --random-sys-prompt-ratio)`` tokens, picked from
``--random-max-num-unique-sys-prompt`` random prefixes, opens the user text (MAX puts it in the
first user message, not a system role, and so does sonic); ``--delay-between-chat-turns``
milliseconds (a number or a distribution, negative draws 0) pass between a turn's end and the
next turn; a session stops before a turn that would take the context past 95 % of the
tokenizer's ``model_max_length``. Lengths use the dialect's ``--random-range-ratio`` rule.

Where sonic differs, by design: the text is made of whole-word tokens
(:mod:`sonic.workloads.blocks`), so each turn re-tokenizes to exactly its drawn length, and the
assistant history is fixed text of the drawn output length (the fairness rule; MAX carries the
engine's live answers, which ``--history live`` reproduces).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from sonic.datasets.base import DatasetArgs
from sonic.errors import SonicError
from sonic.workloads.blocks import AtomVocabulary
from sonic.workloads.distribution import parse_distribution
from sonic.workloads.types import SESSIONS, Workload, WorkloadSession, WorkloadTurn

if TYPE_CHECKING:
    from sonic.tokenizer import Tokenizer

MIN_INPUT_LEN = 4
MIN_OUTPUT_LEN = 1
MAX_CONTEXT_USAGE = 0.95


def _length(rng: np.random.Generator, target: int, ratio: float, rule: str, floor: int) -> int:
    """One drawn length: ``lower_bound`` U[max(int(L*r),1), L] (MAX), else U[L(1-r), L(1+r)]."""
    if rule == "lower_bound":
        low = max(int(target * ratio), 1)
        value = int(rng.integers(low, target + 1)) if low < target else target
    else:
        low, high = math.floor(target * (1 - ratio)), math.ceil(target * (1 + ratio))
        value = int(rng.integers(low, high + 1)) if low < high else target
    return max(value, floor)


def check_args(args: DatasetArgs) -> None:
    if not 0.0 <= args.random_sys_prompt_ratio < 1.0:
        raise SonicError(
            f"--random-sys-prompt-ratio must be in [0, 1), got {args.random_sys_prompt_ratio}"
        )
    if args.random_first_turn_ratio <= 0:
        raise SonicError(
            f"--random-first-turn-ratio must be positive, got {args.random_first_turn_ratio}"
        )
    if args.random_max_num_unique_sys_prompt < 1:
        raise SonicError(
            "--random-max-num-unique-sys-prompt must be at least 1, got "
            f"{args.random_max_num_unique_sys_prompt}"
        )


def build(args: DatasetArgs, tokenizer: Tokenizer) -> Workload:
    check_args(args)
    n = args.num_chat_sessions or 0
    turns_dist = parse_distribution("--random-num-turns", args.random_num_turns)
    delay = (
        None
        if args.delay_between_chat_turns is None
        else parse_distribution("--delay-between-chat-turns", args.delay_between_chat_turns)
    )
    rng = np.random.default_rng(args.seed)
    rule = args.rules.range_ratio
    in_ratio, out_ratio = args.range_ratios
    atoms = AtomVocabulary(tokenizer, args.seed)
    limit = int(min(tokenizer.model_max_length, 2**62) * MAX_CONTEXT_USAGE)

    num_turns = [max(round(turns_dist.draw(rng)), 1) for _ in range(n)]
    first_target = max(int(args.random_input_len * args.random_first_turn_ratio), 1)
    first_lens = [_length(rng, first_target, in_ratio, rule, MIN_INPUT_LEN) for _ in range(n)]
    sys_base = max(first_lens, default=1)  # one base per prefix; shorter ones are its prefixes
    sys_pool = [
        atoms.block(f"synthetic:sys:{i}", sys_base)
        for i in range(args.random_max_num_unique_sys_prompt)
    ]
    sessions = []
    for s in range(n):
        context = 0
        turns: list[WorkloadTurn] = []
        for k in range(num_turns[s]):
            if k == 0:
                in_len = first_lens[s]
                sys_len = int(math.floor(in_len * args.random_sys_prompt_ratio))
                pick = int(rng.integers(0, len(sys_pool)))
                ids = sys_pool[pick][:sys_len] + atoms.block(
                    f"synthetic:user:{s}:0", in_len - sys_len
                )
            else:
                in_len = _length(rng, args.random_input_len, in_ratio, rule, MIN_INPUT_LEN)
                ids = atoms.block(f"synthetic:user:{s}:{k}", in_len)
            out_len = _length(rng, args.random_output_len, out_ratio, rule, MIN_OUTPUT_LEN)
            think = max(delay.draw(rng), 0.0) / 1000.0 if delay is not None and k > 0 else 0.0
            if k > 0 and context + in_len + out_len > limit:
                break
            context += in_len + out_len
            answer = atoms.block(f"synthetic:answer:{s}:{k}", out_len)
            turns.append(WorkloadTurn(atoms.text(ids), out_len, atoms.text(answer), think))
        sessions.append(WorkloadSession(tuple(turns), None, f"synthetic-{s}"))
    return Workload(
        kind=SESSIONS,
        source="random",
        sessions=tuple(sessions),
        ignore_first_turn_stats=args.ignore_first_turn_stats,
        max_concurrent_sessions=args.max_concurrent_conversations,
        max_requests=args.num_prompts,
        notes=("assistant history: fixed text of each turn's drawn output length",),
    )
