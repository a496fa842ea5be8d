//! The dispatcher: releases each request at its intended time, measured from one t0.
//!
//! It runs on its own OS thread and sleeps to absolute CLOCK_MONOTONIC deadlines with a 1 ns
//! timer slack (no spinning), so its wake-ups do not depend on the tokio workers being idle.
//! A concurrency cap is a semaphore: a request whose time has come waits for a slot, and its
//! intended time stays as scheduled (the wait shows as sent − intended, never as a shifted
//! schedule). Waiting for a slot is FIFO, as the asyncio semaphore of vLLM and MAX is.
//! A run that only the cap paces (no rate: every request due at t0) is sent by lanes inside
//! the runtime instead, one per slot, in the same order (`run_lanes`).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::clock::{mono_ns, sleep_until};
use super::failure::{NOT_SENT_CANCELLED, NOT_SENT_DEADLINE};
use super::feed::{Behind, Feed, Ready};
use super::request::{run_request, Outgoing, RequestCtx};
use super::state::{Abort, RunState};
use crate::recorder::{Finished, RequestRecord};

/// Re-check stop/deadline at least this often while sleeping to a far arrival.
const SLEEP_SLICE_NS: i64 = 5_000_000;

pub struct Dispatcher<'a> {
    pub rt: &'a Handle,
    pub state: &'a Arc<RunState>,
    pub ctx: Arc<RequestCtx>,
    pub semaphore: Option<Arc<Semaphore>>,
    /// Absolute CLOCK_MONOTONIC deadline of the run (max duration), if any.
    pub deadline_abs_ns: Option<i64>,
}

pub(super) enum Wait {
    Go,
    Stop,
    Deadline,
}

impl Dispatcher<'_> {
    pub(super) fn past_deadline(&self, now: i64) -> bool {
        self.deadline_abs_ns.is_some_and(|d| now >= d)
    }

    /// Sleep until `target_abs` unless stopped or the run's deadline comes first.
    fn wait_until(&self, target_abs: i64) -> Wait {
        loop {
            if self.state.stopped() {
                return Wait::Stop;
            }
            let now = mono_ns();
            if self.past_deadline(now) {
                return Wait::Deadline;
            }
            if now >= target_abs {
                return Wait::Go;
            }
            let until = self
                .deadline_abs_ns
                .map_or(target_abs, |d| d.min(target_abs));
            sleep_until(until, SLEEP_SLICE_NS);
        }
    }

    /// A concurrency slot (`Ok(None)` when uncapped), or why we stopped waiting for one.
    pub(super) fn slot(&self) -> Result<Option<OwnedSemaphorePermit>, Wait> {
        let Some(sem) = &self.semaphore else {
            return Ok(None);
        };
        if let Ok(p) = sem.clone().try_acquire_owned() {
            return Ok(Some(p));
        }
        let mut stop = self.state.stop_rx();
        let left = self
            .deadline_abs_ns
            .map(|d| Duration::from_nanos((d - mono_ns()).max(0) as u64));
        let sem = sem.clone();
        let got = self.rt.block_on(async move {
            let deadline = async {
                match left {
                    Some(l) => tokio::time::sleep(l).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                p = sem.acquire_owned() => p.ok(),
                _ = stop.wait_for(|s| *s) => None,
                _ = deadline => None,
            }
        });
        match got {
            Some(p) if !self.state.stopped() => Ok(Some(p)),
            _ if self.state.stopped() => Err(Wait::Stop),
            _ => Err(Wait::Deadline),
        }
    }

    /// Send one request now (its slot, if any, is released when it ends). `done` takes the
    /// record as the request ends, before it counts as finished (a streamed run hands it over
    /// there); the task's output is what `done` gives back.
    pub(super) fn launch<T: Send + 'static>(
        &self,
        out: Outgoing,
        permit: Option<OwnedSemaphorePermit>,
        done: impl FnOnce(RequestRecord) -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let rec = sent(self.state, &self.ctx);
        let (ctx, state) = (self.ctx.clone(), self.state.clone());
        let abort = self.state.abort_rx();
        self.rt.spawn(async move {
            let rec = run_request(ctx, out, rec, abort).await;
            drop(permit);
            ended(&state, rec, done)
        })
    }

    /// Why unsent requests were not sent (after the run's dispatching has ended).
    pub(super) fn unsent_reason(&self) -> &'static str {
        if self.state.deadline_reached.load(Relaxed) {
            NOT_SENT_DEADLINE
        } else {
            NOT_SENT_CANCELLED
        }
    }

    /// After dispatching stopped for `why`: a deadline aborts what is still in flight.
    pub(super) fn stopped_by(&self, why: Option<Wait>) {
        if matches!(why, Some(Wait::Deadline)) {
            self.state.deadline_reached.store(true, Relaxed);
            self.state.abort(Abort::Deadline);
        }
    }

    /// Dispatch every request on schedule. Returns the records kept for the end of the run:
    /// all of them, or (streamed run) those not handed over, with every unsent request.
    pub fn run(&self, intended_ns: &[i64], mut feed: Feed) -> Vec<Finished> {
        let t0 = self.ctx.t0_mono_ns;
        let n = intended_ns.len();
        if let Some(cap) = self.semaphore.as_ref().map(|s| s.available_permits()) {
            if intended_ns.iter().all(|&t| t <= 0) {
                return self.run_lanes(cap, intended_ns, feed);
            }
        }
        let streaming = self.state.handoff.streaming();
        let mut running = Running::new(if streaming { REAP_EVERY } else { usize::MAX });
        let mut stopped_by = None;
        for (index, &intended) in intended_ns.iter().enumerate() {
            let go = match self.wait_until(t0 + intended) {
                Wait::Go => self.slot(),
                other => Err(other),
            };
            let permit = match go {
                Ok(p) => p,
                Err(why) => {
                    stopped_by = Some(why);
                    break;
                }
            };
            let Some((body, id)) = feed.next() else {
                break;
            };
            let out = Outgoing {
                body,
                id,
                session: None,
            };
            let state = self.state.clone();
            let handle = self.launch(out, permit, move |rec| {
                state
                    .handoff
                    .offer(Finished::request(index, intended, rec))
                    .map(|f| f.rec)
            });
            running.push(self.rt, index, intended, handle);
        }
        let launched = running.launched;
        self.stopped_by(stopped_by);
        let unsent = self.unsent_reason();
        let mut kept = running.join_all(self.rt);
        kept.extend(
            (launched..n)
                .map(|i| Finished::request(i, intended_ns[i], RequestRecord::not_sent(unsent))),
        );
        kept
    }

    /// A run that only a concurrency cap paces (every request due at t0): `cap` lanes in the
    /// runtime, each sending the next request as soon as its last one ends. Requests go in
    /// index order, exactly when the semaphore would let them, without the dispatcher thread:
    /// no wake-up of another thread per request (on a VM each costs tens of µs of CPU).
    fn run_lanes(&self, cap: usize, intended_ns: &[i64], feed: Feed) -> Vec<Finished> {
        let n = intended_ns.len();
        let queue = Arc::new(Mutex::new(Queue {
            feed,
            next: 0,
            stopped_by: None,
        }));
        let lanes: Vec<JoinHandle<Vec<Finished>>> = (0..cap.min(n))
            .map(|_| {
                let lane = Lane {
                    queue: queue.clone(),
                    ctx: self.ctx.clone(),
                    state: self.state.clone(),
                    deadline_abs_ns: self.deadline_abs_ns,
                };
                self.rt.spawn(lane.run())
            })
            .collect();
        let mut kept = Vec::new();
        for lane in lanes {
            match self.rt.block_on(lane) {
                Ok(k) => kept.extend(k),
                // A bug in a lane: the dispatcher thread's guard reports it.
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => {}
            }
        }
        let (launched, why) = {
            let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
            (q.next, q.stopped_by.take())
        };
        self.stopped_by(why);
        let unsent = self.unsent_reason();
        kept.extend(
            (launched..n)
                .map(|i| Finished::request(i, intended_ns[i], RequestRecord::not_sent(unsent))),
        );
        kept
    }
}

/// Count a request as sent and open its record, stamped now.
fn sent(state: &RunState, ctx: &RequestCtx) -> RequestRecord {
    state.dispatched.fetch_add(1, Relaxed);
    state.in_flight.fetch_add(1, Relaxed);
    RequestRecord {
        dispatched_ns: mono_ns() - ctx.t0_mono_ns,
        ..RequestRecord::default()
    }
}

/// A request has ended: `done` takes its record (a streamed run hands it over there), then
/// it counts as completed or failed.
fn ended<T>(state: &RunState, rec: RequestRecord, done: impl FnOnce(RequestRecord) -> T) -> T {
    let counter = if rec.error.is_none() {
        &state.completed
    } else {
        &state.failed
    };
    let kept = done(rec);
    counter.fetch_add(1, Relaxed);
    state.in_flight.fetch_sub(1, Relaxed);
    kept
}

/// The requests that the lanes of a concurrency-paced run take in turn.
struct Queue {
    feed: Feed,
    /// Index of the next request to send (= requests taken so far).
    next: usize,
    /// Why a lane stopped taking requests, if one did.
    stopped_by: Option<Wait>,
}

/// One lane of `run_lanes`: sends a request, waits for its end, takes the next.
struct Lane {
    queue: Arc<Mutex<Queue>>,
    ctx: Arc<RequestCtx>,
    state: Arc<RunState>,
    deadline_abs_ns: Option<i64>,
}

impl Lane {
    async fn run(self) -> Vec<Finished> {
        let mut kept = Vec::new();
        let abort = self.state.abort_rx();
        while let Some((index, (body, id), rec)) = self.take() {
            let out = Outgoing {
                body,
                id,
                session: None,
            };
            let rec = run_request(self.ctx.clone(), out, rec, abort.clone()).await;
            let state = &self.state;
            let offered = ended(state, rec, |rec| {
                state.handoff.offer(Finished::request(index, 0, rec))
            });
            kept.extend(offered);
        }
        kept
    }

    /// The next request, its index and its record (counted as sent, stamped while the queue
    /// is held, so stamps follow the index), unless the run stopped, its deadline passed or
    /// every request was taken.
    fn take(&self) -> Option<(usize, Ready, RequestRecord)> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.stopped_by.is_some() {
            return None;
        }
        if self.state.stopped() {
            q.stopped_by = Some(Wait::Stop);
            return None;
        }
        if self.deadline_abs_ns.is_some_and(|d| mono_ns() >= d) {
            q.stopped_by = Some(Wait::Deadline);
            return None;
        }
        // The preparer is a window ahead; should it fall behind, wait off the worker.
        let ready = match q.feed.try_next() {
            Ok(r) => r,
            Err(Behind) => tokio::task::block_in_place(|| q.feed.next()),
        }?;
        let index = q.next;
        q.next += 1;
        Some((index, ready, sent(&self.state, &self.ctx)))
    }
}

/// How many finished tasks a streamed run lets pile up before reaping them: a finished tokio
/// task keeps its memory until its handle is joined.
const REAP_EVERY: usize = 1024;

/// Requests launched by a plain run, with the records their tasks kept.
struct Running {
    handles: Vec<(usize, i64, JoinHandle<Option<RequestRecord>>)>,
    kept: Vec<Finished>,
    launched: usize,
    reap_at: usize,
}

impl Running {
    fn new(reap_at: usize) -> Self {
        Self {
            handles: Vec::new(),
            kept: Vec::new(),
            launched: 0,
            reap_at,
        }
    }

    fn push(
        &mut self,
        rt: &Handle,
        index: usize,
        intended: i64,
        h: JoinHandle<Option<RequestRecord>>,
    ) {
        self.handles.push((index, intended, h));
        self.launched = index + 1;
        if self.handles.len() >= self.reap_at {
            let (done, left): (Vec<_>, Vec<_>) = std::mem::take(&mut self.handles)
                .into_iter()
                .partition(|(_, _, h)| h.is_finished());
            self.handles = left;
            self.join(rt, done);
            self.reap_at = REAP_EVERY.max(2 * self.handles.len());
        }
    }

    fn join(&mut self, rt: &Handle, done: Vec<(usize, i64, JoinHandle<Option<RequestRecord>>)>) {
        for (index, intended, h) in done {
            let rec = rt.block_on(h).unwrap_or_else(|e| {
                Some(RequestRecord {
                    error: Some(format!("internal error: {e}")),
                    ..RequestRecord::default()
                })
            });
            if let Some(rec) = rec {
                self.kept.push(Finished::request(index, intended, rec));
            }
        }
    }

    fn join_all(mut self, rt: &Handle) -> Vec<Finished> {
        let all = std::mem::take(&mut self.handles);
        self.join(rt, all);
        self.kept
    }
}
