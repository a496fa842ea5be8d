//! Bindings for telemetry: the NVML probe and the GPU sampler thread.
use std::sync::Mutex;

use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::core_err;
use crate::telemetry::{self, DeviceInfo, GpuSeries};

/// `(available, reason)`: whether NVML loads and shows a device; never raises.
#[pyfunction]
fn gpu_probe(py: Python<'_>) -> (bool, String) {
    match py.detach(telemetry::probe) {
        Ok(info) => {
            let names: Vec<String> = info
                .devices
                .iter()
                .map(|d| format!("{}: {}", d.index, d.name))
                .collect();
            let driver = if info.driver_version.is_empty() {
                String::new()
            } else {
                format!(", driver {}", info.driver_version)
            };
            (
                true,
                format!("{} GPU(s) [{}]{}", names.len(), names.join(", "), driver),
            )
        }
        Err(e) => (false, e.to_string()),
    }
}

fn devices_list<'py>(py: Python<'py>, devices: &[DeviceInfo]) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for d in devices {
        let item = PyDict::new(py);
        item.set_item("index", d.index)?;
        item.set_item("nvml_index", d.nvml_index)?;
        item.set_item("name", &d.name)?;
        item.set_item("uuid", &d.uuid)?;
        out.append(item)?;
    }
    Ok(out)
}

/// A running GPU sampler (see `start_gpu_sampler`).
#[pyclass(module = "sonic._core")]
pub struct GpuSampler {
    inner: Mutex<telemetry::GpuSampler>,
    devices: Vec<DeviceInfo>,
    hz: f64,
    started_ns: i64,
    series: Mutex<Option<GpuSeries>>,
}

impl GpuSampler {
    fn take_series(&self, py: Python<'_>) -> PyResult<GpuSeries> {
        if let Some(s) = self.series.lock().map_err(core_err)?.as_ref() {
            return Ok(s.clone());
        }
        let series = py.detach(|| -> Result<GpuSeries, String> {
            let mut inner = self.inner.lock().map_err(|e| e.to_string())?;
            inner.stop().map_err(|e| e.to_string())
        });
        let series = series.map_err(core_err)?;
        *self.series.lock().map_err(core_err)? = Some(series.clone());
        Ok(series)
    }
}

#[pymethods]
impl GpuSampler {
    /// The sampled devices: ``[{index, nvml_index, name, uuid}]`` (index = logical).
    #[getter]
    fn devices<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        devices_list(py, &self.devices)
    }

    #[getter]
    fn hz(&self) -> f64 {
        self.hz
    }

    /// CLOCK_MONOTONIC ns when sampling started.
    #[getter]
    fn started_ns(&self) -> i64 {
        self.started_ns
    }

    #[getter]
    fn running(&self) -> PyResult<bool> {
        Ok(self.inner.lock().map_err(core_err)?.is_running())
    }

    /// Stop the thread (idempotent) and return the samples as columns.
    fn stop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.take_series(py)?;
        let d = PyDict::new(py);
        d.set_item("device", s.device.into_pyarray(py))?;
        d.set_item("t_mono_ns", s.t_mono_ns.into_pyarray(py))?;
        d.set_item("gpu_util_pct", s.gpu_util_pct.into_pyarray(py))?;
        d.set_item("mem_util_pct", s.mem_util_pct.into_pyarray(py))?;
        d.set_item("mem_used_mib", s.mem_used_mib.into_pyarray(py))?;
        d.set_item("mem_free_mib", s.mem_free_mib.into_pyarray(py))?;
        d.set_item("mem_total_mib", s.mem_total_mib.into_pyarray(py))?;
        d.set_item("power_w", s.power_w.into_pyarray(py))?;
        d.set_item("energy_mj", s.energy_mj.into_pyarray(py))?;
        d.set_item("sm_clock_mhz", s.sm_clock_mhz.into_pyarray(py))?;
        d.set_item("temperature_c", s.temperature_c.into_pyarray(py))?;
        d.set_item("devices", devices_list(py, &self.devices)?)?;
        d.set_item("hz", self.hz)?;
        d.set_item("started_ns", self.started_ns)?;
        Ok(d)
    }

    /// Per-device summaries over ``[start_ns, end_ns]`` (monotonic ns; None = unbounded);
    /// stops the sampler first if it still runs.
    #[pyo3(signature = (start_ns=None, end_ns=None))]
    fn summary<'py>(
        &self,
        py: Python<'py>,
        start_ns: Option<i64>,
        end_ns: Option<i64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let s = self.take_series(py)?;
        let ids: Vec<u32> = self.devices.iter().map(|d| d.index).collect();
        let out = PyList::empty(py);
        for (x, info) in telemetry::summarize(&s, &ids, start_ns, end_ns)
            .iter()
            .zip(&self.devices)
        {
            let d = PyDict::new(py);
            d.set_item("device", x.device)?;
            d.set_item("name", &info.name)?;
            d.set_item("uuid", &info.uuid)?;
            d.set_item("samples", x.samples)?;
            d.set_item("peak_used_mib", x.peak_used_mib)?;
            d.set_item("min_free_mib", x.min_free_mib)?;
            d.set_item("mean_util_pct", x.mean_util_pct)?;
            d.set_item("max_util_pct", x.max_util_pct)?;
            d.set_item("mean_mem_util_pct", x.mean_mem_util_pct)?;
            d.set_item("mean_power_w", x.mean_power_w)?;
            d.set_item("max_temperature_c", x.max_temperature_c)?;
            d.set_item("mean_sm_clock_mhz", x.mean_sm_clock_mhz)?;
            d.set_item("energy_j", x.energy_j)?;
            d.set_item("energy_source", x.energy_source)?;
            d.set_item("energy_span_s", x.energy_span_s)?;
            out.append(d)?;
        }
        Ok(out)
    }

    fn __repr__(&self) -> String {
        format!("GpuSampler(devices={}, hz={})", self.devices.len(), self.hz)
    }
}

/// Start a background thread sampling the visible GPUs (or the logical ``devices``) ``hz``
/// times a second. Raises CoreError when NVML or the devices are unavailable (check
/// ``gpu_probe()`` first).
#[pyfunction]
#[pyo3(signature = (hz=10.0, devices=None))]
fn start_gpu_sampler(py: Python<'_>, hz: f64, devices: Option<Vec<u32>>) -> PyResult<GpuSampler> {
    let sampler = py
        .detach(|| telemetry::GpuSampler::start(hz, devices.as_deref()))
        .map_err(core_err)?;
    Ok(GpuSampler {
        devices: sampler.devices().to_vec(),
        hz: sampler.hz(),
        started_ns: sampler.started_ns(),
        inner: Mutex::new(sampler),
        series: Mutex::new(None),
    })
}

/// CLOCK_MONOTONIC now in ns (equal to ``time.monotonic_ns()`` on Linux).
#[pyfunction]
fn monotonic_ns() -> i64 {
    telemetry::mono_ns()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<GpuSampler>()?;
    m.add_function(wrap_pyfunction!(gpu_probe, m)?)?;
    m.add_function(wrap_pyfunction!(start_gpu_sampler, m)?)?;
    m.add_function(wrap_pyfunction!(monotonic_ns, m)?)?;
    Ok(())
}
