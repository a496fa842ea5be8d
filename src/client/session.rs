//! Multi-turn sessions: each session is an ordered list of turns sent one after another.
//!
//! Semantics:
//! - Session starts follow the schedule, one arrival per session (its `arrivals_s` when given).
//! - Turn k+1 is due at end(turn k) + its `think_s`, where end is when the last byte of turn
//!   k was received, on the run's one monotonic clock. That instant is turn k+1's *intended*
//!   time, so a concurrency wait or a slow client shows as sent − intended and never hides.
//! - `max_concurrency` caps requests in flight (FIFO, as for plain requests);
//!   `max_concurrent_sessions` caps sessions active at once (a session is active from its
//!   first turn's dispatch until its last turn ends). A session waiting for a slot keeps its
//!   scheduled start as turn 0's intended time. Among due turns the earliest goes first;
//!   on a tie a running session's next turn goes before a new session.
//! - Turn bodies are built in Rust (see `conversation`): turn 0 before t0, turn k+1 as soon as
//!   turn k has ended (history `live` needs its reply), never by Python.
//! - A failed turn ends its session: later turns are recorded as not sent ("not sent: turn K of
//!   this session failed"). A cancel (Ctrl-C) or max duration stops dispatching new turns;
//!   finished turns are kept, turns in flight finish (or are aborted, as for plain requests)
//!   and the rest are recorded as not sent.
//! - Records: one per turn sent, session-major (session 0's turns, then session 1's, …), with
//!   `session_index` and `turn_index`; x-request-id is the prefix + that record index. A turn
//!   that never became due has intended time -1.
//! - A session with `start_turn` k sends turns k.. only: the turns before k are history (their
//!   reference answers, in either history mode), and its first record's `turn_index` is k.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderValue;

use super::body::body_bytes;
use super::clock::mono_ns;
use super::config::{ApiKind, BodyOptions, History, SessionSpec};
use super::conversation::turn_request;
use super::dispatch::{Dispatcher, Wait};
use super::request::Outgoing;
use crate::recorder::{Finished, Handoff, RequestRecord};

/// Re-check stop/deadline at least this often while waiting for a due turn or a reply.
const WAIT_SLICE_NS: i64 = 5_000_000;

/// Builds a turn's body (the run's API, model and body options).
pub struct BodyMaker {
    pub api: ApiKind,
    pub model: String,
    pub opts: BodyOptions,
}

impl BodyMaker {
    pub fn turn(&self, s: &SessionSpec, k: usize, answers: &[&str], salt: Option<&str>) -> Bytes {
        let req = turn_request(self.api, s, k, answers);
        body_bytes(self.api, &self.model, &self.opts, &req, salt)
    }
}

/// Everything prepared before t0 for a run of sessions.
pub struct SessionPlan {
    pub sessions: Vec<SessionSpec>,
    pub history: History,
    pub maker: BodyMaker,
    /// Intended start of each session, ns from t0 (non-decreasing).
    pub starts_ns: Vec<i64>,
    /// Turn 0's body of each session.
    pub first_bodies: Vec<Bytes>,
    /// `x-request-id` of every record (session-major).
    pub ids: Vec<HeaderValue>,
    /// Session header value of each session (None: no session header).
    pub header_values: Vec<Option<HeaderValue>>,
    /// `cache_salt` of each session's requests.
    pub salts: Vec<Option<String>>,
    pub max_sessions: Option<usize>,
}

/// Record index of each session's first sent turn, plus the total at the end.
fn first_indices(sessions: &[SessionSpec]) -> Vec<usize> {
    let mut out = Vec::with_capacity(sessions.len() + 1);
    let mut acc = 0;
    out.push(0);
    for s in sessions {
        acc += s.sent_turns();
        out.push(acc);
    }
    out
}

/// The time turn `k` of `s` becomes due after the previous turn ended at `prev_end_ns`.
pub fn due_after(s: &SessionSpec, k: usize, prev_end_ns: i64) -> i64 {
    let think = s.turns.get(k).map_or(0.0, |t| t.think_s);
    prev_end_ns.saturating_add((think * 1e9).round() as i64)
}

/// A turn that may be sent next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// A running session's next turn (record index).
    Turn(usize),
    /// A new session's turn 0.
    Start(usize),
}

/// Where a turn's record is.
enum Slot {
    /// Not ended (or never sent).
    Pending,
    /// Ended, kept for the end of the run.
    Kept(RequestRecord),
    /// Ended and handed over to Python (streamed run).
    Handed,
}

/// Dispatch state of a run of sessions (lives on the dispatcher thread only).
struct Sessions {
    plan: SessionPlan,
    first: Vec<usize>,
    intended: Vec<i64>,
    recs: Vec<Slot>,
    /// Why a record was not sent when its session ended early.
    skipped: Vec<Option<String>>,
    /// Due continuation turns: (intended ns, record index), earliest first.
    due: BinaryHeap<Reverse<(i64, usize)>>,
    /// Body of each running session's next turn.
    next_body: Vec<Bytes>,
    /// Live history: each session's replies so far.
    replies: Vec<Vec<String>>,
    next_start: usize,
    active: usize,
    ended: usize,
    outstanding: usize,
}

impl Sessions {
    fn new(mut plan: SessionPlan) -> Self {
        let first = first_indices(&plan.sessions);
        let total = first.last().copied().unwrap_or(0);
        let mut intended = vec![-1; total];
        for (s, &t) in plan.starts_ns.iter().enumerate() {
            if let Some(slot) = first.get(s).and_then(|&f| intended.get_mut(f)) {
                *slot = t;
            }
        }
        let next_body = std::mem::take(&mut plan.first_bodies);
        // Live history starts from the history-only turns' reference answers.
        let replies = plan
            .sessions
            .iter()
            .map(|s| s.history_answers().map(String::from).collect())
            .collect();
        Self {
            plan,
            first,
            intended,
            recs: (0..total).map(|_| Slot::Pending).collect(),
            skipped: vec![None; total],
            due: BinaryHeap::new(),
            next_body,
            replies,
            next_start: 0,
            active: 0,
            ended: 0,
            outstanding: 0,
        }
    }

    fn n_sessions(&self) -> usize {
        self.plan.sessions.len()
    }

    /// (session, turn index within the session) of record `f`.
    fn locate(&self, f: usize) -> (usize, usize) {
        let s = self.first.partition_point(|&x| x <= f).saturating_sub(1);
        (s, self.plan.sessions[s].start_turn + f - self.first[s])
    }

    /// The earliest turn that may go next and its intended time.
    fn pick(&self) -> Option<(i64, Next)> {
        let turn = self.due.peek().map(|Reverse((t, f))| (*t, Next::Turn(*f)));
        let room = self.plan.max_sessions.is_none_or(|m| self.active < m);
        let start = (room && self.next_start < self.n_sessions()).then(|| {
            (
                self.plan.starts_ns[self.next_start],
                Next::Start(self.next_start),
            )
        });
        match (turn, start) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// Take `next` off the queue; its record index and what to send.
    fn take(&mut self, next: Next) -> (usize, Outgoing) {
        let (s, f) = match next {
            Next::Start(s) => {
                self.next_start += 1;
                self.active += 1;
                (s, self.first[s])
            }
            Next::Turn(f) => {
                self.due.pop();
                (self.locate(f).0, f)
            }
        };
        let out = Outgoing {
            body: std::mem::take(&mut self.next_body[s]),
            id: self.plan.ids[f].clone(),
            session: self.plan.header_values[s].clone(),
        };
        (f, out)
    }

    /// A turn ended: keep its record (or hand it over); queue its successor (when `more`), or
    /// end the session.
    fn finish(&mut self, f: usize, rec: RequestRecord, more: bool, handoff: &Handoff) {
        self.outstanding -= 1;
        let (s, k) = self.locate(f);
        let n_turns = self.plan.sessions[s].turns.len();
        let ok = rec.error.is_none();
        if ok && k + 1 < n_turns {
            let session = &self.plan.sessions[s];
            let due = due_after(session, k + 1, rec.end_ns);
            self.intended[f + 1] = due;
            if more {
                if self.plan.history == History::Live {
                    self.replies[s].push(String::from_utf8_lossy(&rec.text).into_owned());
                }
                let body = {
                    let answers: Vec<&str> = match self.plan.history {
                        History::Live => self.replies[s].iter().map(String::as_str).collect(),
                        History::Dataset => session.turns[..=k]
                            .iter()
                            .map(|t| t.reference_answer.as_str())
                            .collect(),
                    };
                    let salt = self.plan.salts[s].as_deref();
                    self.plan.maker.turn(session, k + 1, &answers, salt)
                };
                self.next_body[s] = body;
                self.due.push(Reverse((due, f + 1)));
            }
        } else {
            self.active -= 1;
            self.ended += 1;
            self.next_body[s] = Bytes::new();
            if !ok {
                let why = format!("not sent: turn {k} of this session failed");
                for j in f + 1..self.first[s + 1] {
                    self.skipped[j] = Some(why.clone());
                }
            }
        }
        let done = Finished {
            index: f,
            intended_ns: self.intended[f],
            session_index: s as i64,
            turn_index: k as i64,
            rec,
        };
        self.recs[f] = match handoff.offer(done) {
            Some(kept) => Slot::Kept(kept.rec),
            None => Slot::Handed,
        };
    }

    /// The records kept for the end of the run (session-major), unsent turns included.
    fn into_records(self, unsent: &str) -> Vec<Finished> {
        let mut out = Vec::with_capacity(self.recs.len());
        let mut slots = self.recs.into_iter().zip(self.skipped).enumerate();
        for (s, session) in self.plan.sessions.iter().enumerate() {
            for k in session.start_turn..session.turns.len() {
                let Some((f, (slot, why))) = slots.next() else {
                    return out;
                };
                let rec = match slot {
                    Slot::Handed => continue,
                    Slot::Kept(rec) => rec,
                    Slot::Pending => RequestRecord::not_sent(why.as_deref().unwrap_or(unsent)),
                };
                out.push(Finished {
                    index: f,
                    intended_ns: self.intended[f],
                    session_index: s as i64,
                    turn_index: k as i64,
                    rec,
                });
            }
        }
        out
    }
}

/// Run every session to its end (or stop/deadline); the records of every turn not handed over.
pub fn run_sessions(d: &Dispatcher<'_>, plan: SessionPlan) -> Vec<Finished> {
    let handoff = &d.state.handoff;
    let t0 = d.ctx.t0_mono_ns;
    let mut st = Sessions::new(plan);
    let (tx, rx) = mpsc::channel::<(usize, RequestRecord)>();
    let stopped_by = loop {
        while let Ok((f, rec)) = rx.try_recv() {
            st.finish(f, rec, true, handoff);
        }
        if d.state.stopped() {
            break Some(Wait::Stop);
        }
        let now = mono_ns();
        if d.past_deadline(now) {
            break Some(Wait::Deadline);
        }
        if st.ended == st.n_sessions() {
            break None;
        }
        match st.pick() {
            Some((t, next)) if t0.saturating_add(t) <= now => {
                let permit = match d.slot() {
                    Ok(p) => p,
                    Err(why) => break Some(why),
                };
                let (f, out) = st.take(next);
                st.outstanding += 1;
                let handle = d.launch(out, permit, |rec| rec);
                let tx = tx.clone();
                d.rt.spawn(async move {
                    let rec = handle.await.unwrap_or_else(|e| RequestRecord {
                        error: Some(format!("internal error: {e}")),
                        ..RequestRecord::default()
                    });
                    let _ = tx.send((f, rec));
                });
            }
            next => {
                let mut until = now.saturating_add(WAIT_SLICE_NS);
                if let Some((t, _)) = next {
                    until = until.min(t0.saturating_add(t));
                }
                if let Some(dl) = d.deadline_abs_ns {
                    until = until.min(dl);
                }
                let wait = Duration::from_nanos((until - now).max(0) as u64);
                if let Ok((f, rec)) = rx.recv_timeout(wait) {
                    st.finish(f, rec, true, handoff);
                }
            }
        }
    };
    d.stopped_by(stopped_by);
    // Turns in flight end (or are aborted); no new turn is queued after a stop.
    while st.outstanding > 0 {
        match rx.recv() {
            Ok((f, rec)) => st.finish(f, rec, false, handoff),
            Err(_) => break,
        }
    }
    st.into_records(d.unsent_reason())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::config::TurnSpec;
    use crate::recorder::Records;
    use serde_json::{json, Value};

    fn turn(c: &str, think: f64) -> TurnSpec {
        TurnSpec {
            content: c.into(),
            max_tokens: Some(4),
            reference_answer: format!("ref-{c}"),
            think_s: think,
        }
    }

    fn plan(history: History, sessions: Vec<SessionSpec>, max: Option<usize>) -> SessionPlan {
        let maker = BodyMaker {
            api: ApiKind::Chat,
            model: "m".into(),
            opts: BodyOptions::plain(),
        };
        let first_bodies = sessions
            .iter()
            .map(|s| {
                let history: Vec<&str> = s.history_answers().collect();
                maker.turn(s, s.start_turn, &history, Some("salt"))
            })
            .collect();
        let total: usize = sessions.iter().map(SessionSpec::sent_turns).sum();
        SessionPlan {
            starts_ns: (0..sessions.len() as i64).map(|i| i * 10).collect(),
            header_values: vec![None; sessions.len()],
            salts: vec![Some("salt".into()); sessions.len()],
            ids: (0..total)
                .map(|i| HeaderValue::from_str(&i.to_string()).unwrap())
                .collect(),
            sessions,
            history,
            maker,
            first_bodies,
            max_sessions: max,
        }
    }

    fn two_sessions() -> Vec<SessionSpec> {
        vec![
            SessionSpec {
                turns: vec![turn("a0", 0.0), turn("a1", 0.5), turn("a2", 1.0)],
                system: None,
                session_id: "A".into(),
                start_turn: 0,
            },
            SessionSpec {
                turns: vec![turn("b0", 0.0)],
                system: None,
                session_id: String::new(),
                start_turn: 0,
            },
        ]
    }

    fn ok(end_ns: i64, text: &str) -> RequestRecord {
        let mut r = RequestRecord {
            end_ns,
            ..RequestRecord::default()
        };
        r.push_chunk(end_ns, 0, text);
        r
    }

    fn body_json(b: &Bytes) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn think_time_makes_the_next_turn_due() {
        let mut st = Sessions::new(plan(History::Dataset, two_sessions(), None));
        assert_eq!(st.pick(), Some((0, Next::Start(0))));
        let (f, out) = st.take(Next::Start(0));
        assert_eq!((f, out.id.to_str().unwrap()), (0, "0"));
        st.outstanding += 1;
        // Session 1 starts at 10 ns; session 0's turn 1 is not due before turn 0 ends.
        assert_eq!(st.pick(), Some((10, Next::Start(1))));
        st.finish(0, ok(1_000, "live0"), true, &Handoff::default());
        assert_eq!(st.intended[1], 1_000 + 500_000_000);
        assert_eq!(st.pick(), Some((10, Next::Start(1))));
        let (f, _) = st.take(Next::Start(1));
        assert_eq!(f, 3, "records are session-major");
        st.outstanding += 1;
        assert_eq!(st.pick(), Some((500_001_000, Next::Turn(1))));
        st.finish(3, ok(20, "b"), true, &Handoff::default());
        assert_eq!(st.ended, 1);
        let (f, out) = st.take(Next::Turn(1));
        assert_eq!(f, 1);
        let b = body_json(&out.body);
        assert_eq!(
            b["messages"],
            json!([{"role": "user", "content": "a0"},
                   {"role": "assistant", "content": "ref-a0"},
                   {"role": "user", "content": "a1"}])
        );
        assert_eq!(b["cache_salt"], "salt");
        assert_eq!(st.locate(2), (0, 2));
        assert_eq!(st.locate(3), (1, 0));
    }

    #[test]
    fn live_history_uses_the_engines_reply() {
        let mut st = Sessions::new(plan(History::Live, two_sessions(), None));
        st.take(Next::Start(0));
        st.outstanding += 1;
        st.finish(0, ok(5, "engine said"), true, &Handoff::default());
        let (_, out) = st.take(Next::Turn(1));
        let b = body_json(&out.body);
        assert_eq!(b["messages"][1]["content"], "engine said");
    }

    #[test]
    fn failed_turn_ends_the_session() {
        let mut st = Sessions::new(plan(History::Dataset, two_sessions(), Some(1)));
        st.take(Next::Start(0));
        st.outstanding += 1;
        assert_eq!(st.pick(), None, "session cap reached, nothing due");
        let mut bad = ok(7, "");
        bad.error = Some("HTTP 500: boom".into());
        st.finish(0, bad, true, &Handoff::default());
        assert_eq!(
            st.pick(),
            Some((10, Next::Start(1))),
            "the slot is free again"
        );
        assert!(st.due.is_empty());
        let recs = Records::from_finished(st.into_records("not sent: run cancelled"));
        assert_eq!(
            recs.error[1].as_deref(),
            Some("not sent: turn 0 of this session failed")
        );
        assert_eq!(recs.error[3].as_deref(), Some("not sent: run cancelled"));
        assert_eq!(recs.session_index, vec![0, 0, 0, 1]);
        assert_eq!(recs.turn_index, vec![0, 1, 2, 0]);
        assert_eq!(recs.intended_ns, vec![0, -1, -1, 10]);
    }

    #[test]
    fn a_session_can_start_mid_way_with_its_history() {
        for history in [History::Dataset, History::Live] {
            let mut sessions = two_sessions();
            sessions[0].start_turn = 1;
            let mut st = Sessions::new(plan(history, sessions, None));
            assert_eq!(st.first, vec![0, 2, 3], "turn 0 of session 0 is not sent");
            let (f, out) = st.take(Next::Start(0));
            assert_eq!(f, 0);
            assert_eq!(
                body_json(&out.body)["messages"],
                json!([{"role": "user", "content": "a0"},
                       {"role": "assistant", "content": "ref-a0"},
                       {"role": "user", "content": "a1"}])
            );
            st.outstanding += 1;
            assert_eq!(st.locate(0), (0, 1));
            st.finish(0, ok(1_000, "live1"), true, &Handoff::default());
            assert_eq!(st.intended[1], 1_000 + 1_000_000_000, "turn 2's think time");
            let (f, out) = st.take(Next::Turn(1));
            assert_eq!(f, 1);
            let answer = if history == History::Live {
                "live1"
            } else {
                "ref-a1"
            };
            assert_eq!(body_json(&out.body)["messages"][1]["content"], "ref-a0");
            assert_eq!(body_json(&out.body)["messages"][3]["content"], answer);
            let recs = Records::from_finished(st.into_records("not sent"));
            assert_eq!(recs.session_index, vec![0, 0, 1]);
            assert_eq!(recs.turn_index, vec![1, 2, 0]);
        }
    }

    #[test]
    fn due_saturates() {
        let s = &two_sessions()[0];
        assert_eq!(due_after(s, 2, 3), 1_000_000_003);
        assert_eq!(due_after(s, 0, i64::MAX - 1), i64::MAX - 1);
        assert_eq!(due_after(s, 9, 4), 4);
    }
}
