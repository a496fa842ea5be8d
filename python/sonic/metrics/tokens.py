"""Adapt a tokenizer to the batch token counter the metrics use.

Counts are of whole texts with ``add_special_tokens=False`` (what MAX and vLLM do when they
re-tokenize), never per chunk: per-chunk counts inflate totals by up to 2x.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sonic.metrics.requests import TokenCounter


def token_counter(tokenizer: Any) -> TokenCounter:
    """A TokenCounter for ``sonic.tokenizer.Tokenizer``, an HF ``tokenizers.Tokenizer`` or a
    ``transformers`` tokenizer (anything with ``encode_batch`` or ``__call__``)."""
    if hasattr(tokenizer, "encode_batch"):

        def count_fast(texts: list[str]) -> Sequence[int]:
            if not texts:
                return []
            encs = tokenizer.encode_batch(list(texts), add_special_tokens=False)
            # tokenizers.Encoding objects carry .ids; sonic's Tokenizer returns id lists.
            return [len(e.ids) if hasattr(e, "ids") else len(e) for e in encs]

        return count_fast

    def count_hf(texts: list[str]) -> Sequence[int]:
        if not texts:
            return []
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    return count_hf
