"""The prompts each engine gets, loaded once and fingerprinted.

The suite's promise is that every engine receives byte-identical requests for a scenario. The
workload of each engine × scenario is built from that engine's own ``RunArgs`` (so an engine
override of the tokenizer or the compat profile shows up as a different fingerprint instead of
being hidden), and cached by everything that decides it, so identical settings share one load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sonic.errors import SonicError

if TYPE_CHECKING:
    from sonic.compat.runargs import RunArgs


@dataclass
class Workload:
    tokenizer: Any
    samples: list[Any]
    fingerprint: str
    max_tokens: list[int | None]  # what each request asks for (None: server decides)

    def max_tokens_summary(self) -> dict[str, Any]:
        given = [m for m in self.max_tokens if m is not None]
        text = json.dumps(self.max_tokens)
        return {
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
            "total": sum(given),
            "max": max(given) if given else None,
            "unset": len(self.max_tokens) - len(given),
        }


def _samples_key(args: RunArgs) -> str:
    doc = {
        "tokenizer": str(args.target.tokenizer or args.target.model),
        "trust_remote_code": args.target.trust_remote_code,
        "dataset": dataclasses.asdict(args.dataset),
        # Prompts depend on the dialect only through its dataset rules.
        "dataset_rules": dataclasses.asdict(args.dialect.dataset_rules),
        "chat": args.target.api == "chat",
    }
    return json.dumps(doc, sort_keys=True, default=str)


class Workloads:
    """Cache of sampled prompts (and the tokenizer that made them) for a suite."""

    def __init__(self) -> None:
        self._loaded: dict[str, tuple[Any, list[Any], str]] = {}
        self._failed: dict[str, SonicError] = {}
        self._tokenizers: dict[str, SonicError | None] = {}

    def _check_tokenizer(self, args: RunArgs) -> None:
        """Load each tokenizer once up front, so one that cannot load (gated, offline) fails
        once rather than once per scenario."""
        from sonic.tokenizer import load_tokenizer

        name = str(args.target.tokenizer or args.target.model)
        if name not in self._tokenizers:
            try:
                load_tokenizer(name, trust_remote_code=args.target.trust_remote_code)
                self._tokenizers[name] = None
            except SonicError as exc:
                self._tokenizers[name] = exc
        error = self._tokenizers[name]
        if error is not None:
            raise error

    def get(self, args: RunArgs) -> Workload:
        from sonic.benchmark import _max_tokens, load_workload
        from sonic.datasets import fingerprint

        key = _samples_key(args)
        if key in self._failed:
            raise self._failed[key]
        if key not in self._loaded:
            try:
                self._check_tokenizer(args)
                tokenizer, samples = load_workload(args)
            except SonicError as exc:
                self._failed[key] = exc  # a failed load (e.g. a Hub timeout) is not retried
                raise
            self._loaded[key] = (tokenizer, samples, fingerprint(samples))
        tokenizer, samples, fp = self._loaded[key]
        max_tokens = [_max_tokens(args, s.expected_output_len, i) for i, s in enumerate(samples)]
        return Workload(tokenizer, samples, fp, max_tokens)
