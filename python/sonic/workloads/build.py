"""Which datasets are workloads (sessions, timed traces) and the one entry point
:func:`build_workload`.

A workload dataset is one whose requests are not independent prompts sent by the arrival
process: ``trace`` and ``timed_trace`` (recorded send times and shared prefixes), ``sessions``
(conversations from a file), and ``sharegpt`` / ``random`` with ``--num-chat-sessions``
(ShareGPT conversations with all their turns; MAX's synthetic multi-turn chat). Everything else
stays with :func:`sonic.datasets.sample_requests`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from sonic.datasets.base import DatasetArgs
from sonic.datasets.registry import WORKLOAD_DATASETS
from sonic.errors import SonicError
from sonic.workloads.types import SESSIONS, Workload

if TYPE_CHECKING:
    from sonic.tokenizer import Tokenizer

# Datasets that become sessions with --num-chat-sessions.
SESSION_CAPABLE = ("sharegpt", "random")


def is_workload(args: DatasetArgs) -> bool:
    return args.name in WORKLOAD_DATASETS or (
        args.name in SESSION_CAPABLE and args.num_chat_sessions is not None
    )


def _given(args: DatasetArgs, names: tuple[str, ...]) -> list[str]:
    """The flags among ``names`` (dests) set away from their defaults."""
    defaults = DatasetArgs()
    return ["--" + n.replace("_", "-") for n in names if getattr(args, n) != getattr(defaults, n)]


SYNTHETIC_ONLY = (
    "random_num_turns",
    "random_first_turn_ratio",
    "random_sys_prompt_ratio",
    "random_max_num_unique_sys_prompt",
)
SESSION_ONLY = ("max_concurrent_conversations", "ignore_first_turn_stats")


def check_session_flags(args: DatasetArgs) -> None:
    """Session flags on a workload that cannot use them are refused, not ignored."""
    if args.num_chat_sessions is not None and args.name not in SESSION_CAPABLE:
        where = " (its sessions come from the file)" if args.name in WORKLOAD_DATASETS else ""
        raise SonicError(
            f"--num-chat-sessions applies to the sharegpt and random datasets, not "
            f"{args.name}{where}"
        )
    synthetic = args.name == "random" and args.num_chat_sessions is not None
    if not synthetic and (bad := _given(args, SYNTHETIC_ONLY)):
        raise SonicError(f"{bad[0]} applies to --dataset-name random with --num-chat-sessions")
    if args.name in ("trace", "timed_trace") and args.delay_between_chat_turns is not None:
        raise SonicError(
            "--delay-between-chat-turns does not apply to a trace: its sessions' think times "
            "are the recorded gaps"
        )
    if args.name == "timed_trace" or not is_workload(args):
        if bad := _given(args, (*SESSION_ONLY, "delay_between_chat_turns")):
            raise SonicError(
                f"{bad[0]} needs a multi-turn workload: --num-chat-sessions N with "
                "--dataset-name sharegpt or random, or --dataset-name sessions or trace"
            )


def build_workload(args: DatasetArgs, tokenizer: Tokenizer) -> Workload | None:
    """The run's workload when ``args`` name a workload dataset, else None (use
    ``sample_requests``). Deterministic for a given ``args`` (seed included) and tokenizer."""
    check_session_flags(args)
    if not is_workload(args):
        return None
    args.validate()
    if args.num_chat_sessions is not None and args.num_chat_sessions < 1:
        raise SonicError(f"--num-chat-sessions must be at least 1, got {args.num_chat_sessions}")
    if args.max_concurrent_conversations is not None and args.max_concurrent_conversations < 1:
        raise SonicError("--max-concurrent-conversations must be at least 1")
    if args.name in ("trace", "timed_trace"):
        from sonic.workloads import trace

        workload = trace.build(args, tokenizer)
        if workload.kind != SESSIONS and (bad := _given(args, SESSION_ONLY)):
            raise SonicError(f"{bad[0]} needs sessions, and trace {args.path} has none")
        return workload
    if args.name == "sessions":
        from sonic.workloads import custom_sessions

        workload = custom_sessions.build(args, tokenizer)
    elif args.name == "sharegpt":
        from sonic.datasets.sharegpt import resolve_path
        from sonic.workloads import sharegpt_sessions

        workload = sharegpt_sessions.build(args, tokenizer, resolve_path(args))
    else:
        from sonic.workloads import synthetic

        return synthetic.build(args, tokenizer)  # draws its own think times
    return with_think_times(workload, args)


def with_think_times(workload: Workload, args: DatasetArgs) -> Workload:
    """``--delay-between-chat-turns`` (ms) as the think time before every turn after the first,
    drawn with the seed, for sessions whose dataset has no times of its own."""
    if args.delay_between_chat_turns is None or workload.kind != SESSIONS:
        return workload
    from sonic.workloads.distribution import parse_distribution

    dist = parse_distribution("--delay-between-chat-turns", args.delay_between_chat_turns)
    rng = np.random.default_rng([args.seed, 1])
    sessions = tuple(
        dataclasses.replace(
            s,
            turns=tuple(
                t if k == 0 else dataclasses.replace(t, think_s=max(dist.draw(rng), 0.0) / 1000)
                for k, t in enumerate(s.turns)
            ),
        )
        for s in workload.sessions
    )
    return dataclasses.replace(workload, sessions=sessions)
