"""No orphans, nothing lost: ``sonic suite run`` as a real subprocess, stopped with SIGTERM or
Ctrl-C (SIGINT) in each of its phases, killed with SIGKILL and resumed, and a server left
behind by a killed suite stopped by the next one.

Each phase is recognised from what the suite itself shows (its output, its server's log, its
server's /metrics), never from a sleep. The engine under test, ``gated``, is a `command`
engine shaped like a real one: a launcher process that "loads" until a gate file exists, then
runs a real `sonic sim` as its child (one process group, two processes, as vLLM's API server
and engine core). A `kill -9` of the suite reaches the launcher through the parent-death
signal, and the child sim is orphaned: what the record of running servers is for.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pytest

from sonic.suite import leftovers
from sonic.suite.lifecycle import group_members

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="process groups via /proc, PR_SET_PDEATHSIG"
)

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "tests" / "fixtures" / "tokenizer"
GATE_ENV = "SONIC_TEST_GATE"  # read by the launcher from the suite's environment

LAUNCHER = f"""
import os, subprocess, sys, time
print("gated engine: loading", flush=True)
gate = os.environ.get({GATE_ENV!r})
while gate and not os.path.exists(gate):
    time.sleep(0.05)
sim = subprocess.Popen([sys.executable, "-m", "sonic", "sim", "--port", sys.argv[1],
    "--tokenizer", {str(TOKENIZER)!r}, "--ttft-ms", "50", "--itl-ms", "25", "--output-len", "8"])
print("gated engine: sim", sim.pid, flush=True)
sys.exit(sim.wait())
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """The suite file, and a results directory in which `sim-a` has finished its runs (each
    test resumes a copy of it, so `gated` is the only engine that starts)."""
    base = tmp_path_factory.mktemp("signals")
    launcher = base / "launcher.py"
    launcher.write_text(LAUNCHER)
    suite = base / "suite.toml"
    suite.write_text(
        f"""
[suite]
name = "sig"
tokenizer = "{TOKENIZER}"
temperature = 0.0
ignore_eos = true

[engines.sim-a]
preset = "sim"
profile = "fast-decode"

[engines.gated]
command = ["{sys.executable}", "{launcher}", "{{port}}"]
ready_timeout_s = 120
stop_timeout_s = 10

[scenarios.small]
dataset = "random"
input_len = 32
output_len = 8
request_rates = [8, 16]
num_prompts = 6
"""
    )
    s = Suite(base, "base", "--engines", "sim-a", suite=suite)
    assert s.wait() == 0, s.output()
    done = results_dir(base / "base")
    assert [r["status"] for r in manifest(done)["runs"]] == ["ok", "ok"]
    return {"suite": suite, "done": done}


# ---------------------------------------------------------------- helpers


class Suite:
    """`python -m sonic suite run SUITE ARGS` with its output in files (read while it runs)
    and its own record directory of running servers (XDG_RUNTIME_DIR)."""

    def __init__(self, tmp: Path, name: str, *args: str, suite: Path, gate: Path | None = None):
        self.stdout_path = tmp / f"{name}.stdout"
        self.stderr_path = tmp / f"{name}.stderr"
        env = dict(os.environ, PYTHONUNBUFFERED="1", XDG_RUNTIME_DIR=str(runtime_dir(tmp)))
        for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
            env.pop(key, None)
        env.pop(GATE_ENV, None)
        if gate is not None:
            env[GATE_ENV] = str(gate)
        argv = [sys.executable, "-m", "sonic", "suite", "run", str(suite), *args]
        if "--resume" not in args:
            argv += ["--output-dir", str(tmp / name)]
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=ROOT, env=env)

    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def output(self) -> str:
        return self.stdout() + self.stderr()

    def until(self, what: str, ready: Callable[[], object], timeout: float = 120) -> object:
        """Poll ``ready`` until it is truthy; fail if the suite exits first."""
        deadline = time.monotonic() + timeout
        while True:
            value = ready()
            if value:
                return value
            if self.proc.poll() is not None:
                pytest.fail(f"the suite exited ({self.proc.returncode}) before {what}:\n"
                            + self.output())  # fmt: skip
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"no {what} after {timeout} s:\n" + self.output())
            time.sleep(0.05)

    def wait(self, timeout: float = 180) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail("the suite did not exit:\n" + self.output())


def text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def runtime_dir(tmp: Path) -> Path:
    path = tmp / "xdg-runtime"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def results_dir(parent: Path) -> Path:
    (d,) = [p for p in parent.iterdir() if p.is_dir()]
    return d


def manifest(d: Path) -> dict:
    try:
        return json.loads((d / "manifest.json").read_text())
    except (OSError, ValueError):
        return {"engines": {}, "runs": []}


def resumable_copy(world: dict[str, Path], tmp: Path) -> Path:
    d = tmp / "results" / world["done"].name
    shutil.copytree(world["done"], d)
    return d


def mtimes(d: Path, runs: list[dict]) -> dict[str, int]:
    return {r["id"]: (d / r["file"]).stat().st_mtime_ns for r in runs}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def gone(pids: list[int], timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def requests_running(metrics_url: str) -> float:
    """The sim's own count of requests in flight (vLLM's gauge)."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("vllm:num_requests_running"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def server_group(s: Suite, d: Path) -> tuple[int, list[int]]:
    """The gated engine's process group once both of its processes run."""
    pgid = s.until(
        "the gated engine's pgid", lambda: manifest(d)["engines"].get("gated", {}).get("pgid")
    )
    members = s.until(
        "the gated engine's two processes", lambda: group_members(pgid)[1:] and group_members(pgid)
    )
    return pgid, members


# ---------------------------------------------------------------- SIGTERM / Ctrl-C by phase

PHASES = ["setup", "health wait", "run", "report"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("phase", PHASES)
def test_a_signal_in_each_phase_leaves_no_server_and_keeps_finished_runs(
    world, tmp_path, phase, sig
):
    d = resumable_copy(world, tmp_path)
    before = manifest(d)["runs"]
    kept = mtimes(d, before)
    gate = tmp_path / "gate"
    if phase != "health wait":
        gate.touch()
    s = Suite(tmp_path, phase, "--resume", str(d), suite=world["suite"], gate=gate)
    log = d / "logs" / "gated.log"
    members: list[int] = []
    if phase == "setup":
        # Validation is done, the client self-check (a few seconds) is running.
        s.until("the workload check", lambda: "workload.small" in s.stdout())
    else:
        s.until("the gated engine's launcher", lambda: "loading" in text(log))
    if phase == "health wait":
        pgid = s.until("the pgid", lambda: manifest(d)["engines"].get("gated", {}).get("pgid"))
        members = group_members(pgid)
        assert "ready in" not in s.stdout()
    elif phase == "run":
        pgid, members = server_group(s, d)
        s.until("the gated engine ready", lambda: "engine gated: ready" in s.stdout())
        metrics = manifest(d)["engines"]["gated"]["metrics_url"]
        s.until("a request of a run in flight", lambda: requests_running(metrics) > 0)
    elif phase == "report":
        pgid, members = server_group(s, d)
        s.until("the report", lambda: "report: writing" in s.stdout())
    s.proc.send_signal(sig)
    code = s.wait()

    assert code == 130, s.output()
    assert "Traceback" not in s.output()
    # One line from the suite, last; only a run cut short adds the client's own note on it.
    lines = s.stderr().strip().splitlines()
    err = [x for x in lines if x.startswith("sonic suite:")]
    assert len(err) == 1 and lines[-1] == err[0], lines
    assert len(lines) == 1 or phase == "run", lines
    assert f"interrupted by {'SIGTERM' if sig == signal.SIGTERM else 'Ctrl-C'}" in err[0]
    assert "no server is left running" in err[0]
    assert members or phase == "setup"
    assert gone(members), f"server processes left: {[p for p in members if alive(p)]}"
    assert not list((runtime_dir(tmp_path) / "sonic-bench" / "servers").glob("*.json"))

    doc = manifest(d)
    runs = {r["id"]: r for r in doc["runs"]}
    assert mtimes(d, before) == kept  # sim-a's finished runs: untouched
    assert all(runs[r["id"]]["status"] == "ok" for r in before)
    if phase == "report":
        assert doc["status"] == "finished"
        assert "during report" in err[0] and f"sonic report {d}" in err[0]
        assert [r["status"] for r in doc["runs"]] == ["ok"] * 4
    else:
        assert doc["status"] == "interrupted"
        assert f"--resume {d}" in err[0]
    if phase == "setup":
        assert "during setup" in err[0]
        assert not log.exists() and "gated" not in doc["engines"]  # never started
    if phase == "health wait":
        assert "during the health wait of engine gated" in err[0]
        assert doc["engines"]["gated"]["interrupted"] is True
    if phase == "run":
        assert "during the runs of engine gated" in err[0]
        # Each run of gated is finished and kept, or marked as cut short (a resume reruns it).
        for r in (r for r in doc["runs"] if r["engine"] == "gated"):
            assert r.get("interrupted") is True or (
                r["status"] == "ok" and (d / r["file"]).is_file()
            )


# ---------------------------------------------------------------- kill -9, then the next start


def test_sigkill_orphan_is_stopped_by_the_next_start_and_resume_continues(world, tmp_path):
    d = resumable_copy(world, tmp_path)
    finished = mtimes(d, manifest(d)["runs"])
    gate = tmp_path / "gate"
    gate.touch()
    s = Suite(tmp_path, "killed", "--resume", str(d), suite=world["suite"], gate=gate)
    pgid, members = server_group(s, d)
    first = s.until(
        "a finished run of gated",
        lambda: [r for r in manifest(d)["runs"] if r["engine"] == "gated" and r["status"] == "ok"],
    )
    s.proc.kill()
    assert s.wait() == -signal.SIGKILL
    finished.update(mtimes(d, first))
    # The parent-death signal stopped the launcher; its child sim is orphaned, still serving.
    assert gone([pgid])
    orphans = group_members(pgid)
    assert orphans and set(orphans) <= set(members)
    (record,) = (runtime_dir(tmp_path) / "sonic-bench" / "servers").glob("*.json")

    s = Suite(tmp_path, "resumed", "--resume", str(d), suite=world["suite"], gate=gate)
    assert s.wait() == 0, s.output()
    out = s.stdout()
    line = next(x for x in out.splitlines() if "left running by an earlier suite" in x)
    assert f"engine gated, process group {pgid} (1 process" in line and "SIGTERM" in line
    assert gone(orphans) and group_members(pgid) == []
    assert not record.exists()
    # Finished runs are not run again; the one cut short and the rest are.
    doc = manifest(d)
    assert doc["status"] == "finished"
    assert "engine sim-a: all 2 runs already finished; not started" in out
    assert sorted(r["status"] for r in doc["runs"]) == ["ok"] * 4
    now = mtimes(d, doc["runs"])
    assert {k: now[k] for k in finished} == finished
    assert len(now) == 4 and len(list(d.glob("runs/*/*/rate-*_rep-1.json"))) == 4
    assert doc["sessions"][-1]["leftovers_stopped"] == [line.removeprefix("sonic suite: ")]
    summary = (d / "summary.md").read_text()
    assert "sim-a" in summary and "gated" in summary


# ---------------------------------------------------------------- the record, in process


def _own_group_sleeper() -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
    )


def _dead_owner() -> tuple[int, str]:
    """A process that existed (pid, start) and has exited."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    start = leftovers.process_start(p.pid)
    assert start is not None
    p.kill()
    p.wait()
    return p.pid, start


def _write(rec: leftovers.ServerRecord) -> Path:
    directory = leftovers.state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{rec.pid}-test.json"
    doc = {k: v for k, v in asdict(rec).items() if k != "path"}
    path.write_text(json.dumps(doc))
    return path


def test_a_record_never_kills_a_process_it_cannot_prove_is_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime_dir(tmp_path)))
    owner_pid, owner_start = _dead_owner()
    stranger = _own_group_sleeper()  # as if it got a dead server's recycled pid
    mine = _own_group_sleeper()
    try:
        common = dict(owner_pid=owner_pid, owner_start=owner_start, started_at="t", log="x.log")
        wrong = _write(
            leftovers.ServerRecord(
                name="recycled",
                pid=stranger.pid,
                start="0:1",  # not when the stranger started
                token="not-in-its-environment",
                **common,
            )
        )
        tmpdir = tmp_path / "sonic-srv-tmp"
        tmpdir.mkdir()
        right = _write(
            leftovers.ServerRecord(
                name="orphan",
                pid=mine.pid,
                start=leftovers.process_start(mine.pid) or "",
                token="t",
                tmpdir=str(tmpdir),
                **common,
            )
        )
        (torn := leftovers.state_dir() / "torn.json").write_text('{"name": "x", "pi')
        found = leftovers.reap(grace_s=5)
        assert [x.record.name for x in found] == ["orphan"]
        assert found[0].how == "sigterm" and found[0].processes == [mine.pid]
        assert "engine orphan, process group" in found[0].line()
        assert mine.wait(10) == -signal.SIGTERM
        assert stranger.poll() is None, "a process the record cannot vouch for was signalled"
        assert not wrong.exists() and not right.exists() and not torn.exists()
        assert not tmpdir.exists()
    finally:
        for p in (stranger, mine):
            p.kill()
            p.wait()


def test_a_record_whose_suite_still_runs_is_left_alone(tmp_path, monkeypatch):
    """Two suites on one machine: the second never stops the first one's server."""
    from sonic.suite.lifecycle import ServerProcess

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime_dir(tmp_path)))
    argv = [sys.executable, "-c", "import time; time.sleep(120)"]
    server = ServerProcess("busy", argv, tmp_path / "busy.log", dict(os.environ)).start()
    try:
        assert server.record is not None and server.record.is_file()
        rec = leftovers.ServerRecord.read(server.record)
        assert rec is not None and rec.owner_pid == os.getpid() and rec.pid == server.pid
        assert rec.members() == [server.pid]
        assert leftovers.reap(grace_s=1) == []
        assert server.exit_code() is None and server.record.is_file()
    finally:
        info = server.stop(timeout_s=5)
    assert info["how"] == "sigterm" and info["left"] == []
    assert not list(leftovers.state_dir().glob("*.json"))  # stopped: the record is gone
