"""Connections opened before t0: the measured run's first wave reuses the connections that the
warm-up opened (as the tools we compare with do), so it does not pay for connection setup.

A stdlib HTTP/1.1 server logs each connection it accepts ("OPEN") and each request's method,
with the client's port; a port is a connection."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sonic import _core, client, sim
from sonic.benchmark import build_run_config, warm_connections
from sonic.compat import parse_run_args

# The warm-up's sweeps of GETs (src/client/warm.rs).
SWEEPS = 2

ANSWER = json.dumps(
    {
        "choices": [{"text": "ok", "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    }
).encode()


class _Logging(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    seen: list[tuple[str, int]]

    def setup(self):
        super().setup()
        self.seen.append(("OPEN", self.client_address[1]))

    def _answer(self, body: bytes) -> None:
        self.seen.append((self.command, self.client_address[1]))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (stdlib naming)
        self._answer(b"{}")

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(ANSWER)

    def log_message(self, *args):
        pass


@pytest.fixture()
def logging_server():
    seen: list[tuple[str, int]] = []
    handler = type("Handler", (_Logging,), {"seen": seen})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", seen
    srv.shutdown()
    srv.server_close()


def _config(url: str, n: int, conc: int, warm: int) -> client.RunConfig:
    return client.RunConfig(
        base_url=url,
        endpoint="/v1/completions",
        api="completions",
        model="m",
        requests=[client.RequestSpec(prompt="x", max_tokens=1) for _ in range(n)],
        schedule=client.ScheduleSpec(request_rate=None),
        max_concurrency=conc,
        timeout_s=10.0,
        warm_connections=warm,
    )


def test_warm_connections_are_opened_before_t0_and_reused(logging_server):
    url, seen = logging_server
    rec = client.run(_config(url, 4, 4, 4))  # one wave: every request is a first-wave request
    assert rec.error == [None] * 4, rec.error
    first_post = next(i for i, (method, _) in enumerate(seen) if method == "POST")
    before, after = seen[:first_post], seen[first_post:]
    opened = {port for method, port in before if method == "OPEN"}
    # Two sweeps of four GETs, on four connections open before the first measured request.
    assert [m for m, _ in before].count("GET") == SWEEPS * 4, seen
    assert len({port for method, port in before if method == "GET"}) == 4, seen
    assert len(opened) == 4, seen
    # No measured request paid for a connect: none opened after t0, all sent on warm ones.
    assert [m for m, _ in after] == ["POST"] * 4, seen
    assert {port for _, port in after} <= opened, seen


def _established_to(port: int) -> int:
    """This process's IPv4 connections in state ESTABLISHED whose remote port is `port`
    (its sockets' inodes matched in /proc/net/tcp)."""
    own = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            own.add(target[len("socket:[") : -1])
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(
        1
        for f in map(str.split, rows)
        if f[3] == "01" and int(f[2].split(":")[1], 16) == port and f[9] in own
    )


def test_a_wide_warm_up_opens_every_connection_before_t0():
    # Against a quick server, GETs sent by a task each were answered before later ones were
    # first polled, and those reused the returned connections (512 GETs left 206
    # connections), and the first wave opened the rest on the clock; one sweep still left a
    # few out on a loaded host (392 of 400), which the second sweep opens. The run starts 2.5 s
    # later (start_at), so the connections can be counted between the warm-up and t0: the
    # most seen until 0.3 s before t0 (a loaded host may take a while to warm up).
    k = 400
    start_at = time.time_ns() + 2_500_000_000
    with sim.start(ttft_ms=5.0, itl_ms=1.0, output_len=2) as server:
        port = int(server.url.rsplit(":", 1)[1])
        counted: list[int] = []

        def count() -> None:
            while time.time_ns() < start_at - 300_000_000:
                counted.append(_established_to(port))
                time.sleep(0.05)

        counter = threading.Thread(target=count)
        counter.start()
        cfg = replace(
            _config(server.url, k, k, k),
            model="sonic-sim",
            timeout_s=30.0,
            client_threads=1,
            start_at_unix_ns=start_at,
        )
        rec = client.run(cfg)
        counter.join()
    assert rec.error == [None] * k
    # Two sweeps left all 400 in eight runs on a loaded host; a task per GET left about half.
    assert counted and max(counted) >= k - 8, counted


def test_no_warm_connections_by_default(logging_server):
    url, seen = logging_server
    rec = client.run(_config(url, 3, 1, 0))
    assert rec.error == [None] * 3
    assert [m for m, _ in seen if m != "OPEN"] == ["POST"] * 3


def test_warm_connections_are_capped_by_the_pool(logging_server):
    url, seen = logging_server
    rec = client.run(_config(url, 2, 2, 50))
    assert rec.error == [None, None]
    assert [m for m, _ in seen].count("GET") == SWEEPS * 2


def test_too_many_warm_connections_is_refused():
    doc = json.loads(_config("http://127.0.0.1:9", 1, 1, 5000).to_json())
    with pytest.raises(_core.CoreError, match="warm_connections.*4096"):
        _core.start_run(json.dumps(doc))


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--backend", "vllm"], 0),  # vLLM sends no test prompt unless asked
        (["--backend", "vllm", "--ready-check-timeout-sec", "5"], 1),
        (["--backend", "vllm", "--num-warmups", "6"], 6),
        (["--backend", "modular"], 1),  # MAX's test prompt
        (["--backend", "modular", "--skip-test-prompt"], 0),
        (["--backend", "modular", "--skip-test-prompt", "--num-warmups", "2"], 2),
    ],
)
def test_a_run_warms_as_many_connections_as_it_sends_untimed_requests(flags, expected):
    args = parse_run_args(["--model", "m", "--dataset-name", "random", *flags])
    assert warm_connections(args) == expected
    samples = [type("S", (), {"messages": None, "prompt": "x", "expected_output_len": 4})()]
    assert build_run_config(args, samples).warm_connections == expected
