//! Bindings for `LatencyHistogram` (`sonic._core.Histogram`).

use numpy::PyReadonlyArray1;
use pyo3::prelude::*;
use std::sync::Mutex;

use super::core_err;
use crate::histogram::LatencyHistogram;

/// Non-negative integer latencies (ns) at a stated precision (HDR).
#[pyclass(module = "sonic._core", name = "Histogram", frozen)]
pub struct Histogram {
    inner: Mutex<LatencyHistogram>,
}

impl Histogram {
    fn lock(&self) -> std::sync::MutexGuard<'_, LatencyHistogram> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl Histogram {
    #[new]
    #[pyo3(signature = (significant_digits = 3))]
    fn new(significant_digits: u8) -> PyResult<Self> {
        let inner = LatencyHistogram::new(significant_digits).map_err(core_err)?;
        Ok(Self {
            inner: Mutex::new(inner),
        })
    }

    #[getter]
    fn significant_digits(&self) -> u8 {
        self.lock().significant_digits()
    }

    /// Record every value of an int64 array.
    fn record(&self, values: PyReadonlyArray1<'_, i64>) -> PyResult<()> {
        let v = values.as_slice().map_err(core_err)?;
        self.lock().record_all(v).map_err(core_err)
    }

    fn __len__(&self) -> usize {
        self.lock().len() as usize
    }

    /// The value at percentile `p` (0 to 100); None when empty.
    fn percentile(&self, p: f64) -> PyResult<Option<u64>> {
        self.lock().percentile(p).map_err(core_err)
    }

    #[getter]
    fn min(&self) -> Option<u64> {
        self.lock().min()
    }

    #[getter]
    fn max(&self) -> Option<u64> {
        self.lock().max()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Histogram>()
}
