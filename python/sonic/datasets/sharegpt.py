"""ShareGPT: the first human turn is the prompt, the first reply sets the output length.

Rules shared by vLLM and MAX: keep conversations with at least two turns, shuffle them with
``random.shuffle`` seeded by ``--seed`` (``--disable-shuffle`` turns it off), count tokens as
``tokenizer(text).input_ids`` does (special tokens included), drop prompts shorter than 4 or
longer than 1024 tokens, outputs shorter than 4 (unless ``--sharegpt-output-len`` pins them) and
pairs longer than 2048 together. Profiles differ in two places:

- vLLM requires ``--dataset-path`` and oversamples (seeded, with replacement) up to
  ``--num-prompts`` unless ``--no-oversample``.
- MAX downloads the file from the Hub when no path is given and never oversamples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sonic.datasets.base import (
    DatasetArgs,
    SampleRequest,
    existing_file,
    finish,
    is_valid_sequence,
    read_json,
    shuffled,
)
from sonic.errors import SonicError

if TYPE_CHECKING:
    from sonic.tokenizer import Tokenizer

HUB_REPO = "anon8231489123/ShareGPT_Vicuna_unfiltered"
HUB_FILE = "ShareGPT_V3_unfiltered_cleaned_split.json"

# Conversations are tokenized lazily, a batch at a time, until enough pass the filters.
_BATCH = 256


def resolve_path(args: DatasetArgs) -> str:
    if args.path:
        return str(existing_file(args.path, "ShareGPT dataset"))
    if not args.rules.sharegpt_hub_download:
        raise SonicError(
            f"the sharegpt dataset needs --dataset-path (a local {HUB_FILE}) under "
            f"--compat {args.compat}; use --compat max to download it from the Hugging Face Hub"
        )
    from sonic.datasets.hub import fetch_hub_file

    return fetch_hub_file(
        HUB_REPO,
        HUB_FILE,
        repo_type="dataset",
        local_hint=f"or pass --dataset-path with a local copy of {HUB_FILE}",
    )


def load_pairs(path: str) -> list[tuple[str, str]]:
    """(prompt, completion) of every conversation with at least two text turns, in file order."""
    data = read_json(path, "ShareGPT dataset")
    if not isinstance(data, list):
        raise SonicError(f"ShareGPT dataset {path} must be a JSON list of conversations")
    pairs = []
    for entry in data:
        turns = entry.get("conversations") if isinstance(entry, dict) else None
        if not isinstance(turns, list) or len(turns) < 2:
            continue
        first, second = turns[0], turns[1]
        if not (isinstance(first, dict) and isinstance(second, dict)):
            continue
        prompt, completion = first.get("value"), second.get("value")
        if isinstance(prompt, str) and isinstance(completion, str):
            pairs.append((prompt, completion))
    if not pairs:
        raise SonicError(
            f"ShareGPT dataset {path} has no conversation with two turns "
            '(expected [{"conversations": [{"from": ..., "value": ...}, ...]}, ...])'
        )
    return pairs


def sample(args: DatasetArgs, tokenizer: Tokenizer) -> list[SampleRequest]:
    pairs = shuffled(load_pairs(resolve_path(args)), args.seed, enabled=not args.disable_shuffle)
    fixed = args.sharegpt_output_len
    requests: list[SampleRequest] = []
    for start in range(0, len(pairs), _BATCH):
        if len(requests) >= args.num_prompts:
            break
        chunk = pairs[start : start + _BATCH]
        prompt_ids = tokenizer.encode_batch([p for p, _ in chunk], add_special_tokens=True)
        output_ids = (
            tokenizer.encode_batch([c for _, c in chunk], add_special_tokens=True)
            if fixed is None
            else None
        )
        for i, (prompt, _) in enumerate(chunk):
            prompt_len = len(prompt_ids[i])
            output_len = fixed if output_ids is None else len(output_ids[i])
            if not is_valid_sequence(prompt_len, output_len, fixed_output=fixed is not None):
                continue
            requests.append(SampleRequest(prompt, prompt_len, output_len))
            if len(requests) >= args.num_prompts:
                break
    return finish(requests, args, "sharegpt", allow_oversample=True)
