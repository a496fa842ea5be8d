"""code_debug: InfiniteBench's long-context "find the buggy function" task (MAX's dataset).

Each JSONL item (``context``, ``input``, ``options`` of four function names, ``answer``) becomes
InfiniteBench's multiple-choice prompt; the "completion" is the answer letter, so the output
length is a few tokens unless ``--sharegpt-output-len`` pins it (MAX July 2025 reuses that flag
here).
Items are shuffled with the seed, then those longer than the tokenizer's ``model_max_length``
(prompt, or prompt + output) are dropped; that limit may be transformers' unbounded sentinel,
in which case nothing is dropped, as in MAX.

The LICENSE rule: MAX August 2025 and later drop items whose prompt contains "LICENSE"
(license files pasted into the context); MAX July 2025 kept only those, an inverted filter.
Every dialect here uses the later rule; ``DatasetArgs.code_debug_keep_license`` restores the
July one.

The file is ``--dataset-path`` or, when absent, ``code_debug.jsonl`` from the Hub dataset
``xinrongzhang2022/InfiniteBench``. vLLM has no such dataset; its profile oversamples like its
other datasets, MAX's does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sonic.datasets.base import (
    DatasetArgs,
    SampleRequest,
    existing_file,
    finish,
    read_jsonl,
    shuffled,
)
from sonic.errors import SonicError

if TYPE_CHECKING:
    from sonic.tokenizer import Tokenizer

HUB_REPO = "xinrongzhang2022/InfiniteBench"
HUB_FILE = "code_debug.jsonl"

TEMPLATE = (
    "There is ONLY ONE function in the large project that is deliberately made to include an "
    "obvious error. Please find the function that contains the most obvious errors. I will give "
    "you four options to narrow your scope. You can inspect the options and think. Eventually, "
    "tell me the answer using one single letter (A, B, C, or D).\n\n"
    "{context}\n\n"
    "Which function has deliberate error?\n"
    "A. {option_a}\nB. {option_b}\nC. {option_c}\nD. {option_d}\n\n"
    "You should first find the functions in the options. Repeat their content, inspect through "
    "code, and at last give me your answer for the function that has the deliberate and obvious "
    "error in A, B, C, or D."
)


def resolve_path(args: DatasetArgs) -> str:
    if args.path:
        return str(existing_file(args.path, "code_debug dataset"))
    from sonic.datasets.hub import fetch_hub_file

    return fetch_hub_file(
        HUB_REPO,
        HUB_FILE,
        repo_type="dataset",
        local_hint=f"or pass --dataset-path with a local copy of InfiniteBench's {HUB_FILE}",
    )


def format_item(item: Any, where: str) -> tuple[str, str]:
    """(prompt, answer letter) of one InfiniteBench item."""
    if not isinstance(item, dict):
        raise SonicError(f"{where}: expected a JSON object")
    context, options, answer = item.get("context"), item.get("options"), item.get("answer")
    if not isinstance(context, str):
        raise SonicError(f"{where}: 'context' must be a string")
    if not (
        isinstance(options, list) and len(options) == 4 and all(isinstance(o, str) for o in options)
    ):
        raise SonicError(f"{where}: 'options' must be a list of four strings")
    if isinstance(answer, list):
        if len(answer) != 1:
            raise SonicError(f"{where}: 'answer' must hold exactly one option")
        answer = answer[0]
    if answer not in options:
        raise SonicError(f"{where}: 'answer' is not one of the options")
    prompt = TEMPLATE.format(
        context=context,
        option_a=options[0],
        option_b=options[1],
        option_c=options[2],
        option_d=options[3],
    )
    return prompt, "ABCD"[options.index(answer)]


def sample(args: DatasetArgs, tokenizer: Tokenizer) -> list[SampleRequest]:
    path = resolve_path(args)
    items = [
        format_item(item, f"code_debug dataset {path} record {n}")
        for n, item in enumerate(read_jsonl(path, "code_debug dataset"), start=1)
    ]
    if not items:
        raise SonicError(f"code_debug dataset {path} is empty")
    keep = args.code_debug_keep_license
    items = [(p, a) for p, a in items if ("LICENSE" in p) == keep]
    items = shuffled(items, args.seed, enabled=not args.disable_shuffle)
    limit = tokenizer.model_max_length
    fixed = args.sharegpt_output_len
    requests: list[SampleRequest] = []
    for prompt, letter in items:
        if len(requests) >= args.num_prompts:
            break
        prompt_len = tokenizer.count(prompt, add_special_tokens=True)
        output_len = (
            fixed if fixed is not None else tokenizer.count(letter, add_special_tokens=True)
        )
        if prompt_len > limit or prompt_len + output_len > limit:
            continue
        requests.append(SampleRequest(prompt, prompt_len, output_len))
    return finish(requests, args, "code_debug", allow_oversample=True)
