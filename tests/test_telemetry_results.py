"""Telemetry in the result documents and flags (no GPU needed)."""

from __future__ import annotations

import json
import re

import pytest

from sonic.compat.parser import parse_run_args
from sonic.errors import SonicError
from sonic.results import SONIC_KEY, add_telemetry
from sonic.telemetry import TelemetrySession
from sonic.telemetry.align import align, in_flight
from sonic.telemetry.gpu import GpuData
from sonic.telemetry.session import EndpointTelemetry, TelemetryResult


def _result(server_deltas=None, **kw) -> TelemetryResult:
    base = dict(
        gpu_requested=True,
        gpu_available=False,
        gpu_reason="no NVIDIA GPU/driver found (test)",
        gpu=GpuData(),
    )
    if server_deltas is not None:
        base["endpoints"] = [
            EndpointTelemetry("server", "http://h/metrics", "vllm", server_deltas, {}, [])
        ]
    base.update(kw)
    return TelemetryResult(**base)


def _max_doc():
    return {
        "duration": 1.0,
        "peak_gpu_memory_mib": 0.0,
        "available_gpu_memory_mib": 0.0,
        "gpu_utilization": 0.0,
        SONIC_KEY: {},
    }


def test_max_keys_are_lists_and_empty_without_a_gpu():
    doc = _max_doc()
    add_telemetry(doc, "max", _result(), output_tokens=50)
    assert list(doc)[:4] == [
        "duration",
        "peak_gpu_memory_mib",
        "available_gpu_memory_mib",
        "gpu_utilization",
    ]
    assert doc["peak_gpu_memory_mib"] == [] and doc["gpu_utilization"] == []
    tel = doc[SONIC_KEY]["telemetry"]
    assert tel["gpu"]["collected"] and not tel["gpu"]["available"]
    json.dumps(doc, allow_nan=False)


def test_max_keys_untouched_when_not_collected():
    doc = _max_doc()
    add_telemetry(doc, "max", _result(gpu_requested=False), output_tokens=50)
    assert doc["peak_gpu_memory_mib"] == 0.0  # MAX July 2025: 0 when not collected


def test_max_keys_per_gpu_and_tokens_per_joule():
    summ = [
        {
            "device": i,
            "name": "H",
            "uuid": "u",
            "samples": 5,
            "peak_used_mib": 100.0 * (i + 1),
            "min_free_mib": 50.0,
            "mean_util_pct": 40.0 + i,
            "max_util_pct": 90.0,
            "mean_mem_util_pct": 1.0,
            "mean_power_w": 300.0,
            "max_temperature_c": 60.0,
            "mean_sm_clock_mhz": 1500.0,
            "energy_j": 100.0,
            "energy_source": "counter",
            "energy_span_s": 1.0,
        }
        for i in range(2)
    ]
    doc = _max_doc()
    gpu = GpuData(devices=[{"index": 0}, {"index": 1}], summaries=summ, hz=10.0)
    add_telemetry(doc, "max", _result(gpu_available=True, gpu=gpu), output_tokens=400)
    assert doc["peak_gpu_memory_mib"] == [100.0, 200.0]
    assert doc["available_gpu_memory_mib"] == [50.0, 50.0]
    assert doc["gpu_utilization"] == [40.0, 41.0]
    g = doc[SONIC_KEY]["telemetry"]["gpu"]
    assert g["energy_j"] == 200.0 and g["output_tokens_per_joule"] == 2.0


def test_vllm_spec_decode_keys_from_counter_deltas():
    deltas = {
        "normalized": {
            "spec_drafts_total": 100.0,
            "spec_draft_tokens_total": 300.0,
            "spec_accepted_tokens_total": 180.0,
            "generation_tokens_total": 1000.0,
        },
        "raw": {
            'vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name="m",position="0"}': 90.0,
            'vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name="m",position="1"}': 60.0,
        },
        "rates": {},
    }
    doc = {"duration": 1.0, SONIC_KEY: {}}
    add_telemetry(doc, "vllm", _result(gpu_requested=False, server_deltas=deltas), 10)
    assert list(doc)[-1] == SONIC_KEY
    assert doc["spec_decode_acceptance_rate"] == pytest.approx(60.0)  # 180/300 %
    assert doc["spec_decode_acceptance_length"] == pytest.approx(2.8)  # 1 + 180/100
    assert doc["spec_decode_num_drafts"] == 100
    assert doc["spec_decode_per_position_acceptance_rates"] == pytest.approx([0.9, 0.6])
    assert (
        doc[SONIC_KEY]["telemetry"]["server_metrics"]["deltas"]["generation_tokens_total"] == 1000.0
    )


def test_flags_defaults_per_profile():
    vllm = parse_run_args(["--model", "m", "--base-url", "http://h:9"]).output
    assert vllm.collect_gpu_stats is False
    assert vllm.server_metrics_url == "http://h:9/metrics" and vllm.gpu_sample_hz == 10.0
    mx = parse_run_args(["--backend", "modular", "--model", "m"]).output
    assert mx.collect_gpu_stats is False  # MAX's 2025 script: only when asked
    mb = parse_run_args(["--compat", "max-benchmark", "--model", "m"]).output
    assert mb.collect_gpu_stats is True and mb.collect_cpu_stats is True  # `max benchmark`
    off = parse_run_args(
        [
            "--backend",
            "modular",
            "--model",
            "m",
            "--no-collect-gpu-stats",
            "--server-metrics-url",
            "none",
            "--gpu-sample-hz",
            "4",
        ]
    ).output
    assert off.collect_gpu_stats is False and off.server_metrics_url is None
    assert off.gpu_sample_hz == 4.0


def test_metrics_urls_flag_max_and_plain_forms():
    def out(*extra):
        return parse_run_args(["--backend", "modular", "--model", "m", *extra]).output

    o = out("--metrics-urls.prefill=http://p:8001/metrics", "--metrics-urls.decode", "http://d/m")
    assert o.server_metrics_endpoints == {
        "prefill": "http://p:8001/metrics",
        "decode": "http://d/m",
    }
    assert list(o.server_metrics_endpoints) == ["prefill", "decode"]
    assert o.server_metrics_url is None and o.collect_server_stats  # they replace the default
    o = out("--server-metrics-url", "http://s/metrics", "--metrics-urls", "a=http://a/metrics")
    assert o.server_metrics_url == "http://s/metrics"
    assert o.server_metrics_endpoints == {"a": "http://a/metrics"}
    o = out("--metrics-urls.a=http://a/metrics", "--no-collect-server-stats")
    assert o.server_metrics_endpoints == {} and o.server_metrics_url is None
    assert o.collect_server_stats is False


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--metrics-urls", "nolabel"], "item 1 is not LABEL=URL"),
        (["--metrics-urls.a b=http://x"], "label 'a b'"),
        (["--metrics-urls.a=http://x", "--metrics-urls.a=http://y"], "label 'a' given twice"),
        (["--metrics-urls.a=ftp://x"], "--metrics-urls.a: 'ftp://x' is not an http(s) URL"),
        (
            ["--server-metrics-url", "http://s/m", "--metrics-urls.server=http://x"],
            "label 'server' is the one of --server-metrics-url",
        ),
    ],
)
def test_metrics_urls_bad_values_are_one_line_errors(extra, message):
    with pytest.raises(SonicError, match=re.escape(message)):
        parse_run_args(["--model", "m", *extra])


def test_max_server_metrics_keys_first_endpoint_and_by_label():
    def ep(label, counter):
        return EndpointTelemetry(
            label,
            f"http://{label}/metrics",
            "max",
            {},
            {},
            [],
            {"counters": {"c": counter}, "gauges": {"g": float("nan")}, "histograms": {}},
        )

    res = _result(gpu_requested=False, endpoints=[ep("prefill", 1.0), ep("decode", 2.0)])
    doc = _max_doc()
    add_telemetry(doc, "max", res, output_tokens=5)
    assert list(doc)[-3:] == ["server_metrics", "server_metrics_by_endpoint", SONIC_KEY]
    assert doc["server_metrics"]["counters"] == {"c": 1.0}
    assert list(doc["server_metrics_by_endpoint"]) == ["prefill", "decode"]
    assert doc["server_metrics_by_endpoint"]["decode"]["counters"] == {"c": 2.0}
    assert doc["server_metrics"]["gauges"] == {"g": None}  # NaN is written as null
    json.dumps(doc, allow_nan=False)
    vdoc = {"duration": 1.0, SONIC_KEY: {}}
    add_telemetry(vdoc, "vllm", res, output_tokens=5)
    assert "server_metrics" not in vdoc and "server_metrics_by_endpoint" not in vdoc
    assert set(vdoc[SONIC_KEY]["telemetry"]["server_metrics_by_endpoint"]) == {"prefill", "decode"}


def test_align_and_in_flight():
    class R:
        t0_mono_ns = 1_000_000_000
        sent_ns = [0, 100_000_000, -1]
        end_ns = [500_000_000, -1, -1]

    assert align(R.t0_mono_ns, [1_500_000_000, 500_000_000]).tolist() == [0.5, -0.5]
    t, n = in_flight(R)
    assert t.tolist() == [0.0, 0.1, 0.5, 0.5] and n.tolist() == [1, 2, 1, 0]


def test_session_without_anything_is_quiet():
    with TelemetrySession(gpu=False) as tel:
        pass
    res = tel.result()
    assert res.warnings == [] and res.console_lines() == []
