"""Sonnet: prompts made of Shakespeare's sonnet lines with a shared prefix (prefix-cache tests).

Each prompt is "Pick as many lines as you can from these poem lines:\\n", then the first
``round((prefix_len - base) / mean_line_tokens)`` lines of the text (identical in every prompt),
then randomly drawn lines up to ``round((input_len - base) / mean_line_tokens)`` lines, where
``base`` is the token count of the chat-templated instruction alone. ``prompt_len`` is always the
token count of the chat-templated prompt. The text defaults to the sonnets shipped with sonic
(vLLM's ``benchmarks/sonnet.txt``). Profile rules:

- vLLM: extra lines drawn with replacement (``random.choices``); prompts longer than
  ``input_len`` tokens are redrawn; completions endpoints get the chat-templated text, chat
  endpoints the raw text.
- MAX (August 2025 and 2026): lines drawn without replacement (``random.sample``);
  ``prefix_len`` must exceed ``base``; chat endpoints get the chat-templated text (so the server
  templates it a second time) and completions endpoints the raw text, the inverse of vLLM.
  MAX July 2025 sent templated text everywhere; MAX August 2025 dropped ``--sonnet-output-len``,
  here it is kept (default 150; ``None`` leaves the output length to the server, as that
  script does).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from sonic.datasets.base import DatasetArgs, SampleRequest, chat_format, read_text
from sonic.errors import SonicError

if TYPE_CHECKING:
    from sonic.tokenizer import Tokenizer

BASE_PROMPT = "Pick as many lines as you can from these poem lines:\n"

# vLLM redraws prompts that come out too long; give up (with an error) after this many per prompt.
_MAX_DRAWS_PER_PROMPT = 200


def default_text() -> str:
    """The sonnet text shipped as package data."""
    from importlib.resources import files

    return (files("sonic") / "data" / "sonnet.txt").read_text(encoding="utf-8")


def load_lines(args: DatasetArgs) -> list[str]:
    text = read_text(args.path, "sonnet dataset") if args.path else default_text()
    lines = text.splitlines(keepends=True)
    if not lines:
        raise SonicError(f"sonnet dataset {args.path} is empty")
    return lines


def sample(args: DatasetArgs, tokenizer: Tokenizer) -> list[SampleRequest]:
    input_len, prefix_len = args.sonnet_input_len, args.sonnet_prefix_len
    if input_len <= prefix_len:
        raise SonicError(
            f"--sonnet-input-len ({input_len}) must be greater than "
            f"--sonnet-prefix-len ({prefix_len})"
        )
    if not tokenizer.has_chat_template:
        raise SonicError(
            f"the sonnet dataset counts chat-templated prompts, but tokenizer "
            f"{tokenizer.name_or_path} has no chat template"
        )
    lines = load_lines(args)
    line_ids = tokenizer.encode_batch(lines, add_special_tokens=True)
    mean_line = sum(len(ids) for ids in line_ids) / len(line_ids)
    base = tokenizer.count(chat_format(tokenizer, BASE_PROMPT), add_special_tokens=True)
    if input_len <= base:
        raise SonicError(
            f"--sonnet-input-len must be greater than the templated instruction ({base} tokens)"
        )
    strict = args.rules.sonnet_strict
    if strict and prefix_len <= base:
        raise SonicError(
            f"--sonnet-prefix-len must be greater than the templated instruction ({base} tokens)"
        )
    num_input_lines = round((input_len - base) / mean_line)
    num_prefix_lines = max(round((prefix_len - base) / mean_line), 0)
    num_extra = num_input_lines - num_prefix_lines
    if strict and num_extra > len(lines):
        raise SonicError(
            f"--sonnet-input-len {input_len} needs {num_extra} distinct extra lines but the "
            f"text has {len(lines)}; lower it or use a longer --dataset-path"
        )
    prefix = "".join(lines[:num_prefix_lines])
    send_templated = args.endpoint_is_chat == args.rules.sonnet_template_on_chat
    rng = random.Random(args.seed)

    requests: list[SampleRequest] = []
    draws = 0
    while len(requests) < args.num_prompts:
        draws += 1
        if draws > _MAX_DRAWS_PER_PROMPT * args.num_prompts:
            raise SonicError(
                f"sonnet: could not draw prompts of at most {input_len} tokens; "
                "raise --sonnet-input-len"
            )
        picked = rng.sample(lines, num_extra) if strict else rng.choices(lines, k=max(num_extra, 0))
        prompt = f"{BASE_PROMPT}{prefix}{''.join(picked)}"
        formatted = chat_format(tokenizer, prompt)
        prompt_len = tokenizer.count(formatted, add_special_tokens=True)
        if not strict and prompt_len > input_len:
            continue
        requests.append(
            SampleRequest(
                prompt=formatted if send_templated else prompt,
                prompt_len=prompt_len,
                expected_output_len=args.sonnet_output_len,
            )
        )
    return requests
