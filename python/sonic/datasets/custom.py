"""custom: your own prompts, one JSON object per line: ``{"prompt": "...", "output_tokens": N}``.

vLLM's rules: records are shuffled with the seed (unless ``--disable-shuffle``), each prompt is
chat-templated for completions endpoints unless ``--skip-chat-template`` (chat endpoints get it
raw here, since the server templates it), ``prompt_len`` counts the sent text with special
tokens, the output length is ``--custom-output-len`` (default 256) or, with ``-1``, each record's
``output_tokens``. ``--num-prompts`` 0 or less takes every record; too few records are
oversampled in the vLLM profile unless ``--no-oversample``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sonic.datasets.base import (
    DatasetArgs,
    SampleRequest,
    existing_file,
    finish,
    maybe_chat_format,
    read_jsonl,
    shuffled,
)
from sonic.errors import SonicError

if TYPE_CHECKING:
    from sonic.tokenizer import Tokenizer


def load_records(path: str, from_file: bool) -> list[tuple[str, int | None]]:
    """(prompt, output_tokens) per record; ``output_tokens`` is required when ``from_file``."""
    existing_file(path, "custom dataset")
    if not path.endswith(".jsonl"):
        raise SonicError(f"custom dataset {path} must be a .jsonl file (one JSON object a line)")
    records = []
    for n, row in enumerate(read_jsonl(path, "custom dataset"), start=1):
        where = f"custom dataset {path} record {n}"
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise SonicError(f'{where}: expected an object with a string "prompt"')
        tokens = row.get("output_tokens")
        if tokens is not None and (
            isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1
        ):
            raise SonicError(f'{where}: "output_tokens" must be a positive integer')
        if from_file and tokens is None:
            raise SonicError(f'{where}: no "output_tokens", needed by --custom-output-len -1')
        records.append((row["prompt"], tokens))
    if not records:
        raise SonicError(f"custom dataset {path} has no records")
    return records


def sample(args: DatasetArgs, tokenizer: Tokenizer) -> list[SampleRequest]:
    if not args.path:
        raise SonicError("the custom dataset needs --dataset-path (a .jsonl file)")
    fixed = args.custom_output_len
    if fixed != -1 and fixed < 1:
        raise SonicError(f"--custom-output-len must be positive or -1, got {fixed}")
    from_file = fixed == -1
    records = load_records(str(args.path), from_file)
    records = shuffled(records, args.seed, enabled=not args.disable_shuffle)
    want = args.num_prompts if args.num_prompts > 0 else len(records)
    requests = []
    for prompt, tokens in records[:want]:
        text = maybe_chat_format(tokenizer, prompt, args)
        output_len = tokens if from_file else fixed
        requests.append(
            SampleRequest(text, tokenizer.count(text, add_special_tokens=True), output_len)
        )
    if args.num_prompts <= 0:
        return requests
    return finish(requests, args, "custom", allow_oversample=True)
