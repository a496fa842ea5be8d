//! PyO3 bindings. Each submodule wraps one area of the core and stays thin: argument
//! conversion, GIL release, and error mapping to Python exceptions.

use pyo3::prelude::*;

mod run;
mod sim;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    sim::register(m)?;
    run::register(m)?;
    Ok(())
}
