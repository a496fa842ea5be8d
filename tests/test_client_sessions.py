"""Multi-turn sessions in the Rust client (``RunConfig(sessions=...)``).

Timing (turn order, think times, session cap, explicit arrivals) is checked against ``sonic
sim`` as a separate process in exact mode. What was sent (history in both modes, the session
header, cache_salt, a failed turn) is checked against a small local HTTP server that records
every request and streams a reply naming what it answered. Timing bounds are generous: the
machine is shared.
"""

from __future__ import annotations

import _thread
import dataclasses
import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from simproc import sim_process
from sonic import _core, client
from sonic.analysis import _records_from_lines
from sonic.results.files import write_raw_records

NS = 1_000_000_000
LAG_BOUND_NS = 500_000_000  # dispatch lag allowed on a loaded 2-core machine


class Recorder(BaseHTTPRequestHandler):
    """Answers each request with the SSE reply ``R[<last user text>]`` in two chunks; a last
    user text ``fail`` gets HTTP 500; ``slow`` waits 0.3 s before replying."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        headers = {k.lower(): v for k, v in self.headers.items()}
        with self.server.lock:
            self.server.seen.append((headers, body))
        last = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
        last = last.rsplit("\n\n", 1)[-1]
        if last == "fail":
            data = b"boom"
            self.send_response(500)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if last == "slow":
            time.sleep(0.3)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        key = "delta" if "messages" in body else None
        for part in ("R[", f"{last}]"):
            choice = {"index": 0, "finish_reason": None}
            if key:
                choice["delta"] = {"content": part}
            else:
                choice["text"] = part
            self._chunk(f"data: {json.dumps({'choices': [choice]})}\n\n".encode())
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")


@pytest.fixture(scope="module")
def recorder():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    srv.daemon_threads = True
    srv.lock = threading.Lock()
    srv.seen = []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def exact_sim():
    with sim_process("--ttft-ms", "30", "--itl-ms", "5", "--output-len", "4") as url:
        yield url


def session(name: str, n: int, think_s: float = 0.0, system: str | None = None) -> client.Session:
    turns = [
        client.Turn(
            content=f"{name}-u{k}", max_tokens=4, reference_answer=f"{name}-a{k}", think_s=think_s
        )
        for k in range(n)
    ]
    return client.Session(turns=turns, system=system, session_id=f"sid-{name}")


def config(base_url: str, sessions, api: str = "chat", **kw) -> client.RunConfig:
    endpoint = "/v1/chat/completions" if api == "chat" else "/v1/completions"
    return client.RunConfig(
        base_url=base_url,
        endpoint=endpoint,
        api=api,
        model=kw.pop("model", "m"),
        request_id_prefix="t-",
        timeout_s=30.0,
        body=client.BodyOptions(max_tokens_field="max_tokens", fields={"temperature": 0.0}),
        sessions=sessions,
        schedule=kw.pop("schedule", client.ScheduleSpec(request_rate=None)),
        **kw,
    )


def url_of(srv) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}"


def bodies_of(srv, session_id: str) -> list[dict]:
    """Bodies the recorder received for one session, in arrival order."""
    with srv.lock:
        return [b for h, b in srv.seen if h.get("x-session-id") == session_id]


def rows(rec, s: int) -> np.ndarray:
    """Record indices of session s, in turn order."""
    idx = np.flatnonzero(rec.session_index == s)
    return idx[np.argsort(rec.turn_index[idx])]


def test_turns_follow_their_predecessor_plus_think_time(exact_sim):
    think = [0.0, 0.25, 0.4]
    sessions = [
        client.Session(
            turns=[
                client.Turn(content=f"s{s} turn {k}", max_tokens=4, think_s=think[k])
                for k in range(3)
            ],
            session_id=f"s{s}",
        )
        for s in range(3)
    ]
    rec = client.run(config(exact_sim, sessions, model="sonic-sim"))
    assert rec.error == [None] * 9
    assert rec.session_index.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert rec.turn_index.tolist() == [0, 1, 2] * 3
    for s in range(3):
        r = rows(rec, s)
        assert rec.intended_ns[r[0]] == 0
        for k in (1, 2):
            prev, cur = r[k - 1], r[k]
            want = int(rec.end_ns[prev]) + round(think[k] * NS)
            # Intended = the previous turn's end + think time, exactly; sent after it.
            assert rec.intended_ns[cur] == want
            assert rec.sent_ns[cur] >= want
            assert rec.sent_ns[cur] - want < LAG_BOUND_NS
            # Exact mode: 30 ms to the first token, so a turn ends well after it was sent.
            assert rec.end_ns[prev] - rec.sent_ns[prev] >= 25_000_000


def test_max_concurrent_sessions_caps_active_sessions(exact_sim):
    sessions = [session(f"c{s}", 2, think_s=0.1) for s in range(4)]
    rec = client.run(config(exact_sim, sessions, model="sonic-sim", max_concurrent_sessions=2))
    assert all(e is None for e in rec.error)
    spans = []
    for s in range(4):
        r = rows(rec, s)
        spans.append((int(rec.sent_ns[r[0]]), int(rec.end_ns[r[-1]])))
        # A session waiting for a slot keeps its scheduled start (t0) as its intended time.
        assert rec.intended_ns[r[0]] == 0
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda e: e)
    active = peak = 0
    for _, step in events:
        active += step
        peak = max(peak, active)
    assert peak == 2
    # The third and fourth sessions waited for a slot: their start lag shows it.
    starts = sorted(a for a, _ in spans)
    assert starts[2] > 100_000_000


def test_explicit_arrivals_for_sessions_and_requests(exact_sim):
    arrivals = [0.0, 0.3, 0.6]
    sched = client.ScheduleSpec(arrivals_s=arrivals)
    sessions = [session(f"a{s}", 1) for s in range(3)]
    rec = client.run(config(exact_sim, sessions, model="sonic-sim", schedule=sched))
    assert rec.error == [None] * 3
    assert rec.intended_ns.tolist() == [round(a * NS) for a in arrivals]
    lag = rec.sent_ns - rec.intended_ns
    assert (lag >= 0).all() and (lag < LAG_BOUND_NS).all()
    # The same schedule for plain requests; the core's preview gives the times as they are.
    plain = client.RunConfig(
        base_url=exact_sim,
        endpoint="/v1/completions",
        api="completions",
        model="sonic-sim",
        requests=[client.RequestSpec(prompt="hi", max_tokens=4)] * 3,
        schedule=sched,
    )
    rec = client.run(plain)
    assert rec.intended_ns.tolist() == [round(a * NS) for a in arrivals]
    assert rec.session_index.tolist() == [0, 1, 2] and rec.turn_index.tolist() == [0, 0, 0]
    assert client.schedule_preview(sched, 3).tolist() == arrivals


@pytest.mark.parametrize("history", ["dataset", "live"])
def test_chat_history_header_and_salt(recorder, history):
    name = f"chat-{history}"
    s = session(name, 3, system="be brief")
    rec = client.run(
        config(
            url_of(recorder),
            [s],
            history=history,
            session_header="X-Session-ID",
            cache_salt="run1",
            session_id_as_cache_salt=True,
        )
    )
    assert rec.error == [None] * 3
    got = bodies_of(recorder, f"sid-{name}")
    assert len(got) == 3
    answers = (
        [f"{name}-a{k}" for k in range(2)]
        if history == "dataset"
        else [f"R[{name}-u{k}]" for k in range(2)]
    )
    for k, body in enumerate(got):
        want = [{"role": "system", "content": "be brief"}]
        for i in range(k):
            want += [
                {"role": "user", "content": f"{name}-u{i}"},
                {"role": "assistant", "content": answers[i]},
            ]
        want.append({"role": "user", "content": f"{name}-u{k}"})
        assert body["messages"] == want
        assert body["cache_salt"] == f"run1:sid-{name}"
        assert body["max_tokens"] == 4 and body["temperature"] == 0.0
    # The engine's replies are what the records hold, whatever the history mode.
    assert [rec.generated_text(i) for i in range(3)] == [f"R[{name}-u{k}]" for k in range(3)]


def test_completions_prompt_template_and_plain_salt(recorder):
    name = "cmpl"
    s = session(name, 2, system="sys")
    rec = client.run(
        config(
            url_of(recorder),
            [s],
            api="completions",
            session_header="X-Session-ID",
            cache_salt="only-run",
        )
    )
    assert rec.error == [None] * 2
    got = bodies_of(recorder, f"sid-{name}")
    assert [b["prompt"] for b in got] == [
        "sys\n\ncmpl-u0",
        "sys\n\ncmpl-u0\n\ncmpl-a0\n\ncmpl-u1",
    ]
    assert all(b["cache_salt"] == "only-run" for b in got)


def test_identical_bodies_across_runs_in_dataset_mode(recorder):
    """Two runs (as two engines would get) send byte-identical dataset-mode bodies."""
    runs = []
    for _ in range(2):
        with recorder.lock:
            recorder.seen.clear()
        s = session("same", 3)
        client.run(config(url_of(recorder), [s], session_header="X-Session-ID"))
        runs.append(bodies_of(recorder, "sid-same"))
    assert runs[0] == runs[1] and len(runs[0]) == 3


def test_failed_turn_ends_its_session(recorder):
    bad = client.Session(
        turns=[client.Turn(content="ok0"), client.Turn(content="fail"), client.Turn(content="x")],
        session_id="sid-bad",
    )
    good = session("good", 2)
    rec = client.run(config(url_of(recorder), [bad, good], session_header="X-Session-ID"))
    assert rec.error[0] is None
    assert rec.error[1].startswith("HTTP 500")
    assert rec.error[2] == "not sent: turn 1 of this session failed"
    assert rec.sent_ns[2] == -1 and rec.intended_ns[2] == -1
    assert rec.error[3:] == [None, None], "other sessions go on"
    assert len(bodies_of(recorder, "sid-bad")) == 2


def test_cancel_keeps_finished_turns(recorder):
    # Each session: a first turn, then a turn 5 s later; cancel during the think time.
    sessions = [
        client.Session(
            turns=[client.Turn(content="slow"), client.Turn(content="later", think_s=5.0)],
            session_id=f"cancel-{s}",
        )
        for s in range(3)
    ]
    handle = _core.start_run(config(url_of(recorder), sessions).to_json())
    deadline = time.monotonic() + 20
    while handle.poll()["completed"] < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    handle.cancel()
    raw = handle.wait(10.0)
    assert raw is not None and time.monotonic() - started < 3.0, "no wait for the think time"
    rec = client.to_records(raw)
    assert rec.cancelled
    assert rec.turn_index.tolist() == [0, 1] * 3
    assert [rec.error[i] for i in (0, 2, 4)] == [None] * 3
    assert [rec.generated_text(i) for i in (0, 2, 4)] == ["R[slow]"] * 3
    assert [rec.error[i] for i in (1, 3, 5)] == ["not sent: run cancelled"] * 3
    # The unsent turn still says when it was due: its predecessor's end + 5 s.
    assert rec.intended_ns[1] == rec.end_ns[0] + 5 * NS


def test_ctrl_c_mid_sessions_keeps_finished_turns(recorder):
    sessions = [
        client.Session(
            turns=[client.Turn(content="slow"), client.Turn(content="later", think_s=5.0)],
            session_id=f"ctrlc-{s}",
        )
        for s in range(2)
    ]

    def interrupt() -> None:
        # After both first turns (0.3 s each) have ended, during the 5 s think time.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with recorder.lock:
                n = sum(1 for h, _ in recorder.seen if h.get("x-request-id") in ("c-0", "c-2"))
            if n == 2:
                break
            time.sleep(0.05)
        time.sleep(0.5)
        _thread.interrupt_main()

    # Background jobs start with SIGINT ignored: give it Python's handler for this test.
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=interrupt, daemon=True).start()
        started = time.monotonic()
        cfg = dataclasses.replace(config(url_of(recorder), sessions), request_id_prefix="c-")
        rec = client.run(cfg)
    finally:
        signal.signal(signal.SIGINT, old)
    assert time.monotonic() - started < 4.0, "the think time was not waited out"
    assert rec.cancelled
    assert [rec.error[i] for i in (0, 2)] == [None, None]
    assert [rec.error[i] for i in (1, 3)] == ["not sent: run cancelled"] * 2


def test_max_duration_stops_sessions(recorder):
    sessions = [
        client.Session(
            turns=[client.Turn(content=f"md{s}"), client.Turn(content="later", think_s=5.0)],
            session_id=f"md-{s}",
        )
        for s in range(2)
    ]
    started = time.monotonic()
    rec = client.run(config(url_of(recorder), sessions, max_duration_s=0.8))
    assert time.monotonic() - started < 4.0
    assert rec.extra["deadline_reached"]
    assert [rec.error[i] for i in (0, 2)] == [None, None]
    assert [rec.error[i] for i in (1, 3)] == ["not sent: max duration reached"] * 2


def test_max_concurrency_caps_requests_across_sessions(exact_sim):
    sessions = [session(f"mc{s}", 2) for s in range(3)]
    rec = client.run(config(exact_sim, sessions, model="sonic-sim", max_concurrency=1))
    assert all(e is None for e in rec.error)
    order = np.argsort(rec.sent_ns)
    # One request at a time: each is sent only after the one before it ended.
    assert (rec.sent_ns[order][1:] >= rec.end_ns[order][:-1]).all()
    # The sessions that waited for the slot show it as lag from their intended start (t0).
    first_turns = rows(rec, 1)[0], rows(rec, 2)[0]
    assert all(rec.sent_ns[i] - rec.intended_ns[i] > 25_000_000 for i in first_turns)


def test_records_round_trip_through_raw_lines(recorder, tmp_path):
    rec = client.run(config(url_of(recorder), [session("rt0", 2), session("rt1", 1)]))
    path = write_raw_records(tmp_path / "r.requests.jsonl", rec)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [(o["session_index"], o["turn_index"]) for o in lines] == [(0, 0), (0, 1), (1, 0)]
    back = _records_from_lines(lines)
    assert back.session_index.tolist() == [0, 0, 1]
    assert back.turn_index.tolist() == [0, 1, 0]
    # Lines written before sessions existed: each request a one-turn session.
    old = [{k: v for k, v in o.items() if k not in ("session_index", "turn_index")} for o in lines]
    back = _records_from_lines(old)
    assert back.session_index.tolist() == [0, 1, 2] and back.turn_index.tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"requests": [client.RequestSpec(prompt="p")]}, "give either requests or sessions"),
        ({"history": "replay"}, "history"),
        ({"sessions": [client.Session(turns=[])]}, "sessions[0].turns"),
        (
            {"sessions": [client.Session(turns=[client.Turn("a"), client.Turn("b", think_s=-1)])]},
            "sessions[0].turns[1].think_s",
        ),
        ({"session_header": "Bad Header"}, "session_header"),
        (
            {
                "session_header": "X-Session-ID",
                "sessions": [client.Session(turns=[client.Turn("a")], session_id="a\nb")],
            },
            "sessions[0].session_id",
        ),
        ({"max_concurrent_sessions": 0}, "max_concurrent_sessions"),
        ({"cache_salt": ""}, "cache_salt"),
        ({"schedule": client.ScheduleSpec(arrivals_s=[0.5, 0.1])}, "schedule.arrivals_s[1]"),
        ({"schedule": client.ScheduleSpec(arrivals_s=[-1.0])}, "schedule.arrivals_s[0]"),
        ({"schedule": client.ScheduleSpec(arrivals_s=[0.0, 1.0])}, "2 times for 1 arrivals"),
    ],
)
def test_bad_session_config_is_a_clear_error(change, field):
    kw = {"sessions": [client.Session(turns=[client.Turn("a")])]}
    kw.update(change)
    cfg = config("http://127.0.0.1:9", **kw)
    with pytest.raises(_core.CoreError) as exc:
        client.run(cfg)
    msg = str(exc.value)
    assert msg.startswith("invalid run configuration") and field in msg, msg
    assert "\n" not in msg


def test_session_fields_need_sessions():
    cfg = client.RunConfig(
        base_url="http://127.0.0.1:9",
        endpoint="/v1/completions",
        api="completions",
        requests=[client.RequestSpec(prompt="p")],
        max_concurrent_sessions=2,
    )
    with pytest.raises(_core.CoreError, match="max_concurrent_sessions: applies only"):
        client.run(cfg)
