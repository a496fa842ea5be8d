//! Load benchmarks of the client against an in-process raw-TCP SSE server (run on demand:
//! `cargo test --release -- --ignored --nocapture client::tests`). Client CPU is read from the
//! client's own threads (`sonic-client`, `sonic-dispatch`) so the server's CPU is excluded.
//! One ordinary test runs sessions end to end against the same server.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::run::start_run;

/// Serve `events` chunked SSE events per request, `gap` apart, on a runtime of its own.
fn serve(events: usize, gap: Duration) -> (u16, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-server")
        .enable_all()
        .build()
        .expect("server runtime");
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    rt.spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let _ = sock.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut have = 0;
                loop {
                    // One request: headers then Content-Length bytes.
                    let n = match sock.read(&mut buf[have..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    have += n;
                    let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while have < end + 4 + len {
                        match sock.read(&mut buf[have..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => have += n,
                        }
                    }
                    buf.copy_within(end + 4 + len..have, 0);
                    have -= end + 4 + len;
                    let hdr = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                    if sock.write_all(hdr).await.is_err() {
                        return;
                    }
                    for i in 0..events {
                        if !gap.is_zero() {
                            tokio::time::sleep(gap).await;
                        }
                        let ev = format!(
                            "data: {{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"choices\":[{{\"index\":0,\"text\":\" tok{i}\",\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
                        );
                        let chunk = format!("{:x}\r\n{ev}\r\n", ev.len());
                        if sock.write_all(chunk.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    let done = "data: [DONE]\n\n";
                    let tail = format!("{:x}\r\n{done}\r\n0\r\n\r\n", done.len());
                    if sock.write_all(tail.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, rt)
}

/// CPU seconds of the whole process so far.
fn process_cpu_s() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage struct.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU seconds used so far by this process's threads called `name` (live threads only).
fn threads_cpu_s(name: &str) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    dir.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter(|s| s.contains(&format!("({name})")))
        .filter_map(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let u: f64 = f.get(11)?.parse().ok()?;
            let k: f64 = f.get(12)?.parse().ok()?;
            Some((u + k) / tick)
        })
        .sum()
}

fn config(port: u16, n: usize, rate: Option<f64>, conc: Option<usize>) -> String {
    serde_json::json!({
        "base_url": format!("http://127.0.0.1:{port}"), "endpoint": "/v1/completions",
        "api": "completions", "model": "m", "headers": [], "request_id_prefix": "b-",
        "timeout_s": 60.0,
        "body": {"max_tokens_field": "max_tokens", "fields": {}},
        "requests": vec![serde_json::json!({"prompt": "hello", "max_tokens": 8}); n],
        "schedule": {"request_rate": rate, "burstiness": null, "convention": "sequential", "seed": 0},
        "max_concurrency": conc, "max_duration_s": null
    })
    .to_string()
}

fn pct(mut v: Vec<i64>, p: f64) -> f64 {
    v.sort_unstable();
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(0) as f64
}

#[test]
#[ignore = "load benchmark"]
fn bench_events_per_cpu_second() {
    for (streams, events, gap_ms) in [(1, 20_000, 0), (100, 1000, 1), (1000, 200, 5)] {
        let (port, _srv) = serve(events, Duration::from_millis(gap_ms));
        let (p0, s0) = (process_cpu_s(), threads_cpu_s("bench-server"));
        let h = start_run(&config(port, streams, None, None)).expect("start");
        let r = h.wait(None).expect("records").expect("the run ends");
        // Client threads have exited by now: client CPU = process − server (still alive).
        let cpu = (process_cpu_s() - p0) - (threads_cpu_s("bench-server") - s0);
        let errors = r.error.iter().filter(|e| e.is_some()).count();
        let wall = (r.end_ns.iter().max().copied().unwrap_or(0)) as f64 / 1e9;
        println!(
            "streams={streams} events={} errors={errors} wall={wall:.2}s client_cpu={cpu:.2}s \
             events/cpu-s={:.0}",
            r.chunk_ns.len(),
            r.chunk_ns.len() as f64 / cpu.max(1e-9)
        );
    }
}

#[test]
#[ignore = "load benchmark"]
fn bench_dispatch_lag() {
    for rate in [1000.0, 5000.0] {
        let (port, _srv) = serve(4, Duration::ZERO);
        let n = (rate * 3.0) as usize;
        let h = start_run(&config(port, n, Some(rate), None)).expect("start");
        let r = h.wait(None).expect("records").expect("the run ends");
        let errors = r.error.iter().filter(|e| e.is_some()).count();
        if let Some(Some(e)) = r.error.iter().find(|e| e.is_some()) {
            println!("first error: {e}");
        }
        let disp: Vec<i64> = r
            .dispatched_ns
            .iter()
            .zip(&r.intended_ns)
            .map(|(a, b)| a - b)
            .collect();
        let sent: Vec<i64> = r
            .sent_ns
            .iter()
            .zip(&r.intended_ns)
            .map(|(a, b)| a - b)
            .collect();
        println!(
            "rate={rate} n={n} errors={errors} dispatch lag p50={:.3}ms p99={:.3}ms; \
             send lag p50={:.3}ms p99={:.3}ms max={:.3}ms",
            pct(disp.clone(), 0.5) / 1e6,
            pct(disp, 0.99) / 1e6,
            pct(sent.clone(), 0.5) / 1e6,
            pct(sent.clone(), 0.99) / 1e6,
            pct(sent, 1.0) / 1e6,
        );
    }
}

#[test]
fn sessions_end_to_end() {
    let (port, _srv) = serve(3, Duration::from_millis(2));
    let turn = |think: f64| serde_json::json!({"content": "q", "max_tokens": 3, "think_s": think});
    let session = serde_json::json!({"turns": [turn(0.0), turn(0.05), turn(0.02)]});
    let cfg = serde_json::json!({
        "base_url": format!("http://127.0.0.1:{port}"), "endpoint": "/v1/completions",
        "api": "completions", "request_id_prefix": "s-", "timeout_s": 30.0,
        "body": {"max_tokens_field": "max_tokens"},
        "sessions": [session.clone(), session],
        "schedule": {"request_rate": null, "burstiness": null, "convention": "sequential",
                     "seed": 0, "arrivals_s": [0.0, 0.01]},
        "max_concurrent_sessions": 1
    })
    .to_string();
    let r = start_run(&cfg)
        .expect("start")
        .wait(None)
        .expect("records")
        .expect("the run ends");
    assert!(r.error.iter().all(Option::is_none), "{:?}", r.error);
    assert_eq!(r.session_index, vec![0, 0, 0, 1, 1, 1]);
    assert_eq!(r.turn_index, vec![0, 1, 2, 0, 1, 2]);
    assert_eq!(r.intended_ns[0], 0);
    assert_eq!(
        r.intended_ns[3], 10_000_000,
        "session start keeps its scheduled time"
    );
    for (f, think) in [
        (1, 50_000_000),
        (2, 20_000_000),
        (4, 50_000_000),
        (5, 20_000_000),
    ] {
        assert_eq!(r.intended_ns[f], r.end_ns[f - 1] + think);
        assert!(r.sent_ns[f] >= r.intended_ns[f]);
    }
    // One session at a time: the second starts after the first one's last turn ended.
    assert!(r.sent_ns[3] >= r.end_ns[2]);
    // Each turn's reply is the server's three chunks.
    assert_eq!(r.chunk_offsets.len(), 7);
}
