//! Why one request failed, as the one-line message stored in its record.
//!
//! Messages never contain header values: reqwest errors are stripped of their URL and every
//! configured header value (e.g. an API key echoed back in an error body) is redacted.

use std::error::Error as _;

use super::decode::DecodeError;

/// A per-request failure (never fatal to the run).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("connect error: {0}")]
    Connect(String),
    #[error("HTTP {status}: {excerpt}")]
    Status { status: u16, excerpt: String },
    #[error(
        "HTTP {status}: redirect to {origin} not followed (sonic sends no request, and so no \
         API key or header, anywhere but --base-url; point it at the server that answers)"
    )]
    Redirect { status: u16, origin: String },
    #[error("timeout after {0} s")]
    Timeout(f64),
    #[error("stream error: {0}")]
    Stream(String),
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error("request error: {0}")]
    Other(String),
    #[error("cancelled")]
    Cancelled,
    #[error("cancelled: max duration reached")]
    DeadlineAborted,
}

/// Messages for requests that were never sent.
pub const NOT_SENT_CANCELLED: &str = "not sent: run cancelled";
pub const NOT_SENT_DEADLINE: &str = "not sent: max duration reached";

/// What to do when connects fail for want of descriptors: the client raised the soft limit as
/// far as the hard limit lets it (`descriptors::reserve`), so only the hard limit is left.
pub const OUT_OF_DESCRIPTORS: &str =
    " (the hard limit on open files is reached: raise it, e.g. `ulimit -Hn`, or run fewer streams)";

/// The OS error number in `e`'s chain of sources, if one is an I/O error.
fn io_errno(e: &reqwest::Error) -> Option<i32> {
    let mut src = e.source();
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        src = s.source();
    }
    None
}

/// The error and its sources, without the URL (it could carry credentials).
fn chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let part = s.to_string();
        if !msg.contains(&part) {
            msg.push_str(": ");
            msg.push_str(&part);
        }
        src = s.source();
    }
    msg
}

impl Failure {
    /// Classify a reqwest error from sending the request.
    pub fn from_send(e: reqwest::Error) -> Self {
        if e.is_connect() {
            let out_of_descriptors = io_errno(&e) == Some(libc::EMFILE);
            let mut msg = chain(e);
            if out_of_descriptors {
                msg.push_str(OUT_OF_DESCRIPTORS);
            }
            Failure::Connect(msg)
        } else {
            Failure::Other(chain(e))
        }
    }

    /// Classify a reqwest error while reading the body (reset, truncated chunked body, …).
    pub fn from_body(e: reqwest::Error) -> Self {
        Failure::Stream(chain(e))
    }
}

/// Cut to at most `max` characters (on a char boundary), whitespace trimmed.
pub fn truncate_chars(s: &str, max: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// Replace every secret (header value) in `msg` with `<redacted>`.
pub fn redact(mut msg: String, secrets: &[String]) -> String {
    for s in secrets {
        if !s.is_empty() && msg.contains(s.as_str()) {
            msg = msg.replace(s.as_str(), "<redacted>");
        }
    }
    msg
}

/// Header values worth redacting: each value, and the credential after an auth scheme.
pub fn secrets_of(headers: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (_, v) in headers {
        let v = v.trim();
        if v.len() >= 4 {
            out.push(v.to_string());
        }
        if let Some((_, cred)) = v.split_once(' ') {
            if cred.trim().len() >= 4 {
                out.push(cred.trim().to_string());
            }
        }
    }
    // Longest first, so a value is redacted whole before any part of it.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let f = Failure::Status {
            status: 500,
            excerpt: "boom".into(),
        };
        assert_eq!(f.to_string(), "HTTP 500: boom");
        assert_eq!(Failure::Timeout(1.5).to_string(), "timeout after 1.5 s");
        assert_eq!(Failure::Cancelled.to_string(), "cancelled");
        let d: Failure = DecodeError::Malformed("x".into()).into();
        assert_eq!(d.to_string(), "malformed chunk: x");
    }

    #[test]
    fn redaction() {
        let s = secrets_of(&[("Authorization".into(), "Bearer sk-123456".into())]);
        let m = redact("bad key sk-123456 or Bearer sk-123456".into(), &s);
        assert_eq!(m, "bad key <redacted> or <redacted>");
        assert_eq!(truncate_chars("  héllo  ", 2), "hé");
    }
}
