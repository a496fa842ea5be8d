"""Each engine's documented /metrics names normalise to one schema (hand-computed values)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sonic.telemetry.names import FIELDS, detect_engine, normalize, parse_metrics

FIXTURES = Path(__file__).parent / "fixtures" / "metrics"

EXPECTED = {
    "vllm": {
        "running": 4.0,
        "waiting": 7.0,
        "kv_cache_usage": 0.625,
        "prefix_cache_hits_total": 500.0,
        "prefix_cache_queries_total": 2000.0,
        "prefix_cache_hit_rate": 0.25,  # 500 / 2000
        "prompt_tokens_total": 12345.0,
        "generation_tokens_total": 6789.0,
        "preemptions_total": 3.0,
        "spec_drafts_total": 100.0,
        "spec_draft_tokens_total": 300.0,
        "spec_accepted_tokens_total": 180.0,
    },
    "max": {
        "running": 2.0,
        "waiting": 5.0,
        "kv_cache_usage": 0.45,  # histogram mean 180 / 4 = 45 %
        "prefix_cache_hits_total": 400.0,  # g0 300 + g1 100
        "prefix_cache_queries_total": 2000.0,  # hits 400 + misses 1600
        "prefix_cache_hit_rate": 0.2,
        "prompt_tokens_total": 4096.0,
        "generation_tokens_total": 1024.0,
        "preemptions_total": 2.0,
        "spec_acceptance_length": 2.5,  # 25 / 10
    },
    "sglang": {
        "running": 8.0,
        "waiting": 12.0,
        "kv_cache_usage": 0.28,
        "prefix_cache_hit_rate": 0.4,
        "spec_acceptance_length": 2.5,
        "prompt_tokens_total": 8000.0,
        "generation_tokens_total": 2000.0,
    },
    "tgi": {
        "running": 6.0,
        "waiting": 3.0,
        "prompt_tokens_total": 2300.0,
        "generation_tokens_total": 1400.0,
    },
    "llamacpp": {
        "running": 4.0,
        "waiting": 9.0,
        "kv_cache_usage": 0.125,
        "prompt_tokens_total": 640.0,
        "generation_tokens_total": 256.0,
    },
}


@pytest.mark.parametrize("engine", sorted(EXPECTED))
def test_fixture_normalises_to_expected_values(engine):
    samples = parse_metrics((FIXTURES / f"{engine}.txt").read_text())
    assert detect_engine(samples) == engine
    values = normalize(samples)
    assert set(values) <= set(FIELDS)
    assert values == pytest.approx(EXPECTED[engine])


def test_histogram_means_and_hit_rate_over_an_interval():
    before = parse_metrics((FIXTURES / "max.txt").read_text())
    text = (
        (FIXTURES / "max.txt")
        .read_text()
        .replace(
            "maxserve_cache_used_kv_pct_percent_count 4.0",
            "maxserve_cache_used_kv_pct_percent_count 6.0",
        )
        .replace(
            "maxserve_cache_used_kv_pct_percent_sum 180.0",
            "maxserve_cache_used_kv_pct_percent_sum 340.0",
        )
        .replace(
            "maxserve_cache_misses_tokens_total 1600.0", "maxserve_cache_misses_tokens_total 1700.0"
        )
        .replace(
            'maxserve_cache_hits_tokens_total{tier="g0"} 300.0',
            'maxserve_cache_hits_tokens_total{tier="g0"} 600.0',
        )
    )
    after = parse_metrics(text)
    v = normalize(after, previous=before)
    assert v["kv_cache_usage"] == pytest.approx(0.80)  # (340-180)/(6-4) = 80 %
    assert v["prefix_cache_hit_rate"] == pytest.approx(300 / 400)  # Δhits 300, Δqueries 400


def test_unknown_names_and_bad_text():
    assert normalize(parse_metrics("# TYPE foo gauge\nfoo 1\n")) == {}
    with pytest.raises(ValueError):
        parse_metrics("this is { not prometheus\n")
