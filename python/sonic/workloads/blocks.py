"""Token blocks that survive concatenation: text whose tokens are known before it is sent.

Trace replay must give two prompts exactly the shared blocks that their ``hash_ids`` say, on the
run's own tokenizer. Random token ids do not do that: decoded and concatenated, neighbouring
ids merge into other tokens at the seams. So prompts are built from *atoms*: vocabulary entries
that decode to a space followed by letters and encode back to themselves. Byte-level BPE
pre-tokenizers (GPT-2, Llama 3, Qwen, DeepSeek, SmolLM) split text before each space, so any
sequence of atoms re-tokenizes to exactly those atoms, and its text is the atoms' texts joined.
Both properties are checked on the tokenizer at hand (:meth:`AtomVocabulary.check`) rather
than assumed; a tokenizer without enough atoms (SentencePiece ones that drop the leading space)
is refused with one line.
"""

from __future__ import annotations

import hashlib
import random
import re
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING

import numpy as np

from sonic.errors import SonicError

if TYPE_CHECKING:
    from sonic.tokenizer import Tokenizer

_ATOM = re.compile(r"^ [A-Za-z]{1,12}$")
MIN_ATOMS = 64  # fewer and distinct blocks would start to collide
_PROBE_TOKENS = 4096
_CACHED_BLOCKS = 8192  # shared blocks are reused; a whole trace's blocks are not kept


class AtomVocabulary:
    """The atoms of one tokenizer, and seeded token blocks built from them."""

    def __init__(self, tokenizer: Tokenizer, seed: int = 0) -> None:
        self.tokenizer = tokenizer
        self.seed = seed
        self._block = lru_cache(maxsize=_CACHED_BLOCKS)(self._draw)

    @cached_property
    def _atoms(self) -> tuple[np.ndarray, dict[int, str]]:
        tok = self.tokenizer
        special = set(tok.special_ids)
        candidates = [i for i in range(tok.vocab_size) if i not in special]
        texts = [tok.decode([i]) for i in candidates]
        keep = [(i, s) for i, s in zip(candidates, texts, strict=True) if _ATOM.match(s)]
        encoded = tok.encode_batch([s for _, s in keep]) if keep else []
        atoms = {i: s for (i, s), ids in zip(keep, encoded, strict=True) if ids == [i]}
        if len(atoms) < MIN_ATOMS:
            raise SonicError(
                f"tokenizer {tok.name_or_path} has only {len(atoms)} single-token words "
                f"(' word'); sessions and trace replay need at least {MIN_ATOMS} to build "
                "text of exact token lengths"
            )
        self.check(list(atoms), atoms)
        return np.array(list(atoms), dtype=np.int64), atoms

    @property
    def ids(self) -> list[int]:
        return self._atoms[0].tolist()

    def check(self, atoms: list[int], texts: dict[int, str]) -> None:
        """Refuse a tokenizer on which joined atoms do not decode and re-tokenize exactly."""
        rng = random.Random(f"sonic-atoms-probe:{self.seed}")
        probe = [rng.choice(atoms) for _ in range(_PROBE_TOKENS)]
        text = "".join(texts[i] for i in probe)
        tok = self.tokenizer
        if tok.decode(probe) != text or tok.encode(text) != probe:
            raise SonicError(
                f"tokenizer {tok.name_or_path} merges words across spaces; sessions and trace "
                "replay cannot build text of exact token lengths with it"
            )

    def _draw(self, key: str, length: int) -> tuple[int, ...]:
        digest = hashlib.sha256(f"{self.seed}:{key}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
        atoms = self._atoms[0]
        return tuple(atoms[rng.integers(0, len(atoms), size=length)].tolist())

    def block(self, key: str, length: int) -> list[int]:
        """``length`` atom ids determined by ``key`` and the seed alone."""
        return list(self._block(key, length))

    def text(self, ids: list[int] | tuple[int, ...]) -> str:
        """The text of atom ids (exactly what the tokenizer decodes them to)."""
        texts = self._atoms[1]
        return "".join(texts[i] for i in ids)
