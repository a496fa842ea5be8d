"""Validation results: each check passes, warns or fails with a reason and a fix.

A check has a *scope* that decides what a failure blocks: ``suite`` (nothing can run),
``engine:<name>`` (that engine is skipped), ``fairness`` (the comparison is unfair: blocks
unless ``--allow-unfair``, and is reported prominently either way) and ``info`` (never
blocks). ``validation.json`` keeps every check with its scope.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

PASS, WARN, FAIL = "pass", "warn", "fail"
SUITE, FAIRNESS, INFO = "suite", "fairness", "info"


def engine_scope(name: str) -> str:
    return f"engine:{name}"


@dataclass
class Check:
    name: str
    status: str
    reason: str
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    scope: str = SUITE

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "fix": self.fix,
            "details": self.details,
            "scope": self.scope,
        }


@dataclass
class Validation:
    allow_unfair: bool = False
    checks: list[Check] = field(default_factory=list)
    out: TextIO | None = None  # where each check is printed as it is added

    def add(
        self,
        name: str,
        status: str,
        reason: str,
        fix: str = "",
        details: dict[str, Any] | None = None,
        scope: str = SUITE,
    ) -> Check:
        check = Check(name, status, reason, fix, dict(details or {}), scope)
        # A re-run check (e.g. on resume) replaces the earlier one of the same name.
        self.checks = [c for c in self.checks if c.name != name]
        self.checks.append(check)
        if self.out is not None:
            print_check(check, self.out, allow_unfair=self.allow_unfair)
        return check

    def drop(self, name: str) -> None:
        """Forget a check (a live failure from an earlier session that no longer holds)."""
        self.checks = [c for c in self.checks if c.name != name]

    @property
    def fair(self) -> bool:
        return not any(c.status == FAIL and c.scope == FAIRNESS for c in self.checks)

    def failures(self, scope: str | None = None) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL and (scope is None or c.scope == scope)]

    def blocking(self) -> list[Check]:
        """Failures that stop a suite before it starts (engine-scoped ones skip the engine)."""
        out = self.failures(SUITE)
        if not self.allow_unfair:
            out += self.failures(FAIRNESS)
        return out

    def engine_failures(self, engine: str) -> list[Check]:
        return self.failures(engine_scope(engine))

    def counts(self) -> dict[str, int]:
        out = {PASS: 0, WARN: 0, FAIL: 0}
        for c in self.checks:
            out[c.status] = out.get(c.status, 0) + 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "checks": [c.as_dict() for c in self.checks],
            "fair": self.fair,
            "allow_unfair": self.allow_unfair,
            "counts": self.counts(),
        }

    def write(self, path: Path) -> None:
        import json

        from sonic.results import write_atomic

        write_atomic(path, [json.dumps(self.as_dict(), indent=2, allow_nan=False, default=str)])

    @classmethod
    def load(cls, path: Path, *, allow_unfair: bool) -> Validation:
        """Earlier checks of a results directory (a resume keeps the live ones)."""
        import json

        v = cls(allow_unfair=allow_unfair)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return v
        for c in doc.get("checks", []) if isinstance(doc, dict) else []:
            if isinstance(c, dict) and {"name", "status", "reason"} <= set(c):
                v.checks.append(
                    Check(
                        str(c["name"]),
                        str(c["status"]),
                        str(c["reason"]),
                        str(c.get("fix") or ""),
                        dict(c.get("details") or {}),
                        str(c.get("scope") or SUITE),
                    )
                )
        return v


_LABEL = {PASS: "PASS", WARN: "WARN", FAIL: "FAIL"}


def print_check(check: Check, out: TextIO | None = None, *, allow_unfair: bool = False) -> None:
    out = sys.stdout if out is None else out
    label = _LABEL.get(check.status, check.status.upper())
    note = ""
    if check.status == FAIL and check.scope == FAIRNESS and allow_unfair:
        note = " (allowed by --allow-unfair)"
    print(f"  {label}  {check.name}: {check.reason}{note}", file=out)
    if check.status != PASS and check.fix:
        print(f"        fix: {check.fix}", file=out)


def print_summary(v: Validation, out: TextIO | None = None) -> None:
    out = sys.stdout if out is None else out
    n = v.counts()
    if not v.fair:
        fair = "NOT FAIR"
    elif v.failures(SUITE):
        fair = "fairness not fully checked (see the failures)"
    else:
        fair = "fair"
    print(
        f"validation: {n[PASS]} passed, {n[WARN]} warnings, {n[FAIL]} failed; comparison {fair}",
        file=out,
    )
