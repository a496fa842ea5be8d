//! Prometheus text exposition with vLLM's metric names, so scrapers written for vLLM work on
//! the sim. Lock-free counters and histograms: updates happen on the per-token hot path.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
const E2E_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

/// How late exact mode emitted a first token after its due time (arrival + ttft): the sim's
/// own timing error, which a client's reading of TTFT inherits.
const LATENESS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25,
];

/// A histogram with fixed buckets; the sum is kept in microseconds to stay atomic.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self.bounds.partition_point(|b| *b < s);
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Relaxed);
        }
        self.sum_us.fetch_add(d.as_micros() as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str, label: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cum += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{label},le=\"{b:?}\"}} {cum}");
        }
        let count = self.count.load(Relaxed);
        let sum = self.sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{{label},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{{label}}} {sum:?}");
        let _ = writeln!(out, "{name}_count{{{label}}} {count}");
    }
}

/// Why a request finished, as in vLLM's `finished_reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

#[derive(Debug)]
pub struct Metrics {
    label: String,
    running: AtomicU64,
    waiting: AtomicU64,
    kv_usage_bits: AtomicU64,
    /// In-flight streams in exact-timing mode (no scheduler there).
    exact_running: AtomicU64,
    prompt_tokens: AtomicU64,
    generation_tokens: AtomicU64,
    success_stop: AtomicU64,
    success_length: AtomicU64,
    prefix_queries: AtomicU64,
    prefix_hits: AtomicU64,
    session_requests: AtomicU64,
    sessions_seen: AtomicU64,
    pub ttft: Histogram,
    pub itl: Histogram,
    pub e2e: Histogram,
    /// Exact mode only: first-token emission minus its due time.
    pub first_token_lateness: Histogram,
}

impl Metrics {
    pub fn new(model: &str) -> Self {
        let escaped = model
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        Metrics {
            label: format!("model_name=\"{escaped}\""),
            running: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            kv_usage_bits: AtomicU64::new(0f64.to_bits()),
            exact_running: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
            success_stop: AtomicU64::new(0),
            success_length: AtomicU64::new(0),
            prefix_queries: AtomicU64::new(0),
            prefix_hits: AtomicU64::new(0),
            session_requests: AtomicU64::new(0),
            sessions_seen: AtomicU64::new(0),
            ttft: Histogram::new(TTFT_BUCKETS),
            itl: Histogram::new(ITL_BUCKETS),
            e2e: Histogram::new(E2E_BUCKETS),
            first_token_lateness: Histogram::new(LATENESS_BUCKETS),
        }
    }

    pub fn set_batch(&self, running: usize, waiting: usize, kv_usage: f64) {
        self.running.store(running as u64, Relaxed);
        self.waiting.store(waiting as u64, Relaxed);
        self.kv_usage_bits.store(kv_usage.to_bits(), Relaxed);
    }

    pub fn stream_started(&self) {
        self.exact_running.fetch_add(1, Relaxed);
    }

    pub fn stream_ended(&self) {
        self.exact_running.fetch_sub(1, Relaxed);
    }

    pub fn prompt(&self, n: u64) {
        self.prompt_tokens.fetch_add(n, Relaxed);
    }

    pub fn token(&self) {
        self.generation_tokens.fetch_add(1, Relaxed);
    }

    /// One request's prefix-cache look-up, in tokens.
    pub fn prefix_cache(&self, queried: u64, hit: u64) {
        self.prefix_queries.fetch_add(queried, Relaxed);
        self.prefix_hits.fetch_add(hit, Relaxed);
    }

    /// A request carrying `X-Session-ID`; `new_session` when its id was not seen before.
    pub fn session_request(&self, new_session: bool) {
        self.session_requests.fetch_add(1, Relaxed);
        if new_session {
            self.sessions_seen.fetch_add(1, Relaxed);
        }
    }

    pub fn success(&self, f: Finish) {
        match f {
            Finish::Stop => &self.success_stop,
            Finish::Length => &self.success_length,
        }
        .fetch_add(1, Relaxed);
    }

    pub fn render(&self) -> String {
        let l = &self.label;
        let mut out = String::with_capacity(8192);
        let running = self.running.load(Relaxed) + self.exact_running.load(Relaxed);
        let kv = f64::from_bits(self.kv_usage_bits.load(Relaxed));
        let gauges: [(&str, &str, String); 4] = [
            (
                "vllm:num_requests_running",
                "Number of requests in model execution batches.",
                running.to_string(),
            ),
            (
                "vllm:num_requests_waiting",
                "Number of requests waiting to be processed.",
                self.waiting.load(Relaxed).to_string(),
            ),
            (
                "vllm:kv_cache_usage_perc",
                "KV-cache usage. 1 means 100 percent usage.",
                format!("{kv:?}"),
            ),
            (
                "vllm:gpu_cache_usage_perc",
                "GPU KV-cache usage. 1 means 100 percent usage.",
                format!("{kv:?}"),
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{l}}} {v}"
            );
        }
        let counters = [
            (
                "vllm:prompt_tokens_total",
                "Number of prefill tokens processed.",
                self.prompt_tokens.load(Relaxed),
            ),
            (
                "vllm:generation_tokens_total",
                "Number of generation tokens processed.",
                self.generation_tokens.load(Relaxed),
            ),
            (
                "vllm:num_preemptions_total",
                "Cumulative number of preemptions.",
                0,
            ),
            (
                "vllm:prefix_cache_queries_total",
                "Prefix cache queries, in terms of number of queried tokens.",
                self.prefix_queries.load(Relaxed),
            ),
            (
                "vllm:prefix_cache_hits_total",
                "Prefix cache hits, in terms of number of cached tokens.",
                self.prefix_hits.load(Relaxed),
            ),
            (
                "sonic_sim:session_requests_total",
                "Requests that carried an X-Session-ID header.",
                self.session_requests.load(Relaxed),
            ),
            (
                "sonic_sim:sessions_seen_total",
                "Distinct X-Session-ID values seen.",
                self.sessions_seen.load(Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{{l}}} {v}"
            );
        }
        let name = "vllm:request_success_total";
        let _ = writeln!(
            out,
            "# HELP {name} Count of successfully processed requests.\n# TYPE {name} counter"
        );
        for (reason, c) in [
            ("stop", &self.success_stop),
            ("length", &self.success_length),
        ] {
            let _ = writeln!(
                out,
                "{name}{{{l},finished_reason=\"{reason}\"}} {}",
                c.load(Relaxed)
            );
        }
        self.ttft.render(
            &mut out,
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            l,
        );
        self.itl.render(
            &mut out,
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            l,
        );
        self.e2e.render(
            &mut out,
            "vllm:e2e_request_latency_seconds",
            "Histogram of end to end request latency in seconds.",
            l,
        );
        self.first_token_lateness.render(
            &mut out,
            "sonic_sim:exact_first_token_lateness_seconds",
            "Exact mode: how late each first token was emitted after arrival + ttft.",
            l,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_vllm_names() {
        let m = Metrics::new("m\"x");
        m.set_batch(2, 3, 0.25);
        m.prompt(10);
        m.token();
        m.success(Finish::Length);
        m.prefix_cache(40, 32);
        m.prefix_cache(10, 0);
        m.ttft.observe(Duration::from_millis(30));
        let t = m.render();
        assert!(t.contains("vllm:num_requests_waiting{model_name=\"m\\\"x\"} 3"));
        assert!(t.contains("vllm:kv_cache_usage_perc{model_name=\"m\\\"x\"} 0.25"));
        assert!(t.contains(
            "vllm:time_to_first_token_seconds_bucket{model_name=\"m\\\"x\",le=\"0.04\"} 1"
        ));
        assert!(t.contains(
            "vllm:time_to_first_token_seconds_bucket{model_name=\"m\\\"x\",le=\"0.02\"} 0"
        ));
        assert!(t.contains("finished_reason=\"length\"} 1"));
        assert!(t.contains("vllm:prefix_cache_queries_total{model_name=\"m\\\"x\"} 50"));
        assert!(t.contains("vllm:prefix_cache_hits_total{model_name=\"m\\\"x\"} 32"));
    }
}
