"""sonic.analysis: loading a suite results directory into DataFrames, across both dialects.

The synthetic directory below is made with the real writers (compute_metrics, build_result,
write_raw_records) from hand-built records whose latencies are known, laid out as the suite
contract says; the tests compare what the loaders return with the documents and with the
designed latencies.
"""

from __future__ import annotations

import json
import math
import shutil
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sonic.errors import SonicError
from sonic.metrics import MetricRules, compute_metrics
from sonic.results import RunInfo, build_result, save_result, write_atomic, write_raw_records
from test_metrics import build_records, stream, words

# engine -> dialect, simulated, base TTFT (ms), base ITL (ms)
ENGINES: dict[str, dict[str, Any]] = {
    "alpha": {"dialect": "vllm", "simulated": False, "ttft": 40.0, "itl": 8.0},
    "beta": {"dialect": "max", "simulated": True, "ttft": 90.0, "itl": 5.0},
}
# scenario -> dataset, repeats
SCENARIOS: dict[str, dict[str, Any]] = {
    "chat": {"dataset": "sharegpt", "repeats": 3},
    "code": {"dataset": "random", "repeats": 1},
}
RATES = (1.0, 4.0)
N_REQ = 24


@dataclass
class Suite:
    """The synthetic directory and what went into it."""

    root: Path
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)  # run id -> result document
    ttft_ms: dict[str, list[float]] = field(default_factory=dict)  # run id -> designed TTFTs
    n_text: dict[str, list[int]] = field(default_factory=dict)  # run id -> tokens per request
    manifest: dict[str, Any] = field(default_factory=dict)


def run_id(engine: str, scenario: str, rate: float, rep: int) -> str:
    return f"{engine}/{scenario}/rate-{rate:g}_conc-none_rep-{rep}"


def designed_run(engine: str, scenario: str, rate: float, rep: int):
    """Requests of one run: TTFT and ITL grow with the rate; a little seeded jitter."""
    spec = ENGINES[engine]
    rng = np.random.default_rng([zlib.crc32(f"{engine}/{scenario}".encode()), int(rate * 10), rep])
    reqs, ttfts, ntext = [], [], []
    for i in range(N_REQ):
        sent = i * 1000.0 / rate
        ttft = spec["ttft"] * (1.0 + rate) * float(rng.uniform(0.9, 1.1))
        itl = spec["itl"] * (1.0 + 0.1 * rate) * float(rng.uniform(0.9, 1.1))
        n = int(rng.integers(6, 14))
        reqs.append(stream(sent, round(ttft, 3), round(itl, 3), n, prompt_tokens=32))
        ttfts.append(round(ttft, 3))
        ntext.append(n)
    return reqs, ttfts, ntext


def write_run(root: Path, engine: str, scenario: str, rate: float, rep: int, suite: Suite):
    spec = ENGINES[engine]
    dialect = spec["dialect"]
    reqs, ttfts, ntext = designed_run(engine, scenario, rate, rep)
    records = build_records(reqs)
    metrics = compute_metrics(
        records, MetricRules.for_compat(dialect), [32] * len(reqs), words, percentiles=[99.0]
    )
    rid = run_id(engine, scenario, rate, rep)
    rel = Path("runs") / engine / scenario / f"rate-{rate:g}_conc-none_rep-{rep}.json"
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_name(path.stem + ".requests.jsonl")
    write_raw_records(raw, records, metrics)
    info = RunInfo(
        backend="openai-chat" if dialect == "vllm" else "modular",
        model_id="demo/tiny-model",
        num_prompts=len(reqs),
        request_rate=rate,
        dataset_name=SCENARIOS[scenario]["dataset"],
        simulated=spec["simulated"],
        raw_records_file=raw.name,
        date=datetime(2026, 1, 2, 3, 4, 5),
    )
    doc = build_result(dialect, metrics, info)
    save_result(dialect, doc, path)
    suite.docs[rid] = doc
    suite.ttft_ms[rid] = ttfts
    suite.n_text[rid] = ntext
    return {
        "id": rid,
        "engine": engine,
        "scenario": scenario,
        "dataset": SCENARIOS[scenario]["dataset"],
        "request_rate": rate,
        "max_concurrency": None,
        "repeat": rep,
        "status": "ok",
        "file": str(rel),
        "raw_file": str(rel.with_name(raw.name)),
        "error": None,
        "dialect": dialect,
    }


def manifest_doc(runs: list[dict[str, Any]], status: str = "finished") -> dict[str, Any]:
    return {
        "suite": "synthetic-pair",
        "config_path": "examples/synthetic.toml",
        "config_hash": "ab" * 32,
        "sonic_version": "0.1.0",
        "seed": 7,
        "quick": True,
        "host": {"hostname": "bench-1", "platform": "Linux", "python": "3.11.9", "cpu_count": 2},
        "gpu": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559}],
        "started_at": "2026-01-02T03:04:05",
        "finished_at": "2026-01-02T03:14:05" if status == "finished" else None,
        "status": status,
        "engines": {
            name: {
                "preset": "sim" if spec["simulated"] else "vllm",
                "argv": ["serve", name, "--port", "8000"],
                "server_args": f"--dtype bfloat16 --engine {name}",
                "version": f"{name}-1.2.3",
                "simulated": spec["simulated"],
                "external": False,
                "status": "ok",
                "error": None,
                "log": f"logs/{name}.log",
            }
            for name, spec in ENGINES.items()
        },
        "runs": runs,
    }


VALIDATION_UNFAIR = {
    "checks": [
        {
            "name": "max_output_len",
            "status": "fail",
            "reason": "alpha caps output at 256 tokens, beta at 1024 <script>",
            "fix": "set the same max output length on both engines",
            "details": {"alpha": 256, "beta": 1024},
        },
        {"name": "dtype", "status": "pass", "reason": "both bfloat16", "fix": "", "details": {}},
        {"name": "prefix_caching", "status": "warn", "reason": "unknown on beta", "fix": "check"},
    ],
    "fair": False,
    "allow_unfair": True,
}


def make_suite(root: Path, *, validation: dict[str, Any] | None = VALIDATION_UNFAIR) -> Suite:
    root.mkdir(parents=True, exist_ok=True)
    suite = Suite(root=root)
    runs = []
    for scenario, sc in SCENARIOS.items():
        for engine in ENGINES:
            for rate in RATES:
                for rep in range(sc["repeats"]):
                    runs.append(write_run(root, engine, scenario, rate, rep, suite))
    suite.manifest = manifest_doc(runs)
    write_atomic(root / "manifest.json", [json.dumps(suite.manifest, indent=2)])
    if validation is not None:
        write_atomic(root / "validation.json", [json.dumps(validation)])
    (root / "logs").mkdir(exist_ok=True)
    return suite


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory: pytest.TempPathFactory) -> Suite:
    return make_suite(tmp_path_factory.mktemp("results") / "20260102-030405-synthetic-pair")


# ------------------------------------------------------------------ load_results


def test_load_results_has_one_row_per_run_and_the_documented_columns(suite_dir: Suite):
    from sonic.analysis import RESULT_COLUMNS, load_results

    df = load_results(suite_dir.root)
    assert list(df.columns) == list(RESULT_COLUMNS)
    expected_rows = sum(len(ENGINES) * len(RATES) * sc["repeats"] for sc in SCENARIOS.values())
    assert len(df) == expected_rows == len(suite_dir.manifest["runs"])
    assert set(df["status"]) == {"ok"}
    assert set(df["engine"]) == set(ENGINES)
    keys = df[["engine", "scenario", "request_rate", "max_concurrency", "repeat"]]
    assert not keys.duplicated().any()
    assert df["max_concurrency"].isna().all()
    assert set(df["request_rate"]) == set(RATES)
    assert set(df.loc[df["scenario"] == "chat", "dataset"]) == {"sharegpt"}
    assert df.set_index("engine")["simulated"].groupby(level=0).all().to_dict() == {
        "alpha": False,
        "beta": True,
    }
    assert df.set_index("engine")["dialect"].groupby(level=0).first().to_dict() == {
        "alpha": "vllm",
        "beta": "max",
    }


def test_sonic_load_results_is_a_lazy_attribute(suite_dir: Suite):
    import sonic

    assert sonic.load_results(suite_dir.root).shape[0] == len(suite_dir.manifest["runs"])
    with pytest.raises(AttributeError):
        sonic.no_such_thing  # noqa: B018


def test_dialect_keys_are_normalised(suite_dir: Suite):
    from sonic.analysis import load_results

    df = load_results(suite_dir.root).set_index("run_id")
    for rid, doc in suite_dir.docs.items():
        row = df.loc[rid]
        sonic = doc["sonic"]
        if ENGINES[row["engine"]]["dialect"] == "vllm":
            assert "input_throughput" not in doc and "failures" not in doc
            assert row["failed"] == doc["failed"]
            assert row["total_token_throughput"] == doc["total_token_throughput"]
            assert row["input_throughput"] == pytest.approx(sonic["input_throughput"])
            assert row["p99_ttft_ms"] == doc["p99_ttft_ms"]
            assert row["mean_tpot_ms"] == doc["mean_tpot_ms"]
            # not written by this vLLM run (default percentiles, E2EL not selected):
            assert "p90_ttft_ms" not in doc and "median_e2el_ms" not in doc
            assert row["p90_ttft_ms"] == pytest.approx(sonic["latency_ms"]["ttft"]["p90"])
            assert row["median_e2el_ms"] == pytest.approx(sonic["latency_ms"]["e2el"]["median"])
        else:
            assert "total_token_throughput" not in doc and "failed" not in doc
            assert row["failed"] == doc["failures"]
            assert row["input_throughput"] == doc["input_throughput"]
            assert row["total_token_throughput"] == pytest.approx(sonic["total_token_throughput"])
            assert row["p90_ttft_ms"] == doc["p90_ttft_ms"]
            assert row["median_e2el_ms"] == doc["median_latency_ms"]
            assert row["p99_itl_ms"] == doc["p99_itl_ms"]
        assert row["output_throughput"] == doc["output_throughput"]
        assert row["duration_s"] == doc["duration"]
        assert row["completed"] == N_REQ
        # against the design: the mean TTFT of the run is the mean designed TTFT
        assert row["mean_ttft_ms"] == pytest.approx(np.mean(suite_dir.ttft_ms[rid]), rel=1e-6)


def test_vllm_zero_for_an_empty_sample_set_becomes_nan(tmp_path: Path):
    from sonic.analysis import normalise_metrics

    reqs = [stream(0.0, 10.0, 5.0, 3, error="HTTP 500: boom")]
    metrics = compute_metrics(build_records(reqs), MetricRules.for_compat("vllm"), [4], words)
    doc = build_result("vllm", metrics, RunInfo(backend="vllm", model_id="m", num_prompts=1))
    assert doc["mean_ttft_ms"] == 0.0  # vLLM's convention for "no samples"
    row = normalise_metrics(doc, "vllm")
    assert math.isnan(row["mean_ttft_ms"]) and math.isnan(row["p99_itl_ms"])
    assert row["failed"] == 1 and row["completed"] == 0


# ------------------------------------------------------------------ load_requests


def test_load_requests_replays_the_raw_records(suite_dir: Suite):
    from sonic.analysis import REQUEST_COLUMNS, load_requests, load_results

    req = load_requests(suite_dir.root)
    assert list(req.columns) == list(REQUEST_COLUMNS)
    assert len(req) == N_REQ * len(suite_dir.manifest["runs"])
    res = load_results(suite_dir.root)
    for rid in [run_id("alpha", "chat", 4.0, 1), run_id("beta", "code", 1.0, 0)]:
        engine, scenario, name = rid.split("/")
        rate = 4.0 if "rate-4" in name else 1.0
        rep = int(name.rsplit("-", 1)[1])
        sub = req[
            (req["engine"] == engine)
            & (req["scenario"] == scenario)
            & (req["request_rate"] == rate)
            & (req["repeat"] == rep)
        ].sort_values("index")
        assert sub["ttft_ms"].to_numpy() == pytest.approx(suite_dir.ttft_ms[rid], abs=1e-6)
        ntext = np.array(suite_dir.n_text[rid])
        assert sub["output_tokens"].to_numpy() == pytest.approx(ntext)  # whole-text counts
        assert sub["itl_count"].tolist() == (ntext - 1).tolist()
        assert sub["success"].all() and sub["error"].isna().all()
        assert (sub["queue_ms"] == 0).all()
        # plain requests: each one a one-turn session
        assert sub["session_index"].tolist() == sub["index"].tolist()
        assert (sub["turn_index"] == 0).all()
        # recomputed statistics agree with the run's own file
        row = res[res["run_id"] == rid].iloc[0]
        assert np.percentile(sub["ttft_ms"], 99) == pytest.approx(row["p99_ttft_ms"], rel=1e-9)
        itls = np.concatenate(sub["itl_ms"].tolist())
        assert np.median(itls) == pytest.approx(row["median_itl_ms"], rel=1e-9)
        assert np.mean(sub["tpot_ms"]) == pytest.approx(row["mean_tpot_ms"], rel=1e-9)
        assert np.mean(sub["e2el_ms"]) == pytest.approx(row["mean_e2el_ms"], rel=1e-9)


def test_max_rules_end_at_done_and_vllm_at_the_last_choice(suite_dir: Suite):
    from sonic.analysis import load_requests

    req = load_requests(suite_dir.root)
    for engine, extra in (("alpha", 0.0), ("beta", 1.0)):  # stream(): [DONE] 1 ms after
        sub = req[(req["engine"] == engine) & (req["scenario"] == "code")]
        itl_sum = sub["itl_ms"].map(sum)
        assert (sub["e2el_ms"] - sub["ttft_ms"] - itl_sum).to_numpy() == pytest.approx(
            np.full(len(sub), extra), abs=1e-6
        )


# ------------------------------------------------------------------ partial directories


def test_a_partial_directory_loads_what_exists(suite_dir: Suite, tmp_path: Path):
    from sonic.analysis import load_requests, load_results

    root = tmp_path / "partial"
    shutil.copytree(suite_dir.root, root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["status"] = "interrupted"
    runs = manifest["runs"]
    # the last run finished on disk but the manifest was not rewritten yet
    unlisted = runs.pop()
    # one run failed (no file), one is listed but its file vanished
    runs[0].update(status="failed", error="server died", file=None, raw_file=None)
    (root / runs[1]["file"]).unlink()
    (root / runs[1]["raw_file"]).unlink()
    (root / "manifest.json").write_text(json.dumps(manifest))

    df = load_results(root)
    assert len(df) == len(suite_dir.manifest["runs"])
    by_id = df.set_index("run_id")
    assert by_id.loc[runs[0]["id"], "status"] == "failed"
    assert by_id.loc[runs[0]["id"], "error"] == "server died"
    assert math.isnan(by_id.loc[runs[0]["id"], "output_throughput"])
    assert by_id.loc[runs[1]["id"], "status"] == "missing"
    found = by_id.loc[unlisted["id"]]
    assert found["status"] == "ok" and found["dialect"] == unlisted["dialect"]
    assert found["simulated"] == ENGINES[unlisted["engine"]]["simulated"]
    assert found["output_throughput"] == suite_dir.docs[unlisted["id"]]["output_throughput"]
    req = load_requests(root)
    assert len(req) == N_REQ * (len(suite_dir.manifest["runs"]) - 2)


def test_runs_without_a_manifest_are_still_found(suite_dir: Suite, tmp_path: Path):
    from sonic.analysis import load_results

    root = tmp_path / "nomanifest"
    shutil.copytree(suite_dir.root, root)
    (root / "manifest.json").unlink()
    df = load_results(root)
    assert len(df) == len(suite_dir.manifest["runs"])
    assert set(df["dialect"]) == {"vllm", "max"}
    assert df.loc[df["engine"] == "beta", "simulated"].all()  # from the files' sonic key


def test_corrupt_raw_file_is_skipped_with_a_warning(suite_dir: Suite, tmp_path: Path):
    from sonic.analysis import load_requests

    root = tmp_path / "corrupt"
    shutil.copytree(suite_dir.root, root)
    raw = root / suite_dir.manifest["runs"][0]["raw_file"]
    raw.write_text('{"index": 0, "chunk_ns": [1, 2]\n')
    with pytest.warns(UserWarning, match="skipping raw records"):
        req = load_requests(root)
    assert len(req) == N_REQ * (len(suite_dir.manifest["runs"]) - 1)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "does not exist"),
        ("file", "is not a directory"),
        ("empty", "is not a sonic results directory"),
        ("badjson", "is not valid JSON"),
        ("badruns", "'runs' must be a JSON list"),
    ],
)
def test_bad_directories_are_one_line_errors(tmp_path: Path, setup: str, message: str):
    from sonic.analysis import load_results

    target = tmp_path / "r"
    if setup == "file":
        target.write_text("x")
    elif setup != "missing":
        target.mkdir()
    if setup == "badjson":
        (target / "manifest.json").write_text("{not json")
    if setup == "badruns":
        (target / "manifest.json").write_text('{"runs": {}}')
    with pytest.raises(SonicError, match=message) as err:
        load_results(target)
    assert "\n" not in str(err.value)
