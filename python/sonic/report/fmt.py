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


def significance(sig: Any, method: str | None = None) -> str:
    if sig is None or (isinstance(sig, float) and math.isnan(sig)):
        return "untested (one repeat)" if method in (None, "none") else "untested"
    return "significant" if bool(sig) else "not significant"


def pct(v: Any) -> str:
    return NA if is_missing(v) else f"{float(v):.1f}%"
