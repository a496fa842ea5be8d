//! Typed errors of the core. Each reaches Python as an exception with a useful message.

/// Errors in setting up a run or a simulated engine (bad configuration, bind failures).
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
