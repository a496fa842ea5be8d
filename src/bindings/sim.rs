//! Bindings for the simulated engine: start it on a background runtime, or serve it in the
//! foreground (GIL released) until SIGINT/SIGTERM.

use std::sync::Mutex;
use std::time::Duration;

use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;

use super::core_err;
use crate::sim::{self, SimOptions};

/// A running simulated engine; `stop()` frees the port.
#[pyclass(module = "sonic._core", name = "SimServer", frozen)]
pub struct SimServer {
    running: Mutex<Option<sim::Running>>,
    url: String,
    host: String,
    port: u16,
}

#[pymethods]
impl SimServer {
    #[getter]
    fn url(&self) -> String {
        self.url.clone()
    }

    #[getter]
    fn host(&self) -> String {
        self.host.clone()
    }

    #[getter]
    fn port(&self) -> u16 {
        self.port
    }

    fn stop(&self, py: Python<'_>) {
        let running = match self.running.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(r) = running {
            py.detach(move || r.shutdown());
        }
    }

    fn __repr__(&self) -> String {
        format!("SimServer(url={:?})", self.url)
    }
}

fn start(py: Python<'_>, options_json: &str) -> PyResult<sim::Running> {
    let opts = SimOptions::from_json(options_json).map_err(core_err)?;
    py.detach(|| sim::start(&opts)).map_err(core_err)
}

/// Start the simulated engine in the background (port 0 picks a free port).
#[pyfunction]
fn start_sim(py: Python<'_>, options_json: &str) -> PyResult<SimServer> {
    let running = start(py, options_json)?;
    Ok(SimServer {
        url: running.url(),
        host: running.host.clone(),
        port: running.addr.port(),
        running: Mutex::new(Some(running)),
    })
}

/// Serve in the foreground; prints the listening line, returns after SIGINT (or any signal
/// handler that raises KeyboardInterrupt, e.g. for SIGTERM) once everything is stopped.
#[pyfunction]
fn serve_sim(py: Python<'_>, options_json: &str) -> PyResult<()> {
    use std::io::Write;
    let running = start(py, options_json)?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "sonic sim listening on {}", running.url());
        let _ = out.flush();
    }
    loop {
        py.detach(|| std::thread::sleep(Duration::from_millis(100)));
        if let Err(e) = py.check_signals() {
            py.detach(move || running.shutdown());
            return if e.is_instance_of::<PyKeyboardInterrupt>(py) {
                Ok(())
            } else {
                Err(e)
            };
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SimServer>()?;
    m.add_function(wrap_pyfunction!(start_sim, m)?)?;
    m.add_function(wrap_pyfunction!(serve_sim, m)?)?;
    Ok(())
}
