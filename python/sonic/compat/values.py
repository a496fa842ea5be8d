"""Typed parsing of individual flag values; every failure is a one-line SonicError naming the flag.

argparse only collects raw strings (so ``--flag value`` and ``--flag=value`` behave alike);
conversion and range checks live here, where the messages can say what a good value looks like.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Sequence
from typing import Any

from sonic.errors import SonicError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

# Seeds are fed to numpy's legacy RandomState by the dataset samplers, which takes 32 bits.
SEED_MAX = 2**32 - 1


def parse_bool(flag: str, text: str) -> bool:
    key = text.strip().lower()
    if key in _TRUE:
        return True
    if key in _FALSE:
        return False
    raise SonicError(f"{flag}: expected true or false, got {text!r}")


def parse_int(flag: str, text: str, minimum: int | None = None) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise SonicError(f"{flag}: expected an integer, got {text!r}") from None
    if minimum is not None and value < minimum:
        what = "positive" if minimum == 1 else f">= {minimum}"
        raise SonicError(f"{flag}: must be {what}, got {value}")
    return value


def parse_float(
    flag: str,
    text: str,
    *,
    positive: bool = False,
    non_negative: bool = False,
    allow_inf: bool = False,
) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise SonicError(f"{flag}: expected a number, got {text!r}") from None
    if math.isnan(value) or (math.isinf(value) and not (allow_inf and value > 0)):
        raise SonicError(f"{flag}: expected a finite number, got {text!r}")
    if positive and value <= 0:
        raise SonicError(f"{flag}: must be positive, got {text.strip()}")
    if non_negative and value < 0:
        raise SonicError(f"{flag}: must be >= 0, got {text.strip()}")
    return value


def _comma_items(flag: str, text: str) -> list[str]:
    items = [part.strip() for part in text.split(",")]
    if not items or any(not item for item in items):
        raise SonicError(f"{flag}: empty item in {text!r}")
    return items


def parse_rate_list(flag: str, text: str) -> tuple[float, ...]:
    """``10``, ``inf`` or a MAX 2026 sweep list ``1,2,inf``; each rate positive."""
    return tuple(
        parse_float(flag, item, positive=True, allow_inf=True) for item in _comma_items(flag, text)
    )


def parse_concurrency_list(flag: str, text: str) -> tuple[int | None, ...]:
    """``8``, ``none`` (unbounded) or a MAX 2026 sweep list ``1,8,none``; each positive."""
    out: list[int | None] = []
    for item in _comma_items(flag, text):
        out.append(None if item.lower() == "none" else parse_int(flag, item, minimum=1))
    return tuple(out)


def parse_seed(flag: str, text: str) -> tuple[int, bool]:
    """A seed in [0, 2**32) or ``none`` (MAX 2026: draw one); returns (seed, was_drawn)."""
    if text.strip().lower() == "none":
        return secrets.randbelow(SEED_MAX + 1), True
    value = parse_int(flag, text, minimum=0)
    if value > SEED_MAX:
        raise SonicError(f"{flag}: must be below 2**32, got {value}")
    return value, False


def parse_kv_pairs(flag: str, items: Sequence[str], *, secret: bool = False) -> dict[str, str]:
    """``KEY=VALUE`` items into an ordered dict (last wins). With ``secret`` the values (and
    the raw item, which may be a mistyped secret) never appear in an error message."""
    out: dict[str, str] = {}
    for index, item in enumerate(items, start=1):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            shown = f"item {index} (value not shown)" if secret else repr(item)
            raise SonicError(f"{flag}: expected KEY=VALUE, got {shown}")
        if secret and any(c in key for c in "\r\n:"):
            raise SonicError(f"{flag}: item {index} has an invalid header name (value not shown)")
        out[key] = value
    return out


def parse_json_object(flag: str, text: str, *, allow_file: bool = False) -> dict[str, Any]:
    """Inline JSON object, or (with ``allow_file``) a path to a file holding one."""
    source = "value"
    raw = text
    stripped = text.strip()
    if allow_file and not stripped.startswith("{") and os.path.isfile(os.path.expanduser(text)):
        source = f"file {text}"
        try:
            with open(os.path.expanduser(text), encoding="utf-8") as fh:
                raw = fh.read()
        except OSError as exc:
            raise SonicError(f"{flag}: cannot read {text}: {exc.strerror}") from None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        hint = "" if source != "value" or not allow_file else " (nor an existing file)"
        line = str(exc).splitlines()[0]
        raise SonicError(f"{flag}: {source} is not valid JSON{hint}: {line}") from None
    if not isinstance(value, dict):
        raise SonicError(f"{flag}: expected a JSON object, got {type(value).__name__}")
    return value


def parse_range_ratio(flag: str, text: str, semantics: str) -> tuple[float, float]:
    """``--random-range-ratio``: a float or vLLM's ``{"input": r, "output": r}``.

    Returns (input ratio, output ratio). vLLM's symmetric range needs r in [0, 1); MAX's
    lower bound needs r in [0, 1].
    """
    stripped = text.strip()
    if stripped.startswith("{"):
        obj = parse_json_object(flag, stripped)
        unknown = set(obj) - {"input", "output"}
        if unknown:
            raise SonicError(f"{flag}: unknown keys {sorted(unknown)}; expected input, output")
        pair = tuple(
            parse_float(flag, str(obj.get(key, 0.0)), non_negative=True)
            for key in ("input", "output")
        )
    else:
        value = parse_float(flag, stripped, non_negative=True)
        pair = (value, value)
    for value in pair:
        if semantics == "symmetric" and value >= 1.0:
            raise SonicError(f"{flag}: must be in [0, 1) (range [L(1-r), L(1+r)]), got {value}")
        if semantics == "lower_bound" and value > 1.0:
            raise SonicError(f"{flag}: must be in [0, 1] (range [L*r, L]), got {value}")
    return pair[0], pair[1]


def parse_output_lengths(flag: str, text: str) -> int | tuple[int, ...]:
    """MAX's ``--output-lengths``: one integer for every request, or a JSON file holding a list
    of integers (or ``{"output_lengths": [...]}``) applied request by request."""
    stripped = text.strip()
    if stripped.lstrip("-").isdigit():
        return parse_int(flag, stripped, minimum=1)
    path = os.path.expanduser(stripped)
    if not os.path.isfile(path):
        raise SonicError(f"{flag}: expected an integer or a JSON file of lengths, got {text!r}")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        raise SonicError(
            f"{flag}: {text} is not a readable JSON file (YAML length files are not supported; "
            'convert to a JSON list or {"output_lengths": [...]})'
        ) from None
    if isinstance(data, dict):
        data = data.get("output_lengths")
    if not isinstance(data, list) or not data:
        raise SonicError(f"{flag}: {text} must hold a non-empty list of output lengths")
    lengths = []
    for item in data:
        if not isinstance(item, int) or isinstance(item, bool) or item < 1:
            raise SonicError(f"{flag}: {text} holds {item!r}; lengths must be positive integers")
        lengths.append(item)
    return tuple(lengths)
