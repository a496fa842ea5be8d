//! What the benchmark readers (`floor_reader.rs`, `reqwest_reader.rs`) share: their command
//! line, one task per stream taking requests from a shared counter until `total` are done,
//! and the JSON line they print. Each reader supplies only how one stream is read.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

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
    total: usize,
}

impl Tally {
    /// Claim one more request; false once `total` have been claimed.
    pub fn claim(&self) -> bool {
        self.next.fetch_add(1, Ordering::Relaxed) < self.total
    }

    pub fn add(&self, events: u64) {
        self.events.fetch_add(events, Ordering::Relaxed);
    }
}

/// Run `stream` once per stream, concurrently, and print `{"events", "requests", "wall_s"}`.
pub async fn drive<F, Fut>(streams: usize, total: usize, stream: F) -> Result<(), Error>
where
    F: Fn(Tally) -> Fut,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
{
    let tally = Tally {
        next: Arc::new(AtomicUsize::new(0)),
        events: Arc::new(AtomicU64::new(0)),
        total,
    };
    let start = std::time::Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|_| tokio::spawn(stream(tally.clone())))
        .collect();
    for t in tasks {
        t.await??;
    }
    println!(
        "{{\"events\": {}, \"requests\": {total}, \"wall_s\": {:.3}}}",
        tally.events.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
