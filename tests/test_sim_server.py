"""End-to-end tests of `python -m sonic sim` as a separate process, with plain HTTP clients
(http.client and raw sockets; never sonic's own client)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from urllib.parse import urlparse


@dataclass
class SimProc:
    proc: subprocess.Popen[str]
    url: str

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlparse(self.url).port or 80

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_sim(*args: str) -> SimProc:
    cmd = [sys.executable, "-m", "sonic", "sim", "--host", "127.0.0.1", "--port", "0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if "listening on" in line:
            return SimProc(proc, line.strip().rsplit(" ", 1)[-1])
    proc.kill()
    err = proc.stderr.read() if proc.stderr else ""
    raise RuntimeError(f"sim did not start: {err}")


def request(
    sim: SimProc,
    method: str,
    path: str,
    body: object | bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(sim.host, sim.port, timeout=timeout)
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    hdrs = {"content-type": "application/json", **(headers or {})}
    conn.request(method, path, body=data, headers=hdrs)
    resp = conn.getresponse()
    out = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, out


def sse_events(raw: bytes) -> list[str]:
    """The `data:` payloads of an SSE body."""
    events = []
    for block in raw.decode().split("\n\n"):
        block = block.strip()
        if block:
            assert block.startswith("data: "), block
            events.append(block[len("data: ") :])
    return events


def raw_stream(
    sim: SimProc, path: str, body: dict, headers: dict[str, str] | None = None, timeout=10.0
):
    """Send one request over a raw socket (HTTP/1.0: the body ends when the server closes).

    Returns (send_time, [(arrival_time, bytes)], error or None). Times are time.monotonic().
    """
    payload = json.dumps(body).encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (
        f"POST {path} HTTP/1.0\r\nHost: {sim.host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n{extra}\r\n"
    ).encode()
    s = socket.create_connection((sim.host, sim.port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pieces: list[tuple[float, bytes]] = []
    error: Exception | None = None
    t0 = time.monotonic()
    s.sendall(head + payload)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                break
            pieces.append((time.monotonic(), data))
    except OSError as exc:  # reset, timeout
        error = exc
    finally:
        s.close()
    return t0, pieces, error


def body_of(pieces: list[tuple[float, bytes]]) -> bytes:
    raw = b"".join(p for _, p in pieces)
    return raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else b""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


import threading  # noqa: E402

import pytest  # noqa: E402

FIXTURE_TOKENIZER = os.path.join(os.path.dirname(__file__), "fixtures", "tokenizer")


@pytest.fixture(scope="module")
def sim():
    s = start_sim("--tokenizer", FIXTURE_TOKENIZER, "--seed", "7")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def exact_sim():
    s = start_sim("--ttft-ms", "60", "--itl-ms", "8", "--output-len", "25")
    yield s
    s.stop()


def test_health_models_version(sim):
    assert request(sim, "GET", "/health")[0] == 200
    status, _, body = request(sim, "GET", "/v1/models")
    models = json.loads(body)
    assert status == 200
    assert models["data"][0]["id"] == "sonic-sim"
    assert models["data"][0]["max_model_len"] == 4096
    version = json.loads(request(sim, "GET", "/version")[2])
    assert version["simulated"] is True and version["version"]
    assert request(sim, "POST", "/reset_prefix_cache")[0] == 200
    assert request(sim, "GET", "/nope")[0] == 404


def _stream(sim, path, body, headers=None):
    status, hdrs, raw = request(sim, "POST", path, body, headers)
    assert status == 200, raw
    assert hdrs["content-type"].startswith("text/event-stream")
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    return hdrs, [json.loads(e) for e in events[:-1]]


def test_stream_completions_format_and_usage(sim, tokenizer):
    prompt = "Shall I compare thee to a summer's day?"
    body = {
        "model": "sonic-sim",
        "prompt": prompt,
        "max_tokens": 12,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.7,
        "top_p": 0.9,
        "seed": 1,
    }
    hdrs, chunks = _stream(sim, "/v1/completions", body, {"x-request-id": "req-42"})
    assert hdrs["x-request-id"] == "req-42"
    *tokens, usage = chunks
    assert len(tokens) == 12
    for c in tokens:
        assert c["id"] == "cmpl-req-42" and c["object"] == "text_completion"
        assert c["model"] == "sonic-sim" and c["choices"][0]["index"] == 0
    assert [c["choices"][0]["finish_reason"] for c in tokens] == [None] * 11 + ["length"]
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 12
    text = "".join(c["choices"][0]["text"] for c in tokens)
    # Re-tokenizing the output with the same tokenizer gives exactly the usage count.
    assert len(tokenizer.encode(text)) == usage["usage"]["completion_tokens"]
    assert usage["usage"]["prompt_tokens"] == len(tokenizer.encode(prompt, add_special_tokens=True))
    # Deterministic per request (same seed, same prompt).
    again = _stream(sim, "/v1/completions", body)[1]
    assert "".join(c["choices"][0]["text"] for c in again[:-1]) == text


def test_stream_chat(sim):
    body = {
        "messages": [{"role": "user", "content": "Hello there"}],
        "max_completion_tokens": 9,
        "ignore_eos": True,
        "stream": True,
    }
    _, chunks = _stream(sim, "/v1/chat/completions", body)
    assert len(chunks) == 9
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[0]["object"] == "chat.completion.chunk"
    assert all(c["choices"][0]["delta"]["content"] for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert "usage" not in chunks[-1] or chunks[-1]["usage"] is None


def test_without_ignore_eos_stops_within_max(sim, tokenizer):
    lengths = set()
    for i in range(12):
        body = {"prompt": f"prompt {i}", "max_tokens": 40, "min_tokens": 2, "eos": None}
        body.pop("eos")
        status, _, raw = request(sim, "POST", "/v1/completions", body)
        doc = json.loads(raw)
        assert status == 200
        n = doc["usage"]["completion_tokens"]
        assert 2 <= n <= 40
        reason = doc["choices"][0]["finish_reason"]
        assert reason == ("length" if n == 40 else "stop")
        assert len(tokenizer.encode(doc["choices"][0]["text"])) == n
        lengths.add(n)
    assert len(lengths) > 1


def test_non_streaming_chat_usage(sim):
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "ignore_eos": True}
    status, _, raw = request(sim, "POST", "/v1/chat/completions", body)
    doc = json.loads(raw)
    assert status == 200 and doc["object"] == "chat.completion"
    assert doc["choices"][0]["message"]["role"] == "assistant"
    assert doc["usage"]["completion_tokens"] == 5 and doc["usage"]["prompt_tokens"] > 0


@pytest.mark.parametrize(
    "body,param",
    [
        (b"{not json", None),
        (b'{"prompt": "x", "bogus": 1}', "bogus"),
        (b'{"prompt": "x", "max_tokens": "ten"}', "max_tokens"),
        (b'{"prompt": "x", "n": 3}', "n"),
        (b'{"messages": []}', "messages"),
    ],
)
def test_bad_requests_get_400(sim, body, param):
    status, _, raw = request(sim, "POST", "/v1/completions", body)
    err = json.loads(raw)["error"]
    assert status == 400
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == param


def test_wrong_model_is_404(sim):
    status, _, raw = request(sim, "POST", "/v1/completions", {"model": "other", "prompt": "x"})
    assert status == 404 and json.loads(raw)["error"]["param"] == "model"


def test_metrics_parse_as_prometheus(sim):
    from prometheus_client.parser import text_string_to_metric_families

    request(sim, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 3, "ignore_eos": True})
    status, _, raw = request(sim, "GET", "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(raw.decode())}
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
        "vllm:prompt_tokens",
        "vllm:generation_tokens",
        "vllm:request_success",
        "vllm:time_to_first_token_seconds",
        "vllm:e2e_request_latency_seconds",
    ):
        assert name in families, name
    gen = families["vllm:generation_tokens"].samples[0]
    assert gen.labels["model_name"] == "sonic-sim" and gen.value >= 3
    ttft = [
        s for s in families["vllm:time_to_first_token_seconds"].samples if s.name.endswith("_count")
    ]
    assert ttft[0].value >= 1


def test_tokenize(sim, tokenizer):
    status, _, raw = request(sim, "POST", "/tokenize", {"prompt": "hello world"})
    doc = json.loads(raw)
    assert status == 200 and doc["tokens"] == tokenizer.encode("hello world", True)
    assert doc["count"] == len(doc["tokens"])


def test_exact_timing(exact_sim):
    body = {"prompt": "x", "max_tokens": 100, "stream": True}
    gaps, ttfts = [], []
    for _ in range(3):
        t0, pieces, err = raw_stream(exact_sim, "/v1/completions", body)
        assert err is None
        times = [t for t, data in pieces for _ in range(data.count(b'"text"'))]
        assert len(times) == 25
        ttfts.append((times[0] - t0) * 1e3)
        gaps += [(b - a) * 1e3 for a, b in zip(times, times[1:])]
        total = (times[-1] - t0) * 1e3
        # Absolute deadlines: the last token is due at 60 + 24 * 8 ms, errors do not add up.
        assert abs(total - (60 + 24 * 8)) < 15, total
    assert abs(sum(ttfts) / len(ttfts) - 60) < 3, ttfts
    assert abs(sum(gaps) / len(gaps) - 8) < 3, gaps


def test_exact_mode_reports_its_own_first_token_lateness(exact_sim):
    """The sim's own timing error (first token emitted minus arrival + ttft), so a client's
    TTFT error can be told from the sim's: one observation per streamed request, all well
    under the 5 ms bucket even on a loaded host, nothing negative."""
    from prometheus_client.parser import text_string_to_metric_families

    def buckets() -> dict[str, float]:
        _, _, raw = request(exact_sim, "GET", "/metrics")
        fams = {f.name: f for f in text_string_to_metric_families(raw.decode())}
        fam = fams["sonic_sim:exact_first_token_lateness_seconds"]
        return {s.labels["le"]: s.value for s in fam.samples if s.name.endswith("_bucket")}

    before = buckets()
    for _ in range(2):
        _, _, err = raw_stream(exact_sim, "/v1/completions", {"prompt": "x", "stream": True})
        assert err is None
    after = buckets()
    grew = {le: after[le] - before[le] for le in after}
    assert grew["+Inf"] == 2 and grew["0.005"] == 2, grew


def test_continuous_batching_waves():
    # 10 ms per step whatever the batch: a 20-token request takes ~20 steps, and with
    # 2 sequence slots 6 concurrent requests run in 3 waves (~60 steps).
    args = ["--max-num-seqs", "2", "--step-base-ms", "10"]
    s = start_sim(*args, "--decode-us-per-seq", "0", "--prefill-us-per-token", "0")
    try:
        body = {"prompt": "hello", "max_tokens": 20, "ignore_eos": True}
        t = time.monotonic()
        request(s, "POST", "/v1/completions", body)
        single = time.monotonic() - t
        waiting_seen = []
        done = threading.Event()

        def sample():
            from prometheus_client.parser import text_string_to_metric_families

            while not done.is_set():
                raw = request(s, "GET", "/metrics")[2].decode()
                for f in text_string_to_metric_families(raw):
                    if f.name == "vllm:num_requests_waiting":
                        waiting_seen.append(f.samples[0].value)
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        t = time.monotonic()
        workers = [
            threading.Thread(target=request, args=(s, "POST", "/v1/completions", body))
            for _ in range(6)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        total = time.monotonic() - t
        done.set()
        sampler.join()
    finally:
        s.stop()
    assert max(waiting_seen) > 0, waiting_seen
    assert 0.15 < single < 0.5, single
    assert 2.4 * single < total < 4.5 * single, (single, total)


# ---------------------------------------------------------------- fault injection


def test_fault_status_codes(sim):
    body = {"prompt": "x", "max_tokens": 3}
    status, _, raw = request(sim, "POST", "/v1/completions", body, {"x-sonic-fault": "500"})
    assert status == 500 and json.loads(raw)["error"]["code"] == 500
    status, hdrs, _ = request(sim, "POST", "/v1/completions", body, {"x-sonic-fault": "429"})
    assert status == 429 and hdrs["retry-after"] == "1"
    status, _, _ = request(sim, "POST", "/v1/completions", body, {"x-sonic-fault": "bogus"})
    assert status == 400


def test_fault_flags_are_probabilities():
    s = start_sim("--fail-500", "1")
    try:
        status, _, _ = request(s, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 2})
        assert status == 500
    finally:
        s.stop()


STREAM = {"prompt": "x", "max_tokens": 10, "ignore_eos": True, "stream": True}


def test_fault_reset(sim):
    _, pieces, err = raw_stream(sim, "/v1/completions", STREAM, {"x-sonic-fault": "reset"})
    body = body_of(pieces)
    assert b"[DONE]" not in body
    assert err is None or isinstance(err, ConnectionResetError)
    # An HTTP/1.1 client sees an incomplete chunked body.
    conn = http.client.HTTPConnection(sim.host, sim.port, timeout=10)
    conn.request("POST", "/v1/completions", json.dumps(STREAM), {"x-sonic-fault": "reset"})
    resp = conn.getresponse()
    with pytest.raises((http.client.IncompleteRead, ConnectionResetError)):
        resp.read()


def test_fault_stall(sim):
    headers = {"x-sonic-fault": "stall"}
    _, pieces, err = raw_stream(sim, "/v1/completions", STREAM, headers, timeout=1.0)
    assert isinstance(err, socket.timeout), err
    assert body_of(pieces).count(b'"text"') == 5


def test_fault_malformed(sim):
    status, _, raw = request(sim, "POST", "/v1/completions", STREAM, {"x-sonic-fault": "malformed"})
    assert status == 200
    bad = 0
    for event in sse_events(raw):
        if event == "[DONE]":
            continue
        try:
            json.loads(event)
        except json.JSONDecodeError:
            bad += 1
    assert bad == 1


def test_a_body_over_the_limit_is_413(sim):
    status, _, raw = request(sim, "POST", "/v1/completions", b"x" * ((64 << 20) + 1))
    assert status == 413 and b"too large" in raw


def test_idle_and_slowloris_connections_do_not_stop_serving():
    """10,000 idle connections and a few clients trickling their headers a byte at a time:
    a normal request is still answered at once."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 10_000 + 200
    if soft < want and hard >= want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # the sim inherits it
    n = min(10_000, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 200)
    assert n >= 1000, f"file descriptor limit too low for this test ({soft}/{hard})"
    s = start_sim()
    idle: list[socket.socket] = []
    stop = threading.Event()

    def slowloris() -> None:
        with socket.create_connection((s.host, s.port)) as c:
            for b in b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000:
                if stop.is_set():
                    return
                c.sendall(bytes([b]))
                time.sleep(0.05)

    slow = [threading.Thread(target=slowloris, daemon=True) for _ in range(3)]
    try:
        for _ in range(n):
            idle.append(socket.create_connection((s.host, s.port), timeout=10))
        for t in slow:
            t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        status, _, _ = request(s, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 2})
        assert status == 200
        assert time.monotonic() - t0 < 5.0
        status, _, _ = request(s, "GET", "/health")
        assert status == 200
    finally:
        stop.set()
        for c in idle:
            c.close()
        s.stop()
