"""sonic-bench: trustworthy benchmarks of LLM serving engines.

Imports are lazy so that ``python -m sonic --help`` stays fast: nothing heavy (tokenizers,
numpy, pandas) is loaded until a command needs it.
"""

from __future__ import annotations

__all__ = ["__version__", "load_requests", "load_results"]

try:
    from importlib.metadata import version as _version

    __version__ = _version("sonic-bench")
except Exception:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0.0.0+unknown"


def __getattr__(name: str):
    """``sonic.load_results`` / ``sonic.load_requests`` import pandas only when first used."""
    if name in ("load_results", "load_requests"):
        from sonic import analysis

        return getattr(analysis, name)
    raise AttributeError(f"module 'sonic' has no attribute {name!r}")
