"""The results directory: where everything goes, and the manifest that says what is there.

``results/<YYYYmmdd-HHMMSS>-<suite>/`` holds ``manifest.json``, ``validation.json``,
``logs/<engine>.log`` and ``runs/<engine>/<scenario>/rate-<r>_conc-<c>_rep-<k>.json`` (each
with its ``.requests.jsonl``). The manifest is rewritten atomically after every run, so an
interrupted suite leaves a directory that says exactly which runs finished; ``--resume`` reads
it back and skips them. The layout is a contract with ``sonic.report`` and
``sonic.load_results``.
"""

from __future__ import annotations

import json
import os
import platform
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sonic.errors import SonicError

MANIFEST = "manifest.json"
VALIDATION = "validation.json"
# Run statuses a resume keeps (an interrupted run is re-run even if it saved partial results).
FINISHED = ("ok", "partial")


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


class ResultsDir:
    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def create(cls, parent: str | os.PathLike[str], suite_name: str) -> ResultsDir:
        """A new, empty ``<parent>/<timestamp>-<suite>`` (``-2``, ``-3``… if taken)."""
        base = Path(parent)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        try:
            base.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SonicError(f"cannot create results directory {base}: {exc.strerror}") from None
        name = f"{stamp}-{suite_name}"
        k = 1
        while True:
            path = base / (name if k == 1 else f"{name}-{k}")
            try:
                path.mkdir()
                break
            except FileExistsError:
                k += 1
            except OSError as exc:
                raise SonicError(f"cannot create {path}: {exc.strerror}") from None
        return cls(path)

    @classmethod
    def existing(cls, path: str | os.PathLike[str]) -> ResultsDir:
        root = Path(path)
        if not (root / MANIFEST).is_file():
            raise SonicError(
                f"--resume {root}: no {MANIFEST} there (not a suite results directory)"
            )
        return cls(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def validation_path(self) -> Path:
        return self.root / VALIDATION

    def log_path(self, engine: str) -> Path:
        return self.root / "logs" / f"{engine}.log"

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def host_info() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }


class Manifest:
    """``manifest.json`` in memory; ``save`` writes it atomically."""

    def __init__(self, doc: dict[str, Any], path: Path) -> None:
        self.doc = doc
        self.path = path

    @classmethod
    def new(
        cls,
        path: Path,
        *,
        suite: str,
        config_path: str,
        config_hash: str,
        config: dict[str, Any],
        seed: int,
        quick: bool,
        allow_unfair: bool,
        gpu: list[dict[str, Any]] | None,
    ) -> Manifest:
        from sonic import __version__

        doc = {
            "suite": suite,
            "config_path": config_path,
            "config_hash": config_hash,
            "sonic_version": __version__,
            "seed": seed,
            "quick": quick,
            "host": host_info(),
            "gpu": gpu,
            "started_at": now_iso(),
            "finished_at": None,
            "status": "running",
            "allow_unfair": allow_unfair,
            "fair": None,
            "validation": VALIDATION,
            "config": config,
            "workloads": {},
            "sessions": [],
            "engines": {},
            "runs": [],
        }
        return cls(doc, path)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SonicError(f"cannot read {path}: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list):
            raise SonicError(f"{path}: not a sonic suite manifest")
        doc.setdefault("engines", {})
        doc.setdefault("workloads", {})
        doc.setdefault("sessions", [])
        return cls(doc, path)

    def save(self) -> None:
        from sonic.results import write_atomic

        text = json.dumps(self.doc, indent=2, allow_nan=False, default=str)
        write_atomic(self.path, [text, "\n"])

    def engine(self, name: str) -> dict[str, Any]:
        return self.doc["engines"].setdefault(name, {})

    def run(self, run_id: str) -> dict[str, Any] | None:
        for r in self.doc["runs"]:
            if r.get("id") == run_id:
                return r
        return None

    def set_run(self, entry: dict[str, Any]) -> None:
        runs = [r for r in self.doc["runs"] if r.get("id") != entry["id"]]
        runs.append(entry)
        self.doc["runs"] = runs

    def finished(self, root: Path) -> set[str]:
        """Ids of runs that need not run again: finished, not interrupted, file present."""
        out = set()
        for r in self.doc["runs"]:
            if r.get("status") in FINISHED and not r.get("interrupted"):
                f = r.get("file")
                if f and (root / f).is_file():
                    out.add(r["id"])
        return out
