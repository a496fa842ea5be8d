"""Service-level objectives: parsing ``--slo`` and judging one run against them.

An SLO is a statistic of a per-request latency with a bound, e.g. ``ttft:p99<=500ms``. A run
meets its SLOs when every statistic is within its bound; with ``--slo-attainment A`` instead,
when at least a share A of the requests met every bound (goodput's rule). Requests that failed
count as infinitely slow: a server that drops requests under load does not meet an SLO by
dropping them. The verdict carries a bootstrap over requests (one joint resample for all SLOs),
so a search knows how sure each "meets" is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sonic.errors import SonicError

# Per-request latencies an SLO can bound: name -> (RequestMetrics attribute, words).
SLO_METRICS: dict[str, tuple[str, str]] = {
    "ttft": ("ttft_s", "TTFT"),
    "tpot": ("tpot_s", "TPOT"),
    "itl": ("itl_s", "ITL"),
    "e2el": ("e2el_s", "E2EL"),
}
UNITS_S = {"ms": 1e-3, "s": 1.0, "us": 1e-6}
# Stand-in for a failed request's latency: finite, so numpy's interpolation stays defined.
FAILED_S = 1e9
N_BOOT = 1000
LEVEL = 0.95

_ITEM = re.compile(
    r"^\s*(?P<metric>[a-z0-9_]+)\s*(?::\s*(?P<stat>p\d+(?:\.\d+)?|mean|median))?\s*"
    r"(?P<op><=|<)\s*(?P<value>[0-9.eE+-]+)\s*(?P<unit>ms|s|us)?\s*$"
)


@dataclass(frozen=True)
class SLO:
    """One objective: ``stat`` of ``metric`` at most ``limit_s`` (``stat`` None: per request,
    attainment mode only)."""

    metric: str
    stat: str | None
    limit_s: float

    @property
    def label(self) -> str:
        words = SLO_METRICS[self.metric][1]
        stat = "" if self.stat is None else ("mean " if self.stat == "mean" else f"{self.stat} ")
        return f"{stat}{words} ≤ {fmt_s(self.limit_s)}"

    @property
    def key(self) -> str:
        return f"{self.metric}:{self.stat or 'each'}"

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "stat": self.stat, "limit_s": self.limit_s}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SLO:
        return cls(str(d["metric"]), d.get("stat"), float(d["limit_s"]))


def fmt_s(seconds: float) -> str:
    """A latency in the unit that reads best (``500 ms``, ``1.5 s``)."""
    if seconds >= FAILED_S:
        return "failed"
    if seconds >= 10:
        return f"{seconds:.1f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    ms = seconds * 1e3
    return f"{ms:.3g} ms" if ms >= 1 else f"{ms:.3f} ms"


def parse_slos(spec: str | Sequence[str], *, attainment: bool = False) -> list[SLO]:
    """``ttft:p99<=500ms,tpot:p99<=50ms`` -> SLOs; SonicError names the bad item.

    In attainment mode the items bound each request (``ttft<=500ms``) and carry no statistic.
    """
    text = spec if isinstance(spec, str) else ",".join(spec)
    items = [s for s in text.split(",") if s.strip()]
    if not items:
        raise SonicError("--slo needs at least one objective, e.g. ttft:p99<=500ms")
    out: list[SLO] = []
    for item in items:
        m = _ITEM.match(item)
        if m is None:
            raise SonicError(
                f"bad --slo item {item.strip()!r}: expected METRIC:STAT<=VALUE[ms|s|us], "
                "e.g. ttft:p99<=500ms"
            )
        metric, stat = m["metric"], m["stat"]
        if metric not in SLO_METRICS:
            raise SonicError(
                f"bad --slo metric {metric!r}: expected one of {', '.join(SLO_METRICS)}"
            )
        if stat is not None and stat.startswith("p"):
            q = float(stat[1:])
            if not 0 < q < 100:
                raise SonicError(f"bad --slo percentile {stat!r}: must lie between p0 and p100")
        if attainment and stat is not None:
            raise SonicError(
                f"bad --slo item {item.strip()!r}: with --slo-attainment each request is held to "
                f"the bound, so write {metric}<=VALUE without a statistic"
            )
        if not attainment and stat is None:
            raise SonicError(
                f"bad --slo item {item.strip()!r}: say which statistic is bounded "
                f"(e.g. {metric}:p99<=...), or use --slo-attainment"
            )
        try:
            value = float(m["value"])
        except ValueError:
            raise SonicError(f"bad --slo value in {item.strip()!r}: not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise SonicError(f"bad --slo value in {item.strip()!r}: must be a positive number")
        slo = SLO(metric, stat, value * UNITS_S[m["unit"] or "ms"])
        if any(s.key == slo.key for s in out):
            raise SonicError(f"bad --slo: {slo.key} given twice")
        out.append(slo)
    return out


@dataclass(frozen=True)
class SloCheck:
    """One SLO at one run: the observed statistic, its bootstrap CI, and whether it is met."""

    slo: SLO
    value_s: float
    ci_s: tuple[float, float]
    met: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "slo": self.slo.to_dict(),
            "value_s": self.value_s,
            "ci_s": list(self.ci_s),
            "met": self.met,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SloCheck:
        lo, hi = d["ci_s"]
        return cls(SLO.from_dict(d["slo"]), float(d["value_s"]), (float(lo), float(hi)), d["met"])


@dataclass
class Verdict:
    """A run judged against its SLOs. ``boot_met`` holds, per bootstrap resample of the run's
    requests, whether every SLO was met; its mean is the share of resamples that meet."""

    met: bool
    checks: list[SloCheck]
    requests: int  # the requests judged (measured ones plus failed ones)
    failed: int
    attainment: float | None = None  # share of requests meeting every bound (attainment mode)
    attainment_target: float | None = None
    attainment_ci: tuple[float, float] | None = None
    # Attainment mode: share of requests within each bound, by SLO key.
    shares: dict[str, float] = field(default_factory=dict)
    boot_met: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    notes: list[str] = field(default_factory=list)

    @property
    def confidence(self) -> float:
        """Share of bootstrap resamples in which every SLO holds."""
        return float(self.boot_met.mean()) if self.boot_met.size else math.nan

    def summary(self) -> str:
        if self.attainment is not None:
            lo, hi = self.attainment_ci or (math.nan, math.nan)
            head = (
                f"{self.attainment:.1%} of requests met every bound [{lo:.1%}, {hi:.1%}] "
                f"(target {self.attainment_target:.1%})"
            )
        else:
            head = ", ".join(
                f"{c.slo.label.split(' ≤ ')[0]} {fmt_s(c.value_s)}"
                f" [{fmt_s(c.ci_s[0])}, {fmt_s(c.ci_s[1])}]{'' if c.met else ' ✗'}"
                for c in self.checks
            )
        return f"{'meets' if self.met else 'misses'}: {head}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "met": self.met,
            "checks": [c.to_dict() for c in self.checks],
            "requests": self.requests,
            "failed": self.failed,
            "attainment": self.attainment,
            "attainment_target": self.attainment_target,
            "attainment_ci": None if self.attainment_ci is None else list(self.attainment_ci),
            "shares": dict(self.shares),
            "confidence": self.confidence,
            "boot_met": np.packbits(self.boot_met).tobytes().hex(),
            "n_boot": int(self.boot_met.size),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        n = int(d.get("n_boot", 0))
        bits = np.unpackbits(np.frombuffer(bytes.fromhex(d.get("boot_met", "")), dtype=np.uint8))
        ci = d.get("attainment_ci")
        return cls(
            met=bool(d["met"]),
            checks=[SloCheck.from_dict(c) for c in d["checks"]],
            requests=int(d["requests"]),
            failed=int(d["failed"]),
            attainment=d.get("attainment"),
            attainment_target=d.get("attainment_target"),
            attainment_ci=None if ci is None else (float(ci[0]), float(ci[1])),
            shares={str(k): float(v) for k, v in d.get("shares", {}).items()},
            boot_met=bits[:n].astype(bool),
            notes=list(d.get("notes", [])),
        )


def _judged(metrics: Any) -> np.ndarray:
    """Requests under judgement: those in the aggregates plus every failed one (a request
    left out only by the dialect's skip-first/last rules stays out)."""
    req = metrics.requests
    measured = np.asarray(metrics.measured, dtype=bool)
    if measured.size != req.n:
        measured = np.asarray(req.success, dtype=bool)
    return measured | ~np.asarray(req.success, dtype=bool)


def _per_request(req: Any, metric: str, idx: np.ndarray) -> list[np.ndarray]:
    """Each judged request's samples of ``metric`` (failed: one FAILED_S sample)."""
    ok = np.asarray(req.success, dtype=bool)
    out: list[np.ndarray] = []
    if metric == "itl":
        if getattr(req, "streamed", False):
            from sonic.errors import SonicError

            raise SonicError(
                "an ITL SLO judges each request's gaps, which --stream-records keeps on disk: "
                "search without --stream-records"
            )
        for i in idx:
            gaps = req.itls(i) if ok[i] else np.array([FAILED_S])
            out.append(np.asarray(gaps, dtype=float))
        return out
    values = np.asarray(getattr(req, SLO_METRICS[metric][0]), dtype=float)
    for i in idx:
        v = values[i] if ok[i] else FAILED_S
        out.append(np.array([v]) if np.isfinite(v) else np.zeros(0))
    return out


def _stat(values: np.ndarray, weights: np.ndarray | None, stat: str) -> np.ndarray:
    """``stat`` of sorted ``values`` under each row of ``weights`` (None: one row, weight 1);
    numpy's linear-interpolated percentile read off the running sum of weights."""
    w = np.ones((1, values.size)) if weights is None else weights
    total = w.sum(axis=1)
    out = np.full(w.shape[0], np.nan)
    has = total > 0
    if stat == "mean":
        out[has] = (w[has] * values).sum(axis=1) / total[has]
        return out
    q = 50.0 if stat == "median" else float(stat[1:])
    cum = np.cumsum(w, axis=1)
    pos = q / 100.0 * (total - 1.0)
    lo = np.floor(pos)
    hi = np.minimum(lo + 1.0, total - 1.0)
    i_lo = np.minimum((cum <= lo[:, None]).sum(axis=1), values.size - 1)
    i_hi = np.minimum((cum <= hi[:, None]).sum(axis=1), values.size - 1)
    val = values[i_lo] + (pos - lo) * (values[i_hi] - values[i_lo])
    out[has] = val[has]
    return out


def _ci(samples: np.ndarray) -> tuple[float, float]:
    s = samples[np.isfinite(samples)]
    if s.size == 0:
        return math.nan, math.nan
    tail = (1.0 - LEVEL) / 2.0 * 100.0
    lo, hi = np.percentile(s, [tail, 100.0 - tail])
    return float(lo), float(hi)


def judge(
    metrics: Any,
    slos: Sequence[SLO],
    *,
    attainment: float | None = None,
    seed: int = 0,
    n_boot: int = N_BOOT,
) -> Verdict:
    """Judge one run (a BenchmarkMetrics) against ``slos``; resamples are seeded by ``seed``."""
    req = metrics.requests
    idx = np.flatnonzero(_judged(metrics))
    n = idx.size
    failed = int((~np.asarray(req.success, dtype=bool))[idx].sum())
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x510])
    if n == 0:
        checks = [SloCheck(s, math.nan, (math.nan, math.nan), False) for s in slos]
        return Verdict(False, checks, 0, 0, notes=["no request to judge"])
    pick = rng.integers(0, n, size=(n_boot, n))
    counts = np.zeros((n_boot, n))
    np.add.at(counts, (np.repeat(np.arange(n_boot), n), pick.ravel()), 1.0)
    if attainment is not None:
        return _judge_attainment(req, idx, slos, attainment, counts, failed)
    checks: list[SloCheck] = []
    boot_met = np.ones(n_boot, dtype=bool)
    notes: list[str] = []
    for slo in slos:
        per = _per_request(req, slo.metric, idx)
        lens = np.array([a.size for a in per])
        if lens.sum() == 0:
            checks.append(SloCheck(slo, math.nan, (math.nan, math.nan), False))
            boot_met[:] = False
            notes.append(f"no {SLO_METRICS[slo.metric][1]} sample to judge")
            continue
        flat = np.concatenate(per)
        owner = np.repeat(np.arange(n), lens)
        order = np.argsort(flat, kind="stable")
        values, owner_sorted = flat[order], owner[order]
        value = float(_stat(values, None, slo.stat or "mean")[0])
        boot = np.empty(n_boot)
        chunk = max(1, min(n_boot, 4_000_000 // max(1, values.size)))
        for start in range(0, n_boot, chunk):
            stop = min(n_boot, start + chunk)
            boot[start:stop] = _stat(values, counts[start:stop][:, owner_sorted], slo.stat or "")
        met = bool(value <= slo.limit_s)
        boot_met &= boot <= slo.limit_s
        checks.append(SloCheck(slo, value, _ci(boot), met))
        if slo.stat and slo.stat.startswith("p"):
            need = math.ceil(1.0 / (1.0 - float(slo.stat[1:]) / 100.0))
            if lens.sum() < need:
                notes.append(
                    f"{slo.stat} {SLO_METRICS[slo.metric][1]} from {int(lens.sum())} samples "
                    f"(fewer than the {need} a {slo.stat} needs)"
                )
    return Verdict(
        met=all(c.met for c in checks),
        checks=checks,
        requests=n,
        failed=failed,
        boot_met=boot_met,
        notes=notes,
    )


def _judge_attainment(
    req: Any,
    idx: np.ndarray,
    slos: Sequence[SLO],
    target: float,
    counts: np.ndarray,
    failed: int,
) -> Verdict:
    """Share of requests meeting every bound (ITL: the request's largest gap)."""
    good = np.ones(idx.size, dtype=bool)
    shares: dict[str, float] = {}
    for slo in slos:
        per = _per_request(req, slo.metric, idx)
        empty = 0.0 if slo.metric == "tpot" else math.inf  # TPOT of a 1-token answer: none
        worst = np.array([a.max() if a.size else empty for a in per])
        ok = worst <= slo.limit_s
        good &= ok
        shares[slo.key] = float(ok.mean())
    share = float(good.mean())
    boot = (counts * good).sum(axis=1) / counts.sum(axis=1)
    return Verdict(
        met=share >= target,
        checks=[],
        requests=idx.size,
        failed=failed,
        attainment=share,
        attainment_target=target,
        attainment_ci=_ci(boot),
        shares=shares,
        boot_met=boot >= target,
    )
