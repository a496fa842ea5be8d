"""GPU telemetry: the no-GPU path (here) and the NVML path (on a GPU machine)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from sonic import _core
from sonic.telemetry import TelemetrySession, probe
from sonic.telemetry.gpu import FIELDS, max_gpu_keys, tokens_per_joule, total_energy_j

AVAILABLE, REASON = probe()


def test_monotonic_clock_is_pythons():
    a = time.monotonic_ns()
    b = _core.monotonic_ns()
    c = time.monotonic_ns()
    assert a <= b <= c


@pytest.mark.skipif(AVAILABLE, reason="a GPU is present: the no-GPU path cannot be exercised")
def test_no_gpu_probe_says_so():
    ok, reason = _core.gpu_probe()
    assert ok is False
    assert "no NVIDIA GPU/driver found" in reason
    with pytest.raises(_core.CoreError, match="no NVIDIA GPU/driver found"):
        _core.start_gpu_sampler(10.0)


@pytest.mark.skipif(AVAILABLE, reason="a GPU is present: the no-GPU path cannot be exercised")
def test_session_without_gpu_completes_with_one_warning():
    with TelemetrySession(gpu=True) as tel:
        time.sleep(0.05)
    res = tel.result()
    assert res.gpu_requested and not res.gpu_available
    assert [w for w in res.warnings if "no NVIDIA GPU/driver found" in w] == res.warnings
    assert len(res.warnings) == 1
    # MAX's keys: present, empty lists (no device sampled)
    assert res.max_gpu_keys() == {
        "peak_gpu_memory_mib": [],
        "available_gpu_memory_mib": [],
        "gpu_utilization": [],
    }
    doc = res.summary(output_tokens=100)
    assert doc["gpu"]["collected"] is True and doc["gpu"]["samples"] == 0
    assert doc["gpu"]["energy_j"] is None and doc["gpu"]["output_tokens_per_joule"] is None


def test_bad_rate_is_refused():
    with pytest.raises(_core.CoreError, match="sample rate"):
        _core.start_gpu_sampler(0.0)


def test_summary_helpers():
    s = [
        {"peak_used_mib": 10.0, "min_free_mib": 5.0, "mean_util_pct": 50.0, "energy_j": 100.0},
        {
            "peak_used_mib": math.nan,
            "min_free_mib": 1.0,
            "mean_util_pct": 0.0,
            "energy_j": math.nan,
        },
    ]
    assert max_gpu_keys(s) == {
        "peak_gpu_memory_mib": [10.0, None],
        "available_gpu_memory_mib": [5.0, 1.0],
        "gpu_utilization": [50.0, 0.0],
    }
    assert total_energy_j(s) == 100.0
    assert tokens_per_joule(250, 100.0) == 2.5
    assert tokens_per_joule(250, None) is None


@pytest.mark.gpu
@pytest.mark.skipif(not AVAILABLE, reason=f"no GPU here: {REASON}")
def test_nvml_samples_at_10_hz():
    sampler = _core.start_gpu_sampler(10.0)
    t0 = time.monotonic_ns()
    time.sleep(0.6)
    t1 = time.monotonic_ns()
    cols = sampler.stop()
    devices = cols["devices"]
    assert devices and all(d["name"] and d["uuid"] for d in devices)
    n_dev = len(devices)
    t = cols["t_mono_ns"]
    assert t.dtype == np.int64
    per_dev = len(t) // n_dev
    assert per_dev >= 5, per_dev
    assert t.min() >= t0 - 50_000_000 and t.max() <= time.monotonic_ns()
    for f in FIELDS:
        assert len(cols[f]) == len(t), f
    total = cols["mem_total_mib"]
    used = cols["mem_used_mib"]
    assert np.all(total > 100) and np.all((used >= 0) & (used <= total))
    util = cols["gpu_util_pct"]
    assert np.all((util >= 0) & (util <= 100))
    temp = cols["temperature_c"]
    assert np.all((temp == -1) | ((temp > 0) & (temp < 120)))
    summ = sampler.summary(t0, t1)
    assert len(summ) == n_dev and summ[0]["samples"] >= 5
    assert summ[0]["peak_used_mib"] <= summ[0]["peak_used_mib"] + summ[0]["min_free_mib"]
    assert summ[0]["energy_source"] in ("counter", "power", "none")
    if summ[0]["energy_source"] != "none":
        assert 0 <= summ[0]["energy_j"] < 2000 * 1.0  # < 2 kW for 0.6 s


@pytest.mark.gpu
@pytest.mark.skipif(not AVAILABLE, reason=f"no GPU here: {REASON}")
def test_cuda_visible_devices_limits_the_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    sampler = _core.start_gpu_sampler(20.0)
    time.sleep(0.15)
    cols = sampler.stop()
    assert [d["index"] for d in cols["devices"]] == [0]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    ok, reason = _core.gpu_probe()
    assert not ok and "no NVIDIA GPU visible" in reason
