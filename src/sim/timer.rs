//! Sub-millisecond deadlines for the sim's token timing.
//!
//! tokio's timer wheel has 1 ms resolution and rounds every deadline *up*, which would add
//! about half a millisecond to each TTFT and ITL that exact mode promises to emit exactly (and
//! then the sim could not judge a client to 1 ms). Instead one OS thread sleeps on a heap of
//! deadlines with hrtimer precision (timer slack 1 ns) and wakes each waiting stream's task;
//! a wake-up costs one heap operation, not a task or a timer per token.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

struct Entry {
    at: Instant,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at.cmp(&other.at)
    }
}

#[derive(Default)]
struct Shared {
    heap: Mutex<BinaryHeap<Reverse<Entry>>>,
    changed: Condvar,
}

impl Shared {
    fn register(&self, at: Instant, waker: Waker) {
        let Ok(mut heap) = self.heap.lock() else {
            waker.wake(); // a poisoned timer must not hang streams: let them re-poll
            return;
        };
        let earliest = heap.peek().is_none_or(|Reverse(top)| at < top.at);
        heap.push(Reverse(Entry { at, waker }));
        drop(heap);
        if earliest {
            self.changed.notify_one();
        }
    }

    /// The timer thread: wake everything due, then sleep until the next deadline.
    fn run(&self) {
        set_fine_timer_slack();
        let mut due: Vec<Waker> = Vec::new();
        let Ok(mut heap) = self.heap.lock() else {
            return;
        };
        loop {
            let now = Instant::now();
            while heap.peek().is_some_and(|Reverse(top)| top.at <= now) {
                if let Some(Reverse(e)) = heap.pop() {
                    due.push(e.waker);
                }
            }
            if !due.is_empty() {
                drop(heap);
                due.drain(..).for_each(Waker::wake);
                heap = match self.heap.lock() {
                    Ok(h) => h,
                    Err(_) => return,
                };
                continue;
            }
            let next = heap.peek().map(|Reverse(top)| top.at);
            heap = match next {
                Some(at) => match self
                    .changed
                    .wait_timeout(heap, at.saturating_duration_since(now))
                {
                    Ok((h, _)) => h,
                    Err(_) => return,
                },
                None => match self.changed.wait(heap) {
                    Ok(h) => h,
                    Err(_) => return,
                },
            };
        }
    }
}

/// Ask the kernel not to coalesce this thread's timer wake-ups (default slack is 50 µs).
fn set_fine_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK only changes the calling thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

fn shared() -> &'static Arc<Shared> {
    static TIMER: OnceLock<Arc<Shared>> = OnceLock::new();
    TIMER.get_or_init(|| {
        let shared = Arc::new(Shared::default());
        let worker = Arc::clone(&shared);
        // If the thread cannot start, sleeps fall back to waking immediately and re-polling
        // (busy, but correct); that only happens when the process is out of threads.
        let _ = std::thread::Builder::new()
            .name("sonic-sim-timer".into())
            .spawn(move || worker.run());
        shared
    })
}

/// A future that completes at `deadline` (within tens of microseconds).
pub struct PreciseSleep {
    deadline: Instant,
    registered: Option<Waker>,
}

/// Sleep until `deadline` on the precise timer.
pub fn sleep_until(deadline: impl Into<Instant>) -> PreciseSleep {
    PreciseSleep {
        deadline: deadline.into(),
        registered: None,
    }
}

impl PreciseSleep {
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Move the deadline (the old registration, if any, becomes a harmless spurious wake).
    pub fn reset(&mut self, deadline: Instant) {
        if deadline != self.deadline {
            self.deadline = deadline;
            self.registered = None;
        }
    }
}

impl Future for PreciseSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        let fresh = match &self.registered {
            Some(w) => !w.will_wake(cx.waker()),
            None => true,
        };
        if fresh {
            let waker = cx.waker().clone();
            shared().register(self.deadline, waker.clone());
            self.registered = Some(waker);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_sleepers_all_wake_in_order_of_deadline() {
        let start = Instant::now();
        let handles: Vec<_> = (0..200u64)
            .map(|k| {
                tokio::spawn(async move {
                    let at = start + Duration::from_micros(2000 - 7 * k);
                    sleep_until(at).await;
                    Instant::now() >= at
                })
            })
            .collect();
        for h in handles {
            assert!(h.await.unwrap_or(false));
        }
    }

    #[test]
    fn reset_moves_the_deadline() {
        let now = Instant::now();
        let mut s = sleep_until(now + Duration::from_secs(60));
        s.reset(now);
        assert_eq!(s.deadline(), now);
    }
}
