//! OpenAI/vLLM request bodies: the accepted fields, their types, and errors in OpenAI's JSON
//! shape. Unknown fields and unsupported values are refused (400), never silently ignored.

use serde::Deserialize;
use serde_json::Value;

use super::sse::Api;

/// An error answered as `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
}

impl ApiError {
    pub fn bad(message: impl Into<String>, param: Option<&str>) -> Self {
        ApiError {
            status: 400,
            message: message.into(),
            kind: "BadRequestError",
            param: param.map(str::to_string),
        }
    }

    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::json!({"error": {
            "message": self.message, "type": self.kind, "param": self.param, "code": self.status,
        }})
        .to_string()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Ids(Vec<u32>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
    pub continuous_usage_stats: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Option<Value>,
}

/// Union of the completions and chat fields; which endpoint allows which is checked after.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenRequest {
    pub model: Option<String>,
    pub prompt: Option<Prompt>,
    pub messages: Option<Vec<Message>>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub min_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub min_p: Option<f64>,
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    pub stop_token_ids: Option<Vec<u32>>,
    pub n: Option<u32>,
    pub best_of: Option<u32>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub logprobs: Option<Value>,
    pub top_logprobs: Option<u32>,
    pub echo: Option<bool>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub ignore_eos: Option<bool>,
    pub user: Option<String>,
    pub logit_bias: Option<serde_json::Map<String, Value>>,
    pub skip_special_tokens: Option<bool>,
    pub spaces_between_special_tokens: Option<bool>,
    pub include_stop_str_in_output: Option<bool>,
    pub add_generation_prompt: Option<bool>,
    pub chat_template_kwargs: Option<serde_json::Map<String, Value>>,
    pub metadata: Option<Value>,
    pub priority: Option<i64>,
    pub request_id: Option<String>,
    /// vLLM's prefix-cache isolation: requests with different salts share no cached blocks.
    pub cache_salt: Option<String>,
}

/// Parse and check a body for `api`.
pub fn parse(body: &[u8], api: Api) -> Result<GenRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("request body is not valid JSON: {e}"), None))?;
    let Value::Object(map) = &value else {
        return Err(ApiError::bad("request body must be a JSON object", None));
    };
    let req: GenRequest = match serde_json::from_value(value.clone()) {
        Ok(r) => r,
        Err(e) => {
            // Find the offending field by checking each one on its own.
            let param = map.iter().find_map(|(k, v)| {
                let one = Value::Object([(k.clone(), v.clone())].into_iter().collect());
                serde_json::from_value::<GenRequest>(one)
                    .err()
                    .map(|_| k.clone())
            });
            let msg = e.to_string();
            let msg = match msg.split_once(", expected one of") {
                Some((head, _)) => head.to_string(),
                None => msg,
            };
            return Err(ApiError::bad(msg, param.as_deref()));
        }
    };
    check(&req, api)?;
    Ok(req)
}

fn check(r: &GenRequest, api: Api) -> Result<(), ApiError> {
    let refuse =
        |field: &str, why: &str| Err(ApiError::bad(format!("`{field}`: {why}"), Some(field)));
    match api {
        Api::Completions => {
            if r.messages.is_some() {
                return refuse(
                    "messages",
                    "not a completions field (use /v1/chat/completions)",
                );
            }
            match &r.prompt {
                None => return refuse("prompt", "required"),
                Some(Prompt::Texts(v)) if v.len() != 1 => {
                    return refuse("prompt", "only one prompt per request is supported")
                }
                Some(Prompt::Ids(v)) if v.is_empty() => return refuse("prompt", "empty"),
                _ => {}
            }
        }
        Api::Chat => {
            if r.prompt.is_some() {
                return refuse("prompt", "not a chat field (use messages)");
            }
            match &r.messages {
                None => return refuse("messages", "required"),
                Some(m) if m.is_empty() => return refuse("messages", "must not be empty"),
                _ => {}
            }
        }
    }
    if r.n.is_some_and(|n| n != 1) {
        return refuse("n", "only n=1 is supported");
    }
    if r.best_of.is_some_and(|n| n != 1) {
        return refuse("best_of", "only best_of=1 is supported");
    }
    if r.echo == Some(true) {
        return refuse("echo", "echo is not supported");
    }
    match &r.logprobs {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Number(n)) if n.as_u64() == Some(0) => {}
        Some(_) => {
            return refuse(
                "logprobs",
                "logprobs are not supported by the simulated engine",
            )
        }
    }
    if r.temperature.is_some_and(|t| !(0.0..=100.0).contains(&t)) {
        return refuse("temperature", "must be >= 0");
    }
    if r.max_tokens == Some(0) || r.max_completion_tokens == Some(0) {
        return refuse("max_tokens", "must be >= 1");
    }
    if r.cache_salt.as_deref().is_some_and(str::is_empty) {
        return refuse("cache_salt", "must be a non-empty string if provided");
    }
    Ok(())
}

impl GenRequest {
    pub fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    pub fn max_tokens(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// The chat messages flattened into ChatML-like text (an approximation of the model's
    /// chat template, used only to count prompt tokens).
    pub fn chat_text(&self) -> String {
        let mut out = String::new();
        for m in self.messages.iter().flatten() {
            out.push_str("<|im_start|>");
            out.push_str(&m.role);
            out.push('\n');
            match &m.content {
                Some(Value::String(s)) => out.push_str(s),
                Some(Value::Array(parts)) => {
                    for p in parts {
                        if let Some(t) = p.get("text").and_then(Value::as_str) {
                            out.push_str(t);
                        }
                    }
                }
                _ => {}
            }
            out.push_str("<|im_end|>\n");
        }
        out.push_str("<|im_start|>assistant\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_usual_fields() {
        let r = parse(
            br#"{"model":"m","prompt":"hi","max_tokens":5,"temperature":0,"top_p":1,"seed":3,
                "stream":true,"stream_options":{"include_usage":true},"ignore_eos":true,
                "stop":["x"],"logprobs":null,"n":1,"min_tokens":2}"#,
            Api::Completions,
        )
        .unwrap();
        assert!(r.stream() && r.include_usage());
        assert_eq!(r.max_tokens(), Some(5));
        let r = parse(br#"{"messages":[{"role":"user","content":"hi"}],"max_completion_tokens":3,"logprobs":false}"#, Api::Chat).unwrap();
        assert_eq!(r.max_tokens(), Some(3));
        assert!(r.chat_text().contains("hi"));
        assert!(parse(br#"{"prompt":[1,2,3]}"#, Api::Completions).is_ok());
        assert!(parse(br#"{"prompt":["one"]}"#, Api::Completions).is_ok());
        let r = parse(br#"{"prompt":"x","cache_salt":"run-1"}"#, Api::Completions).unwrap();
        assert_eq!(r.cache_salt.as_deref(), Some("run-1"));
    }

    #[test]
    fn refuses_with_param() {
        let e = parse(b"{nope", Api::Completions).unwrap_err();
        assert_eq!((e.status, e.param), (400, None));
        let e = parse(br#"{"prompt":"x","bogus":1}"#, Api::Completions).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("bogus"));
        assert!(e.message.contains("bogus"));
        let e = parse(br#"{"prompt":"x","max_tokens":"ten"}"#, Api::Completions).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_tokens"));
        let e = parse(br#"{"prompt":"x","cache_salt":""}"#, Api::Completions).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("cache_salt"));
        let e = parse(br#"{"prompt":"x","n":2}"#, Api::Completions).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("n"));
        let e = parse(br#"{"prompt":"x"}"#, Api::Chat).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("prompt"));
        let e = parse(
            br#"{"messages":[{"role":"user","content":"x"}],"logprobs":true}"#,
            Api::Chat,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("logprobs"));
        assert!(ApiError::bad("m", Some("p"))
            .to_json()
            .contains("\"param\":\"p\""));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any body, JSON or not, is an answer (a request or a 400), never a panic.
        #[test]
        fn any_body_parses_or_is_refused(
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..2048),
        ) {
            for api in [Api::Completions, Api::Chat] {
                if let Err(e) = parse(&body, api) {
                    proptest::prop_assert_eq!(e.status, 400);
                }
            }
        }

        /// JSON objects with the request's field names and values of any JSON type.
        #[test]
        fn request_shaped_objects_never_panic(
            fields in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "model", "prompt", "messages", "max_tokens", "max_completion_tokens",
                        "stream", "stream_options", "ignore_eos", "temperature", "seed", "n",
                        "min_tokens", "stop", "logprobs", "cache_salt", "extra",
                    ]),
                    proptest::sample::select(vec![
                        "null", "true", "-1", "0", "1e308", "18446744073709551616", "2.5",
                        "\"x\"", "[]", "[1,2]", "[\"a\"]", "{}", "{\"include_usage\":true}",
                        "[{\"role\":\"user\",\"content\":\"hi\"}]",
                        "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":1}]}]",
                    ]),
                ),
                0..8,
            ),
        ) {
            let body = format!(
                "{{{}}}",
                fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect::<Vec<_>>().join(",")
            );
            for api in [Api::Completions, Api::Chat] {
                if let Err(e) = parse(body.as_bytes(), api) {
                    proptest::prop_assert_eq!(e.status, 400);
                }
            }
        }
    }
}
