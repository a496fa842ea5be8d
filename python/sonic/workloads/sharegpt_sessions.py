"""ShareGPT conversations with all their turns, as sessions (``--num-chat-sessions N`` with
``--dataset-name sharegpt``).

Each conversation becomes one session: every human turn is a user turn, the reply after it is
its reference answer (the history later turns carry by default, so every engine gets the same
prompts), and ``max_tokens`` is the reply's token count, counted as the single-turn sampler
counts it (``tokenizer(text).input_ids``, special tokens included) unless
``--sharegpt-output-len`` pins it. A leading ``system`` entry becomes the session's system
message. A conversation is cut at the first turn that breaks the user/assistant alternation or
that would make the context (history + prompt + answer) exceed the tokenizer's
``model_max_length`` (MAX ends a conversation there too); conversations left without a
complete turn are skipped. Conversations are shuffled with the seed (``--disable-shuffle``
keeps file order) and the first ``--num-chat-sessions`` usable ones are taken.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sonic.datasets.base import DatasetArgs, read_json, shuffled
from sonic.errors import SonicError
from sonic.workloads.types import SESSIONS, Workload, WorkloadSession, WorkloadTurn

if TYPE_CHECKING:
    from sonic.tokenizer import Tokenizer

USER_ROLES = frozenset({"human", "user"})
ASSISTANT_ROLES = frozenset({"gpt", "assistant", "chatgpt", "bard", "bing", "model"})
SYSTEM_ROLES = frozenset({"system"})


def load_conversations(path: str) -> list[tuple[str, str | None, list[tuple[str, str]]]]:
    """(id, system, [(user, answer), ...]) per conversation with at least one complete turn."""
    data = read_json(path, "ShareGPT dataset")
    if not isinstance(data, list):
        raise SonicError(f"ShareGPT dataset {path} must be a JSON list of conversations")
    out = []
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            continue
        turns = entry.get("conversations", entry.get("conversation"))
        if not isinstance(turns, list):
            continue
        system, pairs = _pairs(turns)
        if pairs:
            out.append((str(entry.get("id", index)), system, pairs))
    if not out:
        raise SonicError(
            f"ShareGPT dataset {path} has no conversation with a user turn and a reply "
            '(expected [{"conversations": [{"from": "human", "value": ...}, ...]}, ...])'
        )
    return out


def _pairs(turns: list[Any]) -> tuple[str | None, list[tuple[str, str]]]:
    system = None
    pairs: list[tuple[str, str]] = []
    pending: str | None = None
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            break
        role = str(turn.get("from", "")).lower()
        if i == 0 and role in SYSTEM_ROLES:
            system = turn["value"]
        elif role in USER_ROLES and pending is None:
            pending = turn["value"]
        elif role in ASSISTANT_ROLES and pending is not None:
            pairs.append((pending, turn["value"]))
            pending = None
        else:
            break  # alternation broken: keep what came before
    return system, pairs


def build(args: DatasetArgs, tokenizer: Tokenizer, path: str) -> Workload:
    want = args.num_chat_sessions or 0
    convs = shuffled(load_conversations(path), args.seed, enabled=not args.disable_shuffle)
    limit = tokenizer.model_max_length
    fixed = args.sharegpt_output_len
    sessions: list[WorkloadSession] = []
    for conv_id, system, pairs in convs:
        if len(sessions) >= want:
            break
        texts = [t for pair in pairs for t in pair]
        counts = [len(ids) for ids in tokenizer.encode_batch(texts, add_special_tokens=True)]
        context = tokenizer.count(system, add_special_tokens=False) if system else 0
        turns = []
        for k, (user, answer) in enumerate(pairs):
            user_len, answer_len = counts[2 * k], counts[2 * k + 1]
            out_len = fixed if fixed is not None else answer_len
            if context + user_len + out_len > limit:
                break
            context += user_len + answer_len
            turns.append(WorkloadTurn(user, max(out_len, 1), answer))
        if turns:
            sessions.append(WorkloadSession(tuple(turns), system, f"sharegpt-{conv_id}"))
    if not sessions:
        raise SonicError(f"ShareGPT dataset {path}: no conversation fits the model length")
    notes = ()
    if len(sessions) < want:
        notes = (f"only {len(sessions)} usable conversations of {want} requested",)
    return Workload(
        kind=SESSIONS,
        source="sharegpt",
        sessions=tuple(sessions),
        ignore_first_turn_stats=args.ignore_first_turn_stats,
        max_concurrent_sessions=args.max_concurrent_conversations,
        max_requests=args.num_prompts,
        notes=notes,
    )
