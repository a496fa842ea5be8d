//! SSE chunk writer: per-request byte templates filled with one pre-escaped token per chunk,
//! so the hot path is a few memcpys, never a serde call.

use bytes::{BufMut, Bytes, BytesMut};

use super::metrics::Finish;

/// Which OpenAI API shape the chunks take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Completions,
    Chat,
}

impl Api {
    pub fn id_prefix(self) -> &'static str {
        match self {
            Api::Completions => "cmpl-",
            Api::Chat => "chatcmpl-",
        }
    }
}

/// Token counts of a response's `usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
    /// Prompt tokens served from the prefix cache (`prompt_tokens_details.cached_tokens`).
    pub cached: u64,
}

impl Usage {
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
            "prompt_tokens_details": {"cached_tokens": self.cached},
        })
    }
}

/// Preformatted pieces of one request's chunks.
#[derive(Debug, Clone)]
pub struct Template {
    /// `data: {"id":..,"object":..,"created":..,"model":..,`
    head: Vec<u8>,
    api: Api,
}

const DONE: &[u8] = b"data: [DONE]\n\n";

impl Template {
    /// `id` and `model` must already be JSON-escaped string contents.
    pub fn new(api: Api, id_json: &str, model_json: &str, created: u64) -> Self {
        let object = match api {
            Api::Completions => "text_completion",
            Api::Chat => "chat.completion.chunk",
        };
        let head = format!(
            "data: {{\"id\":\"{id_json}\",\"object\":\"{object}\",\"created\":{created},\"model\":\"{model_json}\","
        )
        .into_bytes();
        Template { head, api }
    }

    /// The chunk carrying one token (`first`: chat adds the assistant role; `finish` on the last).
    pub fn token(&self, token_json: &str, first: bool, finish: Option<Finish>) -> Bytes {
        let open: &[u8] = match (self.api, first) {
            (Api::Completions, _) => b"\"choices\":[{\"index\":0,\"text\":\"",
            (Api::Chat, true) => {
                b"\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\""
            }
            (Api::Chat, false) => b"\"choices\":[{\"index\":0,\"delta\":{\"content\":\"",
        };
        let close_text: &[u8] = match self.api {
            Api::Completions => b"\",\"logprobs\":null,\"finish_reason\":",
            Api::Chat => b"\"},\"logprobs\":null,\"finish_reason\":",
        };
        let reason: &[u8] = match finish {
            None => b"null",
            Some(Finish::Stop) => b"\"stop\"",
            Some(Finish::Length) => b"\"length\"",
        };
        let mut b = BytesMut::with_capacity(self.head.len() + open.len() + token_json.len() + 64);
        b.put_slice(&self.head);
        b.put_slice(open);
        b.put_slice(token_json.as_bytes());
        b.put_slice(close_text);
        b.put_slice(reason);
        b.put_slice(b"}]}\n\n");
        b.freeze()
    }

    /// The tail: a usage-only chunk (when asked for) and `data: [DONE]`.
    pub fn tail(&self, usage: Option<Usage>) -> Bytes {
        let mut b = BytesMut::with_capacity(self.head.len() + 160);
        if let Some(u) = usage {
            b.put_slice(&self.head);
            b.put_slice(format!("\"choices\":[],\"usage\":{}}}\n\n", u.to_json()).as_bytes());
        }
        b.put_slice(DONE);
        b.freeze()
    }

    /// A deliberately broken data line (truncated JSON), for fault injection.
    pub fn malformed(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.head.len() + 32);
        b.put_slice(&self.head);
        b.put_slice(b"\"choices\":[{\"index\":0,\n\n");
        b.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunk: &Bytes) -> serde_json::Value {
        let s = std::str::from_utf8(chunk).unwrap();
        let line = s
            .strip_prefix("data: ")
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap();
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn completion_chunks_are_openai_json() {
        let t = Template::new(Api::Completions, "cmpl-1", "m", 7);
        let v = parse(&t.token(" hi\\\"", true, None));
        assert_eq!(v["choices"][0]["text"], " hi\"");
        assert_eq!(v["object"], "text_completion");
        assert!(v["choices"][0]["finish_reason"].is_null());
        let v = parse(&t.token(" x", false, Some(Finish::Length)));
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        let tail = t.tail(Some(Usage {
            prompt: 3,
            completion: 4,
            cached: 2,
        }));
        let s = std::str::from_utf8(&tail).unwrap();
        let (usage, done) = s.split_once("\n\n").unwrap();
        let v: serde_json::Value =
            serde_json::from_str(usage.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(v["usage"]["total_tokens"], 7);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
        assert_eq!(v["choices"].as_array().map(Vec::len), Some(0));
        assert_eq!(done, "data: [DONE]\n\n");
        assert_eq!(&t.tail(None)[..], DONE);
    }

    #[test]
    fn chat_chunks_carry_role_first() {
        let t = Template::new(Api::Chat, "chatcmpl-1", "m", 7);
        let v = parse(&t.token(" a", true, None));
        assert_eq!(v["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(v["choices"][0]["delta"]["content"], " a");
        let v = parse(&t.token(" b", false, Some(Finish::Stop)));
        assert!(v["choices"][0]["delta"].get("role").is_none());
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        let m = t.malformed();
        let line = std::str::from_utf8(&m)
            .unwrap()
            .strip_prefix("data: ")
            .unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(line.trim()).is_err());
    }
}
