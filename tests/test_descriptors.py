"""Room for a run's connections, made before t0 (src/descriptors.rs): the soft limit on open
files is raised to what the run needs, and the descriptor table is grown once, so that no
`socket()` or `accept()` waits for the kernel to grow it while requests are timed.

Each case runs in a child process: it changes process-wide limits."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from sonic.sim import SimProcess

RUN = """
import resource, sys
from sonic import client

def table_size():
    status = open('/proc/self/status').read()
    return int(status.split('FDSize:')[1].split()[0])

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if len(sys.argv) > 3:  # a soft limit, and a hard one when given
    high = int(sys.argv[4]) if len(sys.argv) > 4 else hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[3]), high))
before = (resource.getrlimit(resource.RLIMIT_NOFILE)[0], table_size())
n = int(sys.argv[2])
rec = client.run(client.RunConfig(base_url=sys.argv[1], endpoint='/v1/completions',
    api='completions', model='sonic-sim',
    requests=[client.RequestSpec(prompt='x', max_tokens=2) for _ in range(n)],
    schedule=client.ScheduleSpec(request_rate=None), max_concurrency=n, timeout_s=30.0))
errors = sorted({e for e in rec.error if e})
after = (resource.getrlimit(resource.RLIMIT_NOFILE)[0], table_size())
print(*before, *after, len(errors))
print(*errors, sep='\\n', file=sys.stderr)
"""


def _run(url: str, n: int, *limits: int, errors: bool = False):
    """(soft limit, table size) before and after a run of `n` streams at once in a child
    process under `limits` (soft, then hard), and its distinct errors."""
    args = [sys.executable, "-c", RUN, url, str(n), *map(str, limits)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    soft_before, table_before, soft_after, table_after, n_errors = map(int, done.stdout.split())
    if not errors:
        assert n_errors == 0, done.stderr
    return (soft_before, table_before), (soft_after, table_after), done.stderr.splitlines()


def test_the_table_is_grown_to_the_pool_before_t0():
    # The stall this avoids (an RCU grace period, ~20 ms here) hit the 256th connection.
    with SimProcess("--ttft-ms", "5", "--itl-ms", "1", "--output-len", "2") as server:
        (_, table_before), (_, table_after), _ = _run(server.url, 600)
    assert table_before < 600 <= table_after, (table_before, table_after)


def test_a_low_soft_limit_is_raised_to_what_the_run_needs():
    # 400 streams at once under a soft limit of 256: without the raise, connects (and the
    # sim's accepts: it inherits the limit) fail with EMFILE. TTFT 300 ms keeps every
    # stream open together.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1024:
        pytest.skip(f"the hard limit on open files here is {hard}: too low to raise to 400")
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # the sim starts under it too
    try:
        server = SimProcess("--ttft-ms", "300", "--itl-ms", "1", "--output-len", "2")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    with server:
        (soft_before, _), (soft_after, _), _ = _run(server.url, 400, 256)
    assert soft_before == 256
    assert soft_after > 400, soft_after


def test_connects_refused_by_the_hard_limit_say_what_to_raise():
    # Soft and hard at 256: the client cannot raise it, some of 400 connects fail with
    # EMFILE, and their message says which limit to raise.
    with SimProcess("--ttft-ms", "300", "--itl-ms", "1", "--output-len", "2") as server:
        _, (soft_after, _), errors = _run(server.url, 400, 256, 256, errors=True)
    assert soft_after == 256
    assert errors, "expected connects to fail under a hard limit of 256"
    assert all("Too many open files" in e and "ulimit -Hn" in e for e in errors), errors
