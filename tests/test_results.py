"""Result files: key-exact dialects (golden lists), atomic writes, file names,
appending, the raw per-request log, secrets and the exit policy."""

from __future__ import annotations

import json
import math
import os
from datetime import datetime
from pathlib import Path

import pytest

from sonic.errors import SonicError
from sonic.metrics import compute_metrics, parse_goodput
from sonic.records import CHUNK_DONE, CHUNK_TEXT, RunRecords
from sonic.results import (
    RunInfo,
    build_max_result,
    build_result,
    build_vllm_result,
    collect_secrets,
    parse_metadata,
    raw_records_path,
    result_filename,
    result_path,
    run_outcome,
    save_result,
    should_save,
    write_atomic,
    write_raw_records,
)
from test_metrics import MAX, VLLM, Req, build_records, stream, words

GOLDEN = Path(__file__).parent / "golden"
WHEN = datetime(2026, 3, 4, 5, 6, 7)


def golden(name: str) -> list[str]:
    return [ln.strip() for ln in (GOLDEN / name).read_text().splitlines() if ln.strip()]


def run_metrics(rules=VLLM, n_fail: int = 0, goodput=None, percentiles=(99.0,), n_ok: int = 3):
    reqs = [
        stream(0.0, 40.0, 10.0, 8),
        stream(100.0, 60.0, 12.0, 5, intended=90.0),
        stream(200.0, 50.0, 8.0, 6),
    ][:n_ok]
    reqs += [stream(300.0 + i, 1.0, 1.0, 1, error=f"HTTP 500: fail {i}") for i in range(n_fail)]
    recs = build_records(reqs)
    return compute_metrics(
        recs, rules, [20] * len(reqs), words, goodput=goodput, percentiles=percentiles
    )


def info(**kw) -> RunInfo:
    base = dict(
        backend="vllm",
        model_id="meta-llama/Meta-Llama-3-8B-Instruct",
        tokenizer_id="meta-llama/Meta-Llama-3-8B-Instruct",
        num_prompts=3,
        request_rate=4.0,
        dataset_name="sharegpt",
        date=WHEN,
    )
    base.update(kw)
    return RunInfo(**base)


# ------------------------------------------------------------------ key-exact dialects


def test_vllm_keys_match_golden_without_and_with_save_detailed():
    m = run_metrics()
    assert list(build_vllm_result(m, info())) == golden("vllm_keys.txt")
    assert list(build_vllm_result(m, info(save_detailed=True))) == golden("vllm_keys_detailed.txt")


def test_vllm_keys_match_golden_with_ramp_up_and_chosen_percentiles():
    m = run_metrics(percentiles=[50.0, 99.9])
    i = info(
        request_rate=math.inf,
        max_concurrency=8,
        ramp_up_strategy="linear",
        ramp_up_start_rps=1,
        ramp_up_end_rps=10,
        rps_change_events=[{"rps": 1, "timestamp": "2026-03-04T05:06:07"}],
        percentile_metrics=["ttft", "e2el", "client_queue_time", "e2el_including_client_queue"],
        metric_percentiles=[50.0, 99.9],
    )
    doc = build_vllm_result(m, i)
    # e2el_including_client_queue needs a finite rate in vLLM: absent here, as in the golden.
    assert list(doc) == golden("vllm_keys_rampup_e2el.txt")
    assert doc["request_rate"] == "inf"


def test_max_keys_match_golden():
    m = run_metrics(MAX)
    assert list(build_max_result(m, info(backend="modular"))) == golden("max_keys.txt")


def test_metadata_keys_sit_after_the_header_and_cannot_clobber_result_keys():
    m = run_metrics()
    doc = build_vllm_result(m, info(metadata=parse_metadata(["gpu=H100", "run = 3"])))
    keys = list(doc)
    assert keys[keys.index("num_prompts") + 1 : keys.index("request_rate")] == ["gpu", "run"]
    assert doc["run"] == "3"
    with pytest.raises(SonicError, match="metadata"):
        build_vllm_result(m, info(metadata={"duration": "1"}))
    with pytest.raises(SonicError, match="metadata"):
        build_max_result(m, info(metadata={"sonic": "x"}))
    with pytest.raises(SonicError, match="KEY=VALUE"):
        parse_metadata(["novalue"])


def test_vllm_values_and_conventions():
    m = run_metrics(goodput=parse_goodput("ttft:55"))
    doc = build_vllm_result(m, info(request_rate=math.inf, save_detailed=True))
    assert doc["request_rate"] == "inf"
    assert doc["max_concurrency"] is None and doc["label"] is None
    assert doc["completed"] == 3 and doc["failed"] == 0
    # TTFT from the actual send; request 1 waited 10 ms, which shows only from intended.
    assert doc["mean_ttft_ms"] == pytest.approx((40 + 60 + 50) / 3)
    assert doc["request_goodput"] == pytest.approx(2 / doc["duration"])  # ttft 40 and 50 pass
    assert doc["queue_times"] == pytest.approx([0.0, 0.010, 0.0])
    assert doc["output_lens"] == [8, 5, 6]
    assert doc["itls"][1] == pytest.approx([0.012] * 4)
    assert doc["errors"] == ["", "", ""]
    assert doc["sonic"]["from_intended_send_ms"]["ttft"]["max"] == pytest.approx(70.0)


def test_empty_sample_sets_are_zero_in_vllm_and_max_2025():
    """Both tools write 0 for a statistic of no samples; the seed suite's analyze_results.py
    formats MAX's keys with :.2f, which a null would crash."""
    m = compute_metrics(RunRecords.empty(), VLLM, [])
    v = build_vllm_result(m, info(num_prompts=0))
    assert v["mean_ttft_ms"] == 0.0 and v["p99_itl_ms"] == 0.0
    x = build_max_result(compute_metrics(RunRecords.empty(), MAX, []), info(num_prompts=0))
    assert x["mean_ttft_ms"] == 0.0 and x["p99_latency_ms"] == 0.0
    assert x["p99_output_throughput"] == 0.0
    assert f"{x['mean_tpot_ms']:.2f} {x['median_itl_ms']:.2f}" == "0.00 0.00"
    json.dumps(v, allow_nan=False)
    json.dumps(x, allow_nan=False)


def test_max_reversed_throughput_percentiles_and_concurrency_overwrite():
    m = run_metrics(MAX)
    doc = build_max_result(m, info(backend="modular"))
    per_req = sorted(x for x in m.requests.output_throughput if not math.isnan(x))
    assert doc["p99_output_throughput"] < doc["median_output_throughput"]
    assert doc["p99_output_throughput"] == pytest.approx(float(_np_percentile(per_req, 1)))
    assert doc["max_concurrency"] == 3  # unbounded: MAX August 2025 writes the request count
    assert build_max_result(m, info(max_concurrency=2))["max_concurrency"] == 2


def _np_percentile(values, q):
    import numpy as np

    return np.percentile(values, q)


# ------------------------------------------------------------------ readers


def read_vllm_summary(path: Path) -> dict[str, float]:
    """A reader that knows only vLLM `bench serve` key names."""
    doc = json.loads(path.read_text())
    return {
        "completed": doc["completed"],
        "failed": doc["failed"],
        "duration": doc["duration"],
        "request_throughput": doc["request_throughput"],
        "output_throughput": doc["output_throughput"],
        "total_token_throughput": doc["total_token_throughput"],
        "mean_ttft_ms": doc["mean_ttft_ms"],
        "median_ttft_ms": doc["median_ttft_ms"],
        "p99_ttft_ms": doc["p99_ttft_ms"],
        "mean_tpot_ms": doc["mean_tpot_ms"],
        "p99_itl_ms": doc["p99_itl_ms"],
        "max_concurrent_requests": doc["max_concurrent_requests"],
    }


def test_vllm_file_loads_in_a_vllm_key_reader(tmp_path):
    m = run_metrics()
    i = info()
    path = result_path("vllm", i, result_dir=tmp_path / "res")
    save_result("vllm", build_vllm_result(m, i), path)
    s = read_vllm_summary(path)
    assert s["completed"] == 3 and s["failed"] == 0
    # tokens: 8 + 5 + 6 = 19 over the duration (last [DONE] at 200+50+5*8+1 = 291 ms)
    assert s["duration"] == pytest.approx(0.291)
    assert s["output_throughput"] == pytest.approx(19 / 0.291)
    assert s["total_token_throughput"] == pytest.approx((19 + 30) / 0.291)
    assert s["median_ttft_ms"] == pytest.approx(50.0)
    assert s["mean_tpot_ms"] == pytest.approx((70 / 7 + 48 / 4 + 40 / 5) / 3)


def test_max_file_has_the_original_suite_analysis_keys(tmp_path):
    m = run_metrics(MAX)
    i = info(backend="modular", client_args={"backend": "modular", "request_rate": 4.0})
    path = result_path("max", i, result_dir=tmp_path)
    save_result("max", build_max_result(m, i), path)
    doc = json.loads(path.read_text())
    for key in (
        "request_throughput",
        "input_throughput",
        "output_throughput",
        "mean_ttft_ms",
        "median_ttft_ms",
        "p99_ttft_ms",
        "mean_tpot_ms",
        "median_tpot_ms",
        "p99_tpot_ms",
    ):
        assert isinstance(doc[key], float), key
    assert doc["input_throughput"] == pytest.approx(60 / doc["duration"])  # client lens 3 x 20
    assert doc["mean_ttft_ms"] == pytest.approx((40 + 60 + 50) / 3)
    assert doc["client_args"]["request_rate"] == "4.0"
    assert doc["failures"] == 0 and doc["server_args"] == ""
    assert doc["peak_gpu_memory_mib"] == 0.0


# ------------------------------------------------------------------ files


def test_filenames_follow_each_template(tmp_path):
    i = info()
    assert result_filename("vllm", i) == (
        "vllm-4.0qps-Meta-Llama-3-8B-Instruct-20260304-050607.json"
    )
    assert result_filename("vllm", info(label="run1", max_concurrency=16)) == (
        "run1-4.0qps-concurrency16-Meta-Llama-3-8B-Instruct-20260304-050607.json"
    )
    ramp = info(ramp_up_strategy="linear", ramp_up_start_rps=1, ramp_up_end_rps=10)
    assert result_filename("vllm", ramp) == (
        "vllm-ramp-up-linear-1qps-10qps-Meta-Llama-3-8B-Instruct-20260304-050607.json"
    )
    assert result_filename("vllm", info(request_rate=math.inf)).startswith("vllm-infqps-")
    assert result_filename("max", info(backend="modular")) == (
        "modular-4.0qps-Meta-Llama-3-8B-Instruct-2026-03-04 05:06:07.json"
    )
    # --result-dir is created; --result-filename replaces the name.
    p = result_path("vllm", i, result_dir=tmp_path / "a" / "b", result_filename_arg="x.json")
    assert p == tmp_path / "a" / "b" / "x.json" and p.parent.is_dir()


def test_max_never_overwrites_silently(tmp_path):
    i = info(backend="modular")
    m = run_metrics(MAX)
    first = result_path("max", i, result_dir=tmp_path)
    save_result("max", build_max_result(m, i), first)
    second = result_path("max", i, result_dir=tmp_path)
    assert second.name.endswith("-2.json") and second != first
    # An explicit name that exists is kept as .orig (MAX August 2025 and later).
    explicit = result_path("max", i, result_dir=tmp_path, result_filename_arg=first.name)
    save_result("max", {"x": 1}, explicit)
    assert json.loads(first.read_text()) == {"x": 1}
    orig = first.with_name(first.name + ".orig")
    assert json.loads(orig.read_text())["backend"] == "modular"


def test_append_result_adds_one_document_per_line(tmp_path):
    path = tmp_path / "r.jsonl"
    m = run_metrics()
    save_result("vllm", build_vllm_result(m, info()), path, append=True)
    save_result("vllm", build_vllm_result(m, info(label="second")), path, append=True)
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert [json.loads(ln)["label"] for ln in lines] == [None, "second"]


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_leaves_no_temp_file_and_never_a_half_file(tmp_path):
    target = tmp_path / "result.json"
    write_atomic(target, ['{"ok": ', "true}"])
    assert json.loads(target.read_text()) == {"ok": True}
    assert _leftovers(tmp_path) == []

    def failing():
        yield '{"half": '
        raise OSError(28, "No space left on device")

    with pytest.raises(SonicError, match="No space left"):
        write_atomic(target, failing())
    assert json.loads(target.read_text()) == {"ok": True}  # old content intact
    assert _leftovers(tmp_path) == []

    def interrupted():
        yield '{"half": '
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, interrupted())
    assert json.loads(target.read_text()) == {"ok": True}
    assert _leftovers(tmp_path) == []


def test_write_into_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(SonicError, match="does not exist"):
        write_atomic(tmp_path / "nope" / "r.json", ["{}"])


def test_raw_records_jsonl_has_one_line_per_request(tmp_path):
    reqs = [
        stream(0.0, 10.0, 5.0, 2, intended=0.0),
        Req(sent=None, error="cancelled"),
        Req(sent=1.0, chunks=[(2.0, CHUNK_TEXT, "é"), (3.0, CHUNK_DONE, "")], end=3.0),
    ]
    recs = build_records(reqs)
    m = compute_metrics(recs, VLLM, [4, 4, 4], words)
    res = tmp_path / "vllm-4.0qps-m-20260304-050607.json"
    path = write_raw_records(raw_records_path(res), recs, m)
    assert path.name == "vllm-4.0qps-m-20260304-050607.requests.jsonl"
    lines = [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines()]
    assert [ln["index"] for ln in lines] == [0, 1, 2]
    first = lines[0]
    assert first["chunk_ns"] == [10 * 1_000_000, 15 * 1_000_000, 15_500_000, 16 * 1_000_000]
    assert first["chunk_kind"] == [0, 0, 2, 3]
    assert first["chunk_text"][:2] == ["w0 ", "w1 "]
    assert first["usage"] == {"prompt_tokens": 10, "completion_tokens": 2}
    assert lines[1]["sent_ns"] is None and lines[1]["error"] == "cancelled"
    assert lines[1]["success"] is False
    assert lines[2]["chunk_text"][0] == "é"


# ------------------------------------------------------------------ secrets


def test_no_secret_reaches_result_or_raw_file(tmp_path, monkeypatch):
    token = "hf_SeCrEtToKeN1234567890"
    api_key = "sk-test-abcdefghijklmnop"
    header_val = "Bearer zzz-header-secret-999"
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setenv("OPENAI_API_KEY", api_key)
    reqs = [
        Req(
            sent=0.0,
            chunks=[(5.0, CHUNK_TEXT, f"echo {token} and {api_key}"), (6.0, CHUNK_DONE, "")],
            end=6.0,
        ),
        stream(0.0, 1.0, 1.0, 2, error=f"HTTP 401: bad key {api_key}"),
    ]
    recs = build_records(reqs)
    m = compute_metrics(recs, MAX, [3, 3], words)
    args = {
        "backend": "modular",
        "header": [f"Authorization={header_val}"],
        "api_key": api_key,
        "hf_token": token,
        "tokenizer": "gpt2",
        "max_tokens": 5,
        "request_rate": 1.0,
    }
    i = info(backend="modular", client_args=args, save_detailed=True, metadata={"note": token})
    secrets = collect_secrets(extra=[header_val])
    for dialect in ("max", "vllm"):
        path = tmp_path / f"{dialect}.json"
        save_result(dialect, build_result(dialect, m, i), path, secrets=secrets)
        text = path.read_text()
        for secret in (token, api_key, header_val, "zzz-header-secret"):
            assert secret not in text, (dialect, secret)
        assert "<redacted>" in text
    doc = json.loads((tmp_path / "max.json").read_text())
    assert doc["client_args"]["tokenizer"] == "gpt2" and doc["client_args"]["max_tokens"] == 5
    assert doc["client_args"]["header"] == "<redacted>"
    raw = write_raw_records(tmp_path / "raw.jsonl", recs, m, secrets=secrets).read_text()
    assert token not in raw and api_key not in raw


def test_collect_secrets_ignores_short_values_and_unrelated_names():
    env = {"HF_TOKEN": "hf_abcdefghijkl", "MY_API_KEY": "k" * 20, "PATH": "/usr/bin", "X": "y"}
    got = collect_secrets(extra=["short"], environ=env)
    assert set(got) == {"hf_abcdefghijkl", "k" * 20}


# ------------------------------------------------------------------ policy


def test_failures_are_saved_as_partial_results_with_dialect_exit_codes(tmp_path):
    m_max = run_metrics(MAX, n_fail=2)
    o = run_outcome("max", m_max, num_prompts=5)
    assert (o.exit_code, o.partial) == (1, True)
    assert "2 of 5 requests failed (most often: HTTP 500: fail" in o.reasons[0]
    m_v = run_metrics(VLLM, n_fail=2)
    assert run_outcome("vllm", m_v, num_prompts=5).exit_code == 0
    i = info(num_prompts=5, save_detailed=True)
    path = tmp_path / "v.json"
    save_result("vllm", build_vllm_result(m_v, i), path)
    doc = json.loads(path.read_text())
    assert (doc["completed"], doc["failed"]) == (3, 2)
    assert doc["errors"][3].startswith("HTTP 500")
    assert doc["sonic"]["partial"] is True
    assert doc["sonic"]["error_counts"] == {"HTTP 500: fail 0": 1, "HTTP 500: fail 1": 1}
    mdoc = build_max_result(m_max, info(num_prompts=5, backend="modular"))
    assert mdoc["failures"] == 2 and mdoc["sonic"]["partial"] is True
    # MAX July 2025 also fails a run where fewer than --num-prompts completed.
    assert run_outcome("max", run_metrics(MAX), num_prompts=4).exit_code == 1
    assert run_outcome("max", run_metrics(MAX), num_prompts=3).exit_code == 0


def test_a_run_where_nothing_succeeded_exits_1_in_both_dialects():
    for rules, dialect in ((VLLM, "vllm"), (MAX, "max")):
        m = run_metrics(rules, n_fail=3)
        m_none = run_metrics(rules, n_ok=0, n_fail=3)
        assert run_outcome(dialect, m_none, num_prompts=3).exit_code == 1
        assert run_outcome(dialect, m, num_prompts=6).exit_code == (0 if dialect == "vllm" else 1)


def test_interrupted_run_exits_130_and_is_partial():
    recs = build_records([stream(0.0, 1.0, 1.0, 2)], cancelled=True)
    m = compute_metrics(recs, VLLM, [1], words)
    for dialect in ("vllm", "max"):
        o = run_outcome(dialect, m, num_prompts=10)
        assert o.exit_code == 130 and o.partial
        assert any("interrupted" in r for r in o.reasons)


def test_should_save_per_dialect():
    assert should_save("vllm", save_result=True)
    assert should_save("vllm", save_result=False, append_result=True)
    assert not should_save("vllm", save_result=False, result_filename="x.json")
    assert should_save("max", save_result=False, result_filename="x.json")
    assert not should_save("max", save_result=False)
    with pytest.raises(SonicError, match="unknown --compat 'sglang'"):
        should_save("sglang", save_result=True)


def test_result_files_are_readable_by_others(tmp_path):
    path = write_atomic(tmp_path / "r.json", ["{}"])
    assert os.stat(path).st_mode & 0o044 == 0o044
