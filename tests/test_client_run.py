"""The Rust client against a real local HTTP server (stdlib, threaded) with known behaviour.

The prompt tells the server what to do: ``ok:N:GAP_MS`` streams N text chunks GAP_MS apart
(then a finish chunk, a usage chunk and ``[DONE]``); ``500``/``429`` answer with an error
status; ``drop`` closes the connection mid-stream; ``stall`` stops sending; ``malformed``
sends an unparseable data line; ``json`` answers without streaming; ``echo`` answers 401 with
the Authorization header in the body; ``cr:N:GAP_MS`` is ``ok`` with lone-CR line ends and a
leading byte-order mark, as the SSE spec allows; ``huge`` sends one event line of 100 MB.
Timing assertions use generous tolerances.
"""

from __future__ import annotations

import _thread
import io
import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from sonic import _core, client
from sonic.records import CHUNK_DONE, CHUNK_EMPTY_CHOICE, CHUNK_NO_CHOICE, CHUNK_TEXT

SECRET = "sk-test-secret-123456"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _event(self, obj) -> None:
        data = obj if isinstance(obj, str) else json.dumps(obj)
        eol = getattr(self, "eol", "\n")
        self._chunk(f"data: {data}{eol}{eol}".encode())

    def _plain(self, status: int, text: str, ctype: str = "text/plain") -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.key = body.get("prompt") or body["messages"][-1]["content"]
        with srv.lock:
            # Concurrency is counted per prompt: stalled requests of other tests may linger.
            srv.active[self.key] = srv.active.get(self.key, 0) + 1
            srv.max_active[self.key] = max(srv.max_active.get(self.key, 0), srv.active[self.key])
            srv.seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.counted = True
        try:
            self._serve(body)
        finally:
            self._uncount()

    def _uncount(self) -> None:
        # Before the last bytes go out, so the server's interval lies inside the client's.
        if self.counted:
            self.counted = False
            with self.server.lock:
                self.server.active[self.key] -= 1

    def _end(self) -> None:
        self._uncount()
        self._chunk(b"")

    def _serve(self, body) -> None:
        prompt = body.get("prompt") or body["messages"][-1]["content"]
        chat = "messages" in body
        if prompt in ("500", "429"):
            return self._plain(int(prompt), f"error {prompt}: " + "x" * 500)
        if prompt == "echo":
            return self._plain(401, "bad key: " + self.headers.get("Authorization", ""))
        if prompt == "json":
            doc = {
                "choices": [{"text": "whole answer", "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2},
            }
            return self._plain(200, json.dumps(doc), "application/json")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.eol = "\n"
        if prompt.startswith("cr:"):
            self.eol = "\r"
            prompt = "ok" + prompt[2:]
            self._chunk(b"\xef\xbb\xbf")

        def text(t: str, finish=None):
            if chat:
                return {"choices": [{"delta": {"content": t}, "finish_reason": finish}]}
            return {"choices": [{"text": t, "finish_reason": finish}]}

        if chat:
            self._event({"choices": [{"delta": {"role": "assistant", "content": ""}}]})
        if prompt == "drop":
            self._event(text("a"))
            self._event(text("b"))
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if prompt == "stall":
            self._event(text("a"))
            time.sleep(3.0)
            return self._chunk(b"")
        if prompt == "huge":  # one event line of 100 MB (never ended), sent 1 MB at a time
            self._event(text("a"))
            self._chunk(b"data: ")
            block = b"x" * (1 << 20)
            try:
                for _ in range(100):
                    self._chunk(block)
            except OSError:
                return  # the client hung up: what it should do
            return self._chunk(b"")
        if prompt == "malformed":
            self._event(text("a"))
            self._event("{not json")
            self._event(text("b"))
            return self._chunk(b"")
        _, n, gap = prompt.split(":")
        for i in range(int(n)):
            time.sleep(int(gap) / 1000)
            self._event(text(f"t{i} "))
        self._event(text("", "length"))
        self._event({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": int(n)}})
        self._event("[DONE]")
        self._end()


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.lock = threading.Lock()
    srv.active, srv.max_active = {}, {}
    srv.seen = []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def config(server, prompts, **kw) -> client.RunConfig:
    api = kw.pop("api", "completions")
    endpoint = "/v1/chat/completions" if api == "chat" else "/v1/completions"
    schedule = kw.pop("schedule", client.ScheduleSpec(request_rate=None))
    return client.RunConfig(
        base_url=f"http://127.0.0.1:{server.server_address[1]}",
        endpoint=endpoint,
        api=api,
        model="m",
        headers=kw.pop("headers", [("Authorization", f"Bearer {SECRET}")]),
        request_id_prefix=kw.pop("request_id_prefix", "test-"),
        timeout_s=kw.pop("timeout_s", 10.0),
        body=client.BodyOptions(
            max_tokens_field="max_tokens",
            include_usage=True,
            fields={"temperature": 0.0},
        ),
        requests=[client.RequestSpec(prompt=p, max_tokens=16) for p in prompts],
        schedule=schedule,
        **kw,
    )


def texts(rec, i):
    s = rec.chunk_slice(i)
    return [rec.chunk_text(j) for j in range(s.start, s.stop)], rec.chunk_kind[s]


def test_stream_texts_timestamps_usage(server):
    rec = client.run(config(server, ["ok:5:20"] * 2), progress=False)
    assert rec.n == 2 and rec.error == [None, None]
    for i in range(2):
        t, kinds = texts(rec, i)
        assert t[:5] == [f"t{k} " for k in range(5)]
        assert list(kinds) == [CHUNK_TEXT] * 5 + [CHUNK_EMPTY_CHOICE, CHUNK_NO_CHOICE, CHUNK_DONE]
        ns = rec.chunk_ns[rec.chunk_slice(i)]
        gaps_ms = np.diff(ns[:5]) / 1e6
        assert np.all(gaps_ms > 12) and np.all(gaps_ms < 500), gaps_ms
        assert rec.sent_ns[i] <= ns[0] <= rec.end_ns[i]
        assert (ns[0] - rec.sent_ns[i]) / 1e6 > 12  # the first chunk waits one gap
        assert rec.generated_text(i) == "t0 t1 t2 t3 t4 "
    assert list(rec.prompt_tokens) == [7, 7] and list(rec.completion_tokens) == [5, 5]
    assert rec.finish_reason == ["length", "length"]
    assert list(rec.http_status) == [200, 200]
    assert rec.cancelled is False and rec.extra["deadline_reached"] is False
    assert np.all(rec.extra["dispatched_ns"] <= rec.sent_ns)
    # t0 is on Python's monotonic clock.
    assert abs(rec.t0_mono_ns - time.monotonic_ns()) < 30e9


def test_lone_cr_line_ends_and_bom(server):
    rec = client.run(config(server, ["cr:3:5"]), progress=False)
    assert rec.error == [None]
    t, kinds = texts(rec, 0)
    assert t[:3] == ["t0 ", "t1 ", "t2 "]
    assert list(kinds) == [CHUNK_TEXT] * 3 + [CHUNK_EMPTY_CHOICE, CHUNK_NO_CHOICE, CHUNK_DONE]
    assert list(rec.completion_tokens) == [3]


def test_chat_role_delta_and_non_streamed_json(server):
    rec = client.run(config(server, ["ok:2:1"], api="chat"))
    t, kinds = texts(rec, 0)
    assert kinds[0] == CHUNK_EMPTY_CHOICE and t[1:3] == ["t0 ", "t1 "]
    rec = client.run(config(server, ["json"]))
    t, kinds = texts(rec, 0)
    assert t == ["whole answer"] and list(kinds) == [CHUNK_TEXT]
    assert rec.completion_tokens[0] == 2 and rec.finish_reason == ["stop"]


def test_headers_request_id_and_body(server):
    server.seen.clear()
    headers = [("Authorization", f"Bearer {SECRET}"), ("X-Custom", "yes")]
    client.run(config(server, ["ok:1:1"] * 3, headers=headers, request_id_prefix="pre-"))
    got = {h["x-request-id"]: (h, b) for h, b in server.seen}
    assert set(got) == {"pre-0", "pre-1", "pre-2"}
    h, b = got["pre-1"]
    assert h["authorization"] == f"Bearer {SECRET}" and h["x-custom"] == "yes"
    assert h["content-type"] == "application/json"
    assert b == {
        "model": "m",
        "prompt": "ok:1:1",
        "max_tokens": 16,
        "stream": True,
        "temperature": 0.0,
        "stream_options": {"include_usage": True},
    }


def test_failures_recorded_never_fatal(server):
    prompts = ["500", "429", "drop", "stall", "malformed", "echo", "ok:2:1"]
    rec = client.run(config(server, prompts, timeout_s=0.5))
    e = dict(zip(prompts, rec.error))
    status = dict(zip(prompts, rec.http_status.tolist()))
    assert status["500"] == 500 and e["500"].startswith("HTTP 500: error 500: xxx")
    assert len(e["500"]) <= len("HTTP 500: ") + 200
    assert status["429"] == 429 and e["429"].startswith("HTTP 429: ")
    assert e["drop"].startswith("stream error: ")
    t, _ = texts(rec, prompts.index("drop"))
    assert t[:2] == ["a", "b"]  # chunks before the drop are kept
    assert e["stall"] == "timeout after 0.5 s"
    assert texts(rec, prompts.index("stall"))[0][:1] == ["a"]
    assert e["malformed"].startswith("malformed chunk: ")
    assert texts(rec, prompts.index("malformed"))[0] == ["a"]
    assert e["echo"].startswith("HTTP 401: bad key: ")
    assert e["ok:2:1"] is None
    assert not any(SECRET in (x or "") for x in rec.error)


def test_unreachable_server_is_a_request_error():
    cfg = client.RunConfig(
        base_url="http://127.0.0.1:9",
        endpoint="/v1/completions",
        api="completions",
        headers=[("Authorization", f"Bearer {SECRET}")],
        requests=[client.RequestSpec(prompt="x")],
    )
    rec = client.run(cfg)
    assert rec.error[0].startswith("connect error: ") and SECRET not in rec.error[0]


def test_max_concurrency_never_exceeded(server):
    rec = client.run(config(server, ["ok:4:15"] * 12, max_concurrency=3))
    assert all(e is None for e in rec.error)
    assert server.max_active["ok:4:15"] == 3
    events = sorted([(s, 1) for s in rec.sent_ns] + [(e, -1) for e in rec.end_ns])
    peak = max(np.cumsum([d for _, d in events]))
    assert peak <= 3
    # The schedule is not distorted: all intended at t0, later ones waited for a slot.
    assert np.all(rec.intended_ns == 0)
    assert (rec.sent_ns.max() - rec.intended_ns.max()) / 1e6 > 100


def test_schedule_rate_is_followed(server):
    sched = client.ScheduleSpec(request_rate=50.0, burstiness=None, convention="sequential")
    rec = client.run(config(server, ["ok:1:1"] * 10, schedule=sched))
    assert list(rec.intended_ns) == [int(i * 20e6) for i in range(10)]
    lag_ms = (rec.sent_ns - rec.intended_ns) / 1e6
    assert np.all(lag_ms >= 0) and np.median(lag_ms) < 5, lag_ms


def test_cancel_returns_partial_records(server):
    sched = client.ScheduleSpec(request_rate=10.0, burstiness=None, convention="sequential")
    handle = _core.start_run(config(server, ["ok:2:10"] * 30, schedule=sched).to_json())
    time.sleep(0.35)
    handle.cancel()
    raw = handle.wait(10.0)
    assert raw is not None
    rec = client.to_records(raw)
    assert rec.cancelled
    sent = rec.sent_ns >= 0
    assert 1 <= sent.sum() < 30
    assert all(e is None for e, s in zip(rec.error, sent) if s)
    assert all(e == "not sent: run cancelled" for e, s in zip(rec.error, sent) if not s)
    assert handle.poll()["finished"]


def test_abort_in_flight_and_ctrl_c(server):
    handle = _core.start_run(config(server, ["stall"] * 3).to_json())
    time.sleep(0.3)
    handle.cancel(abort_in_flight=True)
    rec = client.to_records(handle.wait(5.0))
    assert rec.error == ["cancelled"] * 3 and rec.cancelled
    assert [texts(rec, i)[0][:1] for i in range(3)] == [["a"]] * 3

    class Console(io.StringIO):
        """The progress line's stream: says when the first Ctrl-C has been handled."""

        handled = threading.Event()

        def isatty(self) -> bool:  # a live line: redrawn on every poll
            return True

        def write(self, text: str) -> int:
            if "Ctrl-C again" in text:
                self.handled.set()
            return super().write(text)

    out = Console()
    second_at: list[float] = []

    def interrupt() -> None:
        time.sleep(0.3)
        _thread.interrupt_main()
        # The second Ctrl-C only once the first was seen: two signals in a row could coalesce
        # on a loaded machine.
        if out.handled.wait(10.0):
            second_at.append(time.monotonic())
            _thread.interrupt_main()

    # A shell starts background jobs with SIGINT ignored, and then Python installs no handler
    # and interrupt_main() does nothing: give SIGINT Python's own handler for this test.
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=interrupt, daemon=True).start()
        rec = client.run(config(server, ["stall"] * 2), progress=True, out=out)
    finally:
        signal.signal(signal.SIGINT, old)
    # The stalled requests would end by themselves after 3 s; the second Ctrl-C aborts them.
    assert second_at and time.monotonic() - second_at[0] < 1.5
    assert rec.cancelled and rec.error == ["cancelled"] * 2


def test_max_duration(server):
    sched = client.ScheduleSpec(request_rate=5.0, burstiness=None, convention="sequential")
    rec = client.run(config(server, ["stall"] * 10, schedule=sched, max_duration_s=0.5))
    assert rec.extra["deadline_reached"] is True
    sent = rec.sent_ns >= 0
    assert 2 <= sent.sum() <= 4
    assert all(e == "cancelled: max duration reached" for e, s in zip(rec.error, sent) if s)
    assert all(e == "not sent: max duration reached" for e, s in zip(rec.error, sent) if not s)


def test_a_concurrency_paced_run_sends_in_index_order(server):
    """Without a rate only the cap paces the run; each freed slot takes the next request by
    index (as a FIFO semaphore would)."""
    rec = client.run(config(server, [f"ok:{1 + i % 3}:5" for i in range(9)], max_concurrency=2))
    assert all(e is None for e in rec.error)
    dispatched = rec.extra["dispatched_ns"]
    assert np.all(np.diff(dispatched) >= 0), dispatched
    assert np.all(rec.sent_ns >= dispatched)


def test_a_concurrency_paced_run_stops_at_its_max_duration(server):
    rec = client.run(config(server, ["stall"] * 6, max_concurrency=2, max_duration_s=0.5))
    assert rec.extra["deadline_reached"] is True
    assert (
        rec.error
        == ["cancelled: max duration reached"] * 2 + ["not sent: max duration reached"] * 4
    )


def test_without_a_progress_line_ctrl_c_is_noticed_at_once(server):
    """With nothing to refresh, the client sleeps until the run ends, and a signal wakes it:
    two Ctrl-Cs 0.3 s apart are both seen (the first stops sending, the second aborts the
    stalled request, which would end by itself after 3 s)."""

    def interrupt() -> None:
        for _ in range(2):
            time.sleep(0.3)
            os.kill(os.getpid(), signal.SIGINT)

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=interrupt, daemon=True).start()
        start = time.monotonic()
        rec = client.run(config(server, ["stall"] * 3, max_concurrency=1))
        took = time.monotonic() - start
    finally:
        signal.signal(signal.SIGINT, old)
    assert took < 2.0
    assert rec.cancelled
    assert rec.error == ["cancelled"] + ["not sent: run cancelled"] * 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"api": "grpc"}, "api"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"timeout_s": -1.0}, "timeout_s"),
        ({"schedule": client.ScheduleSpec(request_rate=-1.0)}, "schedule.request_rate"),
        ({"schedule": client.ScheduleSpec(burstiness=0.0)}, "schedule.burstiness"),
        ({"headers": [("Bad Name", SECRET)]}, "headers[0]"),
        ({"headers": [("X-Key", SECRET + "\n")]}, "headers[0]"),
        ({"requests": [client.RequestSpec(prompt=None)]}, "requests[0]"),
    ],
)
def test_bad_config_names_the_field(server, change, field):
    from dataclasses import replace

    cfg = replace(config(server, ["ok:1:1"]), **change)
    with pytest.raises(_core.CoreError) as exc:
        _core.start_run(cfg.to_json())
    assert field in str(exc.value) and SECRET not in str(exc.value)


def test_unknown_field_refused():
    doc = json.loads(
        client.RunConfig(base_url="http://x", endpoint="/v1/completions", api="chat").to_json()
    )
    doc["schedule"]["rat"] = 1
    with pytest.raises(_core.CoreError, match="schedule.*rat"):
        _core.start_run(json.dumps(doc))


def test_schedule_preview_reproducible():
    s = client.ScheduleSpec(request_rate=20.0, burstiness=1.0, seed=7)
    a, b = client.schedule_preview(s, 100), client.schedule_preview(s, 100)
    assert np.array_equal(a, b) and abs(a[-1] - 5.0) < 1e-9


class _ClosingServer:
    """Answers the first request of each connection (JSON, not streamed) and closes the
    connection, unanswered, when a second request arrives on it: a kept-alive connection that
    the server has given up on. ``first_delay_s`` delays the answer on the first connection.
    ``attempts`` holds, per request received, its position on its connection (0 or 1)."""

    ANSWER = json.dumps(
        {
            "choices": [{"text": "ok", "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        }
    ).encode()

    def __init__(self, first_delay_s: float = 0.0) -> None:
        import socket

        self.first_delay_s = first_delay_s
        self.attempts: list[int] = []
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.url = f"http://127.0.0.1:{self.lsock.getsockname()[1]}"
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        k = 0
        while True:
            try:
                conn, _ = self.lsock.accept()
            except OSError:
                return
            delay = self.first_delay_s if k == 0 else 0.0
            threading.Thread(target=self._serve, args=(conn, delay), daemon=True).start()
            k += 1

    def _serve(self, conn, delay: float) -> None:
        with conn:
            buf = b""
            for n in range(2):
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = int(
                    next(
                        ln.split(b":")[1]
                        for ln in head.split(b"\r\n")
                        if ln.lower().startswith(b"content-length")
                    )
                )
                while len(rest) < length:
                    rest += conn.recv(65536)
                buf = rest[length:]
                self.attempts.append(n)
                if n == 1:
                    return  # the second request on a connection: close without answering
                time.sleep(delay)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(self.ANSWER), self.ANSWER)
                )

    def run(self, n: int, schedule: client.ScheduleSpec, max_concurrency: int | None):
        cfg = client.RunConfig(
            base_url=self.url,
            endpoint="/v1/completions",
            api="completions",
            model="m",
            requests=[client.RequestSpec(prompt="x", max_tokens=1) for _ in range(n)],
            schedule=schedule,
            max_concurrency=max_concurrency,
            timeout_s=10.0,
        )
        try:
            return client.run(cfg)
        finally:
            self.lsock.close()


def test_keep_alive_connection_closed_by_the_server_is_retried_once():
    """A server that closes a kept-alive connection instead of answering its next request
    (as llama.cpp's httplib does after a few requests per connection): the request is sent
    again on a fresh connection, so the run does not count the server's housekeeping as a
    failed request."""
    server = _ClosingServer()
    rec = server.run(3, client.ScheduleSpec(request_rate=None), max_concurrency=1)
    assert rec.error == [None, None, None]
    assert [rec.generated_text(i) for i in range(3)] == ["ok"] * 3
    # Request 2 met the closed kept-alive connection first; its resend went on a connection
    # that is not kept, so request 3 opened a new one.
    assert sorted(server.attempts) == [0, 0, 0, 1]


def test_the_resend_never_takes_another_pooled_connection():
    """Two kept-alive connections, both closed by the server, are idle when the third request
    comes (request 1 answered at 0.15 s, request 2 at once, request 3 sent at 0.2 s): the
    resend must open a new connection rather than take the other dead one (a llama.cpp run
    in CI lost a request this way)."""
    server = _ClosingServer(first_delay_s=0.15)
    rec = server.run(3, client.ScheduleSpec(request_rate=10.0, burstiness=None), None)
    assert rec.error == [None, None, None]
    # One attempt on a closed connection, then its resend as a new connection's first request.
    assert sorted(server.attempts) == [0, 0, 0, 1]


def test_an_endless_event_line_is_a_recorded_error_in_bounded_memory(server):
    """100 MB in one SSE line: the request fails with a message, the text before it is kept,
    and the client's memory does not take the 100 MB (the decoder gives up at 16 MiB)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    rec = client.run(config(server, ["huge", "ok:2:1"]))
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert rec.error[0] is not None and "grew past 16777216 bytes" in rec.error[0]
    assert rec.generated_text(0) == "a"
    assert rec.error[1] is None  # the other request is unaffected
    assert grown_mib < 64, grown_mib
