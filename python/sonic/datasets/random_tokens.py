"""Random: synthetic prompts of consecutive token ids, with lengths drawn around the targets.

Two profiles, each reproducing its tool's numbers for a given seed:

- vLLM (``numpy.random.default_rng(seed)``): the input target is ``--random-input-len`` minus
  the special tokens the tokenizer adds (the server adds them back); lengths are uniform
  integers in ``[floor(L(1-r)), ceil(L(1+r))]`` (output at least 1), ``r`` in [0, 1), default 0.
  Tokens are ``allowed[(offset + i + k) % len(allowed)]`` where ``allowed`` is the vocabulary
  without special ids, after an optional random ``--random-prefix-len`` prefix shared by all
  prompts. The ids are decoded and re-encoded, then truncated or topped up with random ids
  (up to 10 rounds) so the prompt re-tokenizes to the target; ``prompt_len`` is that count.
- MAX July 2025 (``numpy.random.RandomState(seed)``, i.e. ``np.random.seed``): lengths uniform in
  ``[int(L*r), L]``, ``r`` in [0, 1], default 1 (fixed lengths); tokens
  ``(offset + i + k) % vocab_size`` (special ids included), decoded once; ``prompt_len`` is the
  drawn length, not a re-tokenized count. A lower bound of 0 is raised to 1 (MAX July 2025 could
  send empty prompts). The optional prefix is drawn first, as in vLLM of that time.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from sonic.datasets.base import DatasetArgs, SampleRequest
from sonic.errors import SonicError

if TYPE_CHECKING:
    from sonic.tokenizer import Tokenizer

_MAX_RETRY = 10


def _check_lengths(args: DatasetArgs) -> None:
    for flag, value in (
        ("--random-input-len", args.random_input_len),
        ("--random-output-len", args.random_output_len),
    ):
        if value < 1:
            raise SonicError(f"{flag} must be at least 1, got {value}")
    if args.random_prefix_len < 0:
        raise SonicError(f"--random-prefix-len must be >= 0, got {args.random_prefix_len}")


def sample(args: DatasetArgs, tokenizer: Tokenizer) -> list[SampleRequest]:
    _check_lengths(args)
    if tokenizer.vocab_size < 1:
        raise SonicError(f"tokenizer {tokenizer.name_or_path} has an empty vocabulary")
    if args.rules.range_ratio == "lower_bound":
        return _sample_lower_bound(args, tokenizer)
    return _sample_symmetric(args, tokenizer)


def decode_to_target_len(
    tokenizer: Tokenizer, token_ids: list[int], target: int, rng: Any
) -> tuple[str, list[int]]:
    """Decode, re-encode, and truncate or extend until the text re-tokenizes to ``target``.

    Some id sequences decode to text that re-tokenizes differently (merges across the seam), so
    the count is fixed up iteratively; after ``_MAX_RETRY`` rounds the last text is kept as is.
    Returns the text and its re-encoded ids, so ``len(ids)`` is the true prompt length.
    """
    retries_left = _MAX_RETRY
    ids = list(token_ids)
    while True:
        prompt = tokenizer.decode(ids)
        ids = tokenizer.encode(prompt, add_special_tokens=False)
        if retries_left <= 0 or len(ids) == target:
            return prompt, ids
        if len(ids) < target:
            ids.extend(rng.integers(0, tokenizer.vocab_size, size=target - len(ids)).tolist())
        else:
            ids = ids[:target]
        retries_left -= 1


def _sample_symmetric(args: DatasetArgs, tokenizer: Tokenizer) -> list[SampleRequest]:
    """vLLM's draw: symmetric lengths, ids from the vocabulary without special tokens."""
    import numpy as np

    ratio, out_ratio = args.range_ratios
    for r in (ratio, out_ratio):
        if not 0.0 <= r < 1.0:
            raise SonicError(f"--random-range-ratio must be in [0, 1) under vLLM's rule, got {r}")
    n, prefix_len = args.num_prompts, args.random_prefix_len
    real_input_len = max(0, args.random_input_len - tokenizer.num_special_tokens_to_add())
    input_low = math.floor(real_input_len * (1 - ratio))
    input_high = math.ceil(real_input_len * (1 + ratio))
    if prefix_len + input_low < 1:
        raise SonicError(
            "--random-input-len is too small: with the tokenizer's special tokens and "
            f"--random-range-ratio {ratio} a prompt could have no tokens"
        )
    output_low = max(math.floor(args.random_output_len * (1 - out_ratio)), 1)
    output_high = max(math.ceil(args.random_output_len * (1 + out_ratio)), 1)

    rng = np.random.default_rng(args.seed)
    vocab = tokenizer.vocab_size
    input_lens = rng.integers(input_low, input_high + 1, size=n)
    output_lens = rng.integers(output_low, output_high + 1, size=n)
    offsets = rng.integers(0, vocab, size=n)
    allowed = np.setdiff1d(np.arange(vocab), np.asarray(tokenizer.special_ids, dtype=np.int64))
    if len(allowed) == 0:
        raise SonicError(f"tokenizer {tokenizer.name_or_path} has only special tokens")
    prefix = allowed[rng.integers(0, len(allowed), size=prefix_len)].tolist() if prefix_len else []

    requests = []
    for i in range(n):
        length = int(input_lens[i])
        inner = allowed[(int(offsets[i]) + i + np.arange(length)) % len(allowed)].tolist()
        prompt, ids = decode_to_target_len(tokenizer, prefix + inner, prefix_len + length, rng)
        requests.append(SampleRequest(prompt, len(ids), int(output_lens[i])))
    return requests


def _sample_lower_bound(args: DatasetArgs, tokenizer: Tokenizer) -> list[SampleRequest]:
    """MAX's draw: lengths from a lower bound up to the length, ids over the whole vocabulary."""
    import numpy as np

    ratio, out_ratio = args.range_ratios
    for r in (ratio, out_ratio):
        if not 0.0 <= r <= 1.0:
            raise SonicError(f"--random-range-ratio must be in [0, 1] under MAX's rule, got {r}")
    n, prefix_len, vocab = args.num_prompts, args.random_prefix_len, tokenizer.vocab_size
    in_len, out_len = args.random_input_len, args.random_output_len

    encoded = args.rules.random_encoded_len
    rs = np.random.RandomState(args.seed)
    prefix = rs.randint(0, vocab, size=prefix_len).tolist() if prefix_len else []
    input_lens = rs.randint(max(int(in_len * ratio), 1), in_len + 1, size=n)
    output_lens = rs.randint(max(int(out_len * out_ratio), 1), out_len + 1, size=n)
    offsets = rs.randint(0, vocab, size=n)

    requests = []
    for i in range(n):
        length = int(input_lens[i])
        ids = ((int(offsets[i]) + i + np.arange(length)) % vocab).tolist()
        prompt = tokenizer.decode(prefix + ids)
        drawn = prefix_len + length
        count = tokenizer.count(prompt, add_special_tokens=False) if encoded else drawn
        requests.append(SampleRequest(prompt, count, int(output_lens[i])))
    return requests
