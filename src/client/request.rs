//! One streamed request: send, check the status, then time each body read as it arrives
//! (before any parsing) and decode its SSE events into the request's record.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE, LOCATION};

use super::clock::mono_ns;
use super::config::ApiKind;
use super::decode::{decode_event, decode_full, DecodeError, Event};
use super::failure::{redact, truncate_chars, Failure};
use super::sse::{Oversize, SseDecoder, MAX_EVENT_BYTES};
use super::state::Abort;
use crate::recorder::RequestRecord;

/// Longest error-body excerpt kept for an HTTP error status (characters).
const EXCERPT_CHARS: usize = 200;
/// How much of an error body is read to make the excerpt.
const ERROR_BODY_BYTES: usize = 4096;

/// What every request of a run shares.
pub struct RequestCtx {
    pub client: reqwest::Client,
    /// Keeps no idle connections: a resend through it always opens a new one.
    pub fresh: reqwest::Client,
    pub url: reqwest::Url,
    pub api: ApiKind,
    pub timeout: Duration,
    pub secrets: Vec<String>,
    pub t0_mono_ns: i64,
    /// The header that carries a session's id (sessions only; e.g. `X-Session-ID`).
    pub session_header: Option<HeaderName>,
}

/// What is sent for one request: its body, its `x-request-id` and, in a session with a
/// session header, that session's id.
pub struct Outgoing {
    pub body: Bytes,
    pub id: HeaderValue,
    pub session: Option<HeaderValue>,
}

fn since_t0(ctx: &RequestCtx) -> i64 {
    mono_ns() - ctx.t0_mono_ns
}

fn record_event(rec: &mut RequestRecord, ns: i64, ev: Event<'_>) {
    rec.push_chunk(ns, ev.kind, &ev.text);
    if let Some(p) = ev.prompt_tokens {
        rec.prompt_tokens = p;
    }
    if let Some(c) = ev.completion_tokens {
        rec.completion_tokens = c;
    }
    if let Some(c) = ev.cached_tokens {
        rec.cached_tokens = c;
    }
    if let Some(f) = ev.finish_reason {
        rec.finish_reason = Some(f.into_owned());
    }
}

async fn error_excerpt(resp: &mut reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < ERROR_BODY_BYTES {
        match resp.chunk().await {
            Ok(Some(b)) => buf.extend_from_slice(&b),
            _ => break,
        }
    }
    truncate_chars(&String::from_utf8_lossy(&buf), EXCERPT_CHARS)
}

/// Where a redirect points, as scheme://host:port only: a path or query could carry a token.
fn redirect_origin(base: &reqwest::Url, location: Option<&HeaderValue>) -> String {
    let target = location
        .and_then(|v| v.to_str().ok())
        .and_then(|l| base.join(l).ok());
    match target {
        Some(u) => {
            let host = u.host_str().unwrap_or("?");
            match u.port_or_known_default() {
                Some(p) => format!("{}://{host}:{p}", u.scheme()),
                None => format!("{}://{host}", u.scheme()),
            }
        }
        None => "an unreadable Location".to_string(),
    }
}

/// True for hyper's "connection closed before message completed" on sending.
fn closed_before_response(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            return h.is_incomplete_message();
        }
        source = err.source();
    }
    false
}

/// Send and stream; the record keeps whatever arrived even when this returns an error.
async fn stream(ctx: &RequestCtx, out: Outgoing, rec: &mut RequestRecord) -> Result<(), Failure> {
    rec.sent_ns = since_t0(ctx);
    let Outgoing { body, id, session } = out;
    let session = ctx.session_header.clone().zip(session);
    let send = |client: &reqwest::Client, body: Bytes, id: HeaderValue| {
        let req = client.post(ctx.url.clone()).header("x-request-id", id);
        let req = match &session {
            Some((name, value)) => req.header(name.clone(), value.clone()),
            None => req,
        };
        req.body(body).send()
    };
    let mut resp = match send(&ctx.client, body.clone(), id.clone()).await {
        Ok(r) => r,
        // A pooled keep-alive connection that the server closed as we reused it (servers cap
        // requests per connection and close idle ones; llama.cpp's httplib does both): no
        // response was started, so send once more, on a new connection: another pooled one
        // may have been closed at the same moment. `sent_ns` stays the first attempt, so the
        // retry's cost is counted in the latency, never hidden.
        Err(e) if closed_before_response(&e) => send(&ctx.fresh, body, id)
            .await
            .map_err(Failure::from_send)?,
        Err(e) => return Err(Failure::from_send(e)),
    };
    let status = resp.status().as_u16();
    rec.http_status = i32::from(status);
    if resp.status().is_redirection() {
        let origin = redirect_origin(&ctx.url, resp.headers().get(LOCATION));
        return Err(Failure::Redirect { status, origin });
    }
    if status >= 400 {
        let excerpt = error_excerpt(&mut resp).await;
        return Err(Failure::Status { status, excerpt });
    }
    let ctype = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    // None = not yet known (no content type): decided by the first non-blank byte.
    let mut is_sse = if ctype.contains("event-stream") {
        Some(true)
    } else if ctype.contains("json") {
        Some(false)
    } else {
        None
    };
    let api = ctx.api;
    let mut sse = SseDecoder::new();
    let mut whole = Vec::new();
    let mut ns = rec.sent_ns;
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => return Err(Failure::from_body(e)),
        };
        // Timestamp the read before anything else is done with it.
        ns = since_t0(ctx);
        let sse_now = match is_sse {
            Some(s) => s,
            None => match chunk.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b) => {
                    let s = !matches!(b, b'{' | b'[');
                    is_sse = Some(s);
                    s
                }
                None => continue,
            },
        };
        if sse_now {
            sse.feed(&chunk, &mut |data: &[u8]| {
                decode_event(api, data).map(|ev| record_event(rec, ns, ev))
            })?;
        } else {
            if whole.len() + chunk.len() > MAX_EVENT_BYTES {
                return Err(Failure::from(DecodeError::from(Oversize)));
            }
            whole.extend_from_slice(&chunk);
        }
    }
    if is_sse == Some(false) {
        if !whole.trim_ascii().is_empty() {
            let ev = decode_full(api, &whole)?;
            record_event(rec, ns, ev);
        }
    } else {
        sse.finish(&mut |data: &[u8]| decode_event(api, data).map(|ev| record_event(rec, ns, ev)))?;
    }
    Ok(())
}

/// Run one request to its end, timeout or abort, and return its record.
pub async fn run_request(
    ctx: Arc<RequestCtx>,
    out: Outgoing,
    mut rec: RequestRecord,
    mut abort: tokio::sync::watch::Receiver<Abort>,
) -> RequestRecord {
    let result = tokio::select! {
        biased;
        a = abort.wait_for(|a| *a != Abort::No) => {
            let why = a.map(|a| *a).unwrap_or(Abort::Cancel);
            Err(if why == Abort::Deadline { Failure::DeadlineAborted } else { Failure::Cancelled })
        }
        r = tokio::time::timeout(ctx.timeout, stream(&ctx, out, &mut rec)) => {
            r.unwrap_or_else(|_| Err(Failure::Timeout(ctx.timeout.as_secs_f64())))
        }
    };
    rec.end_ns = since_t0(&ctx);
    if let Err(f) = result {
        rec.error = Some(redact(f.to_string(), &ctx.secrets));
    }
    rec
}
