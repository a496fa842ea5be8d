"""The conventions of each benchmark tool sonic reproduces, one module and one object per tool.

``--compat NAME`` picks one from the registry below (``vllm``: vLLM's `bench serve`; ``max``:
MAX's 2025 benchmark_serving.py; ``max-benchmark``: MAX's 2026 `max benchmark`); without it the
backend decides (``modular``/``modular-chat``: ``max``, anything else: ``vllm``). Every layer
asks the run's ``Dialect`` for its policy; no module outside this package compares tool names.
"""

from __future__ import annotations

from sonic.dialects.base import BodyPolicy, Dialect, Outcome
from sonic.errors import SonicError

_REGISTRY: dict[str, Dialect] = {}
# Tools users may ask for that are not implemented: refused by name rather than silently
# mapped to a near neighbour with other semantics.
UNIMPLEMENTED = {
    "vllm-legacy": "the pre-2025 benchmarks/benchmark_serving.py (temperature 0, "
    '"request_goodput:" key, sequential arrivals)',
}
DEFAULT = "vllm"


def register(dialect: Dialect) -> Dialect:
    """Add a dialect (and its aliases) to the registry; a name may be registered once."""
    for key in (dialect.name, *dialect.aliases):
        if key in _REGISTRY and _REGISTRY[key] is not dialect:
            raise SonicError(f"dialect {key!r} is already registered")
        _REGISTRY[key] = dialect
    return dialect


def unregister(dialect: Dialect) -> None:
    """Remove a dialect registered by ``register`` (tests add toy dialects and take them out)."""
    for key in (dialect.name, *dialect.aliases):
        if _REGISTRY.get(key) is dialect:
            del _REGISTRY[key]


def names() -> tuple[str, ...]:
    """The canonical names, in registration order (``--compat`` choices)."""
    return tuple(dict.fromkeys(d.name for d in _REGISTRY.values()))


def all_dialects() -> tuple[Dialect, ...]:
    return tuple(dict.fromkeys(_REGISTRY.values()))


def get(name: str | Dialect) -> Dialect:
    """The dialect called ``name`` (a Dialect passes through); a one-line error otherwise."""
    if isinstance(name, Dialect):
        return name
    key = str(name).strip().lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    if key in UNIMPLEMENTED:
        raise SonicError(
            f"--compat {key} is not implemented ({UNIMPLEMENTED[key]}); "
            f"use one of {', '.join(names())}"
        )
    raise SonicError(f"unknown --compat {name!r}: expected one of {', '.join(names())}")


def for_backend(backend: str | None) -> Dialect:
    """The default dialect of a backend: the tool its users run."""
    key = (backend or "").strip().lower()
    for d in all_dialects():
        if key in d.backends:
            return d
    return _REGISTRY[DEFAULT]


def select(compat: str | None, backend: str | None) -> Dialect:
    """``--compat`` when given, else the backend's default."""
    return get(compat) if compat is not None else for_backend(backend)


def of_document(doc: dict, hint: str | None = None) -> Dialect:
    """The dialect a result document was written in: ``hint`` (a manifest's word), else the
    document's ``sonic.compat``, else the first dialect whose keys it has."""
    if hint:
        return get(hint)
    own = doc.get("sonic", {}).get("compat") if isinstance(doc.get("sonic"), dict) else None
    if own:
        return get(own)
    for d in all_dialects():
        if d.owns(doc):
            return d
    raise SonicError("cannot tell which tool's format this result document is in")


def _register_builtin() -> None:
    from sonic.dialects.max import MAX
    from sonic.dialects.max_benchmark import MAX_BENCHMARK
    from sonic.dialects.vllm import VLLM

    for d in (VLLM, MAX, MAX_BENCHMARK):
        register(d)


_register_builtin()

__all__ = [
    "BodyPolicy",
    "Dialect",
    "Outcome",
    "all_dialects",
    "for_backend",
    "get",
    "names",
    "of_document",
    "register",
    "select",
    "unregister",
]
