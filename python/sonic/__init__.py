"""sonic-bench: trustworthy benchmarks of LLM serving engines.

Imports are lazy so that ``python -m sonic --help`` stays fast: nothing heavy (tokenizers,
numpy, pandas) is loaded until a command needs it.
"""

from __future__ import annotations

__all__ = ["__version__"]

try:
    from importlib.metadata import version as _version

    __version__ = _version("sonic-bench")
except Exception:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0.0.0+unknown"
