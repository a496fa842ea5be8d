"""One engine's time on the machine: launch (or attach to an external server), wait until it
is ready, learn what it is (version, served model, settings it reports, simulated or not),
and stop it leaving nothing behind. Shared by ``suite run`` and ``validate``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sonic.errors import SonicError
from sonic.suite import lifecycle, probes
from sonic.suite.config import EngineConfig, SuiteConfig, expand_env, secret_values
from sonic.suite.lifecycle import EngineFailed, ServerProcess
from sonic.suite.plan import model_path, tokenizer_for
from sonic.suite.presets import PRESETS, Launch, Preset

SIM_DEFAULT_MODEL = "sonic-sim"


def preset_of(engine: EngineConfig) -> Preset | None:
    return PRESETS[engine.preset] if engine.preset else None


def request_model(engine: EngineConfig) -> str | None:
    """The ``model`` field requests carry (None: ask /v1/models once the server is up)."""
    if engine.request_model:
        return engine.request_model
    if engine.preset == "sim":
        return SIM_DEFAULT_MODEL
    return None


def health_path(engine: EngineConfig) -> str:
    p = preset_of(engine)
    return engine.health_path or (p.health_path if p else "/health")


def ready_timeout(engine: EngineConfig) -> float:
    p = preset_of(engine)
    return engine.ready_timeout_s or (p.ready_timeout_s if p else 600.0)


def launch_for(
    cfg: SuiteConfig, engine: EngineConfig, port: int, metrics_port: int | None = None
) -> Launch:
    """The argv (and settings env) that starts ``engine`` on ``port`` (and, for engines with
    a separate metrics port, ``metrics_port``: default the configured one or the engine's)."""
    from dataclasses import replace

    preset = preset_of(engine)
    model = model_path(cfg, engine)
    if preset is not None:
        resolved = replace(engine, model=model, tokenizer=tokenizer_for(cfg, engine))
        if metrics_port is None:
            metrics_port = engine.metrics_port or None
        return preset.launch(
            resolved, engine.host, port, trust=cfg.trust_remote_code, metrics_port=metrics_port
        )
    assert engine.command is not None
    values = {"port": str(port), "host": engine.host, "model": model or ""}
    argv = [
        re.sub(r"\{(port|host|model)\}", lambda m: values[m.group(1)], arg)
        for arg in engine.command
    ]
    uncontrolled = [k for k, v in engine.settings.as_dict().items() if v is not None]
    return Launch(argv=argv + list(engine.args), env={}, uncontrolled=uncontrolled)


def scrub_argv(argv: list[str], secrets: list[str]) -> list[str]:
    from sonic.results import scrub_text

    return [scrub_text(a, secrets) for a in argv]


@dataclass
class EngineSession:
    """An engine while the suite uses it."""

    cfg: SuiteConfig
    engine: EngineConfig
    log_path: Path
    server: ServerProcess | None = None
    launch: Launch | None = None
    url: str = ""
    port: int = 0
    metrics_url: str | None = None
    ready_s: float | None = None
    models: probes.ModelsInfo | None = None
    version: str | None = None
    simulated: bool = False
    reported: dict[str, Any] = field(default_factory=dict)
    gpu_baseline: dict[int, int] | None = None
    started_at: float | None = None
    stop_info: dict[str, Any] = field(default_factory=dict)

    @property
    def secrets(self) -> list[str]:
        return secret_values(self.engine)

    @property
    def preset(self) -> Preset | None:
        return preset_of(self.engine)

    def plan_launch(self) -> Launch | None:
        """Decide the port and argv (without starting anything)."""
        e = self.engine
        if e.external:
            self.url = e.base_url or lifecycle.base_url(e.host, e.port)
            self.port = e.port
            if e.metrics_port:
                self.metrics_url = lifecycle.base_url(e.host, e.metrics_port) + "/metrics"
            else:
                self.metrics_url = self.url + "/metrics"
            return None
        local = e.host if e.host != "0.0.0.0" else "127.0.0.1"
        self.port = e.port or lifecycle.free_port(local)
        self.url = lifecycle.base_url(e.host, self.port)
        preset = self.preset
        mport = None
        if preset is not None and preset.metrics_port_env:
            # Its own port, picked like the API port unless configured (never the engine's
            # fixed default, which may be taken or be another engine's API port).
            mport = e.metrics_port or lifecycle.free_port(local)
            while mport == self.port:
                mport = lifecycle.free_port(local)
        self.launch = launch_for(self.cfg, e, self.port, mport)
        path = preset.metrics_path if preset is not None else "/metrics"
        if self.launch.metrics_port is not None:
            self.metrics_url = lifecycle.base_url(e.host, self.launch.metrics_port) + path
        else:
            self.metrics_url = self.url + path
        return self.launch

    @property
    def argv(self) -> list[str]:
        return scrub_argv(self.launch.argv, self.secrets) if self.launch else []

    @property
    def server_args(self) -> str:
        if self.engine.server_args is not None:
            return self.engine.server_args
        return shlex.join(self.argv) if self.launch else "(external)"

    def start(self) -> None:
        """Launch (unless external) and wait until ready. Raises EngineFailed."""
        self.launch_process()
        self.wait()

    def launch_process(self) -> None:
        """Start the server process (nothing for an external engine). Raises EngineFailed."""
        e = self.engine
        if not self.url:
            self.plan_launch()
        self.gpu_baseline = lifecycle.gpu_memory_used()
        self.started_at = time.time()
        if self.launch is None:
            return
        env = dict(os.environ)
        env.update(self.launch.env)
        try:
            env.update(expand_env(e))
        except SonicError as exc:  # a ${VAR} is unset (the message names it, shows no value)
            raise EngineFailed(str(exc)) from None
        self.server = ServerProcess(
            e.name,
            list(self.launch.argv),
            self.log_path,
            env,
            isolate_cwd=self.launch.isolate_cwd,
        )
        self.server.start()

    def wait(self) -> None:
        """Poll until ready, then learn about the server. Raises EngineFailed."""
        e = self.engine
        ready = lifecycle.wait_ready(
            self.url, health_path(e), ready_timeout(e), self.server, self.secrets
        )
        self.ready_s = round(ready.seconds, 3)
        self.models = ready.models
        self._learn()

    def _learn(self) -> None:
        """Version, simulated flag and the settings the server reports about itself."""
        from sonic.benchmark import is_simulated

        preset = self.preset
        paths = preset.version_paths if preset else ("/version",)
        self.version = probes.version_from(self.url, paths)
        if self.version is None and preset is not None and preset.version_argv:
            self.version = command_version(list(preset.version_argv))
        self.simulated = is_simulated(self.url) or bool(preset and preset.simulated)
        if self.models is not None and self.models.max_model_len is not None:
            self.reported["max_model_len"] = self.models.max_model_len
        if preset is not None and preset.name == "llama.cpp":
            self.reported.update(probes.llama_props(self.url))

    def install_info(self) -> dict[str, Any] | None:
        """The engine's venv and the versions ``sonic suite setup`` recorded there."""
        from sonic.suite.install import read_marker, venv_dir

        if self.engine.install is None:
            return None
        venv = venv_dir(self.engine.install)
        marker = read_marker(venv) or {}
        return {
            "venv": str(venv),
            "spec": self.engine.install.as_dict(),
            "versions": marker.get("versions"),
            "installed_at": marker.get("installed_at"),
        }

    def request_model(self) -> str | None:
        model = request_model(self.engine)
        if model is None and self.models is not None and self.models.ids:
            return self.models.ids[0]
        return model

    def alive(self) -> bool:
        return self.server is None or self.server.exit_code() is None

    def stop(self) -> dict[str, Any]:
        """Stop the server (group), wait for its GPU memory, scrub secrets from its log."""
        if self.server is None:
            return {}
        with lifecycle.signals_deferred():
            info = self.server.stop(self.engine.stop_timeout_s)
            lifecycle.scrub_log(self.log_path, self.secrets)
            gpu = lifecycle.wait_gpu_release(self.gpu_baseline, self.engine.gpu_release_timeout_s)
        if gpu is not None:
            info["gpu_release"] = gpu
        self.stop_info = info
        return info

    def log_tail(self, lines: int = 20) -> str:
        return lifecycle.log_tail(self.log_path, lines, self.secrets)


def command_version(argv: list[str]) -> str | None:
    """First line of ``ENGINE --version`` (engines print it to stdout or stderr)."""
    try:
        cp = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in (cp.stdout + "\n" + cp.stderr).splitlines():
        if line.strip():
            return line.strip()[:100]
    return None
