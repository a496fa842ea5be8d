"""``sonic suite run`` and ``sonic validate`` end to end, as subprocesses, against real
``sonic sim`` servers: the results directory, resume, a config change refusing resume, an
engine that never becomes ready, Ctrl-C, and validation of an unfair pair."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sonic.suite.lifecycle import free_port, group_members

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "sim-demo.toml"
TOKENIZER = ROOT / "tests" / "fixtures" / "tokenizer"


def sonic(
    *args: str, timeout: float = 120, cwd: Path | None = None, extra_env: dict | None = None
) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(extra_env or {}))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "sonic", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or ROOT,
        env=env,
    )


def results_dir(parent: Path) -> Path:
    dirs = [p for p in parent.iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def assert_no_traceback(cp: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in cp.stderr, cp.stderr


def assert_groups_gone(doc: dict) -> None:
    for name, e in doc["engines"].items():
        if e.get("pgid"):
            assert group_members(e["pgid"]) == [], f"{name}'s server processes are still running"


def write_suite(tmp_path: Path, engines: str, scenarios: str, extra: str = "") -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(
        f"""
[suite]
name = "t"
tokenizer = "{TOKENIZER}"
temperature = 0.0
ignore_eos = true
{extra}
{engines}
{scenarios}
"""
    )
    return path


SIM_A = """
[engines.sim-a]
preset = "sim"
profile = "fast-decode"
"""

SIM_B = """
[engines.sim-b]
preset = "sim"
profile = "fast-prefill"
"""

SMALL = """
[scenarios.small]
dataset = "random"
input_len = 64
output_len = 8
request_rates = [20]
num_prompts = 6
"""


# ---------------------------------------------------------------- the demo, resume, config change


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One `sonic suite run examples/sim-demo.toml --quick`, shared by the tests below."""
    out = tmp_path_factory.mktemp("demo") / "results"
    cp = sonic("suite", "run", str(DEMO), "--quick", "--output-dir", str(out), timeout=240)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return results_dir(out), cp


def test_sim_demo_quick_writes_manifest_runs_and_validation(demo):
    d, cp = demo
    assert_no_traceback(cp)
    assert d.name.endswith("-sim-demo")
    doc = manifest(d)
    assert doc["status"] == "finished" and doc["quick"] is True and doc["fair"] is True
    assert len(doc["config_hash"]) == 64 and doc["suite"] == "sim-demo" and doc["seed"] == 0
    assert set(doc["host"]) >= {"hostname", "platform", "python", "cpu_count"}
    assert doc["started_at"] and doc["finished_at"]
    assert set(doc["engines"]) == {"fast-decode", "fast-prefill"}
    for name, e in doc["engines"].items():
        assert e["status"] == "ok" and e["error"] is None, e
        assert e["simulated"] is True and e["external"] is False and e["preset"] == "sim"
        assert e["argv"][1:4] == ["-m", "sonic", "sim"] and "--profile" in e["argv"]
        assert e["server_args"] and e["log"] == f"logs/{name}.log"
        assert (d / e["log"]).is_file()
        assert e["pid"] and e["pgid"]
        assert e["version"]
    assert_groups_gone(doc)

    # The capacity scenario: one search per engine, its probes listed as runs; decode-heavy
    # work within a TPOT bound favours fast-decode.
    searches = {s["engine"]: s for s in doc["searches"].values()}
    assert {e: s["status"] for e, s in searches.items()} == {
        "fast-decode": "found",
        "fast-prefill": "found",
    }
    assert searches["fast-decode"]["capacity"] > 2 * searches["fast-prefill"]["capacity"]
    probes = [r for r in doc["runs"] if r.get("search")]
    assert probes and all(r["status"] == "ok" and (d / r["file"]).is_file() for r in probes)
    assert "capacity · capacity: fast-decode [SIMULATED] carries" in cp.stdout
    # Every engine x sweep scenario x rate ran once, each result written where the manifest says.
    runs = [r for r in doc["runs"] if not r.get("search")]
    assert len(runs) == 2 * 2 * 2
    for r in runs:
        assert r["status"] == "ok", r
        assert r["id"] == f"{r['engine']}/{r['scenario']}/" + Path(r["file"]).stem
        assert r["file"] == (
            f"runs/{r['engine']}/{r['scenario']}/rate-{float(r['request_rate'])!r}"
            f"_conc-none_rep-1.json"
        )
        assert r["dialect"] == "vllm" and r["repeat"] == 1 and r["max_concurrency"] is None
        result = json.loads((d / r["file"]).read_text())
        assert result["completed"] == 12 and result["failed"] == 0
        assert result["request_rate"] == r["request_rate"]
        assert result["sonic"]["simulated"] is True
        assert result["label"] == r["engine"]
        lines = (d / r["raw_file"]).read_text().splitlines()
        assert len(lines) == 12
    # Same prompts for both engines, per scenario, as recorded and as validated.
    for name, w in doc["workloads"].items():
        assert w["identical"] is True
        assert set(w["fingerprints"]) == {"fast-decode", "fast-prefill"}
        assert {r["fingerprint"] for r in doc["runs"] if r["scenario"] == name} == set(
            w["fingerprints"].values()
        )
    validation = json.loads((d / "validation.json").read_text())
    assert validation["fair"] is True and validation["allow_unfair"] is False
    names = {c["name"]: c for c in validation["checks"]}
    assert names["engine.fast-decode.health"]["status"] == "pass"
    assert names["consistency.probe"]["status"] in ("pass", "warn")
    assert names["client.self_check"]["status"] in ("pass", "warn")
    assert "simulated" in cp.stdout


def test_resume_skips_finished_runs(demo):
    d, _ = demo
    runs = manifest(d)["runs"]
    mtimes = {r["id"]: (d / r["file"]).stat().st_mtime_ns for r in runs}
    sessions = len(manifest(d)["sessions"])
    cp = sonic("suite", "run", str(DEMO), "--quick", "--resume", str(d), timeout=120)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert cp.stdout.count("already finished; not started") == 2
    doc = manifest(d)
    assert len(doc["sessions"]) == sessions + 1 and doc["status"] == "finished"
    assert {r["id"]: (d / r["file"]).stat().st_mtime_ns for r in doc["runs"]} == mtimes

    # After losing one run's file, only that run is repeated.
    lost = runs[3]
    (d / lost["file"]).unlink()
    cp = sonic("suite", "run", str(DEMO), "--quick", "--resume", str(d), timeout=120)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert f"{lost['id']}: ok" in cp.stdout
    ran = [line for line in cp.stdout.splitlines() if line.startswith("[") and ": ok" in line]
    assert len(ran) == 1, cp.stdout
    assert (d / lost["file"]).is_file()
    other = "fast-prefill" if lost["engine"] == "fast-decode" else "fast-decode"
    assert f"engine {other}: all 4 runs and 1 search already finished; not started" in cp.stdout
    assert_groups_gone(manifest(d))


def test_a_config_change_refuses_resume(demo, tmp_path):
    d, _ = demo
    before = (d / "manifest.json").read_text()
    changed = tmp_path / "changed.toml"
    changed.write_text(
        DEMO.read_text()
        .replace('"../tests/fixtures/tokenizer"', f'"{TOKENIZER}"')
        .replace("num_prompts = 12", "num_prompts = 13")
    )
    cp = sonic("suite", "run", str(changed), "--quick", "--resume", str(d))
    assert cp.returncode == 2
    assert "config changed" in cp.stderr and len(cp.stderr.strip().splitlines()) == 1
    assert_no_traceback(cp)
    # --quick is part of what a results directory holds.
    cp = sonic("suite", "run", str(DEMO), "--resume", str(d))
    assert cp.returncode == 2 and "--quick differs" in cp.stderr
    assert (d / "manifest.json").read_text() == before  # a refused resume touches nothing
    # The same file with only the tokenizer path spelled differently is the same config.
    same = tmp_path / "same.toml"
    same.write_text(DEMO.read_text().replace('"../tests/fixtures/tokenizer"', f'"{TOKENIZER}"'))
    cp = sonic("suite", "run", str(same), "--quick", "--resume", str(d))
    assert cp.returncode == 0, cp.stdout + cp.stderr


# ---------------------------------------------------------------- an engine that never comes up


def test_engine_that_never_becomes_ready_is_reported_and_skipped(tmp_path):
    # The stuck server prints a secret it was given through env: it must not survive in any
    # file of the results directory (log, manifest, validation) or on the console.
    secret = "sk-test-0123456789abcdef"
    code = (
        "import os, time; print('still loading', os.environ['API_KEY'], flush=True); "
        "time.sleep(600)"
    )
    sleeper = f"""
[engines.sleeper]
command = ["{sys.executable}", "-c", "{code}"]
env = {{ API_KEY = "${{SONIC_TEST_SECRET}}" }}
port = {free_port()}
ready_timeout_s = 2
"""
    path = write_suite(tmp_path, sleeper + SIM_A, SMALL)
    cp = sonic(
        "suite",
        "run",
        str(path),
        "--output-dir",
        str(tmp_path / "r"),
        timeout=120,
        extra_env={"SONIC_TEST_SECRET": secret},
    )
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert_no_traceback(cp)
    d = results_dir(tmp_path / "r")
    doc = manifest(d)
    s = doc["engines"]["sleeper"]
    assert s["status"] == "failed" and "not ready after 2 s" in s["error"]
    assert "still loading" in (d / "logs" / "sleeper.log").read_text()
    assert doc["engines"]["sim-a"]["status"] == "ok"
    assert [r["engine"] for r in doc["runs"]] == ["sim-a"]
    assert doc["runs"][0]["status"] == "ok"
    assert_groups_gone(doc)
    checks = {c["name"]: c for c in json.loads((d / "validation.json").read_text())["checks"]}
    assert checks["engine.sleeper.health"]["status"] == "fail"
    assert "still loading" in checks["engine.sleeper.health"]["details"]["log_tail"]
    assert "sleeper: FAILED" in cp.stdout
    assert doc["engines"]["sleeper"]["env"] == ["API_KEY"]
    assert secret not in cp.stdout + cp.stderr
    for f in d.rglob("*"):
        if f.is_file():
            assert secret not in f.read_text(errors="replace"), f


# ---------------------------------------------------------------- an external engine


def test_external_engine_is_used_but_never_started_or_stopped(tmp_path):
    import urllib.request

    from sonic.sim import start as start_sim

    with start_sim(profile="fast-decode", tokenizer=str(TOKENIZER)) as server:
        ext = f"""
[engines.ext]
external = true
preset = "sim"
base_url = "{server.url}"
reset_prefix_cache = true
"""
        path = write_suite(tmp_path, ext + SIM_B, SMALL)
        cp = sonic(
            "suite", "run", str(path), "--engines", "ext", "--output-dir", str(tmp_path / "r")
        )
        assert cp.returncode == 0, cp.stdout + cp.stderr
        doc = manifest(results_dir(tmp_path / "r"))
        e = doc["engines"]["ext"]
        assert e["external"] is True and e["status"] == "ok" and e["argv"] == []
        assert "pid" not in e and e["base_url"] == server.url
        assert set(doc["engines"]) == {"ext"}  # --engines: sim-b not run
        (run,) = doc["runs"]
        assert run["status"] == "ok" and run["warnings"] == []  # prefix cache reset worked
        # Still serving after the suite: the suite does not own it.
        with urllib.request.urlopen(server.url + "/health", timeout=5) as resp:
            assert resp.status == 200


def test_stream_records_setting_streams_each_run_beside_its_result(tmp_path):
    """`[settings] stream_records = true`: every run of the suite streams its records to an
    Arrow file kept beside its result (pandas reads it), with the counts of the result."""
    import pandas as pd

    path = write_suite(tmp_path, "[settings]\nstream_records = true\n" + SIM_A, SMALL)
    cp = sonic("suite", "run", str(path), "--output-dir", str(tmp_path / "r"))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    d = results_dir(tmp_path / "r")
    (run,) = manifest(d)["runs"]
    result = json.loads((d / run["file"]).read_text())
    info = result["sonic"]["records_file"]
    frame = pd.read_feather((d / run["file"]).parent / info["file"])
    assert len(frame) == result["completed"] == 6
    assert "itls" not in result  # in the file


# ---------------------------------------------------------------- Ctrl-C


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_stops_the_server_and_keeps_finished_results(tmp_path, sig):
    long = """
[scenarios.long]
dataset = "random"
input_len = 64
output_len = 8
request_rates = [1]
num_prompts = 400
"""
    path = write_suite(tmp_path, SIM_A, SMALL + long)
    out = tmp_path / "r"
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sonic", "suite", "run", str(path), "--output-dir", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 90
        d = None
        while time.monotonic() < deadline:
            if out.is_dir() and any(out.iterdir()):
                d = results_dir(out)
                try:
                    doc = manifest(d)
                except (OSError, ValueError):
                    doc = {"runs": []}
                if any(r["status"] == "ok" for r in doc["runs"]):
                    break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        else:
            pytest.fail("the first run did not finish in time")
        time.sleep(1.5)  # into the long run
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr, stderr
    assert d is not None
    doc = manifest(d)
    assert doc["status"] == "interrupted" and doc["finished_at"]
    first = next(r for r in doc["runs"] if r["scenario"] == "small")
    assert first["status"] == "ok" and (d / first["file"]).is_file()
    json.loads((d / first["file"]).read_text())
    assert doc["engines"]["sim-a"]["pgid"]
    assert_groups_gone(doc)
    interrupted = [r for r in doc["runs"] if r["scenario"] == "long"]
    for r in interrupted:
        assert r.get("interrupted") is True and r["status"] in ("partial", "failed")
    assert (d / "validation.json").is_file()


# ---------------------------------------------------------------- validation


def test_validate_flags_an_unfair_pair_and_allow_unfair_lets_it_through(tmp_path):
    unfair = SIM_A + SIM_B + "client = { max_output_len = 4 }\n"
    path = write_suite(
        tmp_path, unfair, SMALL, extra="[quick]\nrequest_rates = [20]\nnum_prompts = 4"
    )
    report = tmp_path / "v.json"
    cp = sonic("validate", str(path), "--no-servers", "--output", str(report))
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert_no_traceback(cp)
    assert "FAIL  fairness.small.max_tokens: engines are asked for different output" in cp.stdout
    assert "NOT FAIR" in cp.stdout
    doc = json.loads(report.read_text())
    assert doc["fair"] is False
    assert any(
        c["name"] == "fairness.small.max_tokens" and c["status"] == "fail" for c in doc["checks"]
    )

    cp = sonic("validate", str(path), "--no-servers", "--allow-unfair")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "(allowed by --allow-unfair)" in cp.stdout

    # suite run refuses the unfair comparison before starting anything...
    cp = sonic("suite", "run", str(path), "--quick", "--output-dir", str(tmp_path / "r1"))
    assert cp.returncode == 2 and "validation failed" in cp.stderr and "--allow-unfair" in cp.stderr
    d = results_dir(tmp_path / "r1")
    assert manifest(d)["status"] == "failed" and manifest(d)["runs"] == []
    assert json.loads((d / "validation.json").read_text())["fair"] is False
    # ...and runs it, marked unfair, with --allow-unfair.
    cp = sonic(
        "suite", "run", str(path), "--quick", "--allow-unfair", "--output-dir", str(tmp_path / "r2")
    )
    assert cp.returncode == 0, cp.stdout + cp.stderr
    doc = manifest(results_dir(tmp_path / "r2"))
    assert doc["fair"] is False and doc["allow_unfair"] is True
    assert [r["status"] for r in doc["runs"]] == ["ok", "ok"]


SIM_SHORT = """
[engines.sim-short]
preset = "sim"
profile = "fast-prefill"
args = ["--output-len", "5"]
"""


def test_validate_with_servers_up(tmp_path):
    # sim-short answers 5 tokens whatever it is asked: like an engine that ignores ignore_eos.
    path = write_suite(tmp_path, SIM_A + SIM_SHORT, SMALL)
    report = tmp_path / "v.json"
    cp = sonic("validate", str(path), "--output", str(report), timeout=180)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    checks = {c["name"]: c for c in json.loads(report.read_text())["checks"]}
    for name in ("sim-a", "sim-short"):
        assert checks[f"engine.{name}.health"]["status"] == "pass"
        assert checks[f"engine.{name}.models"]["status"] == "pass"
    assert checks["engine.sim-a.ignore_eos"]["status"] == "pass"
    short = checks["engine.sim-short.ignore_eos"]
    assert short["status"] == "warn" and "stopped at 5 of 32 tokens" in short["reason"]
    probe = checks["consistency.probe"]
    assert probe["status"] in ("pass", "warn")
    assert set(probe["details"]["answers"]) == {"sim-a", "sim-short"}
    assert all(a["ok"] for a in probe["details"]["answers"].values())
    assert checks["client.self_check"]["details"]["dispatch_lag_p99_ms"] >= 0
    assert checks["workload.small"]["status"] == "pass"


# ---------------------------------------------------------------- bad input, dry run


def test_config_errors_are_one_line_naming_the_key(tmp_path):
    bad = write_suite(tmp_path, SIM_A + 'port = "abc"\n', SMALL)
    for args in (("suite", "run", str(bad)), ("validate", str(bad))):
        cp = sonic(*args)
        assert cp.returncode == 2
        assert_no_traceback(cp)
        lines = cp.stderr.strip().splitlines()
        assert len(lines) == 1, cp.stderr
        assert "suite.toml: engines.sim-a.port: expected an integer, got 'abc'" in lines[0]
    cp = sonic("suite", "run", str(tmp_path / "missing.toml"))
    assert cp.returncode == 2 and "suite file not found" in cp.stderr
    cp = sonic("suite", "run", str(DEMO), "--engines", "nope")
    assert cp.returncode == 2 and "--engines: unknown engine 'nope'" in cp.stderr


def test_dry_run_starts_nothing(tmp_path):
    cp = sonic("suite", "run", str(DEMO), "--quick", "--dry-run", "--output-dir", str(tmp_path))
    assert cp.returncode == 0, cp.stderr
    assert "-m sonic sim" in cp.stdout and "--profile fast-decode" in cp.stdout
    assert "8 runs and 2 capacity searches; nothing was started" in cp.stdout
    assert list(tmp_path.iterdir()) == []
