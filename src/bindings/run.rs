//! Bindings for a benchmark run: `start_run`, `RunHandle` and `schedule_preview`.
//!
//! The run itself lives on the core's own threads; Python only polls, cancels and waits, with
//! the GIL released while waiting. Records come back as numpy columns (see `_core.pyi`).

use std::time::Duration;

use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::core_err;
use crate::client::run::{start_run_parts as core_start_run_parts, RunHandle as CoreRunHandle};
use crate::recorder::Records;
use crate::schedule::ScheduleSpec;

/// A run in progress on the core's runtime.
#[pyclass(module = "sonic._core", name = "RunHandle", frozen)]
pub struct RunHandle {
    inner: CoreRunHandle,
}

fn records_dict<'py>(py: Python<'py>, r: &Records) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("t0_unix_ns", r.t0_unix_ns)?;
    d.set_item("t0_mono_ns", r.t0_mono_ns)?;
    d.set_item("cancelled", r.cancelled)?;
    d.set_item("deadline_reached", r.deadline_reached)?;
    d.set_item("client_threads", r.client_threads)?;
    d.set_item("record_index", PyArray1::from_slice(py, &r.record_index))?;
    d.set_item("intended_ns", PyArray1::from_slice(py, &r.intended_ns))?;
    d.set_item("session_index", PyArray1::from_slice(py, &r.session_index))?;
    d.set_item("turn_index", PyArray1::from_slice(py, &r.turn_index))?;
    d.set_item("dispatched_ns", PyArray1::from_slice(py, &r.dispatched_ns))?;
    d.set_item("sent_ns", PyArray1::from_slice(py, &r.sent_ns))?;
    d.set_item("end_ns", PyArray1::from_slice(py, &r.end_ns))?;
    d.set_item("http_status", PyArray1::from_slice(py, &r.http_status))?;
    d.set_item("prompt_tokens", PyArray1::from_slice(py, &r.prompt_tokens))?;
    d.set_item(
        "completion_tokens",
        PyArray1::from_slice(py, &r.completion_tokens),
    )?;
    d.set_item("cached_tokens", PyArray1::from_slice(py, &r.cached_tokens))?;
    d.set_item("error", r.error.clone())?;
    d.set_item("finish_reason", r.finish_reason.clone())?;
    d.set_item("chunk_offsets", PyArray1::from_slice(py, &r.chunk_offsets))?;
    d.set_item("chunk_ns", PyArray1::from_slice(py, &r.chunk_ns))?;
    d.set_item("chunk_kind", PyArray1::from_slice(py, &r.chunk_kind))?;
    d.set_item(
        "chunk_text_offsets",
        PyArray1::from_slice(py, &r.chunk_text_offsets),
    )?;
    d.set_item("text", PyBytes::new(py, &r.text))?;
    Ok(d)
}

#[pymethods]
impl RunHandle {
    fn poll<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let p = self.inner.poll();
        let d = PyDict::new(py);
        d.set_item("total", p.total)?;
        d.set_item("dispatched", p.dispatched)?;
        d.set_item("completed", p.completed)?;
        d.set_item("failed", p.failed)?;
        d.set_item("in_flight", p.in_flight)?;
        d.set_item("elapsed_s", p.elapsed_s)?;
        d.set_item("finished", p.finished)?;
        Ok(d)
    }

    #[pyo3(signature = (abort_in_flight = false))]
    fn cancel(&self, abort_in_flight: bool) {
        self.inner.cancel(abort_in_flight);
    }

    /// Finished records not taken yet (streamed runs); `None` when there are none.
    fn take_finished<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let r = self.inner.take_finished();
        if r.record_index.is_empty() {
            return Ok(None);
        }
        Ok(Some(records_dict(py, &r)?))
    }

    /// A descriptor that turns readable when the run has ended (wait on it with `poll`).
    fn done_fd(&self) -> i32 {
        self.inner.done_fd()
    }

    #[pyo3(signature = (timeout_s = None))]
    fn wait<'py>(
        &self,
        py: Python<'py>,
        timeout_s: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let timeout = match timeout_s {
            Some(t) if t.is_finite() && t >= 0.0 => Some(Duration::from_secs_f64(t)),
            Some(t) if t.is_nan() || t < 0.0 => {
                return Err(core_err(format!("timeout_s must be >= 0, got {t}")))
            }
            _ => None,
        };
        let inner = &self.inner;
        match py.detach(|| inner.wait(timeout)) {
            Some(Ok(r)) => Ok(Some(records_dict(py, &r)?)),
            Some(Err(e)) => Err(core_err(e.to_string())),
            None => Ok(None),
        }
    }
}

/// Validate a JSON RunConfig and start the run in the background. `request_parts`: more
/// requests, after the configuration's, as JSON arrays (parsed as the run reaches them), from
/// any iterable: each is copied as it comes, so a generator never holds them all in Python.
#[pyfunction]
#[pyo3(signature = (config_json, request_parts = None))]
fn start_run(
    py: Python<'_>,
    config_json: &str,
    request_parts: Option<Bound<'_, PyAny>>,
) -> PyResult<RunHandle> {
    let mut parts = Vec::new();
    if let Some(iterable) = request_parts {
        for part in iterable.try_iter()? {
            parts.push(part?.extract::<String>()?);
        }
    }
    let inner = py
        .detach(|| core_start_run_parts(config_json, parts))
        .map_err(core_err)?;
    Ok(RunHandle { inner })
}

/// Intended arrival offsets in seconds for `n` requests of a ScheduleSpec.
#[pyfunction]
fn schedule_preview<'py>(
    py: Python<'py>,
    schedule_json: &str,
    n: usize,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let de = &mut serde_json::Deserializer::from_str(schedule_json);
    let spec: ScheduleSpec = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        core_err(format!("invalid schedule: {path}: {}", e.into_inner()))
    })?;
    let times = spec.arrivals_s(n).map_err(core_err)?;
    Ok(PyArray1::from_vec(py, times))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RunHandle>()?;
    m.add_function(wrap_pyfunction!(start_run, m)?)?;
    m.add_function(wrap_pyfunction!(schedule_preview, m)?)?;
    Ok(())
}
