"""The fault matrix: every way a serving engine misbehaves, against ``python -m sonic run
--save-result`` as a user runs it, in every dialect.

Each cell is one fault. The sim (a separate ``python -m sonic sim`` process, one per run so its
seeded fault draws are the run's own) injects HTTP 500, 429 with Retry-After, a reset mid-stream,
a stall past ``--request-timeout-s`` and a malformed event, each request with probability 1/2; a
raw-socket server in this file does what the sim does not, to every other request: 503,
invalid UTF-8 inside an event, one event line of 100 MB, bytes trickled one per second; it also
closes its listener mid-run (connection refused); a last cell SIGKILLs the sim mid-run. The
three dialects of a cell run concurrently.

Every cell asserts: the run finishes in bounded time; each failed request carries its error in
the dialect's ``errors`` list and in the raw records, and no successful one does; the result
file was written whole (valid JSON, marked partial, no temporary file left) where the dialect's
save policy puts it; the exit code is the dialect's policy for those counts; no traceback.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from simproc import TOKENIZER, scrape
from sonic import dialects
from sonic.benchmark import PARTIAL_SUFFIX
from sonic.sim import SimProcess

DIALECTS = dialects.names()
N = 6  # requests per run
TIMEOUT_S = 2.5  # --request-timeout-s of the stall and trickle cells
WALL_LIMIT_S = 60.0  # a run that takes longer has hung (killed at twice this)
COMMON = [
    "--model", "sonic-sim", "--tokenizer", str(TOKENIZER), "--dataset-name", "random",
    "--random-input-len", "16", "--random-output-len", "4", "--ignore-eos",
    "--num-prompts", str(N), "--seed", "7", "--skip-test-prompt", "--disable-tqdm",
    "--save-result", "--save-detailed",
]  # fmt: skip
SIM = ["--tokenizer", str(TOKENIZER), "--ttft-ms", "5", "--itl-ms", "5", "--seed", "1"]


# ---------------------------------------------------------------------------- socket server


class _FaultServer:
    """HTTP/1.1 over raw sockets, so that it can send what no HTTP library will: bytes that
    are not UTF-8, a 100 MB line, one byte a second, a listener that goes away. A POST to
    ``/{fault}/{dialect}/v1/[chat/]completions`` streams a valid answer to every other request
    of that (fault, dialect) and the fault to the rest; anything else (the client's connection
    warm-up, its side requests such as the prefix-cache reset) gets a 404. With
    ``answer_limit``, the server answers that many POSTs, then closes its listener and every
    connection: later requests find nothing listening."""

    def __init__(self, answer_limit: int | None = None) -> None:
        self.lsock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.url = f"http://127.0.0.1:{self.lsock.getsockname()[1]}"
        self.lock = threading.Lock()
        self.seen: dict[tuple[str, str], int] = {}
        self.conns: set[socket.socket] = set()
        self.answer_limit = answer_limit
        self.answered = 0
        self.closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            conns = list(self.conns)
        for s in (self.lsock, *conns):
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()/recv()
            except OSError:
                pass
        self.lsock.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self.lock:
            self.conns.add(conn)
        reader = conn.makefile("rb")
        try:
            while True:
                line = reader.readline(65536)
                if not line:
                    return
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers = {}
                while (h := reader.readline(65536)) not in (b"\r\n", b"\n", b""):
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length") or 0)
                body = reader.read(length)
                if len(body) < length:
                    return  # closed mid-request (by close())
                if method != "POST" or not path.endswith("/completions"):
                    conn.sendall(_plain(404, b'{"error": "not found"}'))
                elif not self._post(conn, path, json.loads(body)):
                    return
        except OSError:
            return  # the client hung up (what it should do on most faults)
        finally:
            with self.lock:
                self.conns.discard(conn)
            reader.close()
            conn.close()

    def _post(self, conn: socket.socket, path: str, body: dict) -> bool:
        """Answer one POST; False closes the connection."""
        fault, dialect = path.strip("/").split("/")[:2]
        limit = self.answer_limit
        with self.lock:
            k = self.seen.get((fault, dialect), 0)
            self.seen[(fault, dialect)] = k + 1
            if limit is not None and k >= limit:
                return False  # closed, unanswered: the server is going away
        n = int(body.get("max_tokens") or 4)
        keep = FAULTS[fault](conn, n, faulted=k % 2 == 1)
        with self.lock:
            self.answered += 1
            last = self.answered == limit
        if last:  # only once every answer is out: closing cuts what is still being sent
            self.close()
            return False
        return keep


def _plain(status: int, body: bytes, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
CHUNKED = STREAM_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
UNTIL_CLOSE = STREAM_HEAD + b"Connection: close\r\n\r\n"  # the body ends when the server closes


def _chunk(conn: socket.socket, data: bytes) -> None:
    conn.sendall(b"%x\r\n%s\r\n" % (len(data), data))


def _event(text: str | None = None, raw: bytes | None = None, usage: int | None = None) -> bytes:
    if usage is not None:
        doc = {"choices": [], "usage": {"prompt_tokens": 16, "completion_tokens": usage}}
    else:
        doc = {"choices": [{"index": 0, "text": text, "finish_reason": None}]}
    data = raw if raw is not None else json.dumps(doc, ensure_ascii=False).encode()
    return b"data: " + data + b"\n\n"


def _answer(n: int) -> list[bytes]:
    """The events of a valid streamed completion of ``n`` tokens."""
    return [*(_event(f"t{i} ") for i in range(n)), _event(usage=n), b"data: [DONE]\n\n"]


def _ok(conn: socket.socket, n: int) -> bool:
    conn.sendall(CHUNKED)
    for ev in _answer(n):
        _chunk(conn, ev)
    _chunk(conn, b"")
    return True


def _fault_503(conn: socket.socket, n: int, faulted: bool) -> bool:
    if not faulted:
        return _ok(conn, n)
    body = b'{"error": {"message": "overloaded", "type": "ServiceUnavailable", "code": 503}}'
    conn.sendall(_plain(503, body, "Retry-After: 2\r\n"))
    return True


def _fault_utf8(conn: socket.socket, n: int, faulted: bool) -> bool:
    """Faulted: bytes that are not UTF-8 inside an event's JSON string. Otherwise an answer
    whose 'é' is split between two reads (valid: the decoder must join it)."""
    conn.sendall(CHUNKED)
    _chunk(conn, _event("t0 "))
    if faulted:
        _chunk(conn, _event(raw=b'{"choices": [{"index": 0, "text": "\xff\xfe\xc3("}]}'))
    else:
        e_acute = _event("é")
        cut = e_acute.index("é".encode()) + 1
        _chunk(conn, e_acute[:cut])
        time.sleep(0.05)
        _chunk(conn, e_acute[cut:])
    for ev in _answer(n)[2:]:
        _chunk(conn, ev)
    _chunk(conn, b"")
    return True


def _fault_huge(conn: socket.socket, n: int, faulted: bool) -> bool:
    """Faulted: one event line of 100 MB that never ends, sent 1 MiB at a time."""
    if not faulted:
        return _ok(conn, n)
    conn.sendall(CHUNKED)
    _chunk(conn, _event("t0 "))
    _chunk(conn, b"data: ")
    block = b"x" * (1 << 20)
    for _ in range(100):
        _chunk(conn, block)  # raises once the client has hung up
    return False


def _fault_trickle(conn: socket.socket, n: int, faulted: bool) -> bool:
    """One byte a second. Faulted: the whole answer at that pace (minutes): the request
    timeout must end it although bytes keep coming. Otherwise two bytes a second apart, the
    rest with the second: a slow start that succeeds."""
    conn.sendall(UNTIL_CLOSE)
    body = b"".join(_answer(n))
    slow = len(body) if faulted else 2
    for i in range(slow):
        if i:
            time.sleep(1.0)
        conn.sendall(body[i : i + 1])
    conn.sendall(body[slow:])
    return False


FAULTS: dict[str, Callable[..., bool]] = {
    "ok": lambda conn, n, faulted: _ok(conn, n),
    "503": _fault_503,
    "utf8": _fault_utf8,
    "huge": _fault_huge,
    "trickle": _fault_trickle,
}


# ---------------------------------------------------------------------------- runs


@dataclass
class Run:
    dialect: str
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    peak_rss_mib: float
    out_dir: Path
    name: str


def _run_sonic(
    dialect: str,
    base_url: str,
    out_dir: Path,
    *extra: str,
    during: Callable[[], None] | None = None,
) -> Run:
    """``python -m sonic run`` to its end; ``during`` runs while it does. The process's own
    peak RSS comes from wait4 (the 100 MB cell bounds it)."""
    d = dialects.get(dialect)
    out_dir.mkdir(parents=True)
    name = "result.json"
    cmd = [
        sys.executable, "-m", "sonic", "run", "--compat", d.name,
        "--backend", d.backends[0] if d.backends else "vllm", "--base-url", base_url,
        *COMMON, "--result-dir", str(out_dir), "--result-filename", name, *extra,
    ]  # fmt: skip
    t0 = time.monotonic()
    with open(out_dir / "stdout", "wb") as out, open(out_dir / "stderr", "wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=out_dir)
        watchdog = threading.Timer(2 * WALL_LIMIT_S, proc.kill)
        watchdog.start()
        try:
            if during is not None:
                during()
        except BaseException:
            proc.kill()
            raise
        finally:
            _, status, usage = os.wait4(proc.pid, 0)
            watchdog.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(
        dialect=dialect,
        returncode=proc.returncode,
        stdout=(out_dir / "stdout").read_text(errors="replace"),
        stderr=(out_dir / "stderr").read_text(errors="replace"),
        wall_s=time.monotonic() - t0,
        peak_rss_mib=usage.ru_maxrss / 1024,
        out_dir=out_dir,
        name=name,
    )


def _sim_run(flags: list[str], *extra: str) -> Callable[[str, Path], Run]:
    def run(dialect: str, out_dir: Path) -> Run:
        with SimProcess(*SIM, *flags) as sim:
            return _run_sonic(dialect, sim.url, out_dir, *extra)

    return run


def _socket_run(fault: str, *extra: str) -> Callable[[str, Path, _FaultServer], Run]:
    def run(dialect: str, out_dir: Path, server: _FaultServer) -> Run:
        return _run_sonic(dialect, f"{server.url}/{fault}/{dialect}", out_dir, *extra)

    return run


def _sigkill_run(dialect: str, out_dir: Path) -> Run:
    """A sim answering in 0.45 s per request, SIGKILLed as soon as it has finished one: the
    requests in flight lose their connection, the later ones find no server."""
    sim = SimProcess("--tokenizer", str(TOKENIZER), "--ttft-ms", "50", "--itl-ms", "100")

    def kill_after_first_answer() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if scrape(sim.url).get("vllm:request_success_total", 0) >= 1:
                    break
            except OSError:
                pass
            time.sleep(0.02)
        os.kill(sim.proc.pid, signal.SIGKILL)
        sim.proc.wait()

    try:
        return _run_sonic(
            dialect, sim.url, out_dir, "--request-rate", "4", during=kill_after_first_answer
        )
    finally:
        sim.stop()


def _refused_run(dialect: str, out_dir: Path) -> Run:
    """The server answers two requests, then closes its listener and its connections."""
    server = _FaultServer(answer_limit=2)
    try:
        return _run_sonic(dialect, f"{server.url}/ok/{dialect}", out_dir, "--request-rate", "8")
    finally:
        server.close()


# ---------------------------------------------------------------------------- the matrix


@dataclass(frozen=True)
class Cell:
    name: str
    run: Callable[..., Run]
    # Every failed request's error matches this; a run has at least one.
    error: str
    # The server is this file's socket server (the runner takes it).
    socket: bool = False
    # Exactly this many requests succeed (None: the sim's seeded draw or a race decides).
    completed: int | None = None
    # At least one error matches this.
    seen: str | None = None


TIMEOUT = ["--request-timeout-s", str(TIMEOUT_S)]
CELLS = [
    Cell("http-500", _sim_run(["--fail-500", "0.5"]), r"^HTTP 500: .*internal server error"),
    Cell("http-503", _socket_run("503"), r"^HTTP 503: .*overloaded", socket=True, completed=3),
    Cell("http-429-retry-after", _sim_run(["--fail-429", "0.5"]), r"^HTTP 429: .*too many"),
    Cell("reset-mid-stream", _sim_run(["--fail-reset", "0.5"]), r"^stream error: "),
    Cell(
        "stall-past-timeout",
        _sim_run(["--fail-stall", "0.5", "--stall-s", "600"], *TIMEOUT),
        rf"^timeout after {TIMEOUT_S} s$",
    ),
    Cell("malformed-sse", _sim_run(["--fail-malformed", "0.5"]), r"^malformed chunk: "),
    Cell(
        "invalid-utf8",
        _socket_run("utf8"),
        r"^malformed chunk: invalid unicode",
        socket=True,
        completed=3,
    ),
    Cell(
        "100mb-event-line",
        _socket_run("huge"),
        r"^an SSE event grew past 16777216 bytes without ending$",
        socket=True,
        completed=3,
    ),
    Cell(
        "trickle-1-byte-per-s",
        _socket_run("trickle", *TIMEOUT),
        rf"^timeout after {TIMEOUT_S} s$",
        socket=True,
        completed=3,
    ),
    Cell(
        "server-sigkilled",
        _sigkill_run,
        r"^(stream error: .*(EOF|reset|closed)|connect error: |request error: )",
    ),
    Cell(
        "connection-refused",
        _refused_run,
        r"^(connect error|request error|stream error): ",
        completed=2,
        seen=r"^connect error: .*Connection refused",
    ),
]
BY_NAME = {c.name: c for c in CELLS}


class _Matrix:
    """Runs a cell's dialects concurrently on first use and keeps their results."""

    def __init__(self, root: Path, server: _FaultServer) -> None:
        self.root, self.server = root, server
        self.done: dict[str, dict[str, Run]] = {}
        self.lock = threading.Lock()

    def runs(self, name: str) -> dict[str, Run]:
        with self.lock:
            if name not in self.done:
                cell = BY_NAME[name]
                extra = (self.server,) if cell.socket else ()
                with ThreadPoolExecutor(len(DIALECTS)) as pool:
                    futures = {
                        d: pool.submit(cell.run, d, self.root / name / d, *extra) for d in DIALECTS
                    }
                    self.done[name] = {d: f.result() for d, f in futures.items()}
            return self.done[name]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    server = _FaultServer()
    yield _Matrix(tmp_path_factory.mktemp("fault-matrix"), server)
    server.close()


def _result(run: Run) -> tuple[Path, dict, list[dict]]:
    """The saved document where the dialect's save policy puts it, and its raw records."""
    d = dialects.get(run.dialect)
    held = run.returncode != 0 and not d.failed_runs_saved
    path = run.out_dir / (run.name + PARTIAL_SUFFIX if held else run.name)
    other = run.out_dir / (run.name if held else run.name + PARTIAL_SUFFIX)
    assert path.is_file() and not other.exists(), sorted(p.name for p in run.out_dir.iterdir())
    doc = json.loads(path.read_text())
    raw = run.out_dir / doc["sonic"]["raw_records"]
    records = [json.loads(line) for line in raw.read_text().splitlines() if line.strip()]
    return path, doc, records


def _expected_exit(dialect: str, completed: int, failed: int) -> int:
    """The dialect's exit policy (Dialect.strict_exit): a run where nothing succeeded exits 1
    in every dialect; with some failures, only a strict dialect exits 1."""
    if completed == 0:
        return 1
    return 1 if dialects.get(dialect).strict_exit and failed else 0


@pytest.mark.parametrize(
    ("cell", "dialect"),
    [(c.name, d) for c in CELLS for d in DIALECTS],
    ids=[f"{c.name}-{d}" for c in CELLS for d in DIALECTS],
)
def test_fault_cell(matrix, cell, dialect):
    c = BY_NAME[cell]
    run = matrix.runs(cell)[dialect]
    console = run.stdout + run.stderr
    assert "Traceback" not in console, console[-3000:]
    assert run.wall_s < WALL_LIMIT_S, run.wall_s
    path, doc, records = _result(run)

    # Counts: the dialect's own keys, sonic's section and the raw records agree.
    s = doc["sonic"]
    completed, failed = s["completed"], s["failed"]
    native = dialects.get(dialect).read_metrics(doc)
    assert (native["completed"], native["failed"]) == (completed, failed)
    assert completed + failed == len(records) == N, (completed, failed, len(records))
    assert failed >= 1, s
    if c.completed is not None:
        assert completed == c.completed, s["error_counts"]
    assert s["partial"] is True and any("requests failed" in r for r in s["partial_reasons"])

    # Each failed request carries its error (the dialect's list and the raw records), each
    # successful one none.
    errors = doc["errors"]
    assert len(errors) == N
    for i, rec in enumerate(records):
        assert bool(errors[i]) == (not rec["success"]) == bool(rec["error"]), (i, errors[i])
        if rec["error"]:
            assert errors[i] == rec["error"]
            assert re.search(c.error, rec["error"], re.IGNORECASE), rec["error"]
    if c.seen is not None:
        assert any(re.search(c.seen, e) for e in errors), s["error_counts"]

    # Written atomically (nothing half-written beside it) and the exit code is the policy's.
    assert not [p.name for p in run.out_dir.iterdir() if p.name.endswith(".tmp")]
    assert run.returncode == _expected_exit(dialect, completed, failed), console[-2000:]
    assert f"{failed} of {N} requests failed" in run.stderr


def test_100mb_event_lines_take_bounded_memory(matrix):
    """Bounded memory: the client gives up on each line at 16 MiB and drops it. The run's
    three such lines arrive at once: buffered, they would add 300 MB to the process's peak RSS
    over a run of the same size without them (the 503 cell); capped, under 100 MiB."""
    huge, small = matrix.runs("100mb-event-line"), matrix.runs("http-503")
    for d in DIALECTS:
        grown = huge[d].peak_rss_mib - small[d].peak_rss_mib
        assert grown < 100, (d, huge[d].peak_rss_mib, small[d].peak_rss_mib)


def test_what_arrived_before_a_fault_is_kept(matrix):
    """The text that arrived before invalid UTF-8 or the 100 MB line stays in the record; a
    valid 'é' split between two reads is joined; a trickled answer that ends in time succeeds
    with its first token at least one trickled second after the send."""
    for cell in ("invalid-utf8", "100mb-event-line"):
        for d in DIALECTS:
            _, _, records = _result(matrix.runs(cell)[d])
            for rec in records:
                assert rec["chunk_text"][:1] == ["t0 "], (cell, d, rec["chunk_text"][:3])
    for d in DIALECTS:
        _, _, records = _result(matrix.runs("invalid-utf8")[d])
        assert ["é" in "".join(r["chunk_text"]) for r in records].count(True) == 3
        _, _, records = _result(matrix.runs("trickle-1-byte-per-s")[d])
        ok = [r for r in records if r["success"]]
        assert len(ok) == 3
        for r in ok:
            assert r["chunk_ns"][0] - r["sent_ns"] >= 0.9e9, r["chunk_ns"][0] - r["sent_ns"]


def test_a_rate_limit_or_overload_is_not_retried(matrix):
    """A 503 with Retry-After (as a 429) is a failed request: sonic does not wait and send it
    again, which would hide an overloaded server behind longer latencies (vLLM's and MAX's
    tools do not retry either). The server received each request exactly once."""
    matrix.runs("http-503")
    for d in DIALECTS:
        assert matrix.server.seen[("503", d)] == N


def test_a_failing_test_request_stops_the_run_in_one_line(tmp_path):
    """The untimed test request (MAX's default; vLLM's with --ready-check-timeout-sec) meets
    a server that fails every request: the run stops before it starts, with one line and
    exit 2, and writes no result."""

    def run(d: str) -> subprocess.CompletedProcess:
        (tmp_path / d).mkdir()
        cmd = [
            sys.executable, "-m", "sonic", "run", "--compat", d, "--base-url", sim.url,
            *[a for a in COMMON if a != "--skip-test-prompt"],
            "--ready-check-timeout-sec", "0.5", "--result-dir", str(tmp_path / d),
        ]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, timeout=2 * WALL_LIMIT_S)

    with SimProcess(*SIM, "--fail-500", "1") as sim, ThreadPoolExecutor(len(DIALECTS)) as pool:
        done = dict(zip(DIALECTS, pool.map(run, DIALECTS)))
    for d, cp in done.items():
        assert cp.returncode == 2, (d, cp.stderr[-2000:])
        assert "Traceback" not in cp.stderr
        last = cp.stderr.strip().splitlines()[-1]
        assert last.startswith("sonic run: error: the test request failed: HTTP 500"), last
        assert not list((tmp_path / d).iterdir())
