//! PyO3 bindings. Each submodule wraps one area of the core and stays thin: argument
//! conversion, GIL release, and error mapping to Python exceptions.

use pyo3::prelude::*;

mod run;
mod sim;
mod telemetry;

pyo3::create_exception!(
    _core,
    CoreError,
    pyo3::exceptions::PyException,
    "Bad configuration handed to the core, or a server that could not start."
);

/// Map any core error to `sonic._core.CoreError` with its message (never a panic).
pub(crate) fn core_err(e: impl std::fmt::Display) -> PyErr {
    CoreError::new_err(e.to_string())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("CoreError", m.py().get_type::<CoreError>())?;
    sim::register(m)?;
    run::register(m)?;
    telemetry::register(m)?;
    Ok(())
}
