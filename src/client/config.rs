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
    pub requests: Vec<RequestSpec>,
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
        let de = &mut serde_json::Deserializer::from_str(json);
        let cfg: RunConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            ConfigError::Parse(if path == "." {
                inner
            } else {
                format!("{path}: {inner}")
            })
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
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
        for (i, r) in self.requests.iter().enumerate() {
            let ok = match self.api {
                ApiKind::Chat => r.prompt.is_some() || r.messages.is_some(),
                _ => r.prompt.is_some(),
            };
            if !ok {
                let need = if self.api == ApiKind::Chat {
                    "a prompt or messages"
                } else {
                    "a prompt"
                };
                return Err(field(
                    format!("requests[{i}]"),
                    format!("the {:?} API needs {need}", self.api).to_lowercase(),
                ));
            }
        }
        self.schedule.validate()?;
        Ok(())
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
    fn parses_sample() {
        let c = RunConfig::from_json(&sample_json().to_string()).unwrap();
        assert_eq!(c.api, ApiKind::Completions);
        assert_eq!(c.url_string(), "http://127.0.0.1:8000/v1/completions");
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
}
