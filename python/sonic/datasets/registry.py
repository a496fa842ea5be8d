"""Dataset names → sampler modules, and the one entry point :func:`sample_requests`.

Modules are imported on first use. Names that vLLM or MAX accept but sonic does not implement
are refused with a clear message rather than mapped to something else: a substituted dataset
would report a benchmark nobody ran.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
from typing import TYPE_CHECKING

from sonic.datasets.base import DatasetArgs, SampleRequest
from sonic.errors import SonicError

if TYPE_CHECKING:
    from sonic.tokenizer import Tokenizer

DATASETS: dict[str, str] = {
    "sharegpt": "sonic.datasets.sharegpt",
    "sonnet": "sonic.datasets.sonnet",
    "random": "sonic.datasets.random_tokens",
    "code_debug": "sonic.datasets.code_debug",
    "custom": "sonic.datasets.custom",
    "hf": "sonic.datasets.hf",
    "prefix_repetition": "sonic.datasets.prefix_repetition",
}
# Datasets whose requests are sessions or carry their own send times: built by
# sonic.workloads.build_workload, never by sample_requests.
WORKLOAD_DATASETS = ("trace", "timed_trace", "sessions")
DATASET_NAMES = tuple(DATASETS)  # what sample_requests samples
RUN_DATASET_NAMES = DATASET_NAMES + WORKLOAD_DATASETS  # what --dataset-name accepts

# Accepted by vLLM `bench serve` or MAX's benchmarks, not (yet) by sonic: name -> what it is.
NOT_IMPLEMENTED: dict[str, str] = {
    "burstgpt": "vLLM's burstgpt",
    "random-mm": "multimodal random",
    "random-rerank": "rerank random",
    "custom_audio": "audio",
    "custom_image": "image",
    "spec_bench": "vLLM's spec_bench",
    "speed_bench": "vLLM's speed_bench",
    "arxiv-summarization": "MAX's arxiv-summarization",
    "axolotl": "MAX's axolotl",
    "vision-arena": "MAX's vision-arena",
    "obfuscated-conversations": "MAX's obfuscated-conversations",
    "batch-job": "MAX's batch-job",
    "chat-judge": "MAX's chat-judge",
    "instruct-coder": "MAX's instruct-coder (use --dataset-name hf)",
    "agentic-code": "MAX's agentic-code",
    "synthetic": "MAX's synthetic",
    "synthetic-pixel": "MAX's synthetic-pixel",
    "local-image": "MAX's local-image",
}


def _module(name: str):
    if name in DATASETS:
        return importlib.import_module(DATASETS[name])
    if name in WORKLOAD_DATASETS:
        raise SonicError(f"dataset {name!r} is a workload: build it with sonic.workloads")
    supported = ", ".join(RUN_DATASET_NAMES)
    if name in NOT_IMPLEMENTED:
        raise SonicError(f"dataset {name!r} is not supported by sonic yet (supported: {supported})")
    close = difflib.get_close_matches(name, DATASET_NAMES + tuple(NOT_IMPLEMENTED), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise SonicError(f"unknown dataset {name!r} (supported: {supported}){hint}")


def sample_requests(args: DatasetArgs, tokenizer: Tokenizer) -> list[SampleRequest]:
    """The prompts of one run: deterministic for a given ``args`` (seed included) and tokenizer."""
    if args.num_chat_sessions is not None:
        raise SonicError("--num-chat-sessions makes sessions: build them with sonic.workloads")
    module = _module(args.name)
    args.validate()
    return module.sample(args, tokenizer)


def fingerprint(requests: list[SampleRequest]) -> str:
    """SHA-256 over the prompts, lengths and messages: equal iff two runs sent the same workload."""
    digest = hashlib.sha256()
    for r in requests:
        record = [r.prompt, r.prompt_len, r.expected_output_len, r.messages]
        digest.update(json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()
