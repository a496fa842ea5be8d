//! The simulated engine `sonic sim`: an OpenAI-compatible HTTP server whose timing comes from a
//! continuous-batching model (or exact TTFT/ITL), used for demos, tests and as ground truth for
//! the client. It shares no code with `crate::client`, so it can judge it.

pub mod body;
pub mod conn;
pub mod error;
pub mod faults;
pub mod metrics;
pub mod options;
pub mod prefix_cache;
pub mod profiles;
pub mod request;
pub mod rng;
pub mod routes;
pub mod scheduler;
pub mod server;
pub mod sse;
pub mod timer;
pub mod tokenizer;

pub use error::SimError;
pub use options::SimOptions;
pub use server::{start, Running};
