"""Search scenarios in suite files, and capacities and their ratios in a results directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simproc import run_sonic, run_suite_text
from sonic.errors import SonicError
from sonic.report.capacity import ratios, read_searches
from sonic.suite import plan as P
from sonic.suite.config import load_config

SUITE = """
[suite]
name = "t"
tokenizer = "tok"

[engines.a]
preset = "sim"

[engines.b]
preset = "sim"

[scenarios.sweep]
dataset = "random"
input_len = 32
output_len = 8

[scenarios.capacity]
kind = "search"
dataset = "random"
input_len = 32
output_len = 8
num_prompts = 40
slo = "ttft:p99<=200ms,tpot:p50<=10ms"
search_over = "concurrency"
search_start = 4
confirm_repeats = 1
"""


def _load(tmp_path: Path, text: str):
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return load_config(path)


def test_search_scenario_parses_into_a_search_plan(tmp_path):
    cfg = _load(tmp_path, SUITE)
    scen = {s.name: s for s in cfg.scenarios}
    assert scen["sweep"].search is None
    search = scen["capacity"].search
    assert search is not None and search.slo == "ttft:p99<=200ms,tpot:p50<=10ms"
    spec = search.spec()
    assert (spec.over, spec.start, spec.minimum, spec.confirm_repeats) == (
        "concurrency",
        4.0,
        1.0,
        1,
    )
    for quick in (False, True):
        plans = P.scenario_plans(cfg, quick=quick)
        by = {p.name: p for p in plans}
        assert by["capacity"].is_search and list(by["capacity"].points()) == []
        runs = P.runs_for(cfg.engines[0], plans)
        assert {r.scenario for r in runs} == {"sweep"}
        searches = P.searches_for(cfg.engines[0], plans)
        assert [s.id for s in searches] == ["a/capacity/search"]
        assert searches[0].rel_dir == "runs/a/capacity/search"
        # A probe must outnumber the load it tests: quick mode keeps the search's own size.
        assert by["capacity"].num_prompts == 40 != cfg.quick.num_prompts
        assert by["sweep"].num_prompts == (cfg.quick.num_prompts if quick else 100)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ('slo = "ttft:p99<=5ms"\n', "scenarios.sweep.slo"),  # search keys only in a search
    ],
)
def test_search_keys_in_a_sweep_are_refused(tmp_path, extra, words):
    text = SUITE.replace(
        "output_len = 8\n\n[scenarios.capacity]", f"output_len = 8\n{extra}\n[scenarios.capacity]"
    )
    with pytest.raises(SonicError, match=words):
        _load(tmp_path, text)


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ('slo = "ttft:p99<=200ms,tpot:p50<=10ms"\n', "", "a search needs its SLOs"),
        ('slo = "ttft:p99<=200ms', 'slo = "ttft:p101<=200ms', "between p0 and p100"),
        ('kind = "search"', 'kind = "serch"', "did you mean"),
        ("confirm_repeats = 1", "confirm_repeats = 1\nrequest_rates = [1, 2]", "chooses its loads"),
        ("confirm_repeats = 1", "confirm_repeats = 1\nrepeats = 2", "use confirm_repeats"),
        ("search_start = 4", "search_start = 4\nsearch_max = 2", "search_min <= search_start"),
        ('search_over = "concurrency"', 'search_over = "tokens"', "expected one of rate"),
    ],
)
def test_bad_search_scenarios_name_the_key(tmp_path, old, new, words):
    assert old in SUITE
    with pytest.raises(SonicError, match=words):
        _load(tmp_path, SUITE.replace(old, new))


def _write_search(root: Path, engine: str, capacity: float, samples: list[float]) -> None:
    d = root / "runs" / engine / "capacity" / "search"
    d.mkdir(parents=True)
    doc = {
        "status": "found",
        "capacity": capacity,
        "capacity_ci": [min(samples), max(samples)],
        "capacity_unit": "req/s",
        "slo_text": "p99 TTFT ≤ 500 ms",
        "probes": [{}] * 7,
        "capacity_samples": samples,
    }
    (d / "search.json").write_text(json.dumps(doc))


def test_capacity_ratio_and_its_ci(tmp_path):
    rng = np.random.default_rng(0)
    _write_search(tmp_path, "max", 18.0, list(rng.choice([16.0, 18.0], 1000)))
    _write_search(tmp_path, "vllm", 10.0, list(rng.choice([9.0, 10.0], 1000)))
    _write_search(tmp_path, "same", 17.0, list(rng.choice([16.0, 18.0], 1000)))
    found = read_searches(tmp_path)
    assert [(c.engine, c.capacity, c.probes) for c in found] == [
        ("max", 18.0, 7),
        ("same", 17.0, 7),
        ("vllm", 10.0, 7),
    ]
    by = {(r.better, r.other): r for r in ratios(found)}
    r = by[("max", "vllm")]
    assert r.ratio == pytest.approx(1.8) and r.significant
    assert 16 / 10 <= r.ci[0] <= r.ratio <= r.ci[1] <= 18 / 9
    assert r.text().startswith("max carries 1.80× [")
    tie = by[("max", "same")]
    assert not tie.significant and "no significant difference" in tie.text()


# ------------------------------------------------------------------ a suite that searches

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "tests" / "fixtures" / "tokenizer"
# Two sims whose decode step costs 2 ms + c × per-seq: TPOT(c) = 2 + c·per_seq ms, so within a
# TPOT p50 of 10.5 ms engine "slow" carries c = 8 and "fast" (half the per-seq cost) c = 17.
SEARCH_SUITE = f"""
[suite]
name = "cap"
tokenizer = "{TOKENIZER}"
temperature = 0.0
ignore_eos = true

[engines.slow]
preset = "sim"
args = ["--step-base-ms", "2", "--decode-us-per-seq", "1000", "--prefill-us-per-token", "1"]
reset_prefix_cache = true

[engines.fast]
preset = "sim"
args = ["--step-base-ms", "2", "--decode-us-per-seq", "500", "--prefill-us-per-token", "1"]
reset_prefix_cache = true

[scenarios.capacity]
kind = "search"
dataset = "random"
input_len = 32
output_len = 16
num_prompts = 40
slo = "tpot:p50<=10.5ms"
search_over = "concurrency"
search_start = 4
confirm_repeats = 1
"""


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    return run_suite_text(tmp_path_factory.mktemp("suite-search"), "cap.toml", SEARCH_SUITE)


def test_a_suite_search_finds_each_engines_capacity_and_their_ratio(searched):
    _, cp, d = searched
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert "Traceback" not in cp.stderr and d is not None
    doc = json.loads((d / "manifest.json").read_text())
    found = {s["engine"]: s for s in doc["searches"].values()}
    assert set(found) == {"slow", "fast"}
    for name, expected in (("slow", 8), ("fast", 17)):
        s = found[name]
        assert s["status"] == "found" and abs(s["capacity"] - expected) <= 1, s
        assert s["unit"] and "TPOT" in s["slo"] and s["answer"]
        assert (d / s["file"]).is_file()
    # Every probe is a run of the manifest, with its result file, marked with its search.
    probes = [r for r in doc["runs"] if r.get("search")]
    assert {r["engine"] for r in probes} == {"slow", "fast"}
    for r in probes:
        assert r["status"] == "ok" and (d / r["file"]).is_file()
        assert r["request_rate"] == "inf" and r["max_concurrency"] >= 1
    # The console names each engine's answer; summary and report carry the ratio.
    assert cp.stdout.count("search: capacity") >= 2 or "capacity" in cp.stdout
    summary = (d / "summary.md").read_text()
    assert "fast" in summary and "slow" in summary and "×" in summary, summary
    html = (d / "report.html").read_text()
    assert "capacity" in html.lower()


def test_probes_are_rows_of_load_results(searched):
    from sonic.analysis import load_results

    _, cp, d = searched
    assert cp.returncode == 0 and d is not None
    df = load_results(d)
    probes = df[df["search"].notna()]
    assert set(probes["engine"]) == {"slow", "fast"}
    assert (probes["status"] == "ok").all()
    assert probes["max_concurrency"].notna().all() and probes["median_tpot_ms"].notna().all()


def test_a_finished_search_is_not_rerun_on_resume(searched):
    path, cp, d = searched
    assert cp.returncode == 0 and d is not None
    state = {p: p.stat().st_mtime_ns for p in d.glob("runs/*/capacity/search/search.json")}
    assert len(state) == 2
    again = run_sonic("suite", "run", str(path), "--resume", str(d))
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("already finished; not started") == 2, again.stdout
    assert {p: p.stat().st_mtime_ns for p in state} == state


def test_dry_run_describes_the_search(tmp_path):
    path = tmp_path / "cap.toml"
    path.write_text(SEARCH_SUITE)
    cp = run_sonic("suite", "run", str(path), "--dry-run")
    assert cp.returncode == 0, cp.stderr
    assert "capacity search over concurrency from 4" in cp.stdout
    assert "SLO tpot:p50<=10.5ms" in cp.stdout
    assert "0 runs and 2 capacity searches" in cp.stdout


def test_the_capacity_report_renders_offline_in_headless_chromium(searched, tmp_path):
    """The capacity answer and each engine's search plot in the single-file report, as a
    browser shows it with every host unresolvable."""
    from test_report import _render

    _, cp, d = searched
    assert cp.returncode == 0 and d is not None
    dom, requested = _render(d / "report.html", tmp_path, "--dump-dom")
    assert requested == []
    capacity = dom.split('id="capacity"', 1)[1].split("</section>", 1)[0]
    assert "carries" in capacity and "’s load at p50 TPOT" in capacity.replace("'", "’")
    assert dom.count('alt="fast search"') == 1 and dom.count('alt="slow search"') == 1
    verdict = dom.split('id="verdict"', 1)[1].split("</section>", 1)[0]
    assert "capacity" in verdict and "slow" in verdict and "fast" in verdict
