//! The floor for a streaming client's CPU per chunk: the least a reader of the same streams
//! can do on this machine. Each of N tasks keeps one HTTP/1.1 connection, writes a fixed POST,
//! and reads the answer, counting SSE events (`data:`) until `data: [DONE]` and the end of the
//! chunked body; no JSON parsing, no timestamps, no records. `benchmarks/cpu_per_chunk.py`
//! runs it beside sonic's client and `vllm-bench`.
//!
//!     cargo build --release --example floor_reader
//!     target/release/examples/floor_reader HOST:PORT STREAMS REQUESTS BODY_JSON
//!
//! Prints `{"events": E, "requests": R, "wall_s": W, "ttft_ns": [...]}` (each request's time
//! from just before its write to the first read that held an event).

use std::sync::Arc;
use std::time::Instant;

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "reader_harness.rs"]
mod harness;
use harness::{drive, Args, Error, Tally};

async fn stream(addr: String, request: Arc<Vec<u8>>, tally: Tally) -> Result<(), Error> {
    let conn = TcpStream::connect(&addr).await;
    tally.connected().await;
    let mut conn = conn?;
    conn.set_nodelay(true)?;
    let data = memmem::Finder::new(b"data:");
    let done = memmem::Finder::new(b"[DONE]");
    let mut buf = vec![0u8; 64 * 1024];
    while tally.claim() {
        let written = Instant::now();
        conn.write_all(&request).await?;
        let (mut seen, mut finished, mut tail) = (0u64, false, Vec::new());
        let mut first_event = None;
        loop {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                return Err("connection closed".into());
            }
            let got = &buf[..n];
            let events = data.find_iter(got).count() as u64;
            if events > 0 && first_event.is_none() {
                first_event = Some(Instant::now());
            }
            seen += events;
            finished |= done.find(got).is_some();
            // The chunked body ends with a zero-length chunk once [DONE] has been sent.
            tail.extend_from_slice(&got[n.saturating_sub(5)..]);
            if tail.len() > 5 {
                tail.drain(..tail.len() - 5);
            }
            if finished && tail.ends_with(b"0\r\n\r\n") {
                break;
            }
        }
        tally.add(seen, written, first_event);
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let a = Args::parse("floor_reader")?;
    let request = format!(
        "POST /v1/completions HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{}",
        a.addr,
        a.body.len(),
        a.body
    );
    let request = Arc::new(request.into_bytes());
    drive(a.streams, a.total, |tally| {
        stream(a.addr.clone(), request.clone(), tally)
    })
    .await
}
