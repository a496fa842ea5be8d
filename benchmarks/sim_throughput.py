"""How fast is `sonic sim` in exact-timing mode? (run on demand, not a test)

Starts `python -m sonic sim --ttft-ms T --itl-ms I --output-len L` as a subprocess (build the
core in release mode first: `maturin develop --release`), then drives N concurrent streams
with a client and prints chunks/s delivered and the fraction of chunks that arrived within
1 ms / 0.2 ms of their schedule (chunk k of a request is due at send time + T + k * I). The
client shares the machine, so its own lag is included: the numbers are a lower bound on the
sim's accuracy. With `--client sonic` lateness is measured against the stream's own first
token (token k due k * I after it), i.e. the steady-state pacing, and the rate is counted
while every stream is open. `--client sonic` (default) drives the streams with sonic's Rust
client (a consumer of the sim, not shared code); `--client asyncio` with a raw single-threaded
asyncio client (HTTP/1.0, counting chunks only), which saturates first on 2 cores.

    python benchmarks/sim_throughput.py [--streams 500 1000 2000] [--rate 100000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
import urllib.request

MARK = b'"text"'


class Stream(asyncio.Protocol):
    def __init__(self, request: bytes, done: asyncio.Future) -> None:
        self.request = request
        self.done = done
        self.times: list[int] = []
        self.sent = 0
        self.tail = b""

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        self.sent = time.monotonic_ns()
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        buf = self.tail + data
        n = buf.count(MARK)
        self.tail = buf[-(len(MARK) - 1) :]
        self.times.extend([now] * n)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def drive(host: str, port: int, n: int, ttft_ms: float, itl_ms: float, out_len: int):
    body = json.dumps({"prompt": "x", "max_tokens": out_len, "stream": True}).encode()
    request = (
        f"POST /v1/completions HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    loop = asyncio.get_running_loop()
    streams, waits = [], []
    for _ in range(n):
        fut = loop.create_future()
        _, proto = await loop.create_connection(lambda f=fut: Stream(request, f), host, port)
        streams.append(proto)
        waits.append(fut)
    await asyncio.wait_for(asyncio.gather(*waits), timeout=120)
    lateness = []
    for s in streams:
        for k, t in enumerate(s.times):
            due = s.sent + int((ttft_ms + k * itl_ms) * 1e6)
            lateness.append((t - due) / 1e6)
    first = min(s.sent for s in streams)
    last = max(max(s.times, default=first) for s in streams)
    chunks = sum(len(s.times) for s in streams)
    return chunks, (last - first) / 1e9, lateness


def drive_sonic(url: str, n: int, ttft_ms: float, itl_ms: float, out_len: int):
    """The same streams through sonic's Rust client (timestamps taken as bytes arrive)."""
    import numpy as np

    from sonic import client

    cfg = client.RunConfig(
        base_url=url,
        endpoint="/v1/completions",
        api="completions",
        model="sonic-sim",
        body=client.BodyOptions(fields={"ignore_eos": True}),
        requests=[client.RequestSpec(prompt="x", max_tokens=out_len) for _ in range(n)],
        # Streams open over the first second (a burst of thousands of simultaneous requests
        # measures the accept queue, not the steady state), then all run together.
        schedule=client.ScheduleSpec(request_rate=float(n), burstiness=None),
    )
    rec = client.run(cfg)
    kinds = np.asarray(rec.chunk_kind)
    lateness = []
    for i in range(rec.n):
        sl = rec.chunk_slice(i)
        t = rec.chunk_ns[sl][kinds[sl] == 0]
        if t.size < 2:
            continue
        # Steady-state pacing: token k is due k * ITL after the stream's first token.
        due = t[0] + (np.arange(1, t.size) * itl_ms * 1e6).astype(np.int64)
        lateness.extend(((t[1:] - due) / 1e6).tolist())
    sent = rec.sent_ns[rec.sent_ns >= 0]
    text = rec.chunk_ns[kinds == 0]
    if not (text.size and sent.size):
        return 0, float("nan"), lateness
    # Every stream is open from the last send until the first stream ends.
    lo = int(sent.max())
    hi = int(min(rec.end_ns[rec.end_ns >= 0].min(), text.max()))
    steady = int(((text >= lo) & (text < hi)).sum())
    return steady, max(hi - lo, 1) / 1e9, lateness


def _cpu_seconds(pid: int) -> float:
    """CPU time the sim process used so far (Linux /proc), to see whether it is the bottleneck."""
    import os

    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, nargs="+", default=[500, 1000, 2000])
    ap.add_argument("--rate", type=float, default=100_000, help="target chunks/s in total")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each stream")
    ap.add_argument("--ttft-ms", type=float, default=300.0)
    ap.add_argument("--client", choices=("sonic", "asyncio"), default="sonic")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for n in args.streams:
        itl = n / args.rate * 1e3
        out_len = max(2, int(args.seconds * 1e3 / itl))
        cmd = [sys.executable, "-m", "sonic", "sim", "--port", "0", "--ttft-ms",
               str(args.ttft_ms), "--itl-ms", str(itl), "--output-len", str(out_len)]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip().rsplit(" ", 1)[-1]
            with urllib.request.urlopen(url + "/version") as r:
                build = json.load(r).get("build")
            host, port = url.removeprefix("http://").rsplit(":", 1)
            if args.client == "sonic":
                chunks, secs, late = drive_sonic(url, n, args.ttft_ms, itl, out_len)
            else:
                coro = drive(host, int(port), n, args.ttft_ms, itl, out_len)
                chunks, secs, late = asyncio.run(coro)
            cpu = _cpu_seconds(proc.pid)
        finally:
            proc.terminate()
            proc.wait()
        expected = n * out_len
        within1 = sum(abs(x) <= 1.0 for x in late) / max(1, len(late))
        within02 = sum(abs(x) <= 0.2 for x in late) / max(1, len(late))
        late.sort()
        p50 = late[len(late) // 2] if late else float("nan")
        p99 = late[int(len(late) * 0.99)] if late else float("nan")
        print(
            f"client={args.client} streams={n:5d} itl={itl:6.2f}ms build={build} "
            f"chunks={chunks} (of {expected}) "
            f"rate={chunks / secs:9.0f}/s within1ms={within1:6.1%} within0.2ms={within02:6.1%} "
            f"lateness p50={p50:+.3f}ms p99={p99:+.3f}ms sim_cpu_s={cpu:.1f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
