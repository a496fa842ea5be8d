"""Server lifecycle with real processes: readiness polling, process-group shutdown (including
children that ignore SIGTERM), failures that carry the log tail, and the probes."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sonic.suite import probes
from sonic.suite.lifecycle import (
    EngineFailed,
    ServerProcess,
    base_url,
    free_port,
    group_members,
    wait_ready,
)

# A stand-in engine: stdlib HTTP server with /health, /v1/models, /version and a
# non-streaming /v1/completions. Optionally slow to become healthy, and optionally with a
# child process that ignores SIGTERM (as a stubborn engine worker might).
FAKE_ENGINE = textwrap.dedent(
    """
    import json, os, signal, subprocess, sys, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    port, delay, stubborn = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "1"
    if stubborn:
        subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    t0 = time.monotonic()
    print("fake engine starting, secret is", os.environ.get("FAKE_SECRET", "-"), flush=True)

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass
        def reply(self, code, doc):
            body = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def do_GET(self):
            if self.path == "/health":
                ok = time.monotonic() - t0 >= delay
                self.reply(200 if ok else 503, {"ok": ok})
            elif self.path == "/v1/models":
                self.reply(200, {"data": [{"id": "fake", "max_model_len": 4096}]})
            elif self.path == "/version":
                self.reply(200, {"version": "1.2.3"})
            else:
                self.reply(404, {})
        def do_POST(self):
            n = int(self.headers.get("Content-Length", 0))
            req = json.loads(self.rfile.read(n) or b"{}")
            if self.path == "/v1/completions":
                self.reply(200, {"choices": [{"text": "2, 3, 5, 7, 11"}],
                                 "usage": {"completion_tokens": 9}, "model": req.get("model")})
            elif self.path == "/reset_prefix_cache":
                self.reply(200, {})
            else:
                self.reply(404, {})

    ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
    """
)


@pytest.fixture
def fake_engine(tmp_path: Path) -> Path:
    path = tmp_path / "fake_engine.py"
    path.write_text(FAKE_ENGINE)
    return path


def _server(tmp_path: Path, script: Path, delay: float = 0.0, stubborn: bool = False, env=None):
    port = free_port()
    argv = [sys.executable, str(script), str(port), str(delay), "1" if stubborn else "0"]
    env = dict(os.environ if env is None else env)
    return ServerProcess("fake", argv, tmp_path / "logs" / "fake.log", env), port


def _gone(pgid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not group_members(pgid):
            return True
        time.sleep(0.05)
    return False


def test_ready_after_health_comes_up_then_stop_the_group(tmp_path, fake_engine):
    server, port = _server(tmp_path, fake_engine, delay=1.0)
    server.start()
    try:
        url = base_url("127.0.0.1", port)
        ready = wait_ready(url, "/health", 30.0, server)
        assert ready.seconds >= 0.9  # health answered 503 for the first second
        assert ready.models is not None and ready.models.ids == ["fake"]
        assert ready.models.max_model_len == 4096
        assert probes.version_from(url, ("/nope", "/version")) == "1.2.3"
        answer = probes.probe(url, "/v1/completions", "completions", "fake")
        assert answer.ok and answer.text == "2, 3, 5, 7, 11" and answer.completion_tokens == 9
        assert probes.reset_prefix_cache(url, "/reset_prefix_cache") is None
        assert probes.reset_prefix_cache(url, "/flush_cache").startswith("HTTP 404")
        assert group_members(server.pgid)
    finally:
        info = server.stop(timeout_s=10)
    assert info["how"] == "sigterm"
    assert _gone(server.pgid)
    assert server.log_path.read_text().startswith("fake engine starting")


def test_children_that_ignore_sigterm_are_killed(tmp_path, fake_engine):
    server, port = _server(tmp_path, fake_engine, stubborn=True)
    server.start()
    wait_ready(base_url("127.0.0.1", port), "/health", 30.0, server)
    deadline = time.monotonic() + 10
    while len(group_members(server.pgid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(group_members(server.pgid)) >= 2, "the stubborn child should be in the group"
    info = server.stop(timeout_s=1.0)
    assert info["how"] == "sigkill"
    assert info["left"] == []
    assert _gone(server.pgid)


def test_never_healthy_times_out_with_reason_and_log_tail(tmp_path):
    argv = [
        sys.executable,
        "-c",
        "print('loading weights...', flush=True); import time; time.sleep(600)",
    ]
    server = ServerProcess("slow", argv, tmp_path / "slow.log", dict(os.environ)).start()
    try:
        t = time.monotonic()
        with pytest.raises(EngineFailed) as info:
            wait_ready(base_url("127.0.0.1", free_port()), "/health", 1.5, server)
        assert 1.4 <= time.monotonic() - t < 10
        assert "not ready after 1.5 s" in str(info.value)
        assert "loading weights..." in info.value.log_tail
    finally:
        server.stop(timeout_s=5)
    assert _gone(server.pgid)


def test_server_that_exits_is_reported_at_once(tmp_path):
    argv = [sys.executable, "-c", "import sys; print('bad flag --x'); sys.exit(3)"]
    server = ServerProcess("bad", argv, tmp_path / "bad.log", dict(os.environ)).start()
    t = time.monotonic()
    with pytest.raises(EngineFailed) as info:
        wait_ready(base_url("127.0.0.1", free_port()), "/health", 60.0, server)
    assert time.monotonic() - t < 30
    assert "exited with code 3" in str(info.value)
    assert "bad flag --x" in info.value.log_tail
    assert server.stop()["how"] == "exited"


def test_missing_executable_is_one_line(tmp_path):
    with pytest.raises(EngineFailed, match="no-such-engine-binary: executable not found"):
        ServerProcess("x", ["no-such-engine-binary"], tmp_path / "x.log", dict(os.environ)).start()


def test_secrets_are_scrubbed_from_log_tail(tmp_path, fake_engine):
    secret = "hf_verysecretvalue123"
    env = dict(os.environ, FAKE_SECRET=secret)
    server, port = _server(tmp_path, fake_engine, env=env)
    server.start()
    try:
        wait_ready(base_url("127.0.0.1", port), "/health", 30.0, server)
        tail = server.log_tail(secrets=[secret])
        assert secret not in tail and "fake engine starting" in tail
    finally:
        server.stop()


def test_each_server_gets_its_own_tmpdir_and_it_is_removed(tmp_path):
    argv = [
        sys.executable,
        "-c",
        "import os,time; print(os.environ['TMPDIR'], flush=True); time.sleep(60)",
    ]
    server = ServerProcess("t", argv, tmp_path / "t.log", dict(os.environ)).start()
    deadline = time.monotonic() + 10
    while not server.log_path.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    tmp = Path(server.log_path.read_text().strip())
    assert tmp.is_dir() and "sonic-t-" in tmp.name
    server.stop()
    assert not tmp.exists()


def test_group_members_sees_only_live_processes():
    assert group_members(os.getpgid(0))
    # A pgid nobody uses: a pid far above pid_max's usual range.
    assert group_members(2**22 + 12345) == []


def test_sigterm_does_not_reach_this_process(tmp_path, fake_engine):
    """Stopping a server signals its own group only (never the suite's)."""
    got = []
    old = signal.signal(signal.SIGTERM, lambda *a: got.append(1))
    try:
        server, port = _server(tmp_path, fake_engine)
        server.start()
        wait_ready(base_url("127.0.0.1", port), "/health", 30.0, server)
        server.stop()
    finally:
        signal.signal(signal.SIGTERM, old)
    assert got == []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_suite_killed_by_sigkill_leaves_no_engine_behind(tmp_path):
    """SIGKILL gives sonic no chance to stop its servers: the kernel does (parent-death
    signal), while the suite waits for the engine's health."""
    import json
    import subprocess

    pidfile = tmp_path / "engine.pid"
    code = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    suite = tmp_path / "suite.toml"
    command = json.dumps([sys.executable, "-c", code])  # a JSON array is a TOML array
    suite.write_text(
        textwrap.dedent(
            f"""
            [suite]
            name = "orphans"
            tokenizer = "sonic:demo"

            [engines.sleeper]
            command = {command}
            port = {free_port()}
            ready_timeout_s = 300

            [scenarios.s]
            dataset = "random"
            input_len = 8
            output_len = 2
            request_rates = [1]
            num_prompts = 1
            """
        ),
        encoding="utf-8",
    )
    sonic = subprocess.Popen(
        [sys.executable, "-m", "sonic", "suite", "run", str(suite), "--output-dir",
         str(tmp_path / "r")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not pidfile.exists() or not pidfile.read_text():
            assert time.monotonic() < deadline, "the engine never started"
            assert sonic.poll() is None, "sonic exited before starting the engine"
            time.sleep(0.1)
        engine = int(pidfile.read_text())
        assert _alive(engine)
    finally:
        sonic.kill()
        sonic.wait()
    deadline = time.monotonic() + 10
    while _alive(engine) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(engine), "the engine outlived its SIGKILLed suite"
