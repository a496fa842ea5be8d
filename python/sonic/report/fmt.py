"""Number and label formatting shared by the console, Markdown and HTML renderings."""

from __future__ import annotations

import math
from typing import Any

NA = "n/a"


def is_missing(v: Any) -> bool:
    if v is None:
        return True
    try:
        return not math.isfinite(float(v))
    except (TypeError, ValueError):
        return True


def num(v: Any) -> str:
    """A measured value with precision that suits its size (``n/a`` when undefined)."""
    if is_missing(v):
        return NA
    x = float(v)
    a = abs(x)
    if a >= 100:
        return f"{x:,.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def count(v: Any) -> str:
    """A whole count (requests): ``24``, ``1,024``."""
    return NA if is_missing(v) else f"{int(round(float(v))):,}"


def ratio(v: Any) -> str:
    return NA if is_missing(v) else f"{float(v):.3f}"


def ci(lo: Any, hi: Any, fmt=num) -> str:
    """``[lo, hi]``, or empty when there is no interval."""
    if is_missing(lo) or is_missing(hi):
        return ""
    return f"[{fmt(lo)}, {fmt(hi)}]"


def value_ci(mean: Any, lo: Any, hi: Any) -> str:
    interval = ci(lo, hi)
    return f"{num(mean)} {interval}" if interval else num(mean)


def rate(r: Any) -> str:
    r = float(r)
    if math.isinf(r):
        return "inf"
    return f"{r:g}"


def point(request_rate: Any, max_concurrency: Any) -> str:
    """A run point: ``rate 2 req/s``, ``rate inf``, ``rate 4 req/s, concurrency 8``."""
    text = f"rate {rate(request_rate)} req/s" if not math.isinf(float(request_rate)) else "rate inf"
    if not is_missing(max_concurrency):
        text += f", concurrency {int(max_concurrency)}"
    return text


def significance(sig: Any, method: str | None = None, *, short: bool = False) -> str:
    """``significant``, ``not significant`` or ``untested`` (with its usual reason, one
    repeat, unless ``short`` or the CI came from somewhere else)."""
    if sig is None or (isinstance(sig, float) and math.isnan(sig)):
        return "untested (one repeat)" if method in (None, "none") and not short else "untested"
    return "significant" if bool(sig) else "not significant"


def pct(v: Any) -> str:
    return NA if is_missing(v) else f"{float(v):.1f}%"


DETAIL_INLINE_CHARS = 80


def _plain(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _scalar(v: Any, max_chars: int) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    text = " ".join(str(v).split())
    if not text:
        return repr(v) if v else "(empty)"  # only whitespace: show which
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def _inline(v: Any, max_chars: int) -> str | None:
    """A plain value, a list of plain values or a small dict of them on one line; None when
    ``v`` needs lines of its own."""
    if _plain(v):
        return _scalar(v, max_chars)
    if isinstance(v, (list, tuple)) and all(_plain(x) for x in v):
        return ", ".join(_scalar(x, max_chars) for x in v) or "none"
    if isinstance(v, dict) and all(_plain(x) for x in v.values()):
        text = ", ".join(f"{k}={_scalar(x, max_chars)}" for k, x in v.items()) or "none"
        return text if len(text) <= DETAIL_INLINE_CHARS else None
    return None


def details_lines(value: Any, *, max_lines: int = 12, max_chars: int = 120) -> list[str]:
    """Structured details (the nested dicts and lists of a validation check) as readable
    ``key: value`` lines, never JSON.

    ``{"alpha": 256, "beta": 1024}`` gives ``alpha: 256`` and ``beta: 1024``; a flat list is
    written ``a, b``; a small dict of plain values inline, ``state=set, value=bfloat16``;
    deeper levels are named by their path, ``signature › rules › compat: vllm``. Long text is
    cut at ``max_chars`` and at most ``max_lines`` lines are kept (the last says how many
    were left out). Nothing (None, empty) gives no line.
    """
    if value is None or (isinstance(value, (dict, list, tuple, str)) and not value):
        return []
    lines: list[str] = []

    def walk(v: Any, path: str) -> None:
        items = v.items() if isinstance(v, dict) else ((i + 1, x) for i, x in enumerate(v))
        for k, x in items:
            key = f"{path}{k}"
            one = _inline(x, max_chars)
            if one is not None:
                lines.append(f"{key}: {one}")
            else:
                walk(x, f"{key} › ")

    top = _inline(value, max_chars) if not isinstance(value, dict) else None
    if top is not None:
        lines.append(top)
    elif isinstance(value, (dict, list, tuple)):
        walk(value, "")
    else:  # anything else JSON would not hold: its text
        lines.append(_scalar(value, max_chars))
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [f"… and {len(lines) - max_lines + 1} more"]
    return lines
