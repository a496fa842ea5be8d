"""The /metrics scraper against a real local HTTP server (stdlib), including redirects and
failures."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sonic.telemetry.scrape import MetricsScraper
from sonic.telemetry.session import TelemetrySession


class _Engine:
    """A fake engine: each GET of /metrics/ counts 10 more generation tokens; the waiting
    gauge follows ``waiting``."""

    def __init__(self) -> None:
        self.hits = 0
        self.waiting = 0
        self.lock = threading.Lock()

    def text(self) -> str:
        with self.lock:
            self.hits += 1
            n = self.hits
            w = self.waiting
        return (
            "# HELP vllm:num_requests_waiting waiting\n"
            "# TYPE vllm:num_requests_waiting gauge\n"
            f'vllm:num_requests_waiting{{model_name="m"}} {w}\n'
            "# TYPE vllm:num_requests_running gauge\n"
            'vllm:num_requests_running{model_name="m"} 1\n'
            "# TYPE vllm:generation_tokens_total counter\n"
            f'vllm:generation_tokens_total{{model_name="m"}} {10 * n}\n'
            "# TYPE vllm:prompt_tokens_total counter\n"
            'vllm:prompt_tokens_total{model_name="m"} 100\n'
        )


@pytest.fixture()
def engine_server():
    engine = _Engine()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def do_GET(self):  # noqa: N802
            if self.path == "/metrics":  # MAX answers 307 -> /metrics/
                self.send_response(307)
                self.send_header("Location", "/metrics/")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path in ("/metrics/", "/direct/metrics"):
                body = engine.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", engine
    finally:
        server.shutdown()
        server.server_close()


def test_series_grows_about_once_a_second_through_a_307(engine_server):
    base, engine = engine_server
    scraper = MetricsScraper(base + "/metrics").start()
    time.sleep(2.3)
    engine.waiting = 5
    scraper.stop()
    phases = [s.phase for s in scraper.scrapes]
    assert phases[0] == "before" and phases[-1] == "after"
    assert 2 <= phases.count("during") <= 3, phases
    assert all(s.ok for s in scraper.scrapes), [s.error for s in scraper.scrapes]
    assert scraper.engine == "vllm" and scraper.warnings == []
    gaps = [
        (b.t_start_ns - a.t_start_ns) / 1e9
        for a, b in zip(scraper.scrapes[:-1], scraper.scrapes[1:-1])
    ]
    assert all(0.8 < g < 1.3 for g in gaps), gaps
    for s in scraper.scrapes:
        assert s.t_start_ns <= s.t_end_ns
    series = scraper.series()
    assert series["waiting"][-1] == 5.0 and series["waiting"][0] == 0.0
    assert len(series["t_mono_ns"]) == len(scraper.scrapes)
    # raw series kept: every sample as name / labels / value
    first = scraper.scrapes[0].samples
    assert ("vllm:generation_tokens_total", {"model_name": "m"}, 10.0) in [
        (s.name, dict(s.labels), s.value) for s in first
    ]


def test_counter_deltas_over_the_window(engine_server):
    base, engine = engine_server
    scraper = MetricsScraper(base + "/direct/metrics", interval_s=0.2).start()
    time.sleep(0.5)
    scraper.stop()
    n = len(scraper.scrapes)
    d = scraper.deltas()
    # generation tokens grow by 10 per scrape: first (10) to last (10 n)
    assert d["normalized"]["generation_tokens_total"] == pytest.approx(10 * (n - 1))
    assert d["normalized"]["prompt_tokens_total"] == 0.0
    assert d["raw"]['vllm:generation_tokens_total{model_name="m"}'] == pytest.approx(10 * (n - 1))
    # a window inside the run: from the scrape at/before start to the one at/after end
    s = scraper.scrapes
    d2 = scraper.deltas(s[1].t_start_ns, s[2].t_end_ns)
    assert d2["normalized"]["generation_tokens_total"] == pytest.approx(10.0)


def test_404_is_one_warning_never_fatal(engine_server):
    base, _ = engine_server
    scraper = MetricsScraper(base + "/nothing-here", interval_s=0.1).start()
    time.sleep(0.35)
    scraper.stop()
    assert len(scraper.scrapes) >= 4 and not any(s.ok for s in scraper.scrapes)
    first = [w for w in scraper.warnings if "failed (HTTP 404" in w]
    assert len(first) == 1, scraper.warnings
    assert scraper.deltas() == {}


def test_connection_refused_in_a_session_is_a_warning():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with TelemetrySession(
        gpu=False, metrics_url=f"http://127.0.0.1:{port}/metrics", metrics_interval_s=0.1
    ) as tel:
        time.sleep(0.25)
    res = tel.result()
    assert not res.has_server_data
    assert sum("scraping" in w for w in res.warnings) == 1
    assert res.summary(100)["server_metrics"]["failed_scrapes"] == len(res.primary.scrapes)
