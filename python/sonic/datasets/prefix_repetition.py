"""prefix_repetition (vLLM): ``--prefix-repetition-num-prefixes`` shared prefixes, each followed
by its own suffixes, to exercise prefix caching with a known structure.

vLLM's rules: ``prompts_per_prefix = num_prompts // num_prefixes`` (an error when that is 0, and
``num_prefixes * prompts_per_prefix`` requests in all, so a remainder is dropped), prefix and
suffix lengths in tokens without special tokens, ``prompt_len`` = prefix + suffix tokens, every
output length ``--prefix-repetition-output-len``, the requests shuffled with the seed unless
``--disable-shuffle``. vLLM draws random ids and repairs their length after re-tokenization;
sonic builds the text from whole-word tokens (:mod:`sonic.workloads.blocks`) so that prefix and
suffix re-tokenize to exactly the drawn lengths, and so the shared prefix is exactly shared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sonic.datasets.base import DatasetArgs, SampleRequest, shuffled
from sonic.errors import SonicError

if TYPE_CHECKING:
    from sonic.tokenizer import Tokenizer


def sample(args: DatasetArgs, tokenizer: Tokenizer) -> list[SampleRequest]:
    from sonic.workloads.blocks import AtomVocabulary

    n_prefixes = args.prefix_repetition_num_prefixes
    for flag, value, low in (
        ("--prefix-repetition-prefix-len", args.prefix_repetition_prefix_len, 0),
        ("--prefix-repetition-suffix-len", args.prefix_repetition_suffix_len, 0),
        ("--prefix-repetition-num-prefixes", n_prefixes, 1),
        ("--prefix-repetition-output-len", args.prefix_repetition_output_len, 1),
    ):
        if value < low:
            raise SonicError(f"{flag} must be at least {low}, got {value}")
    if args.prefix_repetition_prefix_len + args.prefix_repetition_suffix_len < 1:
        raise SonicError("prefix_repetition: prefix and suffix lengths are both 0")
    per_prefix = args.num_prompts // n_prefixes
    if per_prefix == 0:
        raise SonicError(
            f"prefix_repetition: --num-prompts {args.num_prompts} is below "
            f"--prefix-repetition-num-prefixes {n_prefixes}"
        )
    atoms = AtomVocabulary(tokenizer, args.seed)
    requests = []
    for p in range(n_prefixes):
        prefix = atoms.block(f"prefix-repetition:prefix:{p}", args.prefix_repetition_prefix_len)
        for s in range(per_prefix):
            suffix = atoms.block(
                f"prefix-repetition:suffix:{p}:{s}", args.prefix_repetition_suffix_len
            )
            ids = prefix + suffix
            requests.append(
                SampleRequest(atoms.text(ids), len(ids), args.prefix_repetition_output_len)
            )
    return shuffled(requests, args.seed, enabled=not args.disable_shuffle)
