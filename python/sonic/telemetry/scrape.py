"""A background thread that scrapes an engine's Prometheus ``/metrics``.

One scrape before the run, one every ``interval_s`` during it, one after. Each is stamped
with ``time.monotonic_ns()`` when the request starts and when the body has been read (the
clock of the run records' ``t0_mono_ns``). Redirects are followed (MAX answers 307 →
``/metrics/``). A failed scrape (HTTP error, refused connection, unparsable text) is kept as
a failed entry and reported once as a warning; it never stops the run.
"""

from __future__ import annotations

import threading
import time
import urllib.error
from dataclasses import dataclass, field
from typing import Any

from sonic import httpcalls
from sonic.telemetry.maxshape import server_metrics_doc
from sonic.telemetry.names import (
    COUNTERS,
    Sample,
    detect_engine,
    metric_key,
    normalize,
    parse_metrics,
)

DEFAULT_INTERVAL_S = 1.0
DEFAULT_TIMEOUT_S = 2.0
MAX_BODY_BYTES = 32 * 1024 * 1024


@dataclass
class Scrape:
    """One fetch of ``/metrics``."""

    phase: str  # "before" | "during" | "after"
    t_start_ns: int
    t_end_ns: int
    ok: bool
    error: str | None = None
    samples: list[Sample] = field(default_factory=list)
    values: dict[str, float] = field(default_factory=dict)  # normalised fields

    @property
    def t_ns(self) -> int:
        """The scrape's time: the middle of the request."""
        return (self.t_start_ns + self.t_end_ns) // 2

    def as_json(self, raw: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "phase": self.phase,
            "t_start_ns": self.t_start_ns,
            "t_end_ns": self.t_end_ns,
            "ok": self.ok,
            "error": self.error,
            "values": self.values,
        }
        if raw:
            doc["samples"] = [s.as_json() for s in self.samples]
        return doc


def fetch_metrics(url: str, timeout_s: float = DEFAULT_TIMEOUT_S, insecure: bool = False) -> str:
    """GET ``url`` (following redirects) and return its text; raises OSError/ValueError."""
    body = httpcalls.get(
        url,
        timeout=timeout_s,
        headers={"Accept": "text/plain"},
        insecure=insecure,
        limit=MAX_BODY_BYTES,
    )
    if len(body) > MAX_BODY_BYTES:
        raise ValueError(f"/metrics body larger than {MAX_BODY_BYTES} bytes")
    return body.decode("utf-8", errors="replace")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return getattr(reason, "strerror", None) or str(reason)
    return f"{type(exc).__name__}: {exc}"


class MetricsScraper:
    """Scrape ``url`` before, during (every ``interval_s``) and after a run.

    ``start()`` scrapes once ("before", synchronously) and starts the thread; ``stop()``
    stops it and scrapes once more ("after"). ``engine`` fixes the name map (default: detected
    from the first successful scrape).
    """

    def __init__(
        self,
        url: str,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        engine: str | None = None,
        insecure: bool = False,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"metrics scrape interval must be > 0 s, got {interval_s}")
        self.url = url
        self.interval_s = float(interval_s)
        self.timeout_s = float(timeout_s)
        self.engine = engine
        self.insecure = insecure
        self.scrapes: list[Scrape] = []
        self.warnings: list[str] = []
        self._failures = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ one scrape

    def scrape_once(self, phase: str = "during") -> Scrape:
        t0 = time.monotonic_ns()
        try:
            text = fetch_metrics(self.url, self.timeout_s, self.insecure)
            samples = parse_metrics(text)
        except (OSError, ValueError) as exc:  # URLError/HTTPError are OSErrors
            scrape = Scrape(phase, t0, time.monotonic_ns(), False, _describe(exc))
        else:
            scrape = Scrape(phase, t0, time.monotonic_ns(), True, samples=samples)
        with self._lock:
            if scrape.ok:
                if self.engine is None:
                    self.engine = detect_engine(scrape.samples)
                prev = next((s for s in reversed(self.scrapes) if s.ok), None)
                scrape.values = normalize(
                    scrape.samples, self.engine, prev.samples if prev else None
                )
            else:
                self._failures += 1
                if self._failures == 1:
                    self.warnings.append(
                        f"engine metrics: scraping {self.url} failed ({scrape.error}); "
                        "the run goes on without them"
                    )
            self.scrapes.append(scrape)
        return scrape

    # ------------------------------------------------------------ the thread

    def _loop(self) -> None:
        next_t = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, next_t - time.monotonic())):
            self.scrape_once("during")
            next_t += self.interval_s
            now = time.monotonic()
            if next_t < now:  # a slow scrape: skip the missed ticks
                next_t = now + self.interval_s

    def start(self) -> MetricsScraper:
        if self._thread is not None:
            return self
        self.scrape_once("before")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="sonic-metrics", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> MetricsScraper:
        if self._thread is None:
            return self
        self._stop.set()
        self._thread.join()
        self._thread = None
        self.scrape_once("after")
        with self._lock:
            if self._failures > 1:
                self.warnings.append(
                    f"engine metrics: {self._failures} of {len(self.scrapes)} scrapes failed"
                )
        return self

    # ------------------------------------------------------------ results

    @property
    def ok_scrapes(self) -> list[Scrape]:
        return [s for s in self.scrapes if s.ok]

    def series(self) -> dict[str, Any]:
        """Normalised fields as time series: ``{"t_mono_ns": [...], field: [...]}`` over the
        successful scrapes (None where a scrape lacks the field)."""
        ok = self.ok_scrapes
        fields = sorted({k for s in ok for k in s.values})
        out: dict[str, Any] = {"t_mono_ns": [s.t_ns for s in ok], "phase": [s.phase for s in ok]}
        for f in fields:
            out[f] = [s.values.get(f) for s in ok]
        return out

    def window_scrapes(
        self, start_ns: int | None = None, end_ns: int | None = None
    ) -> tuple[Scrape, Scrape] | None:
        """The successful scrapes that bracket the run: the last at or before ``start_ns``
        (else the first) and the first at or after ``end_ns`` (else the last); None when
        there are not two distinct ones."""
        ok = self.ok_scrapes
        if len(ok) < 2:
            return None
        a = ok[0]
        if start_ns is not None:
            before = [s for s in ok if s.t_start_ns <= start_ns]
            a = before[-1] if before else ok[0]
        b = ok[-1]
        if end_ns is not None:
            after = [s for s in ok if s.t_end_ns >= end_ns]
            b = after[0] if after else ok[-1]
        return None if b is a else (a, b)

    def deltas(self, start_ns: int | None = None, end_ns: int | None = None) -> dict[str, Any]:
        """Counter deltas over the run, between the :meth:`window_scrapes`.

        ``normalized`` holds the schema's counters; ``raw`` every counter-like sample
        (``*_total``, ``*_count``, ``*_sum``) by ``name{labels}``. A negative delta (the
        engine restarted) is reported as None with a warning.
        """
        pair = self.window_scrapes(start_ns, end_ns)
        if pair is None:
            return {}
        a, b = pair
        norm: dict[str, float | None] = {}
        for f in COUNTERS:
            if f in a.values and f in b.values:
                norm[f] = self._delta(f, b.values[f] - a.values[f])
        hits, queries = norm.get("prefix_cache_hits_total"), norm.get("prefix_cache_queries_total")
        rates: dict[str, float | None] = {}
        if hits is not None and queries:
            rates["prefix_cache_hit_rate"] = hits / queries
        raw_a = {metric_key(s.name, s.labels): s.value for s in a.samples if _counterish(s.name)}
        raw: dict[str, float | None] = {}
        for s in b.samples:
            k = metric_key(s.name, s.labels)
            if _counterish(s.name) and k in raw_a:
                raw[k] = self._delta(k, s.value - raw_a[k])
        return {
            "engine": self.engine,
            "window_ns": [a.t_ns, b.t_ns],
            "normalized": norm,
            "rates": rates,
            "raw": raw,
        }

    def max_server_metrics(
        self, start_ns: int | None = None, end_ns: int | None = None
    ) -> dict[str, Any] | None:
        """MAX's ``server_metrics`` object over the run (see :mod:`sonic.telemetry.maxshape`);
        None without two successful scrapes around it."""
        pair = self.window_scrapes(start_ns, end_ns)
        return None if pair is None else server_metrics_doc(pair[0].samples, pair[1].samples)

    def _delta(self, name: str, d: float) -> float | None:
        if d < 0:
            msg = f"engine metrics: counter {name} went backwards (engine restarted?)"
            if msg not in self.warnings:
                self.warnings.append(msg)
            return None
        return d


def _counterish(name: str) -> bool:
    return name.endswith(("_total", "_count", "_sum"))
