"""llama.cpp's ``llama-server``, built from the ``llama-cpp-python`` sdist on PyPI.

PyPI has no llama.cpp binary, but the ``llama-cpp-python`` source package vendors llama.cpp,
so the server can be built with nothing but the package registry: the sdist, plus ``cmake``
and ``ninja`` wheels. The build takes minutes on two cores, so the binary is cached under a
directory keyed by the sdist version and reused by later runs on the same machine.

The build targets x86-64-v3 (AVX2/FMA/F16C) rather than llama.cpp's default ``-march=native``:
on VMs that advertise AMX or AVX-512 without enabling them, a native build dies with SIGILL on
the first matrix multiply; AVX2 is fast enough for a 135M model and runs on any recent x86.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sonic.errors import SonicError

# The llama-cpp-python release whose vendored llama.cpp we build (pinned: reproducible results).
LLAMA_CPP_PYTHON_VERSION = "0.3.36"

# Environment variable naming a ready llama-server binary, which skips the build entirely.
BINARY_ENV = "SONIC_LLAMA_SERVER"
CACHE_ENV = "SONIC_CACHE_DIR"

BUILD_JOBS = 2

# Release, static, server only: no tests/examples, no network features (curl, OpenSSL) and no
# web UI (whose assets the build would otherwise try to download from Hugging Face).
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_ALL_WARNINGS=OFF",
    "-DGGML_CCACHE=OFF",
    "-DGGML_NATIVE=OFF",
    "-DGGML_AVX=ON",
    "-DGGML_AVX2=ON",
    "-DGGML_FMA=ON",
    "-DGGML_F16C=ON",
    "-DGGML_BMI2=ON",
    "-DGGML_AVX512=OFF",
    "-DGGML_AMX_TILE=OFF",
    "-DGGML_AMX_INT8=OFF",
    "-DGGML_AMX_BF16=OFF",
)

# Never hand credentials to pip or the build: nothing there needs them, and logs are kept.
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY", "API_KEY")


def cache_root() -> Path:
    """``$SONIC_CACHE_DIR``, else ``$XDG_CACHE_HOME/sonic-bench``, else ``~/.cache/sonic-bench``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "sonic-bench"


def default_cache_dir(version: str = LLAMA_CPP_PYTHON_VERSION) -> Path:
    return cache_root() / "llama.cpp" / version


def cached_server(cache_dir: Path) -> Path | None:
    """The cached binary if it exists, is executable and was built here with today's options."""
    binary = cache_dir / "llama-server"
    info = cache_dir / "llama-server.json"
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        return None
    try:
        meta = json.loads(info.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict):
        return None
    if meta.get("machine") != platform.machine() or meta.get("cmake_options") != list(
        CMAKE_OPTIONS
    ):
        return None
    return binary


def ensure_llama_server(cache_dir: Path | str | None = None) -> Path:
    """Return a runnable ``llama-server``, building and caching it on first use.

    ``$SONIC_LLAMA_SERVER`` wins when set. Concurrent callers (e.g. pytest-xdist workers)
    serialize on a lock file so only one of them builds; the others reuse its result.
    """
    explicit = os.environ.get(BINARY_ENV)
    if explicit:
        path = Path(explicit).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise SonicError(f"{BINARY_ENV}={explicit} is not an executable file")
        return path
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    found = cached_server(cache)
    if found is not None:
        return found
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SonicError(f"cannot create the llama.cpp cache directory {cache}: {exc}") from None
    with file_lock(cache / ".build.lock"):
        found = cached_server(cache)  # another process may have built it while we waited
        if found is not None:
            return found
        return build_llama_server(cache)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes (one build or install at a time)."""
    import fcntl

    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tool(name: str) -> str:
    """cmake/ninja from the running environment's scripts dir (the PyPI wheels), else PATH."""
    scripts = Path(sys.executable).parent
    candidate = scripts / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise SonicError(
        f"building llama-server needs {name}, which was not found: "
        f"{sys.executable} -m pip install cmake ninja"
    )


def env_without_secrets() -> dict[str, str]:
    """This process's environment without credentials, for pip and build tools."""
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


class _Step:
    """Runs the build's commands with their output appended to one log file."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.env = env_without_secrets()

    def run(self, what: str, argv: list[str], cwd: Path, hint: str = "") -> None:
        with open(self.log, "a", encoding="utf-8") as out:
            out.write(f"\n=== {what}: {' '.join(argv)}\n")
            out.flush()
            try:
                proc = subprocess.run(
                    argv,
                    cwd=cwd,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=False,
                )
            except OSError as exc:
                raise SonicError(f"llama-server build: {what} could not start: {exc}") from None
        if proc.returncode != 0:
            raise SonicError(
                f"llama-server build failed at step '{what}' (exit {proc.returncode}): "
                f"{_last_line(self.log)}{hint}; full log: {self.log}"
            )


def _last_line(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no output"
    for line in reversed(lines):
        if "error" in line.lower():
            return line[:300]
    return lines[-1][:300] if lines else "no output"


def build_llama_server(cache_dir: Path, version: str = LLAMA_CPP_PYTHON_VERSION) -> Path:
    """Download the sdist, build only the ``llama-server`` target and install it atomically."""
    cmake = _tool("cmake")
    ninja = _tool("ninja")
    cache_dir.mkdir(parents=True, exist_ok=True)
    log = cache_dir / "build.log"
    log.write_text(f"llama-server build from llama-cpp-python=={version}\n")
    step = _Step(log)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="build-", dir=cache_dir) as tmp:
        work = Path(tmp)
        step.run(
            "download the llama-cpp-python sdist from the package index",
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                # Only this package as source: `:all:` would also build the sdist's build
                # requirements (cmake itself) from source just to prepare its metadata.
                "--no-binary",
                "llama-cpp-python",
                "--dest",
                str(work),
                f"llama-cpp-python=={version}",
            ],
            work,
            hint=" (is PyPI, or the index pip is configured with, reachable?)",
        )
        source = _unpack_vendored(work, version)
        build = work / "build"
        step.run(
            "configure llama.cpp with cmake",
            [cmake, "-S", str(source), "-B", str(build), "-G", "Ninja"]
            + [f"-DCMAKE_MAKE_PROGRAM={ninja}", *CMAKE_OPTIONS],
            work,
        )
        step.run(
            "compile the llama-server target",
            [cmake, "--build", str(build), "--target", "llama-server", "-j", str(BUILD_JOBS)],
            work,
        )
        built = build / "bin" / "llama-server"
        if not built.is_file():
            raise SonicError(f"llama-server build finished without {built}; full log: {log}")
        # Copy next to the destination, then rename: readers never see a partial binary.
        staged = cache_dir / f".llama-server.{os.getpid()}.tmp"
        shutil.copy2(built, staged)
        staged.chmod(0o755)
        meta = {
            "llama_cpp_python": version,
            "machine": platform.machine(),
            "build_seconds": round(time.monotonic() - started, 1),
            "cmake_options": list(CMAKE_OPTIONS),
        }
        info_tmp = cache_dir / f".llama-server.{os.getpid()}.json.tmp"
        info_tmp.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(staged, cache_dir / "llama-server")
        os.replace(info_tmp, cache_dir / "llama-server.json")
    return cache_dir / "llama-server"


def _unpack_vendored(work: Path, version: str) -> Path:
    """Extract only ``vendor/llama.cpp`` from the sdist (the Python bindings are not needed)."""
    archives = sorted(work.glob("llama_cpp_python-*.tar.gz")) + sorted(
        work.glob("llama-cpp-python-*.tar.gz")
    )
    if not archives:
        raise SonicError(f"pip reported success but left no llama-cpp-python {version} sdist")
    dest = work / "src"
    try:
        with tarfile.open(archives[0]) as tar:
            members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in f"{m.name}/"]
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - Python without PEP 706 filters
                tar.extractall(dest, members=members)
    except (tarfile.TarError, OSError) as exc:
        raise SonicError(f"cannot unpack {archives[0].name}: {exc}") from None
    roots = [p for p in dest.glob("*/vendor/llama.cpp") if (p / "CMakeLists.txt").is_file()]
    if not roots:
        raise SonicError(f"{archives[0].name} has no vendor/llama.cpp/CMakeLists.txt")
    return roots[0]


@dataclass
class LlamaServer:
    """A running ``llama-server`` process: its URL, log file and how to stop it."""

    process: subprocess.Popen
    host: str
    port: int
    alias: str
    log_path: Path
    argv: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM to the server's process group, then SIGKILL if it is still there."""
        import signal

        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=grace_s)
        return self.process.returncode

    def __enter__(self) -> LlamaServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def launch_llama_server(
    binary: Path | str,
    model: Path | str,
    log_path: Path | str,
    *,
    parallel: int = 4,
    ctx: int = 4096,
    threads: int | None = None,
    alias: str = "smollm2",
    host: str = "127.0.0.1",
    port: int | None = None,
    extra: Sequence[str] = (),
    ready_timeout_s: float = 120.0,
) -> LlamaServer:
    """Start ``llama-server`` in its own process group and wait until ``/health`` says ok.

    A port picked here can be taken by someone else before the server binds it; then the
    start is retried on a new port (only when no port was given).
    """
    attempts = 1 if port is not None else 3
    last_error = ""
    for _ in range(attempts):
        chosen = port if port is not None else free_port(host)
        argv = [
            str(binary),
            "--model",
            str(model),
            "--host",
            host,
            "--port",
            str(chosen),
            "--ctx-size",
            str(ctx),
            "--parallel",
            str(parallel),
            "--threads",
            str(threads or min(4, os.cpu_count() or 1)),
            "--alias",
            alias,
            "--metrics",
            "--no-webui",
            *extra,
        ]
        log = Path(log_path)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env_without_secrets(),
                    start_new_session=True,  # own process group: stop() reaps everything
                )
            except OSError as exc:
                raise SonicError(f"cannot start {binary}: {exc}") from None
        server = LlamaServer(proc, host, chosen, alias, log, argv)
        try:
            _wait_healthy(server, ready_timeout_s)
            return server
        except SonicError as exc:
            server.stop()
            last_error = str(exc)
            if "address already in use" not in server.log_tail(50).lower():
                raise
    raise SonicError(last_error)


def _describe_exit(code: int) -> str:
    """'exited with code N', or the signal's name (SIGILL: built for another CPU)."""
    if code >= 0:
        return f"exited with code {code}"
    import signal

    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"was killed by {name}"


def _wait_healthy(server: LlamaServer, timeout_s: float) -> None:
    """Poll ``GET /health`` until it answers 200 (503 while the model loads)."""
    import http.client

    deadline = time.monotonic() + timeout_s
    while True:
        code = server.process.poll()
        if code is not None:
            raise SonicError(
                f"llama-server {_describe_exit(code)} before it was ready; "
                f"log {server.log_path}:\n{server.log_tail()}"
            )
        try:
            conn = http.client.HTTPConnection(server.host, server.port, timeout=2)
            try:
                conn.request("GET", "/health")
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    return
            finally:
                conn.close()
        except OSError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise SonicError(
                f"llama-server not healthy after {timeout_s:.0f}s; "
                f"log {server.log_path}:\n{server.log_tail()}"
            )
        time.sleep(0.1)
