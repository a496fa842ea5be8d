//! Errors that stop the simulated engine from starting (bad options, tokenizer, bind).

/// Why the simulated engine could not start; the message names the offending option.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid sim options: {0}")]
    Options(String),
    #[error("invalid sim option `{field}`: {why}")]
    Field { field: &'static str, why: String },
    #[error("tokenizer {path}: {why}")]
    Tokenizer { path: String, why: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start the sim runtime: {0}")]
    Runtime(std::io::Error),
}

impl SimError {
    pub fn field(field: &'static str, why: impl Into<String>) -> Self {
        SimError::Field {
            field,
            why: why.into(),
        }
    }
}
