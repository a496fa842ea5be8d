//! The streaming load generator: schedule → dispatcher → one streamed request each → recorder.
//!
//! Each submodule has one job; `run` ties them together and is what the bindings call. A
//! workload is independent requests (`dispatch`) or multi-turn sessions (`session`).

pub mod body;
pub mod clock;
pub mod config;
pub mod conversation;
pub mod decode;
pub mod dispatch;
pub mod failure;
pub mod feed;
pub mod request;
pub mod run;
pub mod session;
pub mod sse;
pub mod state;
#[cfg(test)]
mod tests;
pub mod warm;

pub use config::RunConfig;
pub use run::{start_run, RunHandle};
