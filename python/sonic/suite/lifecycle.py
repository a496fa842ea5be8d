"""Engine server processes: start, wait until ready, stop, and make sure nothing is left.

Each server runs in its own session (so its own process group), with stdout and stderr going
to its log file. Readiness is polled (health, then ``/v1/models``) until a deadline, never a
fixed sleep followed by one check (the original suite's bug). Stopping sends
SIGTERM to the whole group, waits, then SIGKILLs the group: a launcher's children (vLLM's
engine core, MAX's workers) go with it, and no other process on the machine is touched (never
``pkill -f``). While it runs, each server is recorded (``sonic.suite.leftovers``), so that what
a suite killed with SIGKILL leaves behind is stopped by the next one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from sonic.suite import probes

POLL_S = 0.25
POLL_MAX_S = 2.0


class EngineFailed(Exception):
    """An engine could not be used (did not start, never became ready, died): the suite
    records why and goes on with the next engine."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


# Exec'd by a tiny launcher before the server: if sonic dies, even by SIGKILL, the kernel sends
# the server SIGTERM (PR_SET_PDEATHSIG survives exec), so no engine is left holding a GPU.
# (Not preexec_fn: it is unsafe in a process with threads.)
_PDEATHSIG_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "libc.prctl(1, int(signal.SIGTERM))\n"  # 1 = PR_SET_PDEATHSIG
    "if os.getppid() == int(sys.argv[1]):\n"  # the parent may already be gone
    "    os.execvp(sys.argv[2], sys.argv[2:])\n"
    "sys.exit(1)\n"
)


def with_parent_death_signal(argv: list[str]) -> list[str]:
    """``argv`` behind the launcher above (Linux; elsewhere unchanged)."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, "-c", _PDEATHSIG_LAUNCHER, str(os.getpid()), *argv]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if shown == "0.0.0.0":
        shown = "127.0.0.1"
    return f"http://{shown}:{port}"


# ---------------------------------------------------------------- process groups


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``.

    Reads /proc where it exists, because a zombie still answers ``kill(0)`` and an orphaned
    zombie is only reaped when init gets to it; elsewhere falls back to ``killpg(pgid, 0)``.
    """
    proc = Path("/proc")
    if proc.is_dir():
        out = []
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid pgrp ...: comm may contain spaces, so split after ')'.
            rest = stat[stat.rfind(")") + 2 :].split()
            if len(rest) >= 3 and rest[0] != "Z" and rest[2] == str(pgid):
                out.append(int(entry.name))
        return out
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        return [pgid]
    return [pgid]


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def wait_group_gone(pgid: int, timeout_s: float, reap: Callable[[], object] | None = None) -> bool:
    """Wait until no live process is left in group ``pgid`` (``reap``: wait for our child)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if reap is not None:
            reap()
        if not group_members(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def terminate_group(pgid: int, grace_s: float, reap: Callable[[], object] | None = None) -> str:
    """SIGTERM the group, SIGKILL what is left after ``grace_s``: says which it took."""
    signal_group(pgid, signal.SIGTERM)
    if wait_group_gone(pgid, grace_s, reap):
        return "sigterm"
    signal_group(pgid, signal.SIGKILL)
    wait_group_gone(pgid, 10.0, reap)
    return "sigkill"


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while starting or stopping a server, so a Ctrl-C can neither leave
    one half-stopped nor started but unrecorded; a signal that came meanwhile is delivered
    once the block is done (never lost). The block itself is bounded by its timeouts."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        for s, handler in old.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                signal.signal(s, handler)
        if held:
            signal.raise_signal(held[0])  # to the handler in place before the block


# Servers started by this process and not yet stopped (what ``stop_all`` stops).
_RUNNING: dict[int, ServerProcess] = {}


def stop_all(timeout_s: float = 30.0) -> list[str]:
    """Stop every server this process started and has not stopped: the suite's last line of
    defence when an interrupt came at a moment its own cleanup could not see. Returns names."""
    stopped = []
    for server in list(_RUNNING.values()):
        server.stop(timeout_s)
        stopped.append(server.name)
    return stopped


@dataclass
class ServerProcess:
    """One launched engine server."""

    name: str
    argv: list[str]
    log_path: Path
    env: Mapping[str, str]
    cwd: Path | None = None
    isolate_cwd: bool = False  # start in its own TMPDIR (engines that read ./.env)
    proc: subprocess.Popen | None = None
    tmpdir: str | None = None
    started_at: float = 0.0
    record: Path | None = None  # its entry in leftovers.state_dir() while it runs

    def start(self) -> ServerProcess:
        """Launch in a new session (own process group), stdout+stderr to the log file, and
        record it (``leftovers``) until it is stopped."""
        from sonic.suite import leftovers

        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(self.env)
        if "TMPDIR" not in env:
            # Engines leave IPC sockets and temp files behind: give each its own TMPDIR.
            self.tmpdir = tempfile.mkdtemp(prefix=f"sonic-{self.name}-")
            env["TMPDIR"] = self.tmpdir
        token = leftovers.new_token()
        env[leftovers.TOKEN_ENV] = token  # inherited by the server's workers: marks them ours
        cwd = self.cwd
        if cwd is None and self.isolate_cwd:
            cwd = Path(env["TMPDIR"])
        exe = self.argv[0]
        if shutil.which(exe, path=env.get("PATH")) is None and not os.path.isfile(exe):
            self._cleanup_tmp()
            raise EngineFailed(f"{exe}: executable not found on PATH")
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child keeps it)
        with signals_deferred():  # a Ctrl-C now lands after the server is known and recorded
            try:
                self.proc = subprocess.Popen(
                    with_parent_death_signal(self.argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=cwd,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                self._cleanup_tmp()
                raise EngineFailed(f"cannot start {exe}: {exc.strerror or exc}") from None
            finally:
                log.close()
            self.started_at = time.monotonic()
            _RUNNING[id(self)] = self
            self.record = leftovers.record(
                self.name, self.proc.pid, token, self.log_path, self.tmpdir
            )
        return self

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def pgid(self) -> int | None:
        return self.pid  # start_new_session: the leader's pid is the group id

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout_s: float = 30.0) -> dict[str, object]:
        """SIGTERM the group, wait up to ``timeout_s``, SIGKILL what is left, wait again.

        Returns what happened (for the manifest). Safe to call twice. The server's record
        is removed once its group is gone (kept otherwise, for the next suite to retry).
        """
        from sonic.suite import leftovers

        if self.proc is None:
            return {"stopped": False}
        pgid = self.proc.pid
        how = "exited"
        if self.proc.poll() is None or group_members(pgid):
            how = terminate_group(pgid, timeout_s, reap=self.proc.poll)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5.0)
        left = group_members(pgid)
        if not left:
            leftovers.forget(self.record)
            self.record = None
        _RUNNING.pop(id(self), None)
        self._cleanup_tmp()
        return {"stopped": True, "how": how, "exit_code": self.proc.returncode, "left": left}

    def _cleanup_tmp(self) -> None:
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    def log_tail(self, lines: int = 20, secrets: list[str] | None = None) -> str:
        return log_tail(self.log_path, lines, secrets)


def log_tail(path: Path, lines: int = 20, secrets: list[str] | None = None) -> str:
    """The last lines of a log, secrets scrubbed."""
    from sonic.results import scrub_text

    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            data = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    tail = "\n".join(data.splitlines()[-lines:])
    return scrub_text(tail, secrets or [])


def scrub_log(path: Path, secrets: list[str]) -> None:
    """Remove secret values a server may have echoed into its log (best effort, logs < 256 MiB)."""
    from sonic.results import scrub_text, write_atomic

    if not secrets:
        return
    try:
        if path.stat().st_size > 256 * 1024 * 1024:
            return
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    clean = scrub_text(text, secrets)
    if clean != text:
        with contextlib.suppress(Exception):
            write_atomic(path, [clean])


# ---------------------------------------------------------------- readiness


@dataclass
class Ready:
    seconds: float
    models: probes.ModelsInfo | None


def wait_ready(
    url: str,
    health_path: str,
    timeout_s: float,
    server: ServerProcess | None = None,
    secrets: list[str] | None = None,
) -> Ready:
    """Poll health, then ``/v1/models``, until both answer or ``timeout_s`` passes.

    Raises EngineFailed (with the log tail) when the server exits or the deadline passes.
    """
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    delay = POLL_S
    last = "no answer yet"
    healthy = False
    while True:
        if server is not None and server.exit_code() is not None:
            raise EngineFailed(
                f"the server exited with code {server.exit_code()} before it was ready",
                server.log_tail(secrets=secrets),
            )
        if not healthy:
            r = probes.request(url + health_path, timeout=min(5.0, max(timeout_s, 0.5)))
            healthy = r.ok
            last = f"{health_path}: {r.error or f'HTTP {r.status}'}"
        if healthy:
            info = probes.models(url)
            if info is not None:
                return Ready(seconds=time.monotonic() - t0, models=info)
            last = "/v1/models: no usable answer"
        if time.monotonic() >= deadline:
            tail = server.log_tail(secrets=secrets) if server is not None else ""
            raise EngineFailed(f"not ready after {timeout_s:g} s (last: {last})", tail)
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, POLL_MAX_S)


# ---------------------------------------------------------------- GPU memory


def gpu_info() -> list[dict[str, object]] | None:
    """GPUs as nvidia-smi sees them; None without nvidia-smi or a driver."""
    rows = _nvidia_smi("index,name,memory.total,memory.used")
    if rows is None:
        return None
    out = []
    for row in rows:
        if len(row) < 4:
            continue
        try:
            out.append(
                {
                    "index": int(row[0]),
                    "name": row[1],
                    "memory_total_mib": int(float(row[2])),
                    "memory_used_mib": int(float(row[3])),
                }
            )
        except ValueError:
            continue
    return out or None


def _nvidia_smi(fields: str) -> list[list[str]] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        cp = subprocess.run(
            [exe, f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=15,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if cp.returncode != 0:
        return None
    return [[c.strip() for c in line.split(",")] for line in cp.stdout.splitlines() if line.strip()]


def gpu_memory_used() -> dict[int, int] | None:
    gpus = gpu_info()
    if gpus is None:
        return None
    return {int(g["index"]): int(g["memory_used_mib"]) for g in gpus}  # type: ignore[call-overload]


def wait_gpu_release(
    baseline: dict[int, int] | None, timeout_s: float, slack_mib: int = 1024
) -> dict[str, object] | None:
    """After a server stopped: wait until each GPU's used memory is back near ``baseline``
    (what was used before the server started), so the next engine gets the whole GPU."""
    if baseline is None or timeout_s <= 0:
        return None
    t0 = time.monotonic()
    while True:
        used = gpu_memory_used()
        if used is None:
            return None
        if all(used.get(i, 0) <= b + slack_mib for i, b in baseline.items()):
            return {"released": True, "seconds": round(time.monotonic() - t0, 2), "used_mib": used}
        if time.monotonic() - t0 >= timeout_s:
            return {"released": False, "seconds": round(timeout_s, 2), "used_mib": used}
        time.sleep(1.0)
