//! What the benchmark readers (`floor_reader.rs`, `reqwest_reader.rs`) share: their command
//! line, one task per stream taking requests from a shared counter until `total` are done,
//! and the JSON line they print. Each reader supplies only how one stream is read. A reader also
//! reports each request's time to its first SSE event (from just before the request is
//! written), so `client_threads.py` can judge a client's TTFT error against the same floor.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// `NAME HOST:PORT STREAMS REQUESTS BODY_JSON`.
pub struct Args {
    pub addr: String,
    pub streams: usize,
    pub total: usize,
    pub body: String,
}

impl Args {
    pub fn parse(name: &str) -> Result<Self, Error> {
        let args: Vec<String> = std::env::args().collect();
        let [_, addr, streams, requests, body] = args.as_slice() else {
            return Err(format!("usage: {name} HOST:PORT STREAMS REQUESTS BODY_JSON").into());
        };
        Ok(Self {
            addr: addr.clone(),
            streams: streams.parse()?,
            total: requests.parse()?,
            body: body.clone(),
        })
    }
}

/// Where each stream takes its next request and adds the SSE events it counted.
#[derive(Clone)]
pub struct Tally {
    next: Arc<AtomicUsize>,
    events: Arc<AtomicU64>,
    first_event_ns: Arc<Mutex<Vec<u64>>>,
    connected: Arc<tokio::sync::Barrier>,
    total: usize,
}

impl Tally {
    /// Claim one more request; false once `total` have been claimed.
    pub fn claim(&self) -> bool {
        self.next.fetch_add(1, Ordering::Relaxed) < self.total
    }

    /// Wait until every stream has its connection, so the first requests go together as a
    /// client's first wave does after it opened its connections (a stream whose connect
    /// failed calls this too, before it returns its error).
    pub async fn connected(&self) {
        self.connected.wait().await;
    }

    /// One finished request: its SSE events, and when the first came after `written`.
    pub fn add(&self, events: u64, written: Instant, first_event: Option<Instant>) {
        self.events.fetch_add(events, Ordering::Relaxed);
        if let (Some(at), Ok(mut v)) = (first_event, self.first_event_ns.lock()) {
            v.push(at.duration_since(written).as_nanos() as u64);
        }
    }
}

/// Run `stream` once per stream, concurrently, and print
/// `{"events", "requests", "wall_s", "ttft_ns": [...]}`.
pub async fn drive<F, Fut>(streams: usize, total: usize, stream: F) -> Result<(), Error>
where
    F: Fn(Tally) -> Fut,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
{
    let tally = Tally {
        next: Arc::new(AtomicUsize::new(0)),
        events: Arc::new(AtomicU64::new(0)),
        first_event_ns: Arc::new(Mutex::new(Vec::new())),
        connected: Arc::new(tokio::sync::Barrier::new(streams)),
        total,
    };
    let start = std::time::Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|_| tokio::spawn(stream(tally.clone())))
        .collect();
    for t in tasks {
        t.await??;
    }
    let wall_s = start.elapsed().as_secs_f64();
    let ttft = tally
        .first_event_ns
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    let ttft: Vec<String> = ttft.iter().map(u64::to_string).collect();
    println!(
        "{{\"events\": {}, \"requests\": {total}, \"wall_s\": {wall_s:.3}, \"ttft_ns\": [{}]}}",
        tally.events.load(Ordering::Relaxed),
        ttft.join(", ")
    );
    Ok(())
}
