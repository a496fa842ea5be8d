//! One SSE event (or a whole non-streamed JSON response) → what the recorder keeps: the chunk
//! kind, its text, and from final events the server's usage and finish reason.
//!
//! Parsing borrows from the read buffer and skips every field we do not need, so a text delta
//! costs no allocation unless its JSON string has escapes.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::config::ApiKind;

/// chunk_kind values (mirrored by `sonic.records`).
pub const KIND_TEXT: u8 = 0;
pub const KIND_EMPTY_CHOICE: u8 = 1;
pub const KIND_NO_CHOICE: u8 = 2;
pub const KIND_DONE: u8 = 3;

/// What one event contributes to the record.
#[derive(Debug, PartialEq)]
pub struct Event<'a> {
    pub kind: u8,
    pub text: Cow<'a, str>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    /// Prompt tokens the engine served from its prefix cache
    /// (`usage.prompt_tokens_details.cached_tokens`, OpenAI's field).
    pub cached_tokens: Option<i64>,
    pub finish_reason: Option<Cow<'a, str>>,
}

impl<'a> Event<'a> {
    fn kind_only(kind: u8) -> Self {
        Event {
            kind,
            text: Cow::Borrowed(""),
            prompt_tokens: None,
            completion_tokens: None,
            cached_tokens: None,
            finish_reason: None,
        }
    }

    fn into_owned(self) -> Event<'static> {
        Event {
            kind: self.kind,
            text: Cow::Owned(self.text.into_owned()),
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cached_tokens: self.cached_tokens,
            finish_reason: self.finish_reason.map(|f| Cow::Owned(f.into_owned())),
        }
    }

    fn choice(text: Option<Cow<'a, str>>) -> Self {
        let text = text.unwrap_or(Cow::Borrowed(""));
        let kind = if text.is_empty() {
            KIND_EMPTY_CHOICE
        } else {
            KIND_TEXT
        };
        Event {
            kind,
            text,
            ..Self::kind_only(kind)
        }
    }
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The data line is not the JSON we expect.
    #[error("malformed chunk: {0}")]
    Malformed(String),
    /// The server reported an error inside the stream.
    #[error("server error in stream: {0}")]
    Server(String),
    /// An event (or a non-streamed body) too large to be an answer chunk.
    #[error("{0}")]
    TooLarge(#[from] super::sse::Oversize),
}

/// Only the first element of a JSON array (the rest is skipped without allocating).
struct First<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for First<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = First<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<First<T>, A::Error> {
                let first = seq.next_element::<T>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(First(first))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// A JSON string borrowed from the input when it has no escapes (serde's `borrow` does not
/// reach a `Cow` inside an `Option`).
struct BStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for BStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = BStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<BStr<'a>, E> {
                Ok(BStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<BStr<'a>, E> {
                Ok(BStr(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

fn cow(s: Option<BStr<'_>>) -> Option<Cow<'_, str>> {
    s.map(|b| b.0)
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Deserialize)]
struct PromptTokensDetails {
    #[serde(default)]
    cached_tokens: Option<i64>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Option<BStr<'a>>,
    #[serde(borrow, default)]
    reasoning_content: Option<BStr<'a>>,
    #[serde(borrow, default)]
    reasoning: Option<BStr<'a>>,
}

impl<'a> Delta<'a> {
    /// Answer text, else reasoning text (MAX G3 counts reasoning as output).
    fn text(self) -> Option<Cow<'a, str>> {
        [
            cow(self.content),
            cow(self.reasoning_content),
            cow(self.reasoning),
        ]
        .into_iter()
        .flatten()
        .find(|s| !s.is_empty())
    }
}

#[derive(Deserialize)]
struct OaiChoice<'a> {
    #[serde(borrow, default)]
    text: Option<BStr<'a>>,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(borrow, default)]
    message: Option<Delta<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<BStr<'a>>,
}

#[derive(Deserialize)]
struct OaiEvent<'a> {
    #[serde(borrow, default)]
    choices: Option<First<OaiChoice<'a>>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct TgiToken<'a> {
    #[serde(borrow, default)]
    text: Option<BStr<'a>>,
    #[serde(default)]
    special: bool,
}

#[derive(Deserialize)]
struct TgiDetails<'a> {
    #[serde(borrow, default)]
    finish_reason: Option<BStr<'a>>,
    #[serde(default)]
    generated_tokens: Option<i64>,
    /// Only some TGI versions report the prompt's length in the last event's details.
    #[serde(default, alias = "input_length")]
    prompt_tokens: Option<i64>,
}

#[derive(Deserialize)]
struct TgiEvent<'a> {
    #[serde(borrow, default)]
    token: Option<TgiToken<'a>>,
    #[serde(borrow, default)]
    generated_text: Option<BStr<'a>>,
    #[serde(borrow, default)]
    details: Option<TgiDetails<'a>>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct TrtEvent<'a> {
    #[serde(borrow, default)]
    text_output: Option<BStr<'a>>,
    #[serde(default)]
    error: Option<Value>,
}

fn excerpt(data: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(data);
    let s = s.trim();
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn malformed(e: serde_json::Error, data: &[u8]) -> DecodeError {
    DecodeError::Malformed(format!("{e} in {:?}", excerpt(data, 80)))
}

fn server_error(v: Value) -> DecodeError {
    let msg = match &v {
        Value::String(s) => s.clone(),
        Value::Object(o) => match o.get("message") {
            Some(Value::String(s)) => s.clone(),
            _ => v.to_string(),
        },
        _ => v.to_string(),
    };
    DecodeError::Server(excerpt(msg.as_bytes(), 200))
}

fn parse<'a, T: Deserialize<'a>>(data: &'a [u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(data).map_err(|e| malformed(e, data))
}

/// Decode one SSE event's data.
pub fn decode_event(api: ApiKind, data: &[u8]) -> Result<Event<'_>, DecodeError> {
    let trimmed = data.trim_ascii();
    if trimmed == b"[DONE]" {
        return Ok(Event::kind_only(KIND_DONE));
    }
    match api {
        ApiKind::Completions | ApiKind::Chat => {
            let ev: OaiEvent = parse(trimmed)?;
            if let Some(e) = ev.error {
                return Err(server_error(e));
            }
            let mut out = match ev.choices {
                Some(First(Some(c))) => {
                    let text = match (cow(c.text), c.delta, c.message) {
                        (Some(t), _, _) => Some(t),
                        (None, Some(d), _) | (None, None, Some(d)) => d.text(),
                        _ => None,
                    };
                    let mut e = Event::choice(text);
                    e.finish_reason = cow(c.finish_reason);
                    e
                }
                _ => Event::kind_only(KIND_NO_CHOICE),
            };
            if let Some(u) = ev.usage {
                out.prompt_tokens = u.prompt_tokens;
                out.completion_tokens = u.completion_tokens;
                out.cached_tokens = u.prompt_tokens_details.and_then(|d| d.cached_tokens);
            }
            Ok(out)
        }
        ApiKind::Tgi => {
            let ev: TgiEvent = parse(trimmed)?;
            if let Some(e) = ev.error {
                return Err(server_error(e));
            }
            let mut out = match ev.token {
                // Special tokens (EOS) are not part of the generated text.
                Some(t) if t.special => Event::choice(None),
                Some(t) => Event::choice(cow(t.text)),
                // A non-streamed /generate answer: the whole text at once.
                None => match cow(ev.generated_text) {
                    Some(t) => Event::choice(Some(t)),
                    None => Event::kind_only(KIND_NO_CHOICE),
                },
            };
            if let Some(d) = ev.details {
                out.finish_reason = cow(d.finish_reason);
                out.completion_tokens = d.generated_tokens;
                out.prompt_tokens = d.prompt_tokens;
            }
            Ok(out)
        }
        ApiKind::Trtllm => {
            let ev: TrtEvent = parse(trimmed)?;
            if let Some(e) = ev.error {
                return Err(server_error(e));
            }
            Ok(match cow(ev.text_output) {
                Some(t) => Event::choice(Some(t)),
                None => Event::kind_only(KIND_NO_CHOICE),
            })
        }
    }
}

/// Decode a non-streamed JSON response body (one chunk). TGI may answer with a list.
pub fn decode_full(api: ApiKind, body: &[u8]) -> Result<Event<'_>, DecodeError> {
    let trimmed = body.trim_ascii();
    if api == ApiKind::Tgi && trimmed.first() == Some(&b'[') {
        let list: Vec<Value> = parse(trimmed)?;
        return match list.into_iter().next() {
            Some(v) => decode_event(api, v.to_string().as_bytes()).map(Event::into_owned),
            None => Ok(Event::kind_only(KIND_NO_CHOICE)),
        };
    }
    decode_event(api, trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(api: ApiKind, s: &str) -> Event<'_> {
        decode_event(api, s.as_bytes()).unwrap()
    }

    #[test]
    fn openai_completions() {
        let e = ev(
            ApiKind::Completions,
            r#"{"id":"x","choices":[{"index":0,"text":"Hi","finish_reason":null}],"usage":null}"#,
        );
        assert_eq!((e.kind, e.text.as_ref()), (KIND_TEXT, "Hi"));
        assert!(matches!(e.text, Cow::Borrowed(_)));
        let e = ev(
            ApiKind::Completions,
            r#"{"choices":[{"text":"","finish_reason":"length"}]}"#,
        );
        assert_eq!(e.kind, KIND_EMPTY_CHOICE);
        assert_eq!(e.finish_reason.as_deref(), Some("length"));
        let e = ev(
            ApiKind::Completions,
            r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#,
        );
        assert_eq!(e.kind, KIND_NO_CHOICE);
        assert_eq!((e.prompt_tokens, e.completion_tokens), (Some(5), Some(7)));
        assert_eq!(e.cached_tokens, None);
        let e = ev(
            ApiKind::Chat,
            r#"{"choices":[],"usage":{"prompt_tokens":50,"completion_tokens":7,"prompt_tokens_details":{"cached_tokens":32}}}"#,
        );
        assert_eq!((e.prompt_tokens, e.cached_tokens), (Some(50), Some(32)));
        let e = ev(
            ApiKind::Chat,
            r#"{"choices":[],"usage":{"prompt_tokens":50,"prompt_tokens_details":null}}"#,
        );
        assert_eq!(e.cached_tokens, None);
        assert_eq!(ev(ApiKind::Chat, " [DONE] ").kind, KIND_DONE);
        let e = ev(
            ApiKind::Completions,
            r#"{"choices":[{"text":"a\nb\u00e9"}]}"#,
        );
        assert_eq!(e.text, "a\nbé");
    }

    #[test]
    fn openai_chat() {
        let e = ev(
            ApiKind::Chat,
            r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#,
        );
        assert_eq!(e.kind, KIND_EMPTY_CHOICE);
        let e = ev(ApiKind::Chat, r#"{"choices":[{"delta":{"content":"x"}}]}"#);
        assert_eq!((e.kind, e.text.as_ref()), (KIND_TEXT, "x"));
        let e = ev(
            ApiKind::Chat,
            r#"{"choices":[{"delta":{"content":null,"reasoning_content":"think"}}]}"#,
        );
        assert_eq!(e.text, "think");
        let e = decode_full(
            ApiKind::Chat,
            br#"{"choices":[{"message":{"content":"all"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
        )
        .unwrap();
        assert_eq!((e.text.as_ref(), e.completion_tokens), ("all", Some(2)));
    }

    #[test]
    fn tgi() {
        let e = ev(
            ApiKind::Tgi,
            r#"{"index":1,"token":{"id":3,"text":" to","logprob":-0.1,"special":false},"generated_text":null,"details":null}"#,
        );
        assert_eq!((e.kind, e.text.as_ref()), (KIND_TEXT, " to"));
        let e = ev(
            ApiKind::Tgi,
            r#"{"token":{"id":2,"text":"</s>","special":true},"generated_text":"x to","details":{"finish_reason":"eos_token","generated_tokens":2}}"#,
        );
        assert_eq!(e.kind, KIND_EMPTY_CHOICE);
        assert_eq!(e.finish_reason.as_deref(), Some("eos_token"));
        assert_eq!((e.completion_tokens, e.prompt_tokens), (Some(2), None));
        for key in ["prompt_tokens", "input_length"] {
            let line = format!(
                r#"{{"token":{{"text":"","special":true}},"details":{{"finish_reason":"length","generated_tokens":4,"{key}":9}}}}"#
            );
            let e = ev(ApiKind::Tgi, &line);
            assert_eq!(
                (e.completion_tokens, e.prompt_tokens),
                (Some(4), Some(9)),
                "{key}"
            );
        }
        let e = decode_full(ApiKind::Tgi, br#"[{"generated_text":"abc"}]"#).unwrap();
        assert_eq!(e.text, "abc");
        assert_eq!(
            decode_event(ApiKind::Tgi, br#"{"error":"overloaded","error_type":"x"}"#),
            Err(DecodeError::Server("overloaded".into()))
        );
    }

    #[test]
    fn trtllm() {
        let e = ev(
            ApiKind::Trtllm,
            r#"{"model_name":"ensemble","sequence_end":false,"text_output":"yo"}"#,
        );
        assert_eq!((e.kind, e.text.as_ref()), (KIND_TEXT, "yo"));
        assert_eq!(ev(ApiKind::Trtllm, "{}").kind, KIND_NO_CHOICE);
    }

    #[test]
    fn malformed_and_errors() {
        let e = decode_event(ApiKind::Completions, b"{not json").unwrap_err();
        assert!(e.to_string().starts_with("malformed chunk: "), "{e}");
        let e = decode_event(
            ApiKind::Chat,
            br#"{"error":{"message":"boom","type":"x","code":500}}"#,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "server error in stream: boom");
        let e = decode_event(ApiKind::Completions, br#"{"choices":{"a":1}}"#).unwrap_err();
        assert!(matches!(e, DecodeError::Malformed(_)));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any event data or whole body, for every API: decoded or an error, never a panic.
        #[test]
        fn any_bytes_decode_or_fail(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..2048),
        ) {
            for api in [ApiKind::Completions, ApiKind::Chat, ApiKind::Tgi, ApiKind::Trtllm] {
                let _ = decode_event(api, &data);
                let _ = decode_full(api, &data);
            }
        }
    }
}
