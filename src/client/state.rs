//! Shared run state: lock-free progress counters and the stop/abort signals.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};

use tokio::sync::watch;

use super::clock::mono_ns;
use crate::recorder::Handoff;

/// Why in-flight requests are being aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    No,
    Cancel,
    Deadline,
}

/// Progress snapshot (`Progress` in `_core.pyi`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    pub total: u64,
    pub dispatched: u64,
    pub completed: u64,
    pub failed: u64,
    pub in_flight: u64,
    pub elapsed_s: f64,
    pub finished: bool,
}

pub struct RunState {
    pub total: u64,
    pub dispatched: AtomicU64,
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    pub in_flight: AtomicU64,
    /// t0 on CLOCK_MONOTONIC; 0 until the dispatcher starts.
    pub t0_mono_ns: AtomicI64,
    pub finished: AtomicBool,
    pub cancelled: AtomicBool,
    pub deadline_reached: AtomicBool,
    /// Finished records on their way to Python (streamed runs).
    pub handoff: Handoff,
    stop_flag: AtomicBool,
    stop_tx: watch::Sender<bool>,
    abort_tx: watch::Sender<Abort>,
}

impl RunState {
    pub fn new(total: u64, streaming: bool) -> Self {
        Self {
            total,
            dispatched: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            t0_mono_ns: AtomicI64::new(0),
            finished: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            deadline_reached: AtomicBool::new(false),
            handoff: Handoff::new(streaming),
            stop_flag: AtomicBool::new(false),
            stop_tx: watch::Sender::new(false),
            abort_tx: watch::Sender::new(Abort::No),
        }
    }

    /// Stop dispatching (idempotent).
    pub fn stop(&self) {
        self.stop_flag.store(true, Relaxed);
        self.stop_tx.send_replace(true);
    }

    pub fn stopped(&self) -> bool {
        self.stop_flag.load(Relaxed)
    }

    /// Abort in-flight requests; the first reason wins.
    pub fn abort(&self, why: Abort) {
        self.stop();
        self.abort_tx.send_if_modified(|a| {
            let first = *a == Abort::No;
            if first {
                *a = why;
            }
            first
        });
    }

    pub fn stop_rx(&self) -> watch::Receiver<bool> {
        self.stop_tx.subscribe()
    }

    pub fn abort_rx(&self) -> watch::Receiver<Abort> {
        self.abort_tx.subscribe()
    }

    pub fn progress(&self) -> Progress {
        let t0 = self.t0_mono_ns.load(Relaxed);
        Progress {
            total: self.total,
            dispatched: self.dispatched.load(Relaxed),
            completed: self.completed.load(Relaxed),
            failed: self.failed.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            elapsed_s: if t0 == 0 {
                0.0
            } else {
                (mono_ns() - t0) as f64 / 1e9
            },
            finished: self.finished.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abort_first_reason_wins() {
        let s = RunState::new(3, false);
        let rx = s.abort_rx();
        s.abort(Abort::Deadline);
        s.abort(Abort::Cancel);
        assert_eq!(*rx.borrow(), Abort::Deadline);
        assert!(s.stopped() && *s.stop_rx().borrow());
        assert_eq!(s.progress().total, 3);
    }
}
