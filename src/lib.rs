//! sonic-bench's Rust core, loaded by Python as `sonic._core`.
//!
//! The boundary: Python owns the user's world (CLI, datasets, tokenizers, metrics over the
//! records, result files, reports). Rust owns everything whose timing we report: the arrival
//! schedule, the streaming HTTP/SSE client, the per-chunk recorder and the simulated engine.
//! Python hands Rust a fully prepared run (prompts, lengths, request options) and gets back
//! columnar records (at the end, or in batches while the run goes when it streams them);
//! nothing that Python does is ever inside a measured interval. `histogram` summarises
//! per-chunk latencies of streamed runs at a stated precision.
//!
//! The simulated engine (`sim`) shares no code with the client, so it can judge the client;
//! both only ask the OS for room for their connections up front (`descriptors`).

pub mod client;
pub mod descriptors;
pub mod error;
pub mod histogram;
pub mod recorder;
pub mod schedule;
pub mod sim;
pub mod telemetry;

#[cfg(feature = "python")]
mod bindings;

#[cfg(feature = "python")]
use pyo3::prelude::*;

/// The extension module `sonic._core`: thin bindings, one file per area under `bindings/`.
#[cfg(feature = "python")]
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    bindings::register(m)
}
