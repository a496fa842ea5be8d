//! A minimal reader of the same streams through sonic's HTTP stack (reqwest on hyper and
//! tokio, built as the core builds it): one task per stream, a fixed POST, SSE events counted
//! with memchr in each body chunk; nothing parsed or kept. Beside the floor
//! (`floor_reader.rs`, raw TCP) it shows what the HTTP library itself costs per chunk.
//!
//!     cargo build --release --example reqwest_reader
//!     target/release/examples/reqwest_reader HOST:PORT STREAMS REQUESTS BODY_JSON
//!
//! Prints `{"events": E, "requests": R, "wall_s": W, "ttft_ns": [...]}`.

use std::time::Instant;

use bytes::Bytes;
use memchr::memmem;

#[path = "reader_harness.rs"]
mod harness;
use harness::{drive, Args, Error, Tally};

async fn stream(
    client: reqwest::Client,
    url: String,
    body: Bytes,
    tally: Tally,
) -> Result<(), Error> {
    let data = memmem::Finder::new(b"data:");
    // Open this stream's connection first, as the core's warm-up does (src/client/warm.rs).
    let models = url.replace("/v1/completions", "/v1/models");
    let opened = match client.get(&models).send().await {
        Ok(resp) => resp.bytes().await.map(drop),
        Err(e) => Err(e),
    };
    tally.connected().await;
    opened?;
    while tally.claim() {
        let written = Instant::now();
        let mut resp = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await?;
        let (mut seen, mut first_event) = (0u64, None);
        while let Some(chunk) = resp.chunk().await? {
            let events = data.find_iter(&chunk).count() as u64;
            if events > 0 && first_event.is_none() {
                first_event = Some(Instant::now());
            }
            seen += events;
        }
        tally.add(seen, written, first_event);
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let a = Args::parse("reqwest_reader")?;
    // As the core builds its client for a plain-http run (src/client/run.rs).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .tls_certs_only(Vec::<reqwest::Certificate>::new())
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(a.streams)
        .no_proxy()
        .build()?;
    let url = format!("http://{}/v1/completions", a.addr);
    let body = Bytes::from(a.body.clone());
    drive(a.streams, a.total, |tally| {
        stream(client.clone(), url.clone(), body.clone(), tally)
    })
    .await
}
