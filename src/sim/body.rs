//! Response bodies: a whole buffer, or a token stream that hyper polls directly. The stream
//! waits on its own absolute deadline (exact mode) or on its scheduler channel, so there is
//! no task or timer per token; the connection task drives everything.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

use super::timer::{self, PreciseSleep};

use super::conn::ConnCtl;
use super::faults::Fault;
use super::metrics::{Finish, Metrics};
use super::rng::SplitMix;
use super::sse::{Template, Usage};
use super::tokenizer::Vocab;

/// Where a request's tokens come from.
pub enum Source {
    /// Exact mode: token k is due at `first + k * itl`.
    Timed {
        first: Instant,
        itl: Duration,
        sleep: PreciseSleep,
    },
    /// The batching scheduler sends the running token count after each step.
    Sched(mpsc::UnboundedReceiver<u32>),
}

impl Source {
    pub fn timed(first: Instant, itl: Duration) -> Self {
        Source::Timed {
            first,
            itl,
            sleep: timer::sleep_until(first),
        }
    }

    /// Ready(true) when token `k` (0-based) is available; Ready(false) if the engine went away.
    pub fn poll_token(&mut self, cx: &mut Context<'_>, k: u32) -> Poll<bool> {
        match self {
            Source::Timed { first, itl, sleep } => {
                let due = *first + *itl * k;
                if due <= Instant::now() {
                    return Poll::Ready(true);
                }
                sleep.reset(due.into_std());
                Pin::new(sleep).poll(cx).map(|_| true)
            }
            Source::Sched(rx) => rx.poll_recv(cx).map(|n| n.is_some()),
        }
    }
}

/// Per-request state shared by streaming and non-streaming responses.
pub struct Generation {
    pub source: Source,
    pub n_tokens: u32,
    pub finish: Finish,
    pub prompt_tokens: u64,
    /// Prompt tokens served from the prefix cache (set after `new`; 0 without a cache).
    pub cached_tokens: u64,
    pub rng: SplitMix,
    pub vocab: Arc<Vocab>,
    pub metrics: Arc<Metrics>,
    pub received: Instant,
    pub exact: bool,
    last_token: Option<Instant>,
}

impl Generation {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        source: Source,
        n_tokens: u32,
        finish: Finish,
        prompt_tokens: u64,
        rng: SplitMix,
        vocab: Arc<Vocab>,
        metrics: Arc<Metrics>,
        received: Instant,
    ) -> Self {
        let exact = matches!(source, Source::Timed { .. });
        if exact {
            metrics.stream_started();
        }
        Generation {
            source,
            n_tokens,
            finish,
            prompt_tokens,
            cached_tokens: 0,
            rng,
            vocab,
            metrics,
            received,
            exact,
            last_token: None,
        }
    }

    /// Index into the vocabulary of the next token, with metrics for its emission.
    pub fn emit(&mut self, k: u32) -> usize {
        let now = Instant::now();
        match self.last_token {
            None => {
                if let Source::Timed { first, .. } = &self.source {
                    let late = now.saturating_duration_since(*first);
                    self.metrics.first_token_lateness.observe(late);
                }
                self.metrics.ttft.observe(now - self.received);
                self.metrics.prompt(self.prompt_tokens);
            }
            Some(t) => self.metrics.itl.observe(now - t),
        }
        self.last_token = Some(now);
        self.metrics.token();
        if k + 1 == self.n_tokens {
            self.metrics.e2e.observe(now - self.received);
            self.metrics.success(self.finish);
        }
        self.rng.below(self.vocab.len())
    }

    /// The response's usage once `completion` tokens were generated.
    pub fn usage(&self, completion: u32) -> Usage {
        Usage {
            prompt: self.prompt_tokens,
            completion: u64::from(completion),
            cached: self.cached_tokens,
        }
    }

    /// Wait for all tokens (non-streaming); the text, or None if the engine went away.
    pub async fn collect(&mut self) -> Option<String> {
        let mut text = String::new();
        for k in 0..self.n_tokens {
            if !std::future::poll_fn(|cx| self.source.poll_token(cx, k)).await {
                return None;
            }
            let i = self.emit(k);
            text.push_str(&self.vocab.pieces[i]);
        }
        Some(text)
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        if self.exact {
            self.metrics.stream_ended();
        }
    }
}

enum Phase {
    Tokens,
    Stalled(Pin<Box<Sleep>>),
    Resetting,
    End,
}

/// An SSE token stream.
pub struct TokenStream {
    pub gen: Generation,
    pub tpl: Template,
    pub include_usage: bool,
    pub fault: Option<Fault>,
    pub stall: Duration,
    pub conn: Arc<ConnCtl>,
    sent: u32,
    phase: Phase,
}

impl TokenStream {
    pub fn new(
        gen: Generation,
        tpl: Template,
        include_usage: bool,
        fault: Option<Fault>,
        stall: Duration,
        conn: Arc<ConnCtl>,
    ) -> Self {
        TokenStream {
            gen,
            tpl,
            include_usage,
            fault,
            stall,
            conn,
            sent: 0,
            phase: Phase::Tokens,
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            match &mut self.phase {
                Phase::End => return Poll::Ready(None),
                Phase::Resetting => return Poll::Pending,
                Phase::Stalled(sleep) => {
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.phase = Phase::Tokens;
                }
                Phase::Tokens => {
                    if self.sent == Fault::strike_at(self.gen.n_tokens) {
                        match self.fault.take() {
                            Some(Fault::Reset) => {
                                self.conn.reset();
                                self.phase = Phase::Resetting;
                                return Poll::Pending;
                            }
                            Some(Fault::Stall) => {
                                let until = Instant::now() + self.stall;
                                self.phase =
                                    Phase::Stalled(Box::pin(tokio::time::sleep_until(until)));
                                continue;
                            }
                            Some(Fault::Malformed) => {
                                return Poll::Ready(Some(self.tpl.malformed()))
                            }
                            _ => {}
                        }
                    }
                    let k = self.sent;
                    if k == self.gen.n_tokens {
                        self.phase = Phase::End;
                        let usage = self.include_usage.then(|| self.gen.usage(k));
                        return Poll::Ready(Some(self.tpl.tail(usage)));
                    }
                    match self.gen.source.poll_token(cx, k) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(false) => {
                            self.phase = Phase::End;
                            return Poll::Ready(None);
                        }
                        Poll::Ready(true) => {}
                    }
                    let i = self.gen.emit(k);
                    self.sent += 1;
                    let last = self.sent == self.gen.n_tokens;
                    let finish = last.then_some(self.gen.finish);
                    return Poll::Ready(Some(self.tpl.token(
                        &self.gen.vocab.json[i],
                        k == 0,
                        finish,
                    )));
                }
            }
        }
    }
}

/// The body type of every sim response.
pub enum SimBody {
    Full(Option<Bytes>),
    Stream(Box<TokenStream>),
}

impl SimBody {
    pub fn empty() -> Self {
        SimBody::Full(None)
    }
}

impl From<String> for SimBody {
    fn from(s: String) -> Self {
        SimBody::Full(Some(Bytes::from(s)))
    }
}

impl From<Bytes> for SimBody {
    fn from(b: Bytes) -> Self {
        SimBody::Full(Some(b))
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            SimBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            SimBody::Stream(s) => s.poll_next(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, SimBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            SimBody::Full(None) => SizeHint::with_exact(0),
            SimBody::Stream(_) => SizeHint::default(),
        }
    }
}
