//! PyO3 bindings. Each submodule wraps one area of the core and stays thin: argument
//! conversion, GIL release, and error mapping to Python exceptions.

use pyo3::prelude::*;

mod histogram;
mod run;
mod sim;
mod telemetry;

// `sonic.errors.SonicError`, the package's user-facing error, which the CLI prints as one line
// with its exit code: CoreError derives from it, so a configuration the core rejects reaches
// the user the same way. `register` imports it when `sonic._core` loads (a stdlib-only module
// of the same package).
pyo3::import_exception!(sonic.errors, SonicError);

pyo3::create_exception!(
    _core,
    CoreError,
    SonicError,
    "Bad configuration handed to the core, or a server that could not start (a SonicError)."
);

/// Map any core error to `sonic._core.CoreError` with its message (never a panic).
pub(crate) fn core_err(e: impl std::fmt::Display) -> PyErr {
    CoreError::new_err(e.to_string())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("CoreError", m.py().get_type::<CoreError>())?;
    histogram::register(m)?;
    sim::register(m)?;
    run::register(m)?;
    telemetry::register(m)?;
    Ok(())
}
