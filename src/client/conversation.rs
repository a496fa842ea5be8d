//! The request of one session turn: the history before it, then the turn's own text.
//!
//! Chat: messages `[system?, user_0, assistant_0, …, user_k]`. Completions (and TGI,
//! TRT-LLM, which take one text): the same texts joined by [`TURN_SEPARATOR`],
//! `system⏎⏎user_0⏎⏎assistant_0⏎⏎…⏎⏎user_k`, without role labels. Either way a turn's prompt
//! starts with the previous turn's prompt and reply byte for byte, so an engine's prefix
//! cache can reuse it. The assistant texts are the dataset's reference answers (history
//! `dataset`: identical prompts for every engine) or the engine's own replies (`live`);
//! the caller chooses. An absent or empty system prompt is left out.

use serde_json::{json, Value};

use super::config::{ApiKind, RequestSpec, SessionSpec};

/// Between consecutive texts of a completions-style prompt.
pub const TURN_SEPARATOR: &str = "\n\n";

/// The request of turn `k` of `session`; `answers[i]` is the assistant text of turn i < k.
///
/// `answers` shorter than `k` leaves the missing replies empty (never happens in a run: a
/// turn is built only after every earlier one succeeded).
pub fn turn_request(
    api: ApiKind,
    session: &SessionSpec,
    k: usize,
    answers: &[&str],
) -> RequestSpec {
    let system = session.system.as_deref().filter(|s| !s.is_empty());
    let turns = &session.turns[..=k.min(session.turns.len().saturating_sub(1))];
    let answer = |i: usize| answers.get(i).copied().unwrap_or("");
    let max_tokens = turns.last().and_then(|t| t.max_tokens);
    if api == ApiKind::Chat {
        let mut messages: Vec<Value> = Vec::with_capacity(2 * turns.len() + 1);
        if let Some(s) = system {
            messages.push(json!({"role": "system", "content": s}));
        }
        for (i, t) in turns.iter().enumerate() {
            if i > 0 {
                messages.push(json!({"role": "assistant", "content": answer(i - 1)}));
            }
            messages.push(json!({"role": "user", "content": t.content}));
        }
        return RequestSpec {
            prompt: None,
            messages: Some(messages),
            max_tokens,
        };
    }
    let mut prompt = String::new();
    let mut push = |text: &str| {
        if !prompt.is_empty() {
            prompt.push_str(TURN_SEPARATOR);
        }
        prompt.push_str(text);
    };
    if let Some(s) = system {
        push(s);
    }
    for (i, t) in turns.iter().enumerate() {
        if i > 0 {
            push(answer(i - 1));
        }
        push(&t.content);
    }
    RequestSpec {
        prompt: Some(prompt),
        messages: None,
        max_tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::config::TurnSpec;

    fn session(system: Option<&str>) -> SessionSpec {
        let turn = |c: &str, a: &str, m: u64| TurnSpec {
            content: c.into(),
            max_tokens: Some(m),
            reference_answer: a.into(),
            think_s: 0.0,
        };
        SessionSpec {
            turns: vec![
                turn("u0", "a0", 5),
                turn("u1", "a1", 6),
                turn("u2", "a2", 7),
            ],
            system: system.map(String::from),
            session_id: String::new(),
            start_turn: 0,
        }
    }

    #[test]
    fn chat_history_in_order() {
        let s = session(Some("sys"));
        let r = turn_request(ApiKind::Chat, &s, 2, &["A0", "A1"]);
        assert_eq!(
            r.messages.unwrap(),
            vec![
                json!({"role": "system", "content": "sys"}),
                json!({"role": "user", "content": "u0"}),
                json!({"role": "assistant", "content": "A0"}),
                json!({"role": "user", "content": "u1"}),
                json!({"role": "assistant", "content": "A1"}),
                json!({"role": "user", "content": "u2"}),
            ]
        );
        assert_eq!(r.max_tokens, Some(7));
        let first = turn_request(ApiKind::Chat, &session(Some("")), 0, &[]);
        assert_eq!(
            first.messages.unwrap(),
            vec![json!({"role": "user", "content": "u0"})]
        );
        assert_eq!(first.max_tokens, Some(5));
    }

    #[test]
    fn completions_prompt_extends_the_previous_turn() {
        let s = session(Some("sys"));
        let p1 = turn_request(ApiKind::Completions, &s, 1, &["A0"])
            .prompt
            .unwrap();
        assert_eq!(p1, "sys\n\nu0\n\nA0\n\nu1");
        let p2 = turn_request(ApiKind::Completions, &s, 2, &["A0", "A1"])
            .prompt
            .unwrap();
        assert!(p2.starts_with(&format!("{p1}\n\nA1")), "{p2}");
        let p0 = turn_request(ApiKind::Tgi, &session(None), 0, &[])
            .prompt
            .unwrap();
        assert_eq!(p0, "u0");
    }
}
