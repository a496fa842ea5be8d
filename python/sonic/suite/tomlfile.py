"""Reading TOML with errors that name the key: a typed getter per value type, and a
``done()`` that refuses keys nobody asked for (with the nearest known key as a hint)."""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any

from sonic.errors import SonicError


def read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise SonicError(
                "reading suite files on Python < 3.11 needs the tomli package (pip install tomli)"
            ) from None
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SonicError(f"suite file not found: {path}") from None
    except OSError as exc:
        raise SonicError(f"cannot read suite file {path}: {exc.strerror}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise SonicError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise SonicError(f"{path}: invalid TOML: {exc}") from None


def suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Table:
    """One TOML table with typed getters that name the key in errors; ``done()`` refuses keys
    that no getter asked for."""

    def __init__(self, data: Any, where: str, source: str) -> None:
        if not isinstance(data, dict):
            raise SonicError(f"{source}: {where}: expected a table, got {type_name(data)}")
        self.data = data
        self.where = where
        self.source = source
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def fail(self, name: str, message: str) -> SonicError:
        return SonicError(f"{self.source}: {self.key(name)}: {message}")

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str) -> Any:
        self.seen.add(name)
        return self.data.get(name)

    def string(self, name: str, default: str | None = None, *, choices=None) -> str | None:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.fail(name, f"expected a string, got {type_name(value)}")
        if not value.strip():
            raise self.fail(name, "must not be empty")
        if choices is not None and value not in choices:
            hint = suggest(value, list(choices))
            raise self.fail(name, f"expected one of {', '.join(choices)}, got {value!r}{hint}")
        return value

    def boolean(self, name: str, default: bool | None = None) -> bool | None:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(name, f"expected true or false, got {_shown(value)}")
        return value

    def integer(
        self, name: str, default: int | None = None, *, minimum: int | None = None
    ) -> int | None:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"expected an integer, got {_shown(value)}")
        if minimum is not None and value < minimum:
            raise self.fail(name, f"must be at least {minimum}, got {value}")
        return value

    def number(
        self,
        name: str,
        default: float | None = None,
        *,
        positive: bool = False,
        non_negative: bool = False,
        allow_inf: bool = False,
    ) -> float | None:
        value = self.raw(name)
        if value is None:
            return default
        return _number(self, name, value, positive, non_negative, allow_inf)

    def strings(self, name: str) -> tuple[str, ...] | None:
        value = self.raw(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(name, "expected a list of strings")
        return tuple(value)

    def numbers(self, name: str, *, allow_inf: bool = False) -> tuple[float, ...] | None:
        value = self.raw(name)
        if value is None:
            return None
        if not isinstance(value, list) or not value:
            raise self.fail(name, "expected a non-empty list of numbers")
        out = tuple(
            _number(self, f"{name}[{i}]", v, True, False, allow_inf) for i, v in enumerate(value)
        )
        if len(set(out)) != len(out):
            raise self.fail(name, "contains a value twice")
        return out

    def integers(self, name: str, *, minimum: int = 1) -> tuple[int, ...] | None:
        value = self.raw(name)
        if value is None:
            return None
        if not isinstance(value, list) or not value:
            raise self.fail(name, "expected a non-empty list of integers")
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, int):
                raise self.fail(f"{name}[{i}]", f"expected an integer, got {_shown(v)}")
            if v < minimum:
                raise self.fail(f"{name}[{i}]", f"must be at least {minimum}, got {v}")
        if len(set(value)) != len(value):
            raise self.fail(name, "contains a value twice")
        return tuple(value)

    def table(self, name: str) -> Table:
        value = self.raw(name)
        return Table({} if value is None else value, self.key(name), self.source)

    def done(self) -> None:
        unknown = [k for k in self.data if k not in self.seen]
        if unknown:
            key = unknown[0]
            hint = suggest(key, sorted(self.seen))
            raise SonicError(f"{self.source}: {self.key(key)}: unknown key{hint}")


def _number(
    t: Table, name: str, value: Any, positive: bool, non_negative: bool, allow_inf: bool
) -> float:
    if isinstance(value, str) and value.strip().lower() in ("inf", "infinity") and allow_inf:
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        extra = ' or "inf"' if allow_inf else ""
        raise t.fail(name, f"expected a number{extra}, got {_shown(value)}")
    x = float(value)
    if math.isnan(x) or (math.isinf(x) and not allow_inf):
        raise t.fail(name, f"expected a finite number, got {value}")
    if positive and x <= 0:
        raise t.fail(name, f"must be positive, got {value}")
    if non_negative and x < 0:
        raise t.fail(name, f"must not be negative, got {value}")
    return x
