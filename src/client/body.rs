//! Request bodies per API kind, serialised once before t0 (never inside a measured interval).
//!
//! Precedence: Python's merged `fields` win over the managed fields (model, prompt, stream,
//! max tokens), as `--extra-body` overrides managed fields in vLLM; a dotted max-tokens field
//! is merged into an existing nested object (TGI `parameters`). `extra_body` is applied last.
//! `cache_salt` (vLLM's and MAX's per-request prefix-cache namespace) is a managed field of
//! chat and completions bodies; config validation refuses it for the other APIs.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::config::{ApiKind, BodyOptions, RequestSpec};

/// Insert `value` at a dotted `path` unless something is already there (fields win).
fn insert_dotted(obj: &mut Map<String, Value>, path: &str, value: Value) {
    let mut parts = path.split('.').peekable();
    let mut cur = obj;
    while let Some(key) = parts.next() {
        if parts.peek().is_none() {
            cur.entry(key.to_string()).or_insert(value);
            return;
        }
        let slot = cur
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        match slot {
            Value::Object(m) => cur = m,
            _ => return, // a non-object given by the user: leave it alone
        }
    }
}

/// The JSON body of one request; `salt`: its `cache_salt` field, if any.
pub fn build_body(
    api: ApiKind,
    model: &str,
    opts: &BodyOptions,
    req: &RequestSpec,
    salt: Option<&str>,
) -> Value {
    let mut b = opts.fields.clone();
    let mut managed = |k: &str, v: Value| {
        b.entry(k.to_string()).or_insert(v);
    };
    let prompt = || Value::from(req.prompt.clone().unwrap_or_default());
    match api {
        ApiKind::Completions | ApiKind::Chat => {
            if !model.is_empty() {
                managed("model", Value::from(model));
            }
            if api == ApiKind::Chat {
                let messages = match &req.messages {
                    Some(m) => Value::Array(m.clone()),
                    None => serde_json::json!([{"role": "user", "content": prompt()}]),
                };
                managed("messages", messages);
            } else {
                managed("prompt", prompt());
            }
            managed("stream", Value::Bool(true));
            if let Some(ie) = opts.ignore_eos {
                managed("ignore_eos", Value::Bool(ie));
            }
            if let Some(salt) = salt {
                managed("cache_salt", Value::from(salt));
            }
        }
        ApiKind::Tgi => managed("inputs", prompt()),
        ApiKind::Trtllm => {
            managed("text_input", prompt());
            managed("stream", Value::Bool(true));
        }
    }
    if opts.include_usage && matches!(api, ApiKind::Completions | ApiKind::Chat) {
        insert_dotted(&mut b, "stream_options.include_usage", Value::Bool(true));
    }
    if let Some(n) = req.max_tokens {
        insert_dotted(&mut b, &opts.max_tokens_field, Value::from(n));
    }
    for (k, v) in &opts.extra_body {
        b.insert(k.clone(), v.clone());
    }
    Value::Object(b)
}

/// Serialised body bytes (cheap to clone per send).
pub fn body_bytes(
    api: ApiKind,
    model: &str,
    opts: &BodyOptions,
    req: &RequestSpec,
    salt: Option<&str>,
) -> Bytes {
    // Serialising a `Value` cannot fail (string keys, no non-finite floats from JSON input).
    Bytes::from(serde_json::to_vec(&build_body(api, model, opts, req, salt)).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(field: &str, fields: Value) -> BodyOptions {
        BodyOptions {
            max_tokens_field: field.into(),
            include_usage: false,
            ignore_eos: None,
            fields: fields.as_object().cloned().unwrap_or_default(),
            extra_body: Map::new(),
        }
    }

    fn req(prompt: Option<&str>, max: Option<u64>) -> RequestSpec {
        RequestSpec {
            prompt: prompt.map(String::from),
            messages: None,
            max_tokens: max,
        }
    }

    #[test]
    fn completions() {
        let mut o = opts(
            "max_tokens",
            json!({"temperature": 0.0, "ignore_eos": true}),
        );
        o.include_usage = true;
        let b = build_body(
            ApiKind::Completions,
            "m",
            &o,
            &req(Some("hi"), Some(8)),
            None,
        );
        assert_eq!(
            b,
            json!({"model": "m", "prompt": "hi", "max_tokens": 8, "stream": true,
                   "temperature": 0.0, "ignore_eos": true,
                   "stream_options": {"include_usage": true}})
        );
        let b = build_body(ApiKind::Completions, "m", &o, &req(Some("hi"), None), None);
        assert!(b.get("max_tokens").is_none());
    }

    #[test]
    fn chat_messages_and_prompt() {
        let o = opts("max_completion_tokens", json!({"max_completion_tokens": 3}));
        let mut r = req(None, Some(8));
        r.messages = Some(vec![json!({"role": "user", "content": "x"})]);
        let b = build_body(ApiKind::Chat, "m", &o, &r, None);
        assert_eq!(b["messages"], json!([{"role": "user", "content": "x"}]));
        assert_eq!(
            b["max_completion_tokens"], 3,
            "fields win over managed fields"
        );
        let b = build_body(ApiKind::Chat, "", &o, &req(Some("p"), None), None);
        assert_eq!(b["messages"][0]["content"], "p");
        assert!(b.get("model").is_none());
    }

    #[test]
    fn tgi_nested_max_tokens() {
        let o = opts(
            "parameters.max_new_tokens",
            json!({"parameters": {"do_sample": true, "temperature": 0.01}}),
        );
        let b = build_body(ApiKind::Tgi, "m", &o, &req(Some("p"), Some(5)), None);
        assert_eq!(
            b,
            json!({"inputs": "p", "parameters":
                   {"do_sample": true, "temperature": 0.01, "max_new_tokens": 5}})
        );
    }

    #[test]
    fn trtllm_and_extra_body() {
        let mut o = opts("max_tokens", json!({"accumulate_tokens": true}));
        o.extra_body.insert("stream".into(), json!(false));
        let b = build_body(ApiKind::Trtllm, "m", &o, &req(Some("p"), Some(2)), None);
        assert_eq!(
            b,
            json!({"text_input": "p", "max_tokens": 2, "stream": false,
                   "accumulate_tokens": true})
        );
        assert!(!body_bytes(ApiKind::Trtllm, "m", &o, &req(Some("p"), None), None).is_empty());
    }

    #[test]
    fn cache_salt_is_managed() {
        let o = opts("max_tokens", json!({}));
        let b = build_body(ApiKind::Chat, "m", &o, &req(Some("p"), None), Some("s1"));
        assert_eq!(b["cache_salt"], "s1");
        let o = opts("max_tokens", json!({"cache_salt": "mine"}));
        let b = build_body(
            ApiKind::Completions,
            "m",
            &o,
            &req(Some("p"), None),
            Some("s1"),
        );
        assert_eq!(b["cache_salt"], "mine", "fields win over managed fields");
        let b = build_body(ApiKind::Completions, "m", &o, &req(Some("p"), None), None);
        assert_eq!(b["cache_salt"], "mine");
        let o = opts("max_tokens", json!({}));
        let b = build_body(ApiKind::Completions, "m", &o, &req(Some("p"), None), None);
        assert!(b.get("cache_salt").is_none());
    }
}
