"""sessions: your own conversations (agent transcripts), one session per JSONL line.

A line is an OpenAI-format message list, ``[{"role": ..., "content": ...}, ...]``, or an object
``{"messages": [...], "session_id": "..."}``. A leading ``system`` message becomes the session's
system message. Each user-side message starts a turn; a ``tool`` result is sent as the next
turn's text (a turn carries one user-side message). The assistant message after it is the
turn's reference answer, the history later turns carry by default; its text, or for a message
with only ``tool_calls`` their JSON, and ``max_tokens`` is its token count (special tokens
included, as the single-turn samplers count). A turn with no answer after it (the transcript's
last user message) has ``max_tokens`` unset (``--max-output-len`` caps every turn). Content
may be a string or a list of ``{"type": "text", "text": ...}`` parts (their texts joined);
other parts are refused. Sessions are taken in file order, the first ``--num-prompts`` lines.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sonic.datasets.base import DatasetArgs, existing_file, read_text
from sonic.errors import SonicError
from sonic.workloads.types import SESSIONS, Workload, WorkloadSession, WorkloadTurn

if TYPE_CHECKING:
    from sonic.tokenizer import Tokenizer

USER_SIDE = frozenset({"user", "tool", "function"})


def _content(message: dict[str, Any], where: str) -> str:
    content = message.get("content")
    if content is None:
        calls = message.get("tool_calls")
        return json.dumps(calls, ensure_ascii=False, sort_keys=True) if calls else ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text"):
                raise SonicError(f"{where}: only text content parts are supported")
            if not isinstance(part.get("text"), str):
                raise SonicError(f'{where}: a text part has no string "text"')
            texts.append(part["text"])
        return "".join(texts)
    raise SonicError(f'{where}: "content" must be a string or a list of text parts')


def parse_line(row: Any, where: str) -> tuple[str | None, str | None, list[tuple[str, str | None]]]:
    """(session id, system, [(user text, reference answer or None), ...]) of one line."""
    session_id = None
    if isinstance(row, dict):
        session_id = row.get("session_id")
        row = row.get("messages")
    if not isinstance(row, list) or not row:
        raise SonicError(
            f'{where}: expected a non-empty list of messages (or {{"messages": [...]}})'
        )
    system = None
    turns: list[tuple[str, str | None]] = []
    for n, message in enumerate(row, start=1):
        at = f"{where} message {n}"
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise SonicError(f'{at}: expected an object with a string "role"')
        role, text = message["role"], _content(message, at)
        if role != "assistant" and message.get("content") is None:
            raise SonicError(f'{at}: a {role} message needs "content"')
        if role in ("system", "developer"):
            if turns or system is not None:
                raise SonicError(f"{at}: a {role} message is only supported first")
            system = text
        elif role in USER_SIDE:
            if turns and turns[-1][1] is None:
                raise SonicError(f"{at}: two user-side messages in a row (no assistant between)")
            turns.append((text, None))
        elif role == "assistant":
            if not turns or turns[-1][1] is not None:
                raise SonicError(f"{at}: an assistant message without a user message before it")
            turns[-1] = (turns[-1][0], text)
        else:
            raise SonicError(f"{at}: unknown role {role!r}")
    if not turns:
        raise SonicError(f"{where}: no user message")
    return (None if session_id is None else str(session_id)), system, turns


def build(args: DatasetArgs, tokenizer: Tokenizer) -> Workload:
    if not args.path:
        raise SonicError("the sessions dataset needs --dataset-path (a JSONL file)")
    p = existing_file(args.path, "sessions file")
    limit = args.num_prompts if args.num_prompts > 0 else None
    parsed = []
    for lineno, line in enumerate(read_text(p, "sessions file").splitlines(), start=1):
        if limit is not None and len(parsed) >= limit:
            break
        if not line.strip():
            continue
        where = f"sessions file {p} line {lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SonicError(f"{where}: not valid JSON ({exc.msg})") from None
        parsed.append((lineno, *parse_line(row, where)))
    if not parsed:
        raise SonicError(f"sessions file {p} has no sessions")
    answers = [a for _, _, _, turns in parsed for _, a in turns if a]
    counts = iter(len(i) for i in tokenizer.encode_batch(answers, add_special_tokens=True))
    sessions = []
    for lineno, session_id, system, turns in parsed:
        out = []
        for user, answer in turns:
            length = next(counts) if answer else None
            out.append(WorkloadTurn(user, length, answer or ""))
        sessions.append(WorkloadSession(tuple(out), system, session_id or f"line-{lineno}"))
    return Workload(
        kind=SESSIONS,
        source="sessions",
        sessions=tuple(sessions),
        ignore_first_turn_stats=args.ignore_first_turn_stats,
        max_concurrent_sessions=args.max_concurrent_conversations,
    )
