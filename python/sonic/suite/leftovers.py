"""A record of the engine servers running for this user's suites, so that the next suite can
stop what a dead one left behind.

The parent-death signal (``lifecycle.with_parent_death_signal``) covers the common case: a
killed suite's server gets SIGTERM from the kernel. It reaches only the server's first
process, though, and only once: an engine's workers (vLLM's engine core, MAX's model workers),
or a server slow to act on SIGTERM, can outlive it. So each server is recorded in a small file
while it runs (written atomically, removed once its process group is gone), and ``sonic suite
run`` begins by stopping the groups of recorded servers whose suite no longer runs.

A record is trusted only for the processes it can prove are its own: the group leader by its
start time (a pid can be reused, a pid with the same start time cannot, within one boot), the
group's other members by a random token in their environment that only the recorded server
and its descendants carry. A recycled pid is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sonic.suite.layout import now_iso

TOKEN_ENV = "SONIC_SERVER_ID"
GRACE_S = 10.0  # SIGTERM to SIGKILL, for a leftover group


def state_dir() -> Path:
    """``$XDG_RUNTIME_DIR/sonic-bench/servers`` (per user, and emptied at reboot like the pids
    it names), else ``servers/`` in the sonic cache directory."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "sonic-bench" / "servers"
    from sonic.engines.llamacpp import cache_root

    return cache_root() / "servers"


def new_token() -> str:
    return secrets.token_hex(12)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_start(pid: int) -> str | None:
    """When ``pid`` started, as an opaque id (None: no such live process). Unlike the command
    line, which the launcher's exec and engines' process titles change, it never changes."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        stat = ""
    if stat:
        rest = stat[stat.rfind(")") + 2 :].split()  # comm may hold spaces and ')'
        if len(rest) < 20 or rest[0] in ("Z", "X"):
            return None
        return f"{_boot_id()}:{rest[19]}"  # field 22, starttime in clock ticks since boot
    import psutil  # no /proc (macOS): its wall-clock start time

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return f"t:{proc.create_time():.2f}"
    except psutil.Error:
        return None


def _carries(pid: int, token: str) -> bool:
    """Whether ``pid``'s environment holds our token (read, never logged: it may hold secrets)."""
    needle = f"{TOKEN_ENV}={token}".encode()
    try:
        return needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        pass
    import psutil

    try:
        return psutil.Process(pid).environ().get(TOKEN_ENV) == token
    except psutil.Error:
        return False


@dataclass
class ServerRecord:
    """One server while it runs: what identifies it, and who started it."""

    name: str
    pid: int  # also its process group id (a new session)
    start: str  # process_start(pid)
    token: str
    owner_pid: int  # the suite (or validate) that started it
    owner_start: str
    started_at: str
    log: str
    tmpdir: str | None = None
    path: Path | None = field(default=None, compare=False)

    @classmethod
    def read(cls, path: Path) -> ServerRecord | None:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            doc.pop("path", None)
            rec = cls(**doc)
        except (OSError, ValueError, TypeError, AttributeError):
            return None
        if not (isinstance(rec.pid, int) and isinstance(rec.owner_pid, int) and rec.pid > 1):
            return None
        rec.path = path
        return rec

    def owner_alive(self) -> bool:
        return process_start(self.owner_pid) == self.owner_start

    def members(self) -> list[int]:
        """The live processes of its group, if the group is provably this server's; else []."""
        from sonic.suite.lifecycle import group_members

        members = group_members(self.pid)
        if self.pid in members and process_start(self.pid) == self.start:
            return members
        if any(_carries(m, self.token) for m in members):
            return members  # the leader is gone, its workers are not
        return []


def record(name: str, pid: int, token: str, log: Path, tmpdir: str | None = None) -> Path | None:
    """Write a server's record (best effort: a suite runs without it; None if not written)."""
    from sonic.errors import SonicError
    from sonic.results import write_atomic

    start = process_start(pid)
    owner_start = process_start(os.getpid())
    if start is None or owner_start is None:
        return None  # already gone, or no way to know it again
    rec = ServerRecord(
        name=name,
        pid=pid,
        start=start,
        token=token,
        owner_pid=os.getpid(),
        owner_start=owner_start,
        started_at=now_iso(),
        log=str(log),
        tmpdir=tmpdir,
    )
    directory = state_dir()
    path = directory / f"{pid}-{token[:8]}.json"
    doc = {k: v for k, v in asdict(rec).items() if k != "path"}
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(path, [json.dumps(doc, indent=1), "\n"], mode=0o600)
    except (OSError, SonicError):
        return None
    return path


def forget(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


@dataclass
class Leftover:
    """A server group found running after its suite died, and what stopping it took."""

    record: ServerRecord
    processes: list[int]
    how: str  # sigterm | sigkill
    left: list[int]

    def line(self) -> str:
        r = self.record
        n = len(self.processes)
        head = (
            f"stopped a server left running by an earlier suite that did not stop it: engine "
            f"{r.name}, process group {r.pid} ({n} process{'es' if n != 1 else ''}, started "
            f"{r.started_at}), with {self.how.upper()}"
        )
        if self.left:
            return head + f"; still running: {self.left}"
        return head + f" (log: {r.log})"


def reap(grace_s: float = GRACE_S) -> list[Leftover]:
    """Stop the recorded servers whose suite is gone; drop records that name nothing of ours."""
    from sonic.suite.lifecycle import group_members, terminate_group

    directory = state_dir()
    try:
        paths = sorted(directory.glob("*.json"))
    except OSError:
        return []
    out = []
    for path in paths:
        rec = ServerRecord.read(path)
        if rec is None:
            forget(path)  # torn or foreign: records are written whole
            continue
        if rec.owner_alive():
            continue  # its suite still runs (maybe another one on this machine): not ours
        processes = rec.members()
        if processes:
            how = terminate_group(rec.pid, grace_s)
            left = group_members(rec.pid)
            out.append(Leftover(rec, processes, how, left))
            if left:
                continue  # kept: the next start tries again
        if rec.tmpdir and Path(rec.tmpdir).name.startswith("sonic-"):
            shutil.rmtree(rec.tmpdir, ignore_errors=True)
        forget(path)
    return out
