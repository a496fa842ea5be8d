//! The continuous-batching model: one tokio task runs engine steps; each request gets its
//! tokens through its own channel. Per step, every decoding sequence produces one token and
//! the rest of the token budget goes to (chunked) prefills, admitting waiting requests while
//! sequence slots and KV capacity allow. A step lasts
//! `step_base_ms + decode_seqs * decode_us_per_seq + prefill_tokens * prefill_us_per_token`.
//! Prompt tokens found in the prefix cache are never prefilled: a sequence starts with them
//! already computed, so they cost no step time and take none of the token budget.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::metrics::Metrics;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineParams {
    pub step_base_ms: f64,
    pub decode_us_per_seq: f64,
    pub prefill_us_per_token: f64,
    pub max_num_seqs: u32,
    pub max_num_batched_tokens: u32,
    pub kv_cache_tokens: u64,
}

impl EngineParams {
    pub fn step_time(&self, decode_seqs: u32, prefill_tokens: u32) -> Duration {
        let us = self.step_base_ms * 1e3
            + f64::from(decode_seqs) * self.decode_us_per_seq
            + f64::from(prefill_tokens) * self.prefill_us_per_token;
        Duration::from_secs_f64(us.max(0.0) / 1e6)
    }
}

/// One sequence in the model; `T` is whatever delivers its tokens (a channel in the server).
#[derive(Debug)]
pub struct Seq<T> {
    pub prompt_len: u32,
    pub output_len: u32,
    prefilled: u32,
    generated: u32,
    chunk: u32,
    decoding: bool,
    pub sink: T,
}

impl<T> Seq<T> {
    pub fn new(prompt_len: u32, output_len: u32, sink: T) -> Self {
        Self::with_cached(prompt_len, 0, output_len, sink)
    }

    /// A sequence whose first `cached` prompt tokens come from the prefix cache (at most
    /// `prompt_len - 1`: the last prompt token is always computed).
    pub fn with_cached(prompt_len: u32, cached: u32, output_len: u32, sink: T) -> Self {
        let prompt_len = prompt_len.max(1);
        Seq {
            prompt_len,
            output_len: output_len.max(1),
            prefilled: cached.min(prompt_len - 1),
            generated: 0,
            chunk: 0,
            decoding: false,
            sink,
        }
    }

    fn kv_need(&self) -> u64 {
        u64::from(self.prompt_len) + u64::from(self.output_len)
    }
}

/// What one step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Step {
    pub decode_seqs: u32,
    pub prefill_tokens: u32,
}

/// The batch state, free of I/O so its maths can be unit-tested.
#[derive(Debug)]
pub struct Batch<T> {
    params: EngineParams,
    waiting: VecDeque<Seq<T>>,
    running: Vec<Seq<T>>,
    kv_reserved: u64,
}

impl<T> Batch<T> {
    pub fn new(params: EngineParams) -> Self {
        Batch {
            params,
            waiting: VecDeque::new(),
            running: Vec::new(),
            kv_reserved: 0,
        }
    }

    pub fn add(&mut self, seq: Seq<T>) {
        self.waiting.push_back(seq);
    }

    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    /// KV tokens actually held (prompt prefilled so far plus generated tokens).
    pub fn kv_used(&self) -> u64 {
        self.running
            .iter()
            .map(|s| u64::from(s.prefilled) + u64::from(s.generated))
            .sum()
    }

    pub fn kv_usage(&self) -> f64 {
        self.kv_used() as f64 / self.params.kv_cache_tokens as f64
    }

    /// Drop sequences whose consumer went away (client disconnected).
    pub fn retain(&mut self, mut alive: impl FnMut(&T) -> bool) {
        self.waiting.retain(|s| alive(&s.sink));
        let mut freed = 0;
        self.running.retain(|s| {
            let keep = alive(&s.sink);
            if !keep {
                freed += s.kv_need();
            }
            keep
        });
        self.kv_reserved -= freed;
    }

    /// Plan the next step: decodes first, then prefill chunks of running sequences, then
    /// admissions from the queue (a sequence reserves prompt + output KV when admitted).
    pub fn schedule(&mut self) -> Step {
        let p = self.params;
        let mut budget = p.max_num_batched_tokens;
        let mut step = Step::default();
        for s in &mut self.running {
            s.chunk = 0;
            s.decoding = false;
            if s.prefilled == s.prompt_len && budget > 0 {
                s.decoding = true;
                budget -= 1;
                step.decode_seqs += 1;
            }
        }
        for s in &mut self.running {
            if s.prefilled < s.prompt_len && budget > 0 {
                s.chunk = budget.min(s.prompt_len - s.prefilled);
                budget -= s.chunk;
                step.prefill_tokens += s.chunk;
            }
        }
        while budget > 0 && self.running.len() < p.max_num_seqs as usize {
            let Some(front) = self.waiting.front() else {
                break;
            };
            let need = front.kv_need();
            if !self.running.is_empty() && self.kv_reserved + need > p.kv_cache_tokens {
                break;
            }
            let Some(mut s) = self.waiting.pop_front() else {
                break;
            };
            self.kv_reserved += need;
            s.chunk = budget.min(s.prompt_len - s.prefilled);
            s.decoding = false;
            budget -= s.chunk;
            step.prefill_tokens += s.chunk;
            self.running.push(s);
        }
        step
    }

    /// Apply the planned step once its time has passed: `emit(sink, tokens_so_far)` is called
    /// for each sequence that produced a token (false = consumer gone). Returns tokens emitted.
    pub fn complete(&mut self, mut emit: impl FnMut(&T, u32) -> bool) -> u64 {
        let mut emitted = 0;
        let mut freed = 0;
        self.running.retain_mut(|s| {
            let mut token = s.decoding;
            if s.chunk > 0 {
                s.prefilled += s.chunk;
                s.chunk = 0;
                token = s.prefilled == s.prompt_len;
            }
            s.decoding = false;
            if !token {
                return true;
            }
            s.generated += 1;
            emitted += 1;
            let alive = emit(&s.sink, s.generated);
            let keep = alive && s.generated < s.output_len;
            if !keep {
                freed += s.kv_need();
            }
            keep
        });
        self.kv_reserved -= freed;
        emitted
    }
}

/// A request handed to the scheduler task.
pub struct NewSeq {
    pub prompt_len: u32,
    /// Prompt tokens served from the prefix cache.
    pub cached: u32,
    pub output_len: u32,
    pub tokens: mpsc::UnboundedSender<u32>,
}

/// The scheduler task: runs steps back to back on absolute deadlines while there is work.
pub async fn run(
    params: EngineParams,
    mut inbox: mpsc::UnboundedReceiver<NewSeq>,
    metrics: Arc<Metrics>,
) {
    let mut batch: Batch<mpsc::UnboundedSender<u32>> = Batch::new(params);
    let mut clock = Instant::now();
    loop {
        while let Ok(n) = inbox.try_recv() {
            batch.add(Seq::with_cached(
                n.prompt_len,
                n.cached,
                n.output_len,
                n.tokens,
            ));
        }
        batch.retain(|tx| !tx.is_closed());
        if batch.is_idle() {
            metrics.set_batch(0, 0, 0.0);
            match inbox.recv().await {
                Some(n) => batch.add(Seq::with_cached(
                    n.prompt_len,
                    n.cached,
                    n.output_len,
                    n.tokens,
                )),
                None => return,
            }
            clock = Instant::now();
            continue;
        }
        let step = batch.schedule();
        metrics.set_batch(batch.num_running(), batch.num_waiting(), batch.kv_usage());
        // Steps follow each other on absolute deadlines: a late wake-up does not stretch the
        // model's time, unless we fell more than a step behind (then restart from now).
        let now = Instant::now();
        if clock + Duration::from_millis(50) < now {
            clock = now;
        }
        clock += params.step_time(step.decode_seqs, step.prefill_tokens);
        super::timer::sleep_until(clock).await;
        batch.complete(|tx, n| tx.send(n).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(seqs: u32, budget: u32, kv: u64) -> EngineParams {
        EngineParams {
            step_base_ms: 1.0,
            decode_us_per_seq: 100.0,
            prefill_us_per_token: 10.0,
            max_num_seqs: seqs,
            max_num_batched_tokens: budget,
            kv_cache_tokens: kv,
        }
    }

    /// Run until idle; returns (steps, model time, tokens per seq id in finish order).
    fn drain(b: &mut Batch<usize>, p: EngineParams) -> (u32, Duration, Vec<(usize, u32)>) {
        let (mut steps, mut t, mut done) = (0, Duration::ZERO, Vec::new());
        while !b.is_idle() {
            let s = b.schedule();
            t += p.step_time(s.decode_seqs, s.prefill_tokens);
            steps += 1;
            b.complete(|id, n| {
                done.push((*id, n));
                true
            });
            assert!(steps < 10_000);
        }
        (steps, t, done)
    }

    #[test]
    fn step_time_formula() {
        let p = params(4, 100, 1000);
        assert_eq!(p.step_time(2, 50), Duration::from_micros(1000 + 200 + 500));
    }

    #[test]
    fn chunked_prefill_then_decode() {
        let p = params(4, 100, 10_000);
        let mut b = Batch::new(p);
        b.add(Seq::new(250, 3, 0));
        // 250-token prompt with a budget of 100: 3 prefill steps, the last yields token 1.
        assert_eq!(
            b.schedule(),
            Step {
                decode_seqs: 0,
                prefill_tokens: 100
            }
        );
        assert_eq!(b.complete(|_, _| true), 0);
        assert_eq!(b.schedule().prefill_tokens, 100);
        b.complete(|_, _| true);
        assert_eq!(b.schedule().prefill_tokens, 50);
        assert_eq!(b.complete(|_, _| true), 1);
        assert_eq!(
            b.schedule(),
            Step {
                decode_seqs: 1,
                prefill_tokens: 0
            }
        );
        b.complete(|_, _| true);
        b.schedule();
        b.complete(|_, _| true);
        assert!(b.is_idle());
    }

    #[test]
    fn cached_tokens_are_not_prefilled() {
        let p = params(4, 100, 10_000);
        // 250-token prompt, 160 cached: 90 to prefill, one step, which yields token 1.
        let mut b = Batch::new(p);
        b.add(Seq::with_cached(250, 160, 2, 0));
        assert_eq!(b.schedule().prefill_tokens, 90);
        assert_eq!(b.complete(|_, _| true), 1);
        // A fully cached prompt still computes its last token.
        let mut b = Batch::new(p);
        b.add(Seq::with_cached(64, 64, 1, 0));
        assert_eq!(b.schedule().prefill_tokens, 1);
        assert_eq!(b.complete(|_, _| true), 1);
        assert!(b.is_idle());
        // Unchunked, the model's TTFT falls by exactly the cached tokens' prefill cost.
        let p = params(4, 1000, 10_000);
        let ttft = |cached| {
            let mut b = Batch::new(p);
            b.add(Seq::with_cached(250, cached, 1, 0));
            let (_, t, _) = drain(&mut b, p);
            t
        };
        assert_eq!(ttft(0) - ttft(160), Duration::from_micros(10 * 160));
    }

    #[test]
    fn max_num_seqs_makes_waves() {
        // 6 requests, 2 slots, 10 tokens each: three waves of (1 prefill + 9 decode) steps.
        let p = params(2, 1000, 100_000);
        let mut b = Batch::new(p);
        for i in 0..6 {
            b.add(Seq::new(10, 10, i));
        }
        b.schedule();
        assert_eq!(b.num_running(), 2);
        assert_eq!(b.num_waiting(), 4);
        b.complete(|_, _| true);
        let (steps, _, done) = drain(&mut b, p);
        assert_eq!(steps + 1, 30);
        assert_eq!(done.iter().filter(|(_, n)| *n == 10).count(), 6);
    }

    #[test]
    fn kv_capacity_holds_requests_back() {
        let p = params(8, 1000, 40);
        let mut b = Batch::new(p);
        b.add(Seq::new(10, 10, 0));
        b.add(Seq::new(10, 10, 1));
        b.add(Seq::new(10, 10, 2));
        b.schedule();
        assert_eq!(b.num_running(), 2);
        assert_eq!(b.num_waiting(), 1);
        b.complete(|_, _| true);
        assert!(b.kv_usage() > 0.0);
        let (_, _, done) = drain(&mut b, p);
        assert_eq!(done.last().map(|d| d.0), Some(2));
    }

    #[test]
    fn gone_consumers_free_their_slots() {
        let p = params(1, 1000, 1000);
        let mut b = Batch::new(p);
        b.add(Seq::new(5, 100, 0));
        b.add(Seq::new(5, 2, 1));
        b.schedule();
        b.complete(|id, _| *id != 0);
        b.schedule();
        assert_eq!(b.num_running(), 1);
        let (_, _, done) = drain(&mut b, p);
        assert_eq!(done.last(), Some(&(1, 2)));
    }
}
