//! The recorder: per-request buffers filled while a request streams, and the columnar
//! `Records` of a whole run handed to Python as numpy arrays (no per-chunk Python objects).
//! A run that streams its records (`stream_records`) hands each finished request over
//! through the [`Handoff`] while it runs, so memory holds only what is in flight.

use std::sync::Mutex;

/// Everything measured for one request. Text of all its chunks goes into one arena.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// When the dispatcher released the request (after any concurrency wait), ns since t0.
    pub dispatched_ns: i64,
    /// Just before the HTTP send, ns since t0; -1 = never sent.
    pub sent_ns: i64,
    /// When the response ended or the request failed, ns since t0; -1 = never ended.
    pub end_ns: i64,
    /// HTTP status; 0 = no response.
    pub http_status: i32,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Prompt tokens the engine served from its prefix cache (usage); -1 = not reported.
    pub cached_tokens: i64,
    pub error: Option<String>,
    pub finish_reason: Option<String>,
    pub chunk_ns: Vec<i64>,
    pub chunk_kind: Vec<u8>,
    /// End offset of each chunk's text in `text`.
    pub text_end: Vec<u32>,
    pub text: Vec<u8>,
}

impl Default for RequestRecord {
    fn default() -> Self {
        Self {
            dispatched_ns: -1,
            sent_ns: -1,
            end_ns: -1,
            http_status: 0,
            prompt_tokens: -1,
            completion_tokens: -1,
            cached_tokens: -1,
            error: None,
            finish_reason: None,
            chunk_ns: Vec::new(),
            chunk_kind: Vec::new(),
            text_end: Vec::new(),
            text: Vec::new(),
        }
    }
}

impl RequestRecord {
    pub fn push_chunk(&mut self, ns: i64, kind: u8, text: &str) {
        self.chunk_ns.push(ns);
        self.chunk_kind.push(kind);
        self.text.extend_from_slice(text.as_bytes());
        self.text_end.push(self.text.len() as u32);
    }

    /// An unsent request's record.
    pub fn not_sent(error: &str) -> Self {
        Self {
            error: Some(error.to_string()),
            ..Self::default()
        }
    }
}

/// A request that has ended (or was never sent), with its place in the run.
#[derive(Debug)]
pub struct Finished {
    /// Its record index (request order; session-major for sessions).
    pub index: usize,
    pub intended_ns: i64,
    pub session_index: i64,
    pub turn_index: i64,
    pub rec: RequestRecord,
}

impl Finished {
    /// A plain request: a one-turn session of its own.
    pub fn request(index: usize, intended_ns: i64, rec: RequestRecord) -> Self {
        Self {
            index,
            intended_ns,
            session_index: index as i64,
            turn_index: 0,
            rec,
        }
    }
}

/// Finished requests waiting for Python to take them (`RunHandle.take_finished`) when the
/// run streams its records; otherwise every record is kept for the end of the run.
#[derive(Debug, Default)]
pub struct Handoff {
    streaming: bool,
    queue: Mutex<Vec<Finished>>,
}

impl Handoff {
    pub fn new(streaming: bool) -> Self {
        Self {
            streaming,
            queue: Mutex::new(Vec::new()),
        }
    }

    pub fn streaming(&self) -> bool {
        self.streaming
    }

    /// Queue `f` for Python when streaming; otherwise give it back to be kept.
    pub fn offer(&self, f: Finished) -> Option<Finished> {
        if !self.streaming {
            return Some(f);
        }
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).push(f);
        None
    }

    /// Everything queued so far, in record order.
    pub fn take(&self) -> Records {
        let items = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()));
        Records::from_finished(items)
    }
}

/// Columnar records of one run (see `Records` in `python/sonic/_core.pyi`).
#[derive(Debug, Clone, Default)]
pub struct Records {
    pub t0_unix_ns: i64,
    pub t0_mono_ns: i64,
    pub cancelled: bool,
    pub deadline_reached: bool,
    /// Tokio worker threads the client ran with.
    pub client_threads: usize,
    /// Record index of each row: 0..n for a whole run, the rows' places for a handed batch.
    pub record_index: Vec<i64>,
    pub intended_ns: Vec<i64>,
    /// Session of each record (a plain request is a session of its own: its index).
    pub session_index: Vec<i64>,
    /// Turn within its session (0 for a plain request).
    pub turn_index: Vec<i64>,
    pub dispatched_ns: Vec<i64>,
    pub sent_ns: Vec<i64>,
    pub end_ns: Vec<i64>,
    pub http_status: Vec<i32>,
    pub prompt_tokens: Vec<i64>,
    pub completion_tokens: Vec<i64>,
    pub cached_tokens: Vec<i64>,
    pub error: Vec<Option<String>>,
    pub finish_reason: Vec<Option<String>>,
    pub chunk_offsets: Vec<i64>,
    pub chunk_ns: Vec<i64>,
    pub chunk_kind: Vec<u8>,
    pub chunk_text_offsets: Vec<i64>,
    pub text: Vec<u8>,
}

impl Records {
    /// Concatenate finished requests into columns, in record order.
    pub fn from_finished(mut items: Vec<Finished>) -> Self {
        items.sort_unstable_by_key(|f| f.index);
        let n = items.len();
        let chunks: usize = items.iter().map(|f| f.rec.chunk_ns.len()).sum();
        let bytes: usize = items.iter().map(|f| f.rec.text.len()).sum();
        let mut out = Records {
            record_index: Vec::with_capacity(n),
            intended_ns: Vec::with_capacity(n),
            session_index: Vec::with_capacity(n),
            turn_index: Vec::with_capacity(n),
            dispatched_ns: Vec::with_capacity(n),
            sent_ns: Vec::with_capacity(n),
            end_ns: Vec::with_capacity(n),
            http_status: Vec::with_capacity(n),
            prompt_tokens: Vec::with_capacity(n),
            completion_tokens: Vec::with_capacity(n),
            cached_tokens: Vec::with_capacity(n),
            error: Vec::with_capacity(n),
            finish_reason: Vec::with_capacity(n),
            chunk_offsets: Vec::with_capacity(n + 1),
            chunk_ns: Vec::with_capacity(chunks),
            chunk_kind: Vec::with_capacity(chunks),
            chunk_text_offsets: Vec::with_capacity(chunks + 1),
            text: Vec::with_capacity(bytes),
            ..Records::default()
        };
        out.chunk_offsets.push(0);
        out.chunk_text_offsets.push(0);
        for f in items {
            let r = f.rec;
            out.record_index.push(f.index as i64);
            out.intended_ns.push(f.intended_ns);
            out.session_index.push(f.session_index);
            out.turn_index.push(f.turn_index);
            out.dispatched_ns.push(r.dispatched_ns);
            out.sent_ns.push(r.sent_ns);
            out.end_ns.push(r.end_ns);
            out.http_status.push(r.http_status);
            out.prompt_tokens.push(r.prompt_tokens);
            out.completion_tokens.push(r.completion_tokens);
            out.cached_tokens.push(r.cached_tokens);
            out.error.push(r.error);
            out.finish_reason.push(r.finish_reason);
            let base = out.text.len() as i64;
            out.chunk_ns.extend_from_slice(&r.chunk_ns);
            out.chunk_kind.extend_from_slice(&r.chunk_kind);
            out.chunk_text_offsets
                .extend(r.text_end.iter().map(|&e| base + e as i64));
            out.text.extend_from_slice(&r.text);
            out.chunk_offsets.push(out.chunk_ns.len() as i64);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assemble_offsets() {
        let mut a = RequestRecord::default();
        a.push_chunk(10, 0, "ab");
        a.push_chunk(20, 1, "");
        let b = RequestRecord::not_sent("not sent: run cancelled");
        let mut c = RequestRecord::default();
        c.push_chunk(30, 0, "é");
        let items = vec![(2, c), (0, a), (1, b)]
            .into_iter()
            .map(|(i, r)| Finished::request(i, i as i64 + 1, r))
            .collect();
        let r = Records::from_finished(items);
        assert_eq!(r.record_index, vec![0, 1, 2]);
        assert_eq!(r.intended_ns, vec![1, 2, 3]);
        assert_eq!(r.chunk_offsets, vec![0, 2, 2, 3]);
        assert_eq!(r.chunk_text_offsets, vec![0, 2, 2, 4]);
        assert_eq!(r.text, "abé".as_bytes());
        assert_eq!(r.sent_ns, vec![-1, -1, -1]);
        assert_eq!(r.error[1].as_deref(), Some("not sent: run cancelled"));
        assert_eq!(r.session_index, vec![0, 1, 2]);
        assert_eq!(r.turn_index, vec![0, 0, 0]);
    }

    #[test]
    fn handoff_queues_only_when_streaming() {
        let kept = Handoff::new(false);
        assert!(kept
            .offer(Finished::request(0, 0, RequestRecord::default()))
            .is_some());
        assert!(kept.take().record_index.is_empty());
        let streamed = Handoff::new(true);
        for i in [3, 1] {
            assert!(streamed
                .offer(Finished::request(i, 0, RequestRecord::default()))
                .is_none());
        }
        assert_eq!(streamed.take().record_index, vec![1, 3]);
        assert!(streamed.take().record_index.is_empty(), "taken once");
    }
}
