"""Result file names and crash-safe writing.

Every write goes to a temporary file in the target directory, is fsynced and then renamed
over the target, so a reader (or a Ctrl-C) never sees half a file. Secret values are
scrubbed from the serialized text before it touches the disk.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from sonic.errors import SonicError
from sonic.metrics import BenchmarkMetrics
from sonic.records import RunRecords
from sonic.results.info import RunInfo
from sonic.results.secrets import scrub_text

RAW_SUFFIX = ".requests.jsonl"


def result_filename(dialect: Any, info: RunInfo, when: datetime | None = None) -> str:
    """The default file name of ``dialect`` (a Dialect or its name)."""
    from sonic import dialects

    return dialects.get(dialect).result_filename(info, when or info.date)


def result_path(
    dialect: Any,
    info: RunInfo,
    result_dir: str | os.PathLike[str] | None = None,
    result_filename_arg: str | None = None,
    when: datetime | None = None,
) -> Path:
    """Where the result goes: ``--result-filename`` (else the default name) joined under
    ``--result-dir``, which is created. An auto-named MAX file never overwrites an existing
    one: ``-2``, ``-3``, ... are appended as MAX August 2025 does."""
    from sonic import dialects

    d = dialects.get(dialect)
    name = result_filename_arg or result_filename(dialect, info, when)
    directory = Path(result_dir) if result_dir else None
    if directory is not None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SonicError(
                f"cannot create result directory {directory}: {exc.strerror}"
            ) from None
    path = directory / name if directory is not None else Path(name)
    if d.unique_auto_names and not result_filename_arg:
        stem = path.name[: -len(".json")]
        k = 1
        while path.exists():
            k += 1
            path = path.with_name(f"{stem}-{k}.json")
    return path


def raw_records_path(result: str | os.PathLike[str]) -> Path:
    """The per-request JSONL beside a result file: ``<stem>.requests.jsonl``."""
    p = Path(result)
    stem = p.name[: -len(p.suffix)] if p.suffix else p.name
    return p.with_name(stem + RAW_SUFFIX)


def write_atomic(
    path: str | os.PathLike[str],
    chunks: Iterable[str],
    mode: int = 0o644,
    *,
    keep_previous_as: Path | None = None,
) -> Path:
    """Write text to ``path`` via temp file + fsync + rename; nothing is left behind on error.

    ``keep_previous_as``: the file ``path`` holds now is kept under that name too (MAX's
    ``.orig``), by a hard link made once the new text is on disk, so that at every moment
    ``path`` is a whole file, old or new, even if the process is killed in between.
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise SonicError(f"cannot write {target}: directory {directory} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise SonicError(f"cannot write {target}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        if keep_previous_as is not None and target.is_file():
            _keep_copy(target, keep_previous_as, Path(tmp + ".orig"))
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise SonicError(f"cannot write {target}: {exc.strerror or exc}") from None
        raise
    _fsync_dir(directory)
    return target


def _keep_copy(source: Path, keep: Path, scratch: Path) -> None:
    """``keep`` becomes a copy of ``source`` (a hard link where the filesystem has them)."""
    try:
        os.link(source, scratch)
    except OSError:
        shutil.copy2(source, scratch)
    try:
        os.replace(scratch, keep)
    except OSError:
        scratch.unlink(missing_ok=True)
        raise


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def dumps(doc: Any, secrets: Iterable[str] = ()) -> str:
    """JSON with secret values scrubbed. No NaN ever; an infinity only where a dialect puts
    one on purpose (vLLM's ``burstiness``, written as ``Infinity`` as Python's json does)."""
    _check_no_nan(doc)
    return scrub_text(json.dumps(doc, allow_nan=True), secrets)


def _check_no_nan(obj: Any, where: str = "") -> None:
    if isinstance(obj, float) and obj != obj:
        raise SonicError(f"result contains NaN at {where or 'top level'}")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_no_nan(v, f"{where}.{k}" if where else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_no_nan(v, f"{where}[{i}]")


def save_result(
    dialect: Any,
    doc: dict[str, Any],
    path: str | os.PathLike[str],
    *,
    append: bool = False,
    secrets: Iterable[str] = (),
) -> Path:
    """Write a result document atomically.

    ``append`` (vLLM ``--append-result``) adds one JSON document per line to what the file
    holds; the whole file is still replaced atomically. Otherwise, in the MAX dialect an
    existing file is first kept as ``<file>.orig`` (MAX August 2025 and later); vLLM overwrites.
    """
    from sonic import dialects

    d = dialects.get(dialect)
    target = Path(path)
    text = dumps(doc, secrets)
    if append:
        try:
            existing = target.read_text(encoding="utf-8") if target.exists() else ""
        except OSError as exc:
            raise SonicError(f"cannot read {target} to append: {exc.strerror}") from None
        sep = "\n" if existing and not existing.endswith("\n") else ""
        return write_atomic(target, [existing, sep, text, "\n"])
    keep = target.with_name(target.name + ".orig") if d.keep_overwritten else None
    return write_atomic(target, [text], keep_previous_as=keep)


def _raw_lines(
    records: RunRecords, metrics: BenchmarkMetrics | None, secrets: list[str]
) -> Iterator[str]:
    offsets = records.chunk_offsets
    t_off = records.chunk_text_offsets
    for i in range(records.n):
        a, b = int(offsets[i]), int(offsets[i + 1])
        bounds = t_off[a : b + 1]
        chunk_text = [
            records.text[int(bounds[j]) : int(bounds[j + 1])].decode("utf-8", errors="replace")
            for j in range(b - a)
        ]
        line: dict[str, Any] = {
            "index": i,
            "session_index": int(records.session_index[i]),
            "turn_index": int(records.turn_index[i]),
            "intended_ns": int(records.intended_ns[i]),
            "sent_ns": _opt_ns(records.sent_ns[i]),
            "end_ns": _opt_ns(records.end_ns[i]),
            "http_status": int(records.http_status[i]),
            "error": records.error[i],
            "finish_reason": records.finish_reason[i],
            "usage": {
                "prompt_tokens": _opt_ns(records.prompt_tokens[i]),
                "completion_tokens": _opt_ns(records.completion_tokens[i]),
            },
            "chunk_ns": records.chunk_ns[a:b].tolist(),
            "chunk_kind": records.chunk_kind[a:b].tolist(),
            "chunk_text": chunk_text,
        }
        if records.cached_tokens[i] >= 0:  # only engines that report it
            line["usage"]["cached_tokens"] = int(records.cached_tokens[i])
        if metrics is not None:
            r = metrics.requests
            line["success"] = bool(r.success[i])
            line["input_len"] = int(r.input_len[i])
            line["output_len"] = int(r.output_len[i])
            line["retokenized_output_len"] = _opt_ns(r.retok_output_len[i])
        yield scrub_text(json.dumps(line, allow_nan=False), secrets) + "\n"


def _opt_ns(v: Any) -> int | None:
    x = int(v)
    return None if x < 0 else x


def write_raw_records(
    path: str | os.PathLike[str],
    records: RunRecords,
    metrics: BenchmarkMetrics | None = None,
    *,
    secrets: Iterable[str] = (),
) -> Path:
    """One JSON line per request: times (ns since the run's t0), status, error, usage and
    every chunk's time, kind and text; with ``metrics``, the token counts that were used."""
    if not isinstance(records.chunk_ns, np.ndarray):
        raise SonicError("raw records must be columnar numpy arrays")
    return write_atomic(path, _raw_lines(records, metrics, list(secrets)))
