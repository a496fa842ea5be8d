"""``sonic suite setup``: one isolated virtualenv per engine, built from its pinned spec.

The venv lives under ``<cache>/venvs/<first package>-<spec hash>/`` and is reused while the
spec is unchanged. A finished install writes ``sonic-install.json`` (spec, versions, timing)
last, so a half-built venv is never mistaken for a good one; ``pip freeze`` goes beside it.
pip's whole output goes to ``<venv>.log``; a failure is one line naming pip's last error line
and that log. Credentials are removed from pip's environment.

With a constraints (lock) file in the spec, every ``pip install`` of the venv gets ``-c LOCK``
(``pip_install_argv``). ``sonic suite lock`` (``lock_suite``) records such a file: the engine's
spec installed without its lock (or that venv reused), then its ``pip freeze``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sonic.errors import SonicError
from sonic.suite.install import (
    MARKER,
    InstallSpec,
    canonical_name,
    file_sha256,
    installed,
    lock_lines,
    venv_bin,
    venv_dir,
)

PIP_TIMEOUT_S = 3600.0

# Run inside the engine venv: the declared requirements of the --no-deps packages that apply
# on this platform (markers evaluated, extras off), one per line.
_REQUIREMENTS_SCRIPT = r"""
import sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
for dist in sys.argv[1:]:
    for text in metadata.requires(dist) or []:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        req.marker = None
        print(str(req))
"""

_VERSIONS_SCRIPT = r"""
import json, sys
from importlib import metadata
out = {}
for name in sys.argv[1:]:
    try:
        out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        out[name] = None
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Provisioned:
    """An engine's ready venv."""

    venv: Path
    versions: dict[str, str | None]
    reused: bool
    seconds: float

    @property
    def bin(self) -> Path:
        return venv_bin(self.venv)


def _pip_env() -> dict[str, str]:
    from sonic.engines.llamacpp import env_without_secrets

    env = env_without_secrets()  # also turns off pip's version check
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _last_error(log: Path) -> str:
    """pip's most telling last line (an ``ERROR:`` line if any)."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    line = (errors or lines or ["(no output)"])[-1]
    return line if len(line) <= 200 else line[:197] + "..."


def _run(argv: list[str], log: Path, what: str, name: str) -> None:
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"\n$ {' '.join(argv)}\n")
        fh.flush()
        try:
            cp = subprocess.run(
                argv,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=_pip_env(),
                timeout=PIP_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise SonicError(
                f"engine {name}: {what} timed out after {PIP_TIMEOUT_S:g} s; log: {log}"
            ) from None
        except OSError as exc:
            raise SonicError(f"engine {name}: cannot run {argv[0]}: {exc}") from None
    if cp.returncode != 0:
        raise SonicError(
            f"engine {name}: {what} failed (exit {cp.returncode}): {_last_error(log)}; log: {log}"
        )


def _capture(argv: list[str], name: str, what: str) -> str:
    try:
        cp = subprocess.run(
            argv, capture_output=True, text=True, env=_pip_env(), timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SonicError(f"engine {name}: {what}: {exc}") from None
    if cp.returncode != 0:
        last = (cp.stderr.strip().splitlines() or ["?"])[-1]
        raise SonicError(f"engine {name}: {what} failed: {last}")
    return cp.stdout


def requirements_with_overrides(requires: list[str], spec: InstallSpec) -> list[str]:
    """Declared requirements with ``spec.overrides`` applied by name (and the packages we
    installed with --no-deps left out); overrides not declared are appended."""
    overrides = {canonical_name(k): v for k, v in spec.overrides.items()}
    own = {canonical_name(p) for p in spec.packages}
    out: list[str] = []
    used: set[str] = set()
    for req in requires:
        name = canonical_name(req)
        if name in own:
            continue
        if name in overrides:
            if name not in used:
                out.append(overrides[name])
                used.add(name)
            continue
        if req not in out:
            out.append(req)
    out += [v for k, v in overrides.items() if k not in used]
    return out


def pip_install_argv(spec: InstallSpec, vpy: str) -> list[str]:
    """``pip install`` in the venv with the spec's pip options and its lock (``-c FILE``):
    the start of every install command ``setup`` runs; the caller appends what to install."""
    argv = [vpy, "-m", "pip", "install", "--no-input", *spec.pip_args]
    if spec.constraints is not None:
        argv += ["-c", spec.constraints.path]
    return argv


def _check_lock(name: str, spec: InstallSpec) -> None:
    """The lock file still is the one the spec (and so the venv key) was made from."""
    c = spec.constraints
    if c is None:
        return
    try:
        now = file_sha256(Path(c.path))
    except OSError:
        raise SonicError(f"engine {name}: constraints file not found: {c.path}") from None
    if now != c.sha256:
        raise SonicError(
            f"engine {name}: constraints file {c.path} changed since the suite file was read"
        )


def engine_versions(venv: Path, names: list[str], name: str = "?") -> dict[str, str | None]:
    python = str(venv_bin(venv) / "python")
    doc = json.loads(_capture([python, "-c", _VERSIONS_SCRIPT, *names], name, "version query"))
    return {k: (v if isinstance(v, str) else None) for k, v in doc.items()}


def ensure_venv(
    name: str,
    spec: InstallSpec,
    *,
    force: bool = False,
    root: Path | None = None,
    say: Any = None,
    extra_versions: tuple[str, ...] = (),
) -> Provisioned:
    """The engine's venv for ``spec``: reused when complete, else (re)built now."""
    venv = venv_dir(spec, root)
    base = venv.parent
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SonicError(f"engine {name}: cannot create {base}: {exc}") from None
    from sonic.engines.llamacpp import file_lock

    with file_lock(base / f".{venv.name}.lock"):
        done = None if force else installed(spec, root)
        if done is not None:
            versions = {k: v for k, v in (done.get("versions") or {}).items()}
            return Provisioned(venv, versions, True, 0.0)
        if say is not None:
            say(
                f"engine {name}: installing {' '.join(spec.packages)} into {venv} (log: {venv}.log)"
            )
        return _build(name, spec, venv, extra_versions)


def _build(name: str, spec: InstallSpec, venv: Path, extra: tuple[str, ...]) -> Provisioned:
    t0 = time.monotonic()
    log = venv.with_name(venv.name + ".log")
    log.write_text(f"sonic suite setup: engine {name}\n", encoding="utf-8")
    if venv.exists():
        shutil.rmtree(venv)
    python = spec.python or sys.executable
    _check_lock(name, spec)
    try:
        _run([python, "-m", "venv", str(venv)], log, "creating the virtualenv", name)
        vpy = str(venv_bin(venv) / "python")
        if spec.constraints is not None:
            shutil.copyfile(spec.constraints.path, venv / "sonic-constraints.txt")
        pip = pip_install_argv(spec, vpy)
        _run([*pip, "--upgrade", "pip"], log, "upgrading pip", name)
        if spec.no_deps:
            _run([*pip, "--no-deps", *spec.packages], log, "pip install --no-deps", name)
            dists = [canonical_name(p) for p in spec.packages]
            declared = _capture([vpy, "-c", _REQUIREMENTS_SCRIPT, *dists], name, "reading requires")
            reqs = requirements_with_overrides(declared.splitlines(), spec)
            (venv / "sonic-requirements.txt").write_text("\n".join(reqs) + "\n", encoding="utf-8")
            if reqs:
                _run([*pip, "-r", str(venv / "sonic-requirements.txt")], log, "pip install", name)
        else:
            _run([*pip, *spec.packages, *spec.overrides.values()], log, "pip install", name)
        freeze = _capture([vpy, "-m", "pip", "freeze"], name, "pip freeze")
        (venv / "sonic-freeze.txt").write_text(freeze, encoding="utf-8")
        names = spec.top_level + [n for n in extra if n not in spec.top_level]
        found = engine_versions(venv, names, name)
    except BaseException:
        shutil.rmtree(venv, ignore_errors=True)
        raise
    missing = [k for k in spec.top_level if found.get(k) is None]
    versions = {k: v for k, v in found.items() if v is not None}
    if missing:
        shutil.rmtree(venv, ignore_errors=True)
        raise SonicError(
            f"engine {name}: installed, but {', '.join(missing)} is missing; log: {log}"
        )
    seconds = round(time.monotonic() - t0, 1)
    marker = {
        "spec": spec.as_dict(),
        "engine": name,
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "versions": versions,
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": seconds,
    }
    (venv / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return Provisioned(venv, versions, False, seconds)


def setup_suite(
    config_path: str,
    *,
    engines: list[str] | None = None,
    force: bool = False,
    out: Any = None,
) -> int:
    """Provision every selected engine that has an ``install`` spec, one after another."""
    from sonic.suite.config import load_config

    out = sys.stdout if out is None else out
    cfg = load_config(config_path).select(engines)

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    todo = [e for e in cfg.engines if e.install is not None]
    for e in cfg.engines:
        if e.install is None:
            say(f"engine {e.name}: no install spec; uses what is on PATH")
    for e in todo:
        assert e.install is not None
        from sonic.suite.presets import PRESETS

        extra = PRESETS[e.preset].version_packages if e.preset else ()
        p = ensure_venv(e.name, e.install, force=force, say=say, extra_versions=extra)
        shown = ", ".join(f"{k} {v}" for k, v in p.versions.items())
        how = "reused" if p.reused else f"installed in {p.seconds:.0f} s"
        say(f"engine {e.name}: {shown} ({how}) in {p.venv}")
    return 0


# ---------------------------------------------------------------- sonic suite lock

_PLATFORM_SCRIPT = (
    "import platform, sys; "
    "print(f'Python {sys.version_info[0]}.{sys.version_info[1]}, "
    "{platform.machine()} {platform.system()}')"
)


def frozen_lock(venv: Path, name: str = "?") -> list[str]:
    """``pip freeze`` of the venv as constraints lines (``install.lock_lines``)."""
    vpy = str(venv_bin(venv) / "python")
    return lock_lines(_capture([vpy, "-m", "pip", "freeze"], name, "pip freeze"))


def write_lock(venv: Path, path: Path, *, engine: str, suite_file: str) -> list[str]:
    """Write ``pip freeze`` of ``venv`` to the constraints file ``path`` (with a header saying
    what it is and how to refresh it); returns the pinned lines."""
    lines = frozen_lock(venv, engine)
    vpy = str(venv_bin(venv) / "python")
    where = _capture([vpy, "-c", _PLATFORM_SCRIPT], engine, "platform query").strip()
    header = [
        f"# Constraints (lock) for engine {engine} of {suite_file}: `pip freeze` of a known-good",
        f"# install ({where}). `sonic suite setup` passes it to every pip install as -c.",
        f"# Refresh: sonic suite lock {suite_file} --engines {engine} --force",
    ]
    text = "\n".join(header + lines) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise SonicError(f"engine {engine}: cannot write {path}: {exc.strerror}") from None
    return lines


def lock_suite(
    config_path: str,
    *,
    engines: list[str] | None = None,
    force: bool = False,
    root: Path | None = None,
    out: Any = None,
) -> int:
    """``sonic suite lock``: for each selected engine with ``install`` and ``constraints``, its
    spec without the lock is installed (that venv is reused when complete; ``force`` re-resolves
    it from today's releases), and its ``pip freeze`` becomes the constraints file."""
    from sonic.suite.config import load_config
    from sonic.suite.presets import PRESETS

    out = sys.stdout if out is None else out
    cfg = load_config(config_path, missing_constraints_ok=True).select(engines)

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    todo = [e for e in cfg.engines if e.install is not None]
    if not todo:
        raise SonicError(f"{cfg.path.name}: no engine has an install spec, nothing to lock")
    for e in todo:
        assert e.install is not None
        if e.install.constraints is None:
            raise SonicError(
                f"{cfg.path.name}: engines.{e.name}: no constraints file named; add "
                f'constraints = "{cfg.path.stem}.{e.name}.constraints.txt"'
            )
    for e in todo:
        assert e.install is not None and e.install.constraints is not None
        extra = PRESETS[e.preset].version_packages if e.preset else ()
        p = ensure_venv(
            e.name, e.install.unlocked(), force=force, root=root, say=say, extra_versions=extra
        )
        target = Path(e.install.constraints.path)
        lines = write_lock(p.venv, target, engine=e.name, suite_file=cfg.path.name)
        how = "reused; --force re-resolves it" if p.reused else f"installed in {p.seconds:.0f} s"
        say(
            f"engine {e.name}: wrote {target} ({len(lines)} pins, sha256 "
            f"{file_sha256(target)[:12]}) from {p.venv} ({how})"
        )
    say("now `sonic suite setup` installs from the lock (a new venv: the lock is in its key)")
    return 0
