"""Repeat statistics and engine comparisons with bootstrap confidence intervals.

Everything is grouped by the run's *point* (scenario, request rate, max concurrency): a value
at 1 req/s and one at 8 req/s measure different things, so they are never averaged together.
Bootstraps are seeded per (engine, point, metric) key, so a number does not change when
another engine or scenario is added to the directory.

Ratios are B / A for the pair (A, B) in manifest order. A comparison is *significant* when
the 95% CI of the ratio excludes 1 and neither engine's run is invalid, overall or for that
statistic (``sonic.metrics.validity``: e.g. over-saturated, or a p99 from fewer than 100
requests); the ``invalid`` column says which run and why. With two or more repeats per engine
the CI resamples repeats; with a single repeat, latency statistics resample the run's requests
(ITL resamples whole requests, since a request's gaps are correlated); a single-repeat
throughput has no CI.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from sonic.metrics import catalogue

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

DEFAULT_SEED = 0
N_BOOT = 2000
LEVEL = 0.95
POINT = ("scenario", "request_rate", "max_concurrency")
# Runs whose metrics enter the statistics: a run with some failed requests still measured
# something (the tables show its failed count); an interrupted run did not finish its load,
# so its throughput and tail latencies are not comparable and it is left out.
USABLE_STATUS = ("ok", "partial")


@dataclass(frozen=True)
class Metric:
    """A metric the report compares: its column, label, unit and which direction is better
    (all from the metric catalogue, ``sonic.metrics.catalogue``)."""

    column: str
    label: str
    unit: str
    higher_is_better: bool
    # (per-request column, statistic) when it can be bootstrapped from single-run requests
    request_stat: tuple[str, str] | None = None

    @property
    def better_word(self) -> str:
        return "higher" if self.higher_is_better else "lower"


def _scalar(name: str) -> Metric:
    m = catalogue.BY_NAME[name]
    return Metric(m.name, m.label, m.unit, bool(m.higher_is_better))


def _latency(stat: str, metric: str) -> Metric:
    m = catalogue.BY_NAME[metric]
    return Metric(
        catalogue.latency_column(stat, metric),
        f"{stat} {m.label}",
        m.unit,
        bool(m.higher_is_better),
        (f"{metric}_ms", stat),
    )


COMPARED_METRICS: tuple[Metric, ...] = (
    _scalar("output_throughput"),
    _scalar("request_throughput"),
    _scalar("total_token_throughput"),
    *(
        _latency(stat, metric)
        for metric in ("ttft", "tpot", "itl", "e2el")
        for stat in ("median", "p99")
    ),
)
METRICS_BY_COLUMN = {m.column: m for m in COMPARED_METRICS}


# ------------------------------------------------------------------ bootstrap primitives


def rng_for(seed: int, *key: Any) -> np.random.Generator:
    """A generator seeded by ``seed`` and a stable hash of ``key`` (not Python's hash())."""
    digest = zlib.crc32("\x1f".join(str(k) for k in key).encode("utf-8"))
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, digest])


def bootstrap_means(values: Sequence[float], rng: np.random.Generator, n_boot: int = N_BOOT):
    """``n_boot`` means of resamples (with replacement) of ``values``."""
    a = np.asarray(values, dtype=float)
    idx = rng.integers(0, a.size, size=(n_boot, a.size))
    return a[idx].mean(axis=1)


def percentile_ci(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of bootstrap samples (NaN when none is finite)."""
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return math.nan, math.nan
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(s, [tail, 100.0 - tail])
    return float(lo), float(hi)


def mean_ci(
    values: Sequence[float], *, seed: int = DEFAULT_SEED, key: Sequence[Any] = (), n_boot=N_BOOT
) -> tuple[float, float, float]:
    """Mean and bootstrap 95% CI of repeat values; the CI is NaN with fewer than 2 values."""
    a = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if a.size == 0:
        return math.nan, math.nan, math.nan
    if a.size < 2:
        return float(a[0]), math.nan, math.nan
    lo, hi = percentile_ci(bootstrap_means(a, rng_for(seed, "mean", *key), n_boot))
    return float(a.mean()), lo, hi


def _stat_fn(stat: str) -> Callable[[np.ndarray], np.ndarray]:
    """Row-wise statistic over axis 1, numpy's linear percentiles (as the result files)."""
    if stat == "mean":
        return lambda x: x.mean(axis=1)
    if stat == "median":
        return lambda x: np.median(x, axis=1)
    q = float(stat[1:])
    return lambda x: np.percentile(x, q, axis=1)


def bootstrap_request_stat(
    per_request: Sequence[np.ndarray], stat: str, rng: np.random.Generator, n_boot: int = 1000
) -> np.ndarray:
    """Bootstrap distribution of ``stat`` over requests.

    ``per_request`` holds each request's samples (one TTFT, or all its ITL gaps); requests are
    resampled whole and their samples pooled, as the run's own statistic pools them.
    """
    arrays = [np.asarray(a, dtype=float) for a in per_request]
    arrays = [a[np.isfinite(a)] for a in arrays]
    arrays = [a for a in arrays if a.size]
    n = len(arrays)
    if n == 0:
        return np.full(n_boot, np.nan)
    lens = np.array([a.size for a in arrays])
    flat = np.concatenate(arrays)
    if (lens == 1).all():
        return _stat_fn(stat)(flat[rng.integers(0, n, size=(n_boot, n))])
    return _pooled_bootstrap(flat, np.repeat(np.arange(n), lens), n, stat, rng, n_boot)


def _pooled_bootstrap(
    flat: np.ndarray, owner: np.ndarray, n: int, stat: str, rng: np.random.Generator, n_boot: int
) -> np.ndarray:
    """Whole-request resampling without building the pooled arrays: a resample is a count per
    request, so the pooled sample is the sorted samples weighted by their request's count,
    and numpy's linear-interpolated percentile is read off the weights' running sum."""
    order = np.argsort(flat, kind="stable")
    values, owner_sorted = flat[order], owner[order]
    q = None if stat == "mean" else 50.0 if stat == "median" else float(stat[1:])
    out = np.empty(n_boot)
    chunk = max(1, min(n_boot, 4_000_000 // max(1, flat.size)))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        pick = rng.integers(0, n, size=(b, n))
        counts = np.zeros((b, n))
        np.add.at(counts, (np.repeat(np.arange(b), n), pick.ravel()), 1.0)
        w = counts[:, owner_sorted]
        total = w.sum(axis=1)
        if q is None:
            out[start : start + b] = (w * values).sum(axis=1) / total
            continue
        cum = np.cumsum(w, axis=1)
        pos = q / 100.0 * (total - 1.0)
        lo = np.floor(pos)
        hi = np.minimum(lo + 1.0, total - 1.0)
        i_lo = (cum <= lo[:, None]).sum(axis=1)
        i_hi = (cum <= hi[:, None]).sum(axis=1)
        out[start : start + b] = values[i_lo] + (pos - lo) * (values[i_hi] - values[i_lo])
    return out


# ------------------------------------------------------------------ tables


def usable(df: pd.DataFrame) -> pd.DataFrame:
    """Runs whose metrics enter the statistics (ok or partial, not interrupted)."""
    sel = df["status"].isin(USABLE_STATUS)
    if "interrupted" in df:
        sel &= ~df["interrupted"].astype(bool)
    return df[sel]


def engine_order(df: pd.DataFrame, manifest: dict[str, Any] | None = None) -> list[str]:
    """Engines in manifest order, then any others in order of appearance."""
    names = list((manifest or {}).get("engines") or {})
    for e in df["engine"]:
        if e not in names:
            names.append(e)
    present = set(df["engine"])
    return [n for n in names if n in present]


def points(df: pd.DataFrame) -> list[tuple[str, float, Any]]:
    """The (scenario, rate, concurrency) points present, scenarios in order of appearance."""
    seen: dict[tuple[str, float, Any], None] = {}
    for s, r, c in df[list(POINT)].itertuples(index=False):
        seen[(s, float(r), None if _isna(c) else int(c))] = None
    order = {s: i for i, s in enumerate(dict.fromkeys(df["scenario"]))}
    return sorted(seen, key=lambda p: (order[p[0]], p[1], -1 if p[2] is None else p[2]))


def _isna(v: Any) -> bool:
    import pandas as pd

    if v is None:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def at_point(df: pd.DataFrame, point: tuple[str, float, Any]) -> pd.DataFrame:
    """Rows of one point (concurrency <NA> matches None)."""
    s, r, c = point
    sel = (df["scenario"] == s) & (df["request_rate"] == r)
    conc = df["max_concurrency"]
    sel &= conc.isna() if c is None else (conc == c).fillna(False).astype(bool)
    return df[sel]


def repeat_summary(
    df: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    *,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """Mean and bootstrap 95% CI over repeats per engine and point, for every metric column.

    Columns: engine, scenario, request_rate, max_concurrency, simulated, metric, n, mean,
    ci_low, ci_high (CI NaN with a single repeat), failed (requests failed, summed).
    """
    import pandas as pd

    from sonic.analysis import LATENCY_COLUMNS, SCALAR_COLUMNS

    cols = list(metrics) if metrics is not None else list(SCALAR_COLUMNS + LATENCY_COLUMNS)
    good = usable(df)
    rows = []
    for point in points(good):
        sub = at_point(good, point)
        for engine, g in sub.groupby("engine", sort=False):
            for col in cols:
                vals = g[col].to_numpy(dtype=float)
                mean, lo, hi = mean_ci(vals, seed=seed, key=(engine, *point, col))
                rows.append(
                    {
                        "engine": engine,
                        "scenario": point[0],
                        "request_rate": point[1],
                        "max_concurrency": point[2],
                        "simulated": bool(g["simulated"].any()),
                        "metric": col,
                        "n": int(np.isfinite(vals).sum()),
                        "mean": mean,
                        "ci_low": lo,
                        "ci_high": hi,
                        "failed": float(np.nansum(g["failed"].to_numpy(dtype=float))),
                    }
                )
    out = pd.DataFrame(
        rows,
        columns=[
            "engine",
            "scenario",
            "request_rate",
            "max_concurrency",
            "simulated",
            "metric",
            "n",
            "mean",
            "ci_low",
            "ci_high",
            "failed",
        ],
    )
    out["max_concurrency"] = out["max_concurrency"].astype("Int64")
    return out


RUN_KEY = ["engine", "scenario", "request_rate", "max_concurrency", "repeat"]


def usable_requests(requests: pd.DataFrame | None, runs: pd.DataFrame) -> pd.DataFrame | None:
    """The requests of the given (usable) runs only."""
    if requests is None or requests.empty:
        return requests
    keys = runs[RUN_KEY].drop_duplicates()
    return requests.merge(keys, on=RUN_KEY, how="inner")


def invalid_reason(runs: pd.DataFrame, engine: str, column: str) -> str:
    """Why ``engine``'s runs in ``runs`` (one point) may not be compared on ``column``:
    ``"alpha: over_saturated"``, ``"alpha: too_few_samples"`` (for this statistic); empty when
    every run is valid for it (or predates validity verdicts)."""
    why: list[str] = []
    for r in runs[runs["engine"] == engine].itertuples(index=False):
        whole = str(getattr(r, "invalid_because", "") or "")
        scoped = str(getattr(r, "invalid_metrics", "") or "").split(",")
        if getattr(r, "validity", None) == "invalid" and whole:
            why += whole.split(",")
        if column in scoped:
            why.append("too_few_samples")
    return f"{engine}: {', '.join(dict.fromkeys(why))}" if why else ""


def _request_samples(requests: pd.DataFrame | None, engine: str, point, column: str) -> list:
    if requests is None or requests.empty:
        return []
    sub = at_point(requests[requests["engine"] == engine], point)
    sub = sub[sub["success"]]
    if column == "itl_ms":
        return [np.asarray(v, dtype=float) for v in sub["itl_ms"]]
    return [np.asarray([v], dtype=float) for v in sub[column].to_numpy(dtype=float)]


def _boot(
    cache: dict[tuple, np.ndarray],
    kind: str,
    engine: str,
    point,
    metric: Metric,
    seed: int,
    values: np.ndarray | None = None,
    requests: pd.DataFrame | None = None,
) -> np.ndarray | None:
    """One engine's bootstrap distribution at a point, computed once per report."""
    key = (kind, engine, *point, metric.column)
    if key not in cache:
        rng = rng_for(seed, *key)
        if kind == "mean":
            cache[key] = bootstrap_means(values, rng)
        else:
            column, stat = metric.request_stat
            samples = _request_samples(requests, engine, point, column)
            cache[key] = bootstrap_request_stat(samples, stat, rng) if samples else None
    return cache[key]


def _ratio_ci(
    metric: Metric,
    engine_a: str,
    engine_b: str,
    point,
    vals_a: np.ndarray,
    vals_b: np.ndarray,
    requests: pd.DataFrame | None,
    seed: int,
    cache: dict[tuple, np.ndarray],
) -> tuple[float, float, str]:
    """CI of mean_b / mean_a and the method that produced it."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if vals_a.size >= 2 and vals_b.size >= 2:
            ba = _boot(cache, "mean", engine_a, point, metric, seed, vals_a)
            bb = _boot(cache, "mean", engine_b, point, metric, seed, vals_b)
            lo, hi = percentile_ci(bb / ba)
            return lo, hi, "repeats"
        if metric.request_stat is not None:
            ba = _boot(cache, "req", engine_a, point, metric, seed, requests=requests)
            bb = _boot(cache, "req", engine_b, point, metric, seed, requests=requests)
            if ba is not None and bb is not None:
                lo, hi = percentile_ci(bb / ba)
                return lo, hi, "requests"
    return math.nan, math.nan, "none"


def compare_engines(
    df: pd.DataFrame,
    requests: pd.DataFrame | None = None,
    *,
    engines: Sequence[str] | None = None,
    metrics: Sequence[Metric] = COMPARED_METRICS,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """Every pair (A, B) of engines at every point both ran: means, B/A ratio, its 95% CI,
    the CI method (repeats / requests / none) and whether the difference is significant
    (None when no CI could be computed; never True when ``invalid`` says that a run, or the
    statistic in it, is invalid). Columns listed in the returned frame."""
    import pandas as pd

    good = usable(df)
    order = list(engines) if engines is not None else engine_order(good)
    requests = usable_requests(requests, good)
    rows = []
    cache: dict[tuple, np.ndarray] = {}
    for point in points(good):
        sub = at_point(good, point)
        here = [e for e in order if (sub["engine"] == e).any()]
        for i, a in enumerate(here):
            for b in here[i + 1 :]:
                ga, gb = sub[sub["engine"] == a], sub[sub["engine"] == b]
                for m in metrics:
                    va = ga[m.column].to_numpy(dtype=float)
                    vb = gb[m.column].to_numpy(dtype=float)
                    va, vb = va[np.isfinite(va)], vb[np.isfinite(vb)]
                    if va.size == 0 or vb.size == 0:
                        continue
                    mean_a, mean_b = float(va.mean()), float(vb.mean())
                    ratio = mean_b / mean_a if mean_a != 0 else math.nan
                    lo, hi, method = _ratio_ci(m, a, b, point, va, vb, requests, seed, cache)
                    sig = None if math.isnan(lo) else bool(lo > 1.0 or hi < 1.0)
                    invalid = "; ".join(
                        x
                        for x in (invalid_reason(ga, a, m.column), invalid_reason(gb, b, m.column))
                        if x
                    )
                    if invalid and sig is not None:
                        sig = False  # an invalid run or statistic never makes a difference
                    rows.append(
                        {
                            "scenario": point[0],
                            "request_rate": point[1],
                            "max_concurrency": point[2],
                            "metric": m.column,
                            "engine_a": a,
                            "engine_b": b,
                            "n_a": int(va.size),
                            "n_b": int(vb.size),
                            "mean_a": mean_a,
                            "mean_b": mean_b,
                            "ratio": ratio,
                            "ci_low": lo,
                            "ci_high": hi,
                            "method": method,
                            "significant": sig,
                            "invalid": invalid,
                        }
                    )
    cols = [
        "scenario",
        "request_rate",
        "max_concurrency",
        "metric",
        "engine_a",
        "engine_b",
        "n_a",
        "n_b",
        "mean_a",
        "mean_b",
        "ratio",
        "ci_low",
        "ci_high",
        "method",
        "significant",
        "invalid",
    ]
    out = pd.DataFrame(rows, columns=cols)
    out["max_concurrency"] = out["max_concurrency"].astype("Int64")
    return out


def difference_pct(metric: Metric, best: float, other: float) -> float:
    """How much better ``best`` is than ``other``, in percent of ``other``."""
    if other == 0 or not (math.isfinite(best) and math.isfinite(other)):
        return math.nan
    diff = (best - other) if metric.higher_is_better else (other - best)
    return diff / abs(other) * 100.0


def winners(comparisons: pd.DataFrame, metrics: Sequence[Metric] = COMPARED_METRICS):
    """The best engine per point and metric, with its margin over the runner-up.

    Columns: scenario, request_rate, max_concurrency, metric, winner, runner_up, best, other,
    difference_pct (winner better by this much, % of the runner-up), ratio (winner/runner-up),
    ci_low, ci_high (of that ratio), significant (None: untested).
    """
    import pandas as pd

    rows = []
    by_col = {m.column: m for m in metrics}
    if not comparisons.empty:
        keys = ["scenario", "request_rate", "max_concurrency", "metric"]
        for key, g in comparisons.groupby(keys, sort=False, dropna=False):
            m = by_col.get(key[3])
            if m is None:
                continue
            means: dict[str, float] = {}
            for r in g.itertuples(index=False):
                means[r.engine_a], means[r.engine_b] = r.mean_a, r.mean_b
            ranked = sorted(means, key=lambda e: means[e], reverse=m.higher_is_better)
            best, other = ranked[0], ranked[1]
            pair = g[
                ((g["engine_a"] == best) & (g["engine_b"] == other))
                | ((g["engine_a"] == other) & (g["engine_b"] == best))
            ].iloc[0]
            lo, hi = float(pair["ci_low"]), float(pair["ci_high"])
            if pair["engine_a"] == best:  # stored ratio is b/a: invert to winner/runner-up
                lo, hi = 1.0 / hi, 1.0 / lo
            sig = pair["significant"]
            ratio = means[best] / means[other] if means[other] else math.nan
            rows.append(
                {
                    "scenario": key[0],
                    "request_rate": key[1],
                    "max_concurrency": None if _isna(key[2]) else int(key[2]),
                    "metric": key[3],
                    "winner": best,
                    "runner_up": other,
                    "best": means[best],
                    "other": means[other],
                    "difference_pct": difference_pct(m, means[best], means[other]),
                    "ratio": ratio,
                    "ci_low": min(lo, hi) if not math.isnan(lo) else math.nan,
                    "ci_high": max(lo, hi) if not math.isnan(hi) else math.nan,
                    "significant": None if sig is None or _isna(sig) else bool(sig),
                    "invalid": "" if _isna(pair.get("invalid")) else str(pair.get("invalid")),
                }
            )
    cols = [
        "scenario",
        "request_rate",
        "max_concurrency",
        "metric",
        "winner",
        "runner_up",
        "best",
        "other",
        "difference_pct",
        "ratio",
        "ci_low",
        "ci_high",
        "significant",
        "invalid",
    ]
    out = pd.DataFrame(rows, columns=cols)
    out["max_concurrency"] = out["max_concurrency"].astype("Int64")
    return out


def scenario_verdicts(win: pd.DataFrame) -> list[dict[str, Any]]:
    """Per scenario and metric: who is better at each point, and an overall word that never
    pools points. ``overall`` is the engine that wins every point where the difference is
    significant (``None`` when the significant winners differ or nothing is significant);
    ``state`` is ``consistent``, ``mixed``, ``no significant difference``, ``invalid`` (an
    invalid run at every point: nothing may be compared) or ``untested``."""
    out: list[dict[str, Any]] = []
    if win.empty:
        return out
    for (scenario, metric), g in win.groupby(["scenario", "metric"], sort=False):
        pts = [r._asdict() for r in g.itertuples(index=False)]
        sig = [p for p in pts if p["significant"] is True]
        valid = [p for p in pts if not p.get("invalid")]
        tested = [p for p in valid if p["significant"] is not None and not _isna(p["significant"])]
        sig_winners = {p["winner"] for p in sig}
        if len(sig_winners) == 1:
            state, overall = "consistent", next(iter(sig_winners))
        elif len(sig_winners) > 1:
            state, overall = "mixed", None
        elif tested:
            state, overall = "no significant difference", None
        elif pts and not valid:
            state, overall = "invalid", None
        else:
            state, overall = "untested", None
        out.append(
            {
                "scenario": scenario,
                "metric": metric,
                "state": state,
                "overall": overall,
                "significant_points": len(sig),
                "points": pts,
            }
        )
    return out
