"""The server's CPU time over a run (MAX's ``--collect-cpu-stats``), read with psutil.

The processes are those listening on the server's port on this machine plus all their
descendants, found once before the run (or the ``--server-pids`` given). Their user and
system CPU seconds between the start and the end of the run, and the same as percentages of
the wall-clock interval (100 % = one core busy the whole time), are MAX's ``cpu_metrics``.
A process that exits during the run is left out; one started during it is not seen. A
server on another machine cannot be measured from here: that is said once, never an error.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict, dataclass, field

import psutil

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


@dataclass(frozen=True)
class CpuMetrics:
    """MAX's ``cpu_metrics`` object: seconds and percentages of the elapsed wall time."""

    user: float
    user_percent: float
    system: float
    system_percent: float
    elapsed: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _local_addresses() -> set[str]:
    addrs = {"127.0.0.1", "::1", "0.0.0.0", "::"}
    for entries in psutil.net_if_addrs().values():
        for a in entries:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                addrs.add(a.address.split("%", 1)[0])
    return addrs


def is_local_host(host: str) -> bool:
    """Whether ``host`` names this machine (loopback or one of its interface addresses)."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES or host.startswith("127."):
        return True
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(resolved & _local_addresses())


def pids_for_port(port: int) -> list[int]:
    """PIDs of the processes listening on ``port`` and of all their descendants."""
    pids: set[int] = set()
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid:
                pids.add(conn.pid)
    for pid in list(pids):
        try:
            pids.update(child.pid for child in psutil.Process(pid).children(recursive=True))
        except psutil.Error:
            pass
    return sorted(pids)


def _cpu_times(pids: list[int]) -> dict[int, tuple[float, float]]:
    out: dict[int, tuple[float, float]] = {}
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:  # gone, or not ours to read
            continue
        out[pid] = (t.user, t.system)
    return out


@dataclass
class CpuRecorder:
    """``start()`` before the run, ``stop()`` after it.

    ``pids`` given: exactly those. Otherwise the processes behind ``port`` when ``host`` is
    this machine.
    """

    pids: list[int] | None = None
    host: str | None = None
    port: int | None = None
    warnings: list[str] = field(default_factory=list)
    _start: dict[int, tuple[float, float]] = field(default_factory=dict)
    _t0: float = 0.0

    def start(self) -> CpuRecorder:
        if self.pids is None:
            self.pids = self._discover()
        self._t0 = time.monotonic()
        self._start = _cpu_times(self.pids)
        if self.pids and not self._start:
            self.warnings.append(
                f"server CPU: cannot read the CPU times of PIDs {self.pids} (gone, or another "
                "user's); no cpu_metrics"
            )
        return self

    def _discover(self) -> list[int]:
        where = f"{self.host}:{self.port}"
        if self.host is None or self.port is None or not is_local_host(self.host):
            self.warnings.append(
                f"server CPU: the server at {where} is not on this machine; pass --server-pids "
                "when it is, or run sonic beside it"
            )
            return []
        try:
            pids = pids_for_port(self.port)
        except psutil.Error as exc:
            self.warnings.append(f"server CPU: cannot list listening sockets ({exc})")
            return []
        if os.getpid() in pids:  # an engine embedded in this process (sonic.sim.start)
            self.warnings.append(
                "server CPU: the server runs inside this process, where its CPU time cannot "
                "be told apart from the client's; no cpu_metrics"
            )
            return []
        if not pids:
            self.warnings.append(
                f"server CPU: no process visible here listens on port {self.port} (a container "
                "or another user's process?); pass --server-pids"
            )
        return pids

    def stop(self) -> CpuMetrics | None:
        """User/system CPU over the interval, summed over the processes seen at both ends."""
        elapsed = time.monotonic() - self._t0
        end = _cpu_times(list(self._start))
        both = [pid for pid in self._start if pid in end]
        if not both or elapsed <= 0:
            return None
        user = sum(end[p][0] - self._start[p][0] for p in both)
        system = sum(end[p][1] - self._start[p][1] for p in both)
        return CpuMetrics(
            user=user,
            user_percent=user / elapsed * 100.0,
            system=system,
            system_percent=system / elapsed * 100.0,
            elapsed=elapsed,
        )
