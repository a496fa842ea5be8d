"""MAX 2026's distribution parameters: a plain number, or ``N(mean,std)``, ``U(lo,hi)``,
``DU(lo,hi)`` (integers, both ends included), ``G(shape,scale)``, ``LN(mean,std)`` (of the
underlying normal). Used by ``--random-num-turns`` and ``--delay-between-chat-turns``.
Draws come from the generator the caller passes, so a seed gives the same workload."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from sonic.errors import SonicError

_FORM = re.compile(r"^(N|U|DU|G|LN)\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)$", re.IGNORECASE)
KINDS = {"N": "normal", "U": "uniform", "DU": "discrete uniform", "G": "gamma", "LN": "lognormal"}


@dataclass(frozen=True)
class Distribution:
    """``kind`` ``const`` (``a``), or one of ``KINDS`` with parameters ``a``, ``b``."""

    kind: str
    a: float
    b: float = 0.0
    text: str = ""

    def draw(self, rng: np.random.Generator) -> float:
        if self.kind == "const":
            return self.a
        if self.kind == "N":
            return float(rng.normal(self.a, self.b))
        if self.kind == "U":
            return float(rng.uniform(self.a, self.b))
        if self.kind == "DU":
            return float(rng.integers(int(self.a), int(self.b) + 1))
        if self.kind == "G":
            return float(rng.gamma(self.a, self.b))
        return float(rng.lognormal(self.a, self.b))  # LN


def parse_distribution(flag: str, text: str) -> Distribution:
    """One-line errors naming ``flag`` for anything that is not a known form."""
    raw = str(text).strip()
    try:
        return Distribution("const", float(raw), text=raw)
    except ValueError:
        pass
    match = _FORM.match(raw)
    if not match:
        raise SonicError(
            f"{flag}: expected a number or N(mean,std), U(lo,hi), DU(lo,hi), G(shape,scale), "
            f"LN(mean,std); got {raw!r}"
        )
    kind = match.group(1).upper()
    try:
        a, b = float(match.group(2)), float(match.group(3))
    except ValueError:
        raise SonicError(f"{flag}: {raw!r} has a parameter that is not a number") from None
    if kind in ("N", "LN") and b < 0:
        raise SonicError(f"{flag}: the standard deviation in {raw!r} is negative")
    if kind in ("U", "DU") and a > b:
        raise SonicError(f"{flag}: the lower bound in {raw!r} exceeds the upper bound")
    if kind == "DU" and (a != int(a) or b != int(b)):
        raise SonicError(f"{flag}: DU bounds must be integers, got {raw!r}")
    if kind == "G" and (a <= 0 or b <= 0):
        raise SonicError(f"{flag}: gamma shape and scale must be positive, got {raw!r}")
    return Distribution(kind, a, b, text=raw)
