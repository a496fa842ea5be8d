//! A whole run: validate and prepare everything, then hand it to a dispatcher thread that owns
//! the tokio runtime and the HTTP client; the handle polls, cancels and waits for the records.

use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use tokio::sync::Semaphore;

use super::clock::{mono_ns, precise_timer_slack, sleep_until, unix_ns};
use super::config::{ConfigError, RunConfig};
use super::dispatch::Dispatcher;
use super::failure::secrets_of;
use super::feed::{BodySource, Feed, Pending, WINDOW};
use super::request::RequestCtx;
use super::session::{run_sessions, BodyMaker, SessionPlan};
use super::state::{Abort, Progress, RunState};
use super::warm::open_connections;
use crate::recorder::Records;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot start the run: {0}")]
    Start(String),
    /// A bug: the dispatcher thread panicked. What was not handed over yet is lost.
    #[error("internal error in the client, the run stopped (please report it): {0}")]
    Internal(String),
}

/// How the dispatcher thread ended: its records, or the message of its panic.
type Outcome = Result<Arc<Records>, String>;

/// Where the dispatcher thread leaves its outcome for `RunHandle::wait`.
type Slot = Arc<Ending>;

/// The run's outcome once it is in, and two ways to wait for it.
struct Ending {
    outcome: Mutex<Option<Outcome>>,
    arrived: Condvar,
    /// A socket pair whose read end turns readable when the outcome is in: a caller can wait
    /// for it in `select`/`poll`, which a signal interrupts (Python's Ctrl-C), where a
    /// condition variable's wait is not; no timed wake-ups are needed to stay responsive.
    done: (UnixStream, UnixStream),
}

impl Ending {
    fn new() -> std::io::Result<Slot> {
        Ok(Arc::new(Ending {
            outcome: Mutex::new(None),
            arrived: Condvar::new(),
            done: UnixStream::pair()?,
        }))
    }
}

/// A run in progress.
pub struct RunHandle {
    state: Arc<RunState>,
    result: Slot,
}

impl RunHandle {
    pub fn poll(&self) -> Progress {
        self.state.progress()
    }

    /// Stop dispatching; with `abort_in_flight` also cut off requests in flight.
    pub fn cancel(&self, abort_in_flight: bool) {
        if self.state.finished.load(Relaxed) {
            return;
        }
        self.state.cancelled.store(true, Relaxed);
        if abort_in_flight {
            self.state.abort(Abort::Cancel);
        } else {
            self.state.stop();
        }
    }

    /// Finished records not taken yet (a streamed run; empty otherwise), in record order.
    pub fn take_finished(&self) -> Records {
        self.state.handoff.take()
    }

    /// The records once the run has ended; `None` if `timeout` passes first. A streamed run's
    /// are those not taken by `take_finished` before it ended, and every unsent request.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<Result<Arc<Records>, RunError>> {
        let (lock, cv) = (&self.result.outcome, &self.result.arrived);
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let guard = match timeout {
            None => cv
                .wait_while(guard, |r| r.is_none())
                .unwrap_or_else(|e| e.into_inner()),
            Some(t) => {
                cv.wait_timeout_while(guard, t, |r| r.is_none())
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
        guard.clone().map(|o| o.map_err(RunError::Internal))
    }

    /// A descriptor that turns readable (and stays so) when the run has ended; valid while
    /// the handle lives.
    pub fn done_fd(&self) -> RawFd {
        self.result.done.0.as_raw_fd()
    }
}

/// Run the dispatcher thread's `body` and leave its outcome in `slot`. A panic (a bug) is
/// caught and becomes an internal error for `wait`, which would otherwise wait forever;
/// requests still in flight are aborted.
fn guarded(state: &RunState, slot: &Slot, body: impl FnOnce() -> Records) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body))
        .map(Arc::new)
        .map_err(|panic| {
            state.abort(Abort::Cancel);
            panic
                .downcast_ref::<&str>()
                .map(|m| m.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the dispatcher panicked".into())
        });
    state.finished.store(true, Relaxed);
    *slot.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
    slot.arrived.notify_all();
    // One byte into an empty socket buffer: cannot block, and nothing else is written there.
    let _ = (&slot.done.1).write_all(&[1]);
}

impl Drop for RunHandle {
    /// A dropped handle must not leave load running against a server.
    fn drop(&mut self) {
        if !self.state.finished.load(Relaxed) {
            self.state.abort(Abort::Cancel);
        }
    }
}

/// `idle`: kept-alive connections per host; 0 gives a client whose every request opens a
/// new connection (used to resend a request that met a connection the server had closed).
fn build_client(cfg: &RunConfig, idle: usize) -> Result<reqwest::Client, RunError> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in &cfg.headers {
        // Validated in RunConfig::validate; never format the value into an error.
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            return Err(RunError::Start(format!("invalid header {name:?}")));
        };
        headers.append(n, v);
    }
    // reqwest is built without a default TLS provider: ring is ours. Installing it again (a
    // second run in the same process) is refused harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = reqwest::Client::builder();
    // A plain-http run never verifies a certificate (redirects are refused), so it skips
    // loading the platform's trust store: about 5 ms of CPU per client, two clients per run.
    let plain = reqwest::Url::parse(&cfg.url_string()).is_ok_and(|u| u.scheme() == "http");
    let builder = if plain {
        builder.tls_certs_only(Vec::<reqwest::Certificate>::new())
    } else {
        builder
    };
    builder
        .default_headers(headers)
        .tls_danger_accept_invalid_certs(cfg.insecure)
        .http1_only()
        .tcp_nodelay(true)
        // A redirect is refused (the request fails, naming the target's origin): following one
        // could carry the API key and custom headers to another host, and turn a POST into a GET.
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(idle)
        .no_proxy()
        .build()
        .map_err(|e| RunError::Start(e.without_url().to_string()))
}

/// What the dispatcher sends: independent requests, or sessions.
enum Workload {
    Requests { intended: Vec<i64>, feed: Feed },
    Sessions(Box<SessionPlan>),
}

fn request_ids(
    prefix: &str,
    n: usize,
    numbers: Option<&[u64]>,
) -> Result<Vec<HeaderValue>, ConfigError> {
    (0..n)
        .map(|i| {
            let number = numbers
                .and_then(|ids| ids.get(i).copied())
                .unwrap_or(i as u64);
            HeaderValue::from_str(&format!("{prefix}{number}")).map_err(|_| ConfigError::Field {
                field: "request_id_prefix".into(),
                why: "not a valid header value".into(),
            })
        })
        .collect()
}

/// Every arrival, and every body and id up to the feed's window, prepared before t0 (later
/// requests are prepared ahead of the dispatcher; later session turns as earlier ones end).
fn prepare(cfg: &mut RunConfig) -> Result<Workload, ConfigError> {
    let intended = cfg.schedule.arrivals_ns(cfg.arrival_count())?;
    let total = cfg.total_requests();
    let Some(sessions) = cfg.sessions.take() else {
        let src = BodySource {
            api: cfg.api,
            model: cfg.model.clone(),
            opts: cfg.body.clone(),
            salt: cfg.salt_for(None),
            id_prefix: cfg.request_id_prefix.clone(),
            id_numbers: cfg.record_ids.take(),
        };
        let requests = Pending::new(
            std::mem::take(&mut cfg.requests),
            std::mem::take(&mut cfg.parts),
        );
        let feed = Feed::start(requests, src, WINDOW)?;
        return Ok(Workload::Requests { intended, feed });
    };
    let ids = request_ids(&cfg.request_id_prefix, total, cfg.record_ids.as_deref())?;
    let maker = BodyMaker {
        api: cfg.api,
        model: cfg.model.clone(),
        opts: cfg.body.clone(),
    };
    let salts: Vec<Option<String>> = sessions
        .iter()
        .enumerate()
        .map(|(i, s)| cfg.salt_for(Some(&s.id(i))))
        .collect();
    let header_values = sessions
        .iter()
        .enumerate()
        .map(|(i, s)| match &cfg.session_header {
            // Validated in RunConfig::validate; the error never shows the value.
            Some(_) => HeaderValue::from_str(&s.id(i))
                .map(Some)
                .map_err(|_| ConfigError::Field {
                    field: format!("sessions[{i}].session_id"),
                    why: "not a valid header value".into(),
                }),
            None => Ok(None),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let first_bodies = sessions
        .iter()
        .zip(&salts)
        .map(|(s, salt)| {
            let history: Vec<&str> = s.history_answers().collect();
            maker.turn(s, s.start_turn, &history, salt.as_deref())
        })
        .collect();
    Ok(Workload::Sessions(Box::new(SessionPlan {
        sessions,
        history: cfg.history,
        maker,
        starts_ns: intended,
        first_bodies,
        ids,
        header_values,
        salts,
        max_sessions: cfg.max_concurrent_sessions,
    })))
}

/// Sleep until the wall clock reads `at_unix_ns` (a cancel ends the wait): converted once to
/// the monotonic clock, which the dispatcher's precise sleep uses.
fn wait_for_wall_clock(at_unix_ns: i64, state: &RunState) {
    const SLICE_NS: i64 = 50_000_000;
    let deadline = mono_ns().saturating_add(at_unix_ns.saturating_sub(unix_ns()));
    while !state.stopped() && mono_ns() < deadline {
        sleep_until(deadline, SLICE_NS);
    }
}

/// Validate `json`, prepare every body, and start dispatching on a background thread.
pub fn start_run(json: &str) -> Result<RunHandle, RunError> {
    start_run_parts(json, Vec::new())
}

/// `start_run` with the requests (after those in `json`) given as JSON arrays in `parts`,
/// parsed as the run reaches them (`RequestParts`).
pub fn start_run_parts(json: &str, parts: Vec<String>) -> Result<RunHandle, RunError> {
    let mut cfg = RunConfig::from_json_parts(json, parts)?;
    let n = cfg.total_requests();
    let session_header = match &cfg.session_header {
        Some(h) => Some(
            HeaderName::from_bytes(h.as_bytes()).map_err(|_| ConfigError::Field {
                field: "session_header".into(),
                why: "invalid header name".into(),
            })?,
        ),
        None => None,
    };
    let workload = prepare(&mut cfg)?;
    let url = reqwest::Url::parse(&cfg.url_string()).map_err(|e| ConfigError::Field {
        field: "base_url".into(),
        why: e.to_string(),
    })?;
    let warm_url = reqwest::Url::parse(&cfg.warm_url_string()).map_err(|e| ConfigError::Field {
        field: "base_url".into(),
        why: e.to_string(),
    })?;
    // Tokio workers read the streams; the dispatcher keeps the schedule on its own thread.
    let threads = cfg.worker_threads();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("sonic-client")
        .enable_all()
        .build()
        .map_err(|e| RunError::Start(e.to_string()))?;
    // Sessions: at most one request in flight per session.
    let pool = match (cfg.max_concurrency, cfg.max_concurrent_sessions) {
        (Some(c), _) => c,
        (None, Some(s)) => s.min(n),
        (None, None) => n,
    };
    let (client, fresh) = {
        let _guard = rt.enter();
        (build_client(&cfg, pool.max(1))?, build_client(&cfg, 0)?)
    };
    let state = Arc::new(RunState::new(n as u64, cfg.stream_records));
    let result = Ending::new().map_err(|e| RunError::Start(e.to_string()))?;
    let handle = RunHandle {
        state: state.clone(),
        result: result.clone(),
    };
    let timeout = cfg.timeout();
    let secrets = secrets_of(&cfg.headers);
    let api = cfg.api;
    let max_concurrency = cfg.max_concurrency;
    let max_duration = cfg.max_duration_s;
    let warm = cfg.warm_connections.min(pool);
    let start_at = cfg.start_at_unix_ns;
    drop(cfg);
    std::thread::Builder::new()
        .name("sonic-dispatch".into())
        .spawn(move || {
            guarded(&state.clone(), &result, move || {
                precise_timer_slack();
                // Room for every connection the run may keep open, and some to spare.
                crate::descriptors::reserve(pool.saturating_add(64));
                if warm > 0 {
                    rt.block_on(open_connections(&client, &warm_url, warm));
                }
                if let Some(at) = start_at {
                    wait_for_wall_clock(at, &state);
                }
                let t0_unix = unix_ns();
                let t0 = mono_ns();
                state.t0_mono_ns.store(t0, Relaxed);
                let ctx = Arc::new(RequestCtx {
                    client,
                    fresh,
                    url,
                    api,
                    timeout,
                    secrets,
                    t0_mono_ns: t0,
                    session_header,
                });
                let deadline_abs_ns = max_duration.map(|d| t0 + (d * 1e9) as i64);
                if let Some(d) = max_duration {
                    let st = state.clone();
                    rt.spawn(async move {
                        tokio::time::sleep(Duration::from_secs_f64(d)).await;
                        if st.in_flight.load(Relaxed) > 0 || st.dispatched.load(Relaxed) < st.total
                        {
                            st.deadline_reached.store(true, Relaxed);
                            st.abort(Abort::Deadline);
                        }
                    });
                }
                let dispatcher = Dispatcher {
                    rt: rt.handle(),
                    state: &state,
                    ctx,
                    semaphore: max_concurrency.map(|c| Arc::new(Semaphore::new(c))),
                    deadline_abs_ns,
                };
                let kept = match workload {
                    Workload::Requests { intended, feed } => dispatcher.run(&intended, feed),
                    Workload::Sessions(plan) => run_sessions(&dispatcher, *plan),
                };
                let mut records = Records::from_finished(kept);
                drop(dispatcher);
                rt.shutdown_background();
                records.t0_unix_ns = t0_unix;
                records.t0_mono_ns = t0;
                records.cancelled = state.cancelled.load(Relaxed);
                records.deadline_reached = state.deadline_reached.load(Relaxed);
                records.client_threads = threads;
                records
            })
        })
        .map_err(|e| RunError::Start(e.to_string()))?;
    Ok(handle)
}

#[cfg(test)]
mod guard_tests {
    use super::*;

    fn slot() -> Slot {
        Ending::new().expect("a socket pair")
    }

    fn readable(fd: RawFd) -> bool {
        let mut pfd = [libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd, no timeout.
        unsafe { libc::poll(pfd.as_mut_ptr(), 1, 0) == 1 }
    }

    #[test]
    fn a_panic_on_the_dispatcher_thread_ends_the_wait_with_an_internal_error() {
        let state = Arc::new(RunState::new(3, false));
        let handle = RunHandle {
            state: state.clone(),
            result: slot(),
        };
        let result = handle.result.clone();
        let thread = std::thread::spawn(move || {
            guarded(&state, &result, || panic!("index out of bounds in a test"));
        });
        let got = handle.wait(Some(Duration::from_secs(10)));
        thread.join().expect("the guard does not unwind");
        match got {
            Some(Err(RunError::Internal(m))) => assert!(m.contains("index out of bounds"), "{m}"),
            other => panic!(
                "expected an internal error, got {:?}",
                other.map(|r| r.is_ok())
            ),
        }
        assert!(handle.state.finished.load(Relaxed));
        assert!(handle.state.stopped(), "requests in flight are aborted");
    }

    #[test]
    fn a_normal_end_leaves_the_records() {
        let state = Arc::new(RunState::new(0, false));
        let result = slot();
        let handle = RunHandle { state, result };
        assert!(!readable(handle.done_fd()), "not readable before the end");
        guarded(&handle.state, &handle.result, Records::default);
        assert!(
            readable(handle.done_fd()),
            "readable once the outcome is in"
        );
        assert!(matches!(handle.wait(None), Some(Ok(_))));
    }
}
