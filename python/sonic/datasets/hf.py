"""hf: prompts from a text column of any Hugging Face dataset, or of a local table file.

``--dataset-path`` is either a Hub dataset id or a local dataset directory, loaded with the
``datasets`` package (streamed, shuffled with a 10,000-row seeded buffer as vLLM does;
``--hf-subset``, ``--hf-split`` default "train"), or a local ``.jsonl``/``.json``/``.csv`` file
(read directly, shuffled with ``random.shuffle``) or ``.parquet`` file (read through
``datasets``). The text column is ``--hf-text-column`` or the first of :data:`TEXT_COLUMNS`
present. Output length: ``--hf-output-len``, else the token count of ``--hf-output-column`` when
given, else 256 (vLLM's default for its hf datasets). Prompts are chat-templated like the custom
dataset's (see :func:`sonic.datasets.base.maybe_chat_format`).
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sonic.datasets.base import (
    DatasetArgs,
    SampleRequest,
    finish,
    maybe_chat_format,
    read_json,
    read_jsonl,
    read_text,
)
from sonic.errors import SonicError

if TYPE_CHECKING:
    from sonic.tokenizer import Tokenizer

TEXT_COLUMNS = ("prompt", "question", "instruction", "text", "input", "query", "content")
DEFAULT_OUTPUT_LEN = 256
_SHUFFLE_BUFFER = 10_000
_NATIVE_SUFFIXES = (".jsonl", ".json", ".csv")
_DATASETS_SUFFIXES = (".parquet", ".arrow")


def _rows_from_native_file(path: Path) -> list[dict[str, Any]]:
    what = "hf dataset file"
    if path.suffix == ".jsonl":
        rows = read_jsonl(path, what)
    elif path.suffix == ".json":
        rows = read_json(path, what)
    else:
        rows = list(csv.DictReader(read_text(path, what).splitlines()))
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise SonicError(f"{what} {path} must hold a list of records (JSON objects or CSV rows)")
    return rows


def _import_datasets(source: str) -> Any:
    try:
        import datasets
    except ImportError:
        raise SonicError(
            f"loading {source} needs the `datasets` package: pip install datasets "
            "(or pass a local .jsonl, .json or .csv file)"
        ) from None
    return datasets


def _load_error(source: str, exc: Exception) -> SonicError:
    from sonic.datasets.hub import scrub_secrets

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    detail = scrub_secrets(first)[:200]
    return SonicError(
        f"could not load hf dataset {source}: {type(exc).__name__}"
        + (f": {detail}" if detail else "")
        + " (offline? pass a local .jsonl/.json/.csv file as --dataset-path)"
    )


def _rows_from_datasets_file(path: Path) -> list[dict[str, Any]]:
    datasets = _import_datasets(str(path))
    builder = "parquet" if path.suffix == ".parquet" else "arrow"
    try:
        table = datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as exc:
        raise _load_error(str(path), exc) from None
    return list(table.to_list())


def _rows_from_hub(args: DatasetArgs) -> Iterator[dict[str, Any]]:
    source = str(args.path)
    datasets = _import_datasets(f"hf dataset {source}")
    kwargs: dict[str, Any] = {"split": args.hf_split or "train", "streaming": True}
    if args.hf_subset:
        kwargs["name"] = args.hf_subset
    if args.trust_remote_code:
        kwargs["trust_remote_code"] = True
    try:
        stream = datasets.load_dataset(source, **kwargs)
        if not args.disable_shuffle:
            stream = stream.shuffle(seed=args.seed, buffer_size=_SHUFFLE_BUFFER)
        yield from stream
    except SonicError:
        raise
    except Exception as exc:
        raise _load_error(source, exc) from None


def load_rows(args: DatasetArgs) -> Iterable[dict[str, Any]]:
    """The dataset's records, already in sampling order (shuffled unless disabled)."""
    if not args.path:
        raise SonicError("the hf dataset needs --dataset-path (a Hub dataset id or a local file)")
    path = Path(str(args.path)).expanduser()
    if path.is_file() or (
        not path.exists() and path.suffix in _NATIVE_SUFFIXES + _DATASETS_SUFFIXES
    ):
        if not path.is_file():
            raise SonicError(f"hf dataset file {path} does not exist")
        if path.suffix in _NATIVE_SUFFIXES:
            rows = _rows_from_native_file(path)
        elif path.suffix in _DATASETS_SUFFIXES:
            rows = _rows_from_datasets_file(path)
        else:
            raise SonicError(f"hf dataset file {path}: use .jsonl, .json, .csv or .parquet")
        if not args.disable_shuffle:
            random.Random(args.seed).shuffle(rows)
        return rows
    return _rows_from_hub(args)


def _pick_column(row: dict[str, Any], args: DatasetArgs) -> str:
    if args.hf_text_column:
        if args.hf_text_column not in row:
            raise SonicError(
                f"hf dataset {args.path} has no column {args.hf_text_column!r} "
                f"(columns: {', '.join(map(str, row))})"
            )
        return args.hf_text_column
    for name in TEXT_COLUMNS:
        if isinstance(row.get(name), str):
            return name
    raise SonicError(
        f"hf dataset {args.path}: no text column among {', '.join(map(str, row))}; "
        "choose one with --hf-text-column"
    )


def sample(args: DatasetArgs, tokenizer: Tokenizer) -> list[SampleRequest]:
    if args.hf_output_column and args.hf_output_len is None:
        output_column: str | None = args.hf_output_column
    else:
        output_column = None
    fixed = args.hf_output_len or DEFAULT_OUTPUT_LEN
    column: str | None = None
    requests: list[SampleRequest] = []
    for row in load_rows(args):
        if len(requests) >= args.num_prompts:
            break
        column = column or _pick_column(row, args)
        text = row.get(column)
        if not isinstance(text, str) or not text.strip():
            continue
        output_len = fixed
        if output_column is not None:
            target = row.get(output_column)
            if not isinstance(target, str):
                raise SonicError(
                    f"hf dataset {args.path}: output column {output_column!r} is missing or "
                    "not text"
                )
            output_len = tokenizer.count(target, add_special_tokens=True)
            if output_len < 1:
                continue
        prompt = maybe_chat_format(tokenizer, text, args)
        requests.append(
            SampleRequest(prompt, tokenizer.count(prompt, add_special_tokens=True), output_len)
        )
    return finish(requests, args, f"hf dataset {args.path}", allow_oversample=True)
