"""The embedded simulated engine (``sonic sim``) from Python.

``start(**options)`` runs it on a background runtime inside this process and returns a handle::

    with sonic.sim.start(profile="fast-decode", tokenizer="tok/") as server:
        requests.post(server.url + "/v1/completions", json={...})

Options are the fields of :class:`SimOptions` (the snake_case of ``sonic sim``'s flags);
engine-model fields left at ``None`` take the profile's value.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

PROFILES = ("default", "fast-decode", "fast-prefill")


@dataclass(frozen=True)
class SimOptions:
    """Every option of the simulated engine (see ``python -m sonic sim --help``)."""

    host: str = "127.0.0.1"
    port: int = 0
    profile: str = "default"
    model: str = "sonic-sim"
    tokenizer: str | None = None
    seed: int = 0
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    kv_cache_tokens: int | None = None
    step_base_ms: float | None = None
    decode_us_per_seq: float | None = None
    prefill_us_per_token: float | None = None
    eos_mean_len: float = 128.0
    ttft_ms: float | None = None
    itl_ms: float | None = None
    output_len: int | None = None
    exact_prefill_us_per_token: float = 0.0
    enable_prefix_caching: bool = True
    prefix_block_size: int = 16
    prefix_cache_blocks: int | None = None
    fail_500: float = 0.0
    fail_429: float = 0.0
    fail_reset: float = 0.0
    fail_stall: float = 0.0
    fail_malformed: float = 0.0
    stall_s: float = 3600.0

    @classmethod
    def from_kwargs(cls, **options: object) -> SimOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            from sonic.errors import SonicError

            raise SonicError(f"unknown sim option(s): {', '.join(unknown)}")
        return cls(**options)  # type: ignore[arg-type]

    def to_json(self) -> str:
        """The JSON the Rust core validates (unset options left out; ``sonic:`` names resolved)."""
        from sonic.resources import resolve

        doc = {k: v for k, v in asdict(self).items() if v is not None}
        if "tokenizer" in doc:
            doc["tokenizer"] = resolve(doc["tokenizer"])
        return json.dumps(doc)


class SimHandle:
    """A simulated engine running in this process; ``stop()`` (or leaving ``with``) frees it."""

    def __init__(self, server: object) -> None:
        self._server = server

    @property
    def url(self) -> str:
        return self._server.url  # type: ignore[attr-defined,no-any-return]

    @property
    def host(self) -> str:
        return self._server.host  # type: ignore[attr-defined,no-any-return]

    @property
    def port(self) -> int:
        return self._server.port  # type: ignore[attr-defined,no-any-return]

    def stop(self) -> None:
        self._server.stop()  # type: ignore[attr-defined]

    def __enter__(self) -> SimHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SimHandle(url={self.url!r})"


def start(**options: object) -> SimHandle:
    """Start the simulated engine in the background; raises ``sonic._core.CoreError`` (bad
    option values, naming the field) or ``SonicError`` (unknown option names)."""
    from sonic import _core

    opts = SimOptions.from_kwargs(**options)
    return SimHandle(_core.start_sim(opts.to_json()))


def serve(opts: SimOptions) -> None:
    """Serve in the foreground until SIGINT/SIGTERM (prints the listening line)."""
    from sonic import _core

    _core.serve_sim(opts.to_json())


class SimProcess:
    """``python -m sonic sim`` as a separate process (its own session), with its URL.

    For demos, tests and benchmarks that must not share a process (or a GIL, or CPU
    accounting) with the client. ``stop()`` sends SIGTERM and waits; a context manager too.
    """

    def __init__(self, *flags: str, startup_timeout_s: float = 60.0) -> None:
        import subprocess
        import sys
        import time

        from sonic.errors import SonicError

        cmd = [sys.executable, "-m", "sonic", "sim", "--host", "127.0.0.1", "--port", "0"]
        self.proc = subprocess.Popen(
            [*cmd, *flags], stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        deadline = time.monotonic() + startup_timeout_s
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if "listening on" in line:
                self.url = line.strip().rsplit(" ", 1)[-1]
                return
        self.stop()
        raise SonicError(
            "the simulated engine did not start (run `python -m sonic sim` to see why)"
        )

    def stop(self) -> None:
        import subprocess

        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
