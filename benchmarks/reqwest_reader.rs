//! A minimal reader of the same streams through sonic's HTTP stack (reqwest on hyper and
//! tokio, built as the core builds it): one task per stream, a fixed POST, SSE events counted
//! with memchr in each body chunk; nothing parsed or kept. Beside the floor
//! (`floor_reader.rs`, raw TCP) it shows what the HTTP library itself costs per chunk.
//!
//!     cargo build --release --example reqwest_reader
//!     target/release/examples/reqwest_reader HOST:PORT STREAMS REQUESTS BODY_JSON
//!
//! Prints `{"events": E, "requests": R, "wall_s": W}`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use memchr::memmem;

type Error = Box<dyn std::error::Error + Send + Sync>;

async fn stream(
    client: reqwest::Client,
    url: String,
    body: Bytes,
    next: Arc<AtomicUsize>,
    total: usize,
    events: Arc<AtomicU64>,
) -> Result<(), Error> {
    let data = memmem::Finder::new(b"data:");
    while next.fetch_add(1, Ordering::Relaxed) < total {
        let mut resp = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await?;
        let mut seen = 0u64;
        while let Some(chunk) = resp.chunk().await? {
            seen += data.find_iter(&chunk).count() as u64;
        }
        events.fetch_add(seen, Ordering::Relaxed);
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, streams, requests, body] = args.as_slice() else {
        return Err("usage: reqwest_reader HOST:PORT STREAMS REQUESTS BODY_JSON".into());
    };
    let (streams, total): (usize, usize) = (streams.parse()?, requests.parse()?);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .tls_certs_only(Vec::<reqwest::Certificate>::new())
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(streams)
        .no_proxy()
        .build()?;
    let url = format!("http://{addr}/v1/completions");
    let body = Bytes::from(body.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let events = Arc::new(AtomicU64::new(0));
    let start = std::time::Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|_| {
            let (c, u, b) = (client.clone(), url.clone(), body.clone());
            tokio::spawn(stream(c, u, b, next.clone(), total, events.clone()))
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    println!(
        "{{\"events\": {}, \"requests\": {total}, \"wall_s\": {:.3}}}",
        events.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
