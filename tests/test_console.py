"""Console summary: the banners and labels that vLLM/MAX log scrapers look for."""

from __future__ import annotations

import io
import math
import re

from sonic.console import BANNER, SIMULATED_LABEL, format_summary, print_summary
from sonic.metrics import compute_metrics, parse_goodput
from sonic.records import RunRecords
from sonic.results import RunInfo
from test_metrics import MAX, VLLM, Req, build_records, stream, words


def _metrics(rules, n_fail=0, goodput=None):
    reqs = [stream(0.0, 40.0, 10.0, 8), stream(100.0, 60.0, 12.0, 5, intended=90.0)]
    reqs += [Req(sent=200.0 + i, error=f"HTTP 500: err {i}", end=201.0 + i) for i in range(n_fail)]
    return compute_metrics(build_records(reqs), rules, [20] * len(reqs), words, goodput=goodput)


def _info(**kw) -> RunInfo:
    base = dict(backend="vllm", model_id="m", num_prompts=2, request_rate=4.0)
    base.update(kw)
    return RunInfo(**base)


def _line(text: str, label: str) -> str:
    found = [ln for ln in text.splitlines() if ln.startswith(label)]
    assert len(found) == 1, (label, found)
    return found[0]


def _value(text: str, label: str) -> str:
    line = _line(text, label)
    assert line[40] == " " and line[:40].rstrip() == label  # `{:<40} {:<10}` alignment
    return line[41:].strip()


def test_banner_is_fifty_wide_with_the_title_centered():
    assert BANNER == "=" * 12 + " Serving Benchmark Result " + "=" * 12
    assert len(BANNER) == 50


def test_vllm_summary_labels_and_values():
    m = _metrics(VLLM, goodput=parse_goodput("ttft:50"))
    text = format_summary("vllm", m, _info(max_concurrency=4))
    assert BANNER in text.splitlines()
    assert _value(text, "Successful requests:") == "2"
    assert _value(text, "Failed requests:") == "0"
    assert _value(text, "Maximum request concurrency:") == "4"
    assert _value(text, "Request rate configured (RPS):") == "4.00"
    assert _value(text, "Benchmark duration (s):") == f"{m.duration_s:.2f}"
    assert _value(text, "Total input tokens:") == str(m.total_input_tokens)
    assert _value(text, "Total generated tokens:") == "13"
    assert _value(text, "Request throughput (req/s):") == f"{m.request_throughput:.2f}"
    assert _value(text, "Request goodput (req/s):") == f"{m.request_goodput:.2f}"
    assert _value(text, "Output token throughput (tok/s):") == f"{m.output_throughput:.2f}"
    assert _value(text, "Mean TTFT (ms):") == "50.00"  # (40 + 60) / 2
    assert _value(text, "Median TTFT (ms):") == "50.00"
    assert _value(text, "P99 TTFT (ms):") == f"{40 + 0.99 * 20:.2f}"
    assert _value(text, "Mean ITL (ms):") == f"{(7 * 10 + 4 * 12) / 11:.2f}"
    for label in ("Mean TPOT (ms):", "Peak output token throughput (tok/s):"):
        _line(text, label)
    for header in ("Time to First Token", "Time per Output Token (excl. 1st token)"):
        assert "{s:{c}^{n}}".format(s=header, n=50, c="-") in text.splitlines()
    assert "Input token throughput" not in text  # a MAX label
    assert "Request goodput" not in format_summary("vllm", _metrics(VLLM), _info())
    assert "Request rate configured" not in format_summary(
        "vllm", _metrics(VLLM), _info(request_rate=math.inf)
    )


def test_max_summary_labels_and_values():
    m = _metrics(MAX)
    text = format_summary("max", m, _info(backend="modular"))
    assert BANNER in text.splitlines()
    assert _value(text, "Successful requests:") == "2"
    assert _value(text, "Failed requests:") == "0"
    assert _value(text, "Total input tokens:") == "40"
    assert _value(text, "Input token throughput (tok/s):") == f"{40 / m.duration_s:.2f}"
    assert _value(text, "Output token throughput (tok/s):") == f"{13 / m.duration_s:.2f}"
    assert _value(text, "Mean TTFT (ms):") == "50.00"
    assert _value(text, "Max output tokens:") == "8"
    assert _value(text, "Max total tokens:") == "28"
    for label in ("P99 TPOT (ms):", "Median ITL (ms):", "Request throughput (req/s):"):
        _line(text, label)
    assert "Peak concurrent requests" not in text  # a vLLM label
    assert "GPU Stats" not in text
    gpu = format_summary("max", m, _info(peak_gpu_memory_mib=1000.0, gpu_utilization=55.5))
    assert _value(gpu, "GPU Utilization (%):") == "55.50"


def test_sonic_section_reports_dispatch_lag_and_intended_latency():
    m = _metrics(VLLM)
    text = format_summary("vllm", m, _info())
    assert _value(text, "Dispatch lag P99 (ms):") == f"{0.99 * 10:.2f}"
    assert _value(text, "P99 TTFT from intended send (ms):") == f"{40 + 0.99 * 30:.2f}"
    assert _value(text, "Token count mode:") == "usage"
    assert _value(text, "Output tokens re-tok vs usage (%):") == "0.00"
    # the dialect block closes before sonic's, so scrapers reading up to "=====" are unaffected
    lines = text.splitlines()
    assert lines.index("=" * 50) < next(i for i, ln in enumerate(lines) if "sonic-bench" in ln)


def test_simulated_label_only_when_asked():
    m = _metrics(VLLM)
    assert SIMULATED_LABEL in format_summary("vllm", m, _info(simulated=True))
    assert SIMULATED_LABEL not in format_summary("vllm", m, _info())


def test_failed_requests_are_listed_capped_at_ten():
    m = _metrics(VLLM, n_fail=12)
    text = format_summary("vllm", m, _info(num_prompts=14))
    errs = [ln for ln in text.splitlines() if re.match(r"Error \d+: request \d+: HTTP 500", ln)]
    assert len(errs) == 10
    assert _value(text, "Failed requests:") == "12"
    assert "Partial results: 12 of 14 requests failed" in text


def test_empty_run_prints_zero_for_vllm_and_nan_for_max():
    v = compute_metrics(RunRecords.empty(), VLLM, [])
    assert _value(format_summary("vllm", v, _info(num_prompts=0)), "Mean TTFT (ms):") == "0.00"
    x = compute_metrics(RunRecords.empty(), MAX, [])
    assert _value(format_summary("max", x, _info(num_prompts=0)), "Mean TTFT (ms):") == "nan"


def test_print_summary_writes_to_the_given_stream():
    buf = io.StringIO()
    print_summary("max", _metrics(MAX), _info(), file=buf)
    assert "Successful requests:" in buf.getvalue()
