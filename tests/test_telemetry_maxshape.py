"""MAX's ``server_metrics`` object from two real Prometheus expositions."""

from __future__ import annotations

import pytest

from sonic.telemetry.maxshape import server_metrics_doc
from sonic.telemetry.names import parse_metrics

H = "maxserve_batch_execution_time_milliseconds"


def _text(tokens: float, queued: float, ce: tuple[float, float, float], untyped: float) -> str:
    """MAX serve-shaped text: a counter with its ``_created`` gauge (as prometheus_client
    writes them), a gauge, the batch execution-time histogram for CE and TG batches, and an
    untyped sample."""
    ce_le10, ce_count, ce_sum = ce
    return (
        "# HELP maxserve_num_output_tokens_total output tokens\n"
        "# TYPE maxserve_num_output_tokens_total counter\n"
        f'maxserve_num_output_tokens_total{{model="m"}} {tokens}\n'
        "# TYPE maxserve_num_output_tokens_created gauge\n"
        'maxserve_num_output_tokens_created{model="m"} 1.7e9\n'
        "# TYPE maxserve_num_requests_queued gauge\n"
        f"maxserve_num_requests_queued {queued}\n"
        f"# TYPE {H} histogram\n"
        f'{H}_bucket{{batch_type="CE",le="10.0"}} {ce_le10}\n'
        f'{H}_bucket{{batch_type="CE",le="+Inf"}} {ce_count}\n'
        f'{H}_sum{{batch_type="CE"}} {ce_sum}\n'
        f'{H}_count{{batch_type="CE"}} {ce_count}\n'
        f'{H}_bucket{{batch_type="TG",le="10.0"}} 5\n'
        f'{H}_bucket{{batch_type="TG",le="+Inf"}} 5\n'
        f'{H}_sum{{batch_type="TG"}} 20\n'
        f'{H}_count{{batch_type="TG"}} 5\n'
        f"some_untyped_thing {untyped}\n"
    )


def test_counters_gauges_histograms_over_the_interval():
    before = parse_metrics(_text(100, 0, (1, 2, 30.0), 1))
    after = parse_metrics(_text(350, 3, (4, 7, 130.0), 9))
    doc = server_metrics_doc(before, after)
    # The counter under its family name (no _total), its _created stamp a gauge as exposed.
    assert doc["counters"] == {'maxserve_num_output_tokens{model="m"}': 250.0}
    assert doc["gauges"]["maxserve_num_requests_queued"] == 3.0
    assert 'maxserve_num_output_tokens_created{model="m"}' in doc["gauges"]
    assert not any("untyped" in k for part in ("counters", "gauges") for k in doc[part])
    ce = doc["histograms"]['maxserve_batch_execution_time_milliseconds{batch_type="CE"}']
    assert ce["buckets"] == [["10.0", 3.0], ["+Inf", 5.0]]
    assert (ce["sum"], ce["count"], ce["mean"]) == (100.0, 5.0, 20.0)
    tg = doc["histograms"]['maxserve_batch_execution_time_milliseconds{batch_type="TG"}']
    assert (tg["count"], tg["mean"]) == (0.0, 0.0)  # nothing observed during the interval
    assert doc["prefill_batch_execution_time_ms"] == pytest.approx(20.0)
    assert doc["prefill_batch_count"] == 5.0
    assert "decode_batch_count" not in doc  # no decode batch ran in the interval


def test_a_counter_that_went_backwards_is_none_and_new_series_count_from_zero():
    before = parse_metrics(_text(500, 0, (1, 2, 30.0), 0))
    after = parse_metrics(_text(20, 0, (1, 2, 30.0), 0))
    after += parse_metrics("# TYPE late_total counter\nlate_total 4\n")
    doc = server_metrics_doc(before, after)
    assert doc["counters"]['maxserve_num_output_tokens{model="m"}'] is None
    assert doc["counters"]["late"] == 4.0
