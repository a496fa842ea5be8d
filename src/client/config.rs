//! The run configuration handed over by Python (`sonic.client.RunConfig` as JSON).
//!
//! Unknown fields are refused (a typo must not silently change a benchmark) and every error
//! names the offending field's path, e.g. `requests[3].max_tokens: invalid type …`.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::schedule::{ScheduleError, ScheduleSpec};

/// Which request/response format the endpoint speaks (decided in Python by the endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiKind {
    Completions,
    Chat,
    Tgi,
    Trtllm,
}

/// Body fields shared by every request (already merged by Python's `RunArgs.static_body`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BodyOptions {
    /// Output-length field; dotted for nested fields (TGI `parameters.max_new_tokens`).
    pub max_tokens_field: String,
    #[serde(default)]
    pub include_usage: bool,
    #[serde(default)]
    pub ignore_eos: Option<bool>,
    #[serde(default)]
    pub fields: Map<String, Value>,
    #[serde(default)]
    pub extra_body: Map<String, Value>,
}

#[cfg(test)]
impl BodyOptions {
    /// `max_tokens` and nothing else (unit tests).
    pub fn plain() -> Self {
        Self {
            max_tokens_field: "max_tokens".into(),
            include_usage: false,
            ignore_eos: None,
            fields: Map::new(),
            extra_body: Map::new(),
        }
    }
}

/// Where the assistant turns of a session's history come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum History {
    /// The dataset's reference answers: byte-identical prompts for every engine.
    #[default]
    Dataset,
    /// The text this engine returned for the earlier turns.
    Live,
}

/// One turn of a session: the user's text and the dataset's reply to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnSpec {
    pub content: String,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// The dataset's assistant reply (history in `History::Dataset`).
    #[serde(default)]
    pub reference_answer: String,
    /// Wait after the previous turn ended before this one is due (unused for turn 0).
    #[serde(default)]
    pub think_s: f64,
}

/// A conversation: turns sent one after another, each carrying the history before it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSpec {
    pub turns: Vec<TurnSpec>,
    #[serde(default)]
    pub system: Option<String>,
    /// Stable id (session header value, cache salt); empty = the session's index.
    #[serde(default)]
    pub session_id: String,
    /// First turn sent: the turns before it are history only (their text and reference
    /// answers open every request, none is sent). MAX's warm-started sessions begin mid-way.
    #[serde(default)]
    pub start_turn: usize,
}

impl SessionSpec {
    /// Turns this session sends (from `start_turn` on).
    pub fn sent_turns(&self) -> usize {
        self.turns.len().saturating_sub(self.start_turn)
    }

    /// The reference answers of the history-only turns before `start_turn`.
    pub fn history_answers(&self) -> impl Iterator<Item = &str> {
        self.turns[..self.start_turn.min(self.turns.len())]
            .iter()
            .map(|t| t.reference_answer.as_str())
    }

    /// The id sent for session `index`: its own, else the index in decimal.
    pub fn id(&self, index: usize) -> String {
        if self.session_id.is_empty() {
            index.to_string()
        } else {
            self.session_id.clone()
        }
    }
}

/// One request of the workload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub messages: Option<Vec<Value>>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
}

impl RequestSpec {
    /// Request `index` has what its API needs to build a body.
    fn check(&self, api: ApiKind, index: usize) -> Result<(), ConfigError> {
        let ok = match api {
            ApiKind::Chat => self.prompt.is_some() || self.messages.is_some(),
            _ => self.prompt.is_some(),
        };
        if ok {
            return Ok(());
        }
        let need = if api == ApiKind::Chat {
            "a prompt or messages"
        } else {
            "a prompt"
        };
        Err(field(
            format!("requests[{index}]"),
            format!("the {api:?} API needs {need}").to_lowercase(),
        ))
    }
}

/// Requests given apart from the configuration, as JSON arrays (a long run's workload in
/// parts): each part is checked when the run starts and parsed again only when the feed
/// reaches it, so the parsed requests of a run of millions never exist at once (parsed, a
/// short prompt takes about twice its JSON).
#[derive(Debug, Clone, Default)]
pub struct RequestParts {
    pub parts: Vec<String>,
    /// Requests over all parts.
    pub count: usize,
}

impl RequestParts {
    /// Parse one part whose first request is request `base` of the run; errors name the
    /// request by its index in the run (`requests[12345].max_tokens: ...`).
    pub fn parse(part: &str, base: usize) -> Result<Vec<RequestSpec>, ConfigError> {
        let de = &mut serde_json::Deserializer::from_str(part);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            let at = path
                .strip_prefix('[')
                .and_then(|p| p.split_once(']'))
                .and_then(|(i, rest)| Some((base + i.parse::<usize>().ok()?, rest)));
            ConfigError::Parse(match at {
                Some((i, rest)) => format!("requests[{i}]{rest}: {inner}"),
                None => format!("requests (from request {base}): {inner}"),
            })
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub base_url: String,
    pub endpoint: String,
    pub api: ApiKind,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub request_id_prefix: String,
    /// Whole-request timeout; `None` = 6 h (vLLM's aiohttp default).
    #[serde(default)]
    pub timeout_s: Option<f64>,
    pub body: BodyOptions,
    /// Independent requests; empty when the workload is `sessions`.
    #[serde(default)]
    pub requests: Vec<RequestSpec>,
    /// More requests, after `requests`, given in parts (`from_json_parts`).
    #[serde(skip)]
    pub parts: RequestParts,
    /// Multi-turn sessions (exclusive with `requests`); see `client::session`.
    #[serde(default)]
    pub sessions: Option<Vec<SessionSpec>>,
    #[serde(default)]
    pub history: History,
    /// Header carrying each session's id (e.g. `X-Session-ID`).
    #[serde(default)]
    pub session_header: Option<String>,
    /// Sessions active at once; a session waiting for a slot keeps its intended start.
    #[serde(default)]
    pub max_concurrent_sessions: Option<usize>,
    /// Body field `cache_salt` of every request (chat/completions).
    #[serde(default)]
    pub cache_salt: Option<String>,
    /// `cache_salt` = the session's id (prefixed `{cache_salt}:` when both are set).
    #[serde(default)]
    pub session_id_as_cache_salt: bool,
    pub schedule: ScheduleSpec,
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    #[serde(default)]
    pub max_duration_s: Option<f64>,
    /// https without certificate checks (vLLM's `--insecure`).
    #[serde(default)]
    pub insecure: bool,
    /// Connections opened (a GET of `{base_url}/health` each) before t0, at most the pool size.
    #[serde(default)]
    pub warm_connections: usize,
    /// Tokio worker threads of the client; `None` = [`default_client_threads`].
    #[serde(default)]
    pub client_threads: Option<usize>,
    /// The number each record's `x-request-id` carries after the prefix (default: its index):
    /// a worker running a share of a larger run keeps the run's global ids.
    #[serde(default)]
    pub record_ids: Option<Vec<u64>>,
    /// Take t0 at this wall-clock instant (ns since the epoch), after the connections are warm:
    /// the workers of one run start together. In the past: at once.
    #[serde(default)]
    pub start_at_unix_ns: Option<i64>,
    /// Hand finished records over while the run goes (`RunHandle::take_finished`) instead of
    /// keeping them all until it ends: memory holds only what is in flight.
    #[serde(default)]
    pub stream_records: bool,
}

/// How far ahead `start_at_unix_ns` may lie.
pub const MAX_START_DELAY_NS: i64 = 3_600 * 1_000_000_000;

/// More worker threads than this only adds contention.
pub const MAX_CLIENT_THREADS: usize = 256;
/// The default's bound: past a few cores the dispatcher, not the workers, limits a client.
pub const DEFAULT_CLIENT_THREADS_MAX: usize = 16;

/// The host's available cores (its cgroup/affinity share), between 1 and
/// [`DEFAULT_CLIENT_THREADS_MAX`].
pub fn default_client_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, DEFAULT_CLIENT_THREADS_MAX)
}

/// More warm connections than this is a mistake, not a warm-up.
pub const MAX_WARM_CONNECTIONS: usize = 4096;

pub const DEFAULT_TIMEOUT_S: f64 = 6.0 * 3600.0;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid run configuration: {0}")]
    Parse(String),
    #[error("invalid run configuration: {0}")]
    Schedule(#[from] ScheduleError),
    #[error("invalid run configuration: {field}: {why}")]
    Field { field: String, why: String },
}

fn field(field: impl Into<String>, why: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field: field.into(),
        why: why.into(),
    }
}

impl RunConfig {
    /// Parse and validate; the error names the field (`path: reason`).
    pub fn from_json(json: &str) -> Result<Self, ConfigError> {
        Self::from_json_parts(json, Vec::new())
    }

    /// Parse and validate a configuration whose requests (after those in `json`, if any)
    /// are the JSON arrays in `parts`, in order. Each part is parsed here to check it and
    /// dropped; the feed parses it again when it gets there (`RequestParts`).
    pub fn from_json_parts(json: &str, parts: Vec<String>) -> Result<Self, ConfigError> {
        let mut cfg = Self::parse(json)?;
        let mut count = 0;
        for part in &parts {
            let base = cfg.requests.len() + count;
            let requests = RequestParts::parse(part, base)?;
            for (i, r) in requests.iter().enumerate() {
                r.check(cfg.api, base + i)?;
            }
            count += requests.len();
        }
        cfg.parts = RequestParts { parts, count };
        cfg.validate()?;
        Ok(cfg)
    }

    fn parse(json: &str) -> Result<Self, ConfigError> {
        let de = &mut serde_json::Deserializer::from_str(json);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            ConfigError::Parse(if path == "." {
                inner
            } else {
                format!("{path}: {inner}")
            })
        })
    }

    /// The worker threads this run uses.
    pub fn worker_threads(&self) -> usize {
        self.client_threads.unwrap_or_else(default_client_threads)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(t) = self.client_threads {
            if t == 0 || t > MAX_CLIENT_THREADS {
                return Err(field(
                    "client_threads",
                    format!("must be between 1 and {MAX_CLIENT_THREADS}, got {t}"),
                ));
            }
        }
        let url = self.url_string();
        match reqwest::Url::parse(&url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            Ok(u) => {
                return Err(field(
                    "base_url",
                    format!("unsupported scheme {:?}", u.scheme()),
                ))
            }
            Err(e) => return Err(field("base_url", format!("not a valid URL ({e})"))),
        }
        if let Some(t) = self.timeout_s {
            if !(t.is_finite() && t > 0.0) {
                return Err(field("timeout_s", format!("must be positive, got {t}")));
            }
        }
        if let Some(d) = self.max_duration_s {
            if !(d.is_finite() && d > 0.0) {
                return Err(field(
                    "max_duration_s",
                    format!("must be positive, got {d}"),
                ));
            }
        }
        if self.warm_connections > MAX_WARM_CONNECTIONS {
            return Err(field(
                "warm_connections",
                format!(
                    "at most {MAX_WARM_CONNECTIONS}, got {}",
                    self.warm_connections
                ),
            ));
        }
        if self.max_concurrency == Some(0) {
            return Err(field("max_concurrency", "must be at least 1"));
        }
        if let Some(ids) = &self.record_ids {
            let n = self.total_requests();
            if ids.len() != n {
                return Err(field(
                    "record_ids",
                    format!("{} ids for {n} records", ids.len()),
                ));
            }
        }
        if let Some(at) = self.start_at_unix_ns {
            if at.saturating_sub(super::clock::unix_ns()) > MAX_START_DELAY_NS {
                return Err(field("start_at_unix_ns", "more than an hour ahead"));
            }
        }
        if self.body.max_tokens_field.is_empty()
            || self.body.max_tokens_field.split('.').any(str::is_empty)
        {
            return Err(field(
                "body.max_tokens_field",
                "must be a field name (dotted for nested fields)",
            ));
        }
        for (i, (name, value)) in self.headers.iter().enumerate() {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(field(format!("headers[{i}]"), "invalid header name"));
            }
            // Never echo the value: it may be an API key.
            if reqwest::header::HeaderValue::from_str(value).is_err() {
                return Err(field(
                    format!("headers[{i}]"),
                    format!("invalid value for header {name:?}"),
                ));
            }
        }
        self.validate_sessions()?;
        for (i, r) in self.requests.iter().enumerate() {
            r.check(self.api, i)?;
        }
        // The requests in parts were checked as they were counted (`from_json_parts`).
        self.schedule.validate()?;
        Ok(())
    }

    /// Session fields: only with sessions, each value usable (header values, think times).
    fn validate_sessions(&self) -> Result<(), ConfigError> {
        if let Some(salt) = &self.cache_salt {
            if salt.is_empty() {
                return Err(field("cache_salt", "must not be empty (leave it unset)"));
            }
        }
        if (self.cache_salt.is_some() || self.session_id_as_cache_salt)
            && !matches!(self.api, ApiKind::Chat | ApiKind::Completions)
        {
            let name = if self.cache_salt.is_some() {
                "cache_salt"
            } else {
                "session_id_as_cache_salt"
            };
            return Err(field(
                name,
                format!(
                    "the {} API has no cache_salt field",
                    format!("{:?}", self.api).to_lowercase()
                ),
            ));
        }
        let Some(sessions) = &self.sessions else {
            let only = [
                ("session_header", self.session_header.is_some()),
                (
                    "max_concurrent_sessions",
                    self.max_concurrent_sessions.is_some(),
                ),
                ("session_id_as_cache_salt", self.session_id_as_cache_salt),
                ("history", self.history == History::Live),
            ];
            if let Some((name, _)) = only.iter().find(|(_, set)| *set) {
                return Err(field(*name, "applies only to a run of sessions"));
            }
            return Ok(());
        };
        if !self.requests.is_empty() || self.parts.count > 0 {
            return Err(field(
                "sessions",
                "give either requests or sessions, not both",
            ));
        }
        if self.max_concurrent_sessions == Some(0) {
            return Err(field("max_concurrent_sessions", "must be at least 1"));
        }
        if let Some(h) = &self.session_header {
            if reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(field(
                    "session_header",
                    format!("invalid header name {h:?}"),
                ));
            }
        }
        for (i, s) in sessions.iter().enumerate() {
            if s.turns.is_empty() {
                return Err(field(
                    format!("sessions[{i}].turns"),
                    "a session needs at least one turn",
                ));
            }
            if s.start_turn >= s.turns.len() {
                return Err(field(
                    format!("sessions[{i}].start_turn"),
                    format!(
                        "must be below the session's {} turns, got {}",
                        s.turns.len(),
                        s.start_turn
                    ),
                ));
            }
            for (k, t) in s.turns.iter().enumerate() {
                if !(t.think_s.is_finite() && t.think_s >= 0.0) {
                    return Err(field(
                        format!("sessions[{i}].turns[{k}].think_s"),
                        format!("must be a finite number >= 0, got {}", t.think_s),
                    ));
                }
            }
            if self.session_header.is_some()
                && reqwest::header::HeaderValue::from_str(&s.id(i)).is_err()
            {
                return Err(field(
                    format!("sessions[{i}].session_id"),
                    "not a valid header value (session_header is set)",
                ));
            }
        }
        Ok(())
    }

    /// Number of records the run produces: requests, or turns over all sessions.
    pub fn total_requests(&self) -> usize {
        match &self.sessions {
            Some(s) => s.iter().map(SessionSpec::sent_turns).sum(),
            None => self.requests.len() + self.parts.count,
        }
    }

    /// Arrivals the schedule draws: one per request, or one per session start.
    pub fn arrival_count(&self) -> usize {
        match &self.sessions {
            Some(s) => s.len(),
            None => self.requests.len() + self.parts.count,
        }
    }

    /// The `cache_salt` body value of a request of session `id` (None: not sent).
    pub fn salt_for(&self, session_id: Option<&str>) -> Option<String> {
        match (
            session_id.filter(|_| self.session_id_as_cache_salt),
            &self.cache_salt,
        ) {
            (Some(id), Some(salt)) => Some(format!("{salt}:{id}")),
            (Some(id), None) => Some(id.to_string()),
            (None, salt) => salt.clone(),
        }
    }

    /// base_url + endpoint, without a doubled slash.
    pub fn url_string(&self) -> String {
        let base = self.base_url.trim_end_matches('/');
        if self.endpoint.is_empty() || self.endpoint.starts_with('/') {
            format!("{base}{}", self.endpoint)
        } else {
            format!("{base}/{}", self.endpoint)
        }
    }

    /// Where connections are opened before t0: the server's health check, on the run's host.
    pub fn warm_url_string(&self) -> String {
        format!("{}/health", self.base_url.trim_end_matches('/'))
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample_json() -> Value {
        serde_json::json!({
            "base_url": "http://127.0.0.1:8000",
            "endpoint": "/v1/completions",
            "api": "completions",
            "model": "m",
            "headers": [["Authorization", "Bearer sk-secret"]],
            "request_id_prefix": "bench-",
            "timeout_s": 10.0,
            "body": {"max_tokens_field": "max_tokens", "include_usage": true,
                     "ignore_eos": null, "fields": {}, "extra_body": {}},
            "requests": [{"prompt": "hi", "messages": null, "max_tokens": 4}],
            "schedule": {"request_rate": null, "burstiness": 1.0, "ramp_up": null,
                         "convention": "precomputed", "seed": 0},
            "max_concurrency": null,
            "max_duration_s": null
        })
    }

    fn err_of(v: Value) -> String {
        RunConfig::from_json(&v.to_string())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn requests_in_parts_are_counted_checked_and_named_by_their_index_in_the_run() {
        let head = sample_json().to_string(); // one request of its own
        let parts = vec![
            r#"[{"prompt":"a"},{"prompt":"b","max_tokens":3}]"#.to_string(),
            "[]".to_string(),
            r#"[{"prompt":"c"}]"#.to_string(),
        ];
        let c = RunConfig::from_json_parts(&head, parts.clone()).unwrap();
        assert_eq!(
            (c.total_requests(), c.arrival_count(), c.parts.count),
            (4, 4, 3)
        );
        let mut bad = parts.clone();
        bad[2] = r#"[{"prompt":"c","max_tokens":-1}]"#.into();
        let e = RunConfig::from_json_parts(&head, bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("requests[3].max_tokens"), "{e}");
        let mut bad = parts.clone();
        bad[0] = r#"[{"prompt":"a"},{"max_tokens":3}]"#.into();
        let e = RunConfig::from_json_parts(&head, bad)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("requests[2]") && e.contains("needs a prompt"),
            "{e}"
        );
        let mut v = sample_json();
        v["record_ids"] = serde_json::json!([7, 8, 9, 10]);
        assert!(RunConfig::from_json_parts(&v.to_string(), parts.clone()).is_ok());
        let mut v = sessions_json();
        v["requests"] = serde_json::json!([]);
        let e = RunConfig::from_json_parts(&v.to_string(), parts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not both"), "{e}");
    }

    #[test]
    fn parses_sample() {
        let c = RunConfig::from_json(&sample_json().to_string()).unwrap();
        assert_eq!(c.api, ApiKind::Completions);
        assert_eq!(c.url_string(), "http://127.0.0.1:8000/v1/completions");
    }

    #[test]
    fn client_threads_default_to_the_host_and_are_bounded() {
        let c = RunConfig::from_json(&sample_json().to_string()).unwrap();
        let d = default_client_threads();
        assert!((1..=DEFAULT_CLIENT_THREADS_MAX).contains(&d));
        assert_eq!(c.worker_threads(), d);
        let mut v = sample_json();
        v["client_threads"] = Value::from(3);
        assert_eq!(
            RunConfig::from_json(&v.to_string())
                .unwrap()
                .worker_threads(),
            3
        );
        for bad in [0, MAX_CLIENT_THREADS + 1] {
            let mut v = sample_json();
            v["client_threads"] = Value::from(bad);
            let e = err_of(v);
            assert!(
                e.contains("client_threads") && e.contains("between 1 and"),
                "{e}"
            );
        }
    }

    #[test]
    fn record_ids_must_cover_every_record_and_the_start_be_near() {
        let mut v = sample_json();
        v["record_ids"] = serde_json::json!([7, 9]);
        let e = err_of(v);
        assert!(
            e.contains("record_ids") && e.contains("2 ids for 1 records"),
            "{e}"
        );
        let mut v = sample_json();
        v["record_ids"] = serde_json::json!([7]);
        v["start_at_unix_ns"] = Value::from(super::super::clock::unix_ns() + 1_000_000);
        assert!(RunConfig::from_json(&v.to_string()).is_ok());
        v["start_at_unix_ns"] =
            Value::from(super::super::clock::unix_ns() + 2 * MAX_START_DELAY_NS);
        assert!(err_of(v).contains("start_at_unix_ns"));
    }

    #[test]
    fn errors_name_the_field() {
        let mut v = sample_json();
        v["requests"][0]["max_tokens"] = Value::from("x");
        assert!(err_of(v).contains("requests[0].max_tokens"));
        let mut v = sample_json();
        v["schedule"]["sead"] = Value::from(1);
        let e = err_of(v);
        assert!(e.contains("schedule") && e.contains("sead"), "{e}");
        let mut v = sample_json();
        v["api"] = Value::from("grpc");
        assert!(err_of(v).contains("api"));
        let mut v = sample_json();
        v["schedule"]["request_rate"] = Value::from(-1.0);
        assert!(err_of(v).contains("schedule.request_rate"));
        let mut v = sample_json();
        v["max_concurrency"] = Value::from(0);
        assert!(err_of(v).contains("max_concurrency"));
        let mut v = sample_json();
        v["requests"][0]["prompt"] = Value::Null;
        assert!(err_of(v).contains("requests[0]"));
        let mut v = sample_json();
        v["headers"][0][1] = Value::from("sk-secret\n");
        let e = err_of(v);
        assert!(e.contains("headers[0]") && !e.contains("sk-secret"), "{e}");
    }

    fn sessions_json() -> Value {
        let mut v = sample_json();
        v["api"] = Value::from("chat");
        v["endpoint"] = Value::from("/v1/chat/completions");
        v["requests"] = serde_json::json!([]);
        v["sessions"] = serde_json::json!([
            {"turns": [{"content": "a", "max_tokens": 3},
                       {"content": "b", "reference_answer": "x", "think_s": 0.5}],
             "system": "s", "session_id": "sess-1"},
            {"turns": [{"content": "c"}]}
        ]);
        v["history"] = Value::from("live");
        v["session_header"] = Value::from("X-Session-ID");
        v["max_concurrent_sessions"] = Value::from(2);
        v["cache_salt"] = Value::from("run7");
        v["session_id_as_cache_salt"] = Value::from(true);
        v
    }

    #[test]
    fn parses_sessions() {
        let c = RunConfig::from_json(&sessions_json().to_string()).unwrap();
        assert_eq!(c.history, History::Live);
        assert_eq!((c.total_requests(), c.arrival_count()), (3, 2));
        let s = c.sessions.as_ref().unwrap();
        assert_eq!(s[0].turns[1].think_s, 0.5);
        assert_eq!((s[0].id(0), s[1].id(1)), ("sess-1".into(), "1".into()));
        assert_eq!(c.salt_for(Some("sess-1")).as_deref(), Some("run7:sess-1"));
        assert_eq!(c.salt_for(None).as_deref(), Some("run7"));
        let mut v = sessions_json();
        v["cache_salt"] = Value::Null;
        let c = RunConfig::from_json(&v.to_string()).unwrap();
        assert_eq!(c.salt_for(Some("sess-1")).as_deref(), Some("sess-1"));
        v["session_id_as_cache_salt"] = Value::from(false);
        let c = RunConfig::from_json(&v.to_string()).unwrap();
        assert_eq!(c.salt_for(Some("sess-1")), None);
    }

    #[test]
    fn session_errors_name_the_field() {
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "/requests",
                serde_json::json!([{"prompt": "p"}]),
                "sessions: give either",
            ),
            ("/history", Value::from("replay"), "history"),
            (
                "/sessions/0/turns",
                serde_json::json!([]),
                "sessions[0].turns",
            ),
            (
                "/sessions/0/turns/1/think_s",
                Value::from(-1.0),
                "sessions[0].turns[1].think_s",
            ),
            ("/sessions/0/turns/0/contnt", Value::from("x"), "contnt"),
            (
                "/session_header",
                Value::from("bad header"),
                "session_header",
            ),
            (
                "/sessions/0/session_id",
                Value::from("a\nb"),
                "sessions[0].session_id",
            ),
            (
                "/max_concurrent_sessions",
                Value::from(0),
                "max_concurrent_sessions",
            ),
            ("/cache_salt", Value::from(""), "cache_salt"),
            (
                "/schedule/arrivals_s",
                serde_json::json!([1.0, 0.5]),
                "arrivals_s[1]",
            ),
        ];
        for (path, value, want) in cases {
            let mut v = sessions_json();
            let (parent, key) = path.rsplit_once('/').unwrap();
            let target = if parent.is_empty() {
                &mut v
            } else {
                v.pointer_mut(parent).unwrap()
            };
            match target {
                Value::Array(a) => a[key.parse::<usize>().unwrap()] = value,
                other => other[key] = value,
            }
            let e = err_of(v);
            assert!(e.contains(want), "{path}: {e}");
        }
        // Session-only fields in a run of plain requests; cache_salt on an API without it.
        for (key, value) in [
            ("session_header", Value::from("X-Session-ID")),
            ("max_concurrent_sessions", Value::from(1)),
            ("history", Value::from("live")),
        ] {
            let mut v = sample_json();
            v[key] = value;
            let e = err_of(v);
            assert!(
                e.contains(key) && e.contains("only to a run of sessions"),
                "{e}"
            );
        }
        let mut v = sample_json();
        v["api"] = Value::from("tgi");
        v["cache_salt"] = Value::from("x");
        assert!(err_of(v).contains("cache_salt: the tgi API has no cache_salt"));
    }
}
