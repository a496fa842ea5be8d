//! Request bodies prepared ahead of the dispatcher in bounded memory: the first `WINDOW`
//! before t0 (a run that small is prepared whole before it starts), the rest by a thread of
//! its own that stays at most `WINDOW` requests ahead. A run of millions of requests never
//! holds every body at once, and the dispatcher never serialises JSON; a preparer that falls
//! behind (it builds a body in about a microsecond) would show as dispatch lag.

use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};

use bytes::Bytes;
use reqwest::header::HeaderValue;

use super::body::body_bytes;
use super::config::{ApiKind, BodyOptions, ConfigError, RequestParts, RequestSpec};

/// Requests prepared ahead of the dispatcher.
pub const WINDOW: usize = 16_384;

/// What a body and an id are made from.
pub struct BodySource {
    pub api: ApiKind,
    pub model: String,
    pub opts: BodyOptions,
    pub salt: Option<String>,
    pub id_prefix: String,
    /// The number in each `x-request-id` (None: the request's index).
    pub id_numbers: Option<Vec<u64>>,
}

/// A request ready to send: its body and `x-request-id`.
pub type Ready = (Bytes, HeaderValue);

impl BodySource {
    fn id(&self, i: usize) -> HeaderValue {
        let number = self
            .id_numbers
            .as_ref()
            .and_then(|ids| ids.get(i).copied())
            .unwrap_or(i as u64);
        // The prefix was checked by `Feed::start`; digits after it keep the value valid.
        HeaderValue::from_str(&format!("{}{number}", self.id_prefix))
            .unwrap_or_else(|_| HeaderValue::from_static("sonic-invalid-id"))
    }

    fn make(&self, i: usize, r: &RequestSpec) -> Ready {
        let body = body_bytes(self.api, &self.model, &self.opts, r, self.salt.as_deref());
        (body, self.id(i))
    }
}

/// The prepared requests in send order.
pub struct Feed {
    head: std::vec::IntoIter<Ready>,
    rest: Option<Receiver<Ready>>,
}

/// The requests in send order: those parsed with the configuration, then each part of
/// `RequestParts` parsed when it is reached (and its text dropped).
pub struct Pending {
    current: std::vec::IntoIter<RequestSpec>,
    parts: std::vec::IntoIter<String>,
    /// Requests not yet taken.
    left: usize,
}

impl Pending {
    pub fn new(requests: Vec<RequestSpec>, parts: RequestParts) -> Self {
        Self {
            left: requests.len() + parts.count,
            current: requests.into_iter(),
            parts: parts.parts.into_iter(),
        }
    }
}

impl Iterator for Pending {
    type Item = RequestSpec;

    fn next(&mut self) -> Option<RequestSpec> {
        loop {
            if let Some(r) = self.current.next() {
                self.left = self.left.saturating_sub(1);
                return Some(r);
            }
            // Checked when the run started; a part that no longer parses (impossible) ends
            // the feed, and its requests are recorded as not sent.
            let part = self.parts.next()?;
            self.current = RequestParts::parse(&part, 0).ok()?.into_iter();
        }
    }
}

impl Feed {
    /// Prepare the first `window` requests now; a thread prepares the others as the
    /// dispatcher takes them.
    pub fn start(
        mut requests: Pending,
        src: BodySource,
        window: usize,
    ) -> Result<Self, ConfigError> {
        if HeaderValue::from_str(&format!("{}0", src.id_prefix)).is_err() {
            return Err(ConfigError::Field {
                field: "request_id_prefix".into(),
                why: "not a valid header value".into(),
            });
        }
        let window = window.max(1);
        let head: Vec<Ready> = requests
            .by_ref()
            .take(window)
            .enumerate()
            .map(|(i, r)| src.make(i, &r))
            .collect();
        let first = head.len();
        let rest = if requests.left == 0 {
            None
        } else {
            let (tx, rx) = sync_channel(window);
            std::thread::Builder::new()
                .name("sonic-prepare".into())
                .spawn(move || {
                    for (next, r) in (first..).zip(requests) {
                        // A stopped run drops the receiver: nothing more to prepare.
                        if tx.send(src.make(next, &r)).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| ConfigError::Field {
                    field: "requests".into(),
                    why: format!("cannot start the thread that prepares them: {e}"),
                })?;
            Some(rx)
        };
        Ok(Self {
            head: head.into_iter(),
            rest,
        })
    }
}

/// The preparer has not made the next request yet.
pub struct Behind;

impl Feed {
    /// The next request if it is ready now (`Ok(None)`: there are no more).
    pub fn try_next(&mut self) -> Result<Option<Ready>, Behind> {
        if let Some(r) = self.head.next() {
            return Ok(Some(r));
        }
        match self.rest.as_ref().map(|rx| rx.try_recv()) {
            None | Some(Err(TryRecvError::Disconnected)) => Ok(None),
            Some(Ok(r)) => Ok(Some(r)),
            Some(Err(TryRecvError::Empty)) => Err(Behind),
        }
    }
}

impl Iterator for Feed {
    type Item = Ready;

    fn next(&mut self) -> Option<Ready> {
        self.head
            .next()
            .or_else(|| self.rest.as_ref().and_then(|rx| rx.recv().ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(prefix: &str) -> BodySource {
        BodySource {
            api: ApiKind::Completions,
            model: "m".into(),
            opts: BodyOptions::plain(),
            salt: None,
            id_prefix: prefix.into(),
            id_numbers: None,
        }
    }

    fn specs(n: usize) -> Vec<RequestSpec> {
        (0..n)
            .map(|i| RequestSpec {
                prompt: Some(format!("p{i}")),
                messages: None,
                max_tokens: Some(4),
            })
            .collect()
    }

    fn requests(n: usize) -> Pending {
        Pending::new(specs(n), RequestParts::default())
    }

    /// Requests 3..12 as JSON parts of 2, 0 and 7 requests.
    fn parts_from_3() -> RequestParts {
        let parts = [(3, 5), (5, 5), (5, 12)]
            .iter()
            .map(|&(a, b)| {
                let items: Vec<String> = (a..b)
                    .map(|i| format!(r#"{{"prompt":"p{i}","max_tokens":4}}"#))
                    .collect();
                format!("[{}]", items.join(","))
            })
            .collect();
        RequestParts { parts, count: 9 }
    }

    #[test]
    fn parts_follow_the_parsed_requests_in_order() {
        assert_eq!(Pending::new(specs(3), parts_from_3()).left, 12);
        for window in [1, 4, 100] {
            let pending = Pending::new(specs(3), parts_from_3());
            let got: Vec<Ready> = Feed::start(pending, source("r-"), window)
                .unwrap()
                .collect();
            assert_in_order(&got, 12);
        }
    }

    /// `n` prepared requests: ids `r-0`, `r-1`, … and prompts `p0`, `p1`, … in that order.
    fn assert_in_order(got: &[Ready], n: usize) {
        assert_eq!(got.len(), n);
        for (i, (body, id)) in got.iter().enumerate() {
            assert_eq!(id.to_str().unwrap(), format!("r-{i}"));
            let v: serde_json::Value = serde_json::from_slice(body).unwrap();
            assert_eq!(v["prompt"], format!("p{i}"));
        }
    }

    #[test]
    fn try_next_gives_the_same_order_and_says_when_the_preparer_is_behind() {
        let mut feed = Feed::start(requests(23), source("r-"), 5).unwrap();
        let mut got = Vec::new();
        loop {
            match feed.try_next() {
                Ok(Some(r)) => got.push(r),
                Ok(None) => break,
                Err(Behind) => std::thread::yield_now(),
            }
        }
        assert_in_order(&got, 23);
        assert!(matches!(feed.try_next(), Ok(None)), "stays at the end");
    }

    #[test]
    fn every_request_in_order_past_the_window() {
        let feed = Feed::start(requests(23), source("r-"), 5).unwrap();
        let got: Vec<Ready> = feed.collect();
        assert_in_order(&got, 23);
    }

    #[test]
    fn a_small_run_is_prepared_whole_before_it_starts() {
        let feed = Feed::start(requests(3), source(""), 5).unwrap();
        assert!(feed.rest.is_none());
        assert_eq!(feed.count(), 3);
    }

    #[test]
    fn a_dropped_feed_stops_its_thread() {
        let mut feed = Feed::start(requests(1000), source(""), 2).unwrap();
        assert!(feed.next().is_some());
        drop(feed); // the preparer's next send fails and it returns
    }

    #[test]
    fn a_bad_prefix_is_refused() {
        assert!(Feed::start(requests(1), source("bad\n"), 5).is_err());
    }
}
