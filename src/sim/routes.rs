//! HTTP routes of the simulated engine and the generation request flow.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::body::{Generation, SimBody, Source, TokenStream};
use super::conn::ConnCtl;
use super::faults::Fault;
use super::metrics::Finish;
use super::prefix_cache::Lookup;
use super::request::{self, ApiError, GenRequest, Prompt};
use super::rng::{fnv1a, mix, SplitMix};
use super::scheduler::NewSeq;
use super::server::{App, MAX_SESSIONS};
use super::sse::{Api, Template};

const MAX_BODY: usize = 64 << 20;

fn respond(status: u16, ctype: &'static str, body: impl Into<SimBody>) -> Response<SimBody> {
    let mut r = Response::new(body.into());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

fn json(status: u16, body: String) -> Response<SimBody> {
    respond(status, "application/json", body)
}

fn error(e: &ApiError) -> Response<SimBody> {
    json(e.status, e.to_json())
}

pub async fn handle(app: Arc<App>, ctl: Arc<ConnCtl>, req: Request<Incoming>) -> Response<SimBody> {
    let received = Instant::now();
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/health" | "/ping") => respond(200, "text/plain", SimBody::empty()),
        (&Method::GET, "/version") => json(200, version(&app)),
        (&Method::GET, "/v1/models") => json(200, models(&app)),
        (&Method::GET, "/metrics") => {
            respond(200, "text/plain; version=0.0.4", app.metrics.render())
        }
        (&Method::POST, "/reset_prefix_cache") => {
            if let Some(cache) = &app.prefix {
                lock(cache).clear();
            }
            respond(200, "text/plain", SimBody::empty())
        }
        (&Method::POST, "/tokenize") => match read_body(req).await {
            Ok(b) => tokenize(&app, &b),
            Err(e) => error(&e),
        },
        (&Method::POST, "/v1/completions") => {
            generate(app, ctl, req, Api::Completions, received).await
        }
        (&Method::POST, "/v1/chat/completions") => {
            generate(app, ctl, req, Api::Chat, received).await
        }
        (
            _,
            "/health"
            | "/version"
            | "/v1/models"
            | "/metrics"
            | "/reset_prefix_cache"
            | "/tokenize"
            | "/v1/completions"
            | "/v1/chat/completions",
        ) => error(&ApiError::new(
            405,
            "MethodNotAllowed",
            "method not allowed",
        )),
        _ => error(&ApiError::new(
            404,
            "NotFoundError",
            format!("no route {path}"),
        )),
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let mut body = req.into_body();
    let mut buf = Vec::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame = frame.map_err(|e| ApiError::bad(format!("cannot read body: {e}"), None))?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > MAX_BODY {
                return Err(ApiError::new(
                    413,
                    "BadRequestError",
                    "request body too large",
                ));
            }
        }
    }
    Ok(Bytes::from(buf))
}

/// A lock that survives a panicked holder (the cache and the session set stay usable).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn version(app: &App) -> String {
    let prefix = app.cfg.prefix.map(
        |p| serde_json::json!({"block_size": p.block_size, "capacity_blocks": p.capacity_blocks}),
    );
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "simulated": true,
        "engine": "sonic-sim",
        "profile": app.cfg.profile,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "exact_timing": app.cfg.exact.is_some(),
        "prefix_caching": prefix,
    })
    .to_string()
}

fn models(app: &App) -> String {
    let created = unix_now();
    serde_json::json!({"object": "list", "data": [{
        "id": app.cfg.model, "object": "model", "created": created, "owned_by": "sonic-sim",
        "root": app.cfg.model, "parent": null, "max_model_len": app.cfg.max_model_len,
    }]})
    .to_string()
}

fn tokenize(app: &App, body: &[u8]) -> Response<SimBody> {
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return error(&ApiError::bad(
                format!("request body is not valid JSON: {e}"),
                None,
            ))
        }
    };
    let special = v
        .get("add_special_tokens")
        .and_then(|b| b.as_bool())
        .unwrap_or(true);
    let ids = if let Some(p) = v.get("prompt").and_then(|p| p.as_str()) {
        app.tokenizer.ids(p, special)
    } else if v.get("messages").is_some() {
        match serde_json::from_value::<GenRequest>(serde_json::json!({"messages": v["messages"]})) {
            Ok(r) => app.tokenizer.ids(&r.chat_text(), special),
            Err(e) => return error(&ApiError::bad(e.to_string(), Some("messages"))),
        }
    } else {
        return error(&ApiError::bad(
            "`prompt` (string) or `messages` required",
            Some("prompt"),
        ));
    };
    json(
        200,
        serde_json::json!({"count": ids.len(), "max_model_len": app.cfg.max_model_len, "tokens": ids}).to_string(),
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A printable request id from `x-request-id`, else a counter.
fn request_id(req: &Request<Incoming>, n: u64) -> (String, bool) {
    match req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
    {
        Some(v) if !v.is_empty() && v.len() <= 256 => (v.to_string(), true),
        _ => (format!("{n:016x}"), false),
    }
}

/// A prompt as the engine sees it.
struct PromptTokens {
    count: u64,
    /// Bytes that identify the prompt (for the per-request seed).
    key: Vec<u8>,
    /// The token ids, when the prefix cache needs them.
    ids: Option<Vec<u32>>,
}

/// Prompt token count (and ids with a prefix cache) and the prompt's identifying bytes.
/// `prompt_tokens` off the async workers when a real tokenizer does the counting: a burst of
/// requests must not queue behind each other's tokenization before their handlers start (the
/// arrival `received` is stamped there, and exact mode promises the first token `ttft` after
/// it; on 2 cores a burst of 8 made the last one 1-2 ms late).
async fn count_prompt(
    app: &Arc<App>,
    r: GenRequest,
) -> Result<(PromptTokens, GenRequest), ApiError> {
    if !app.tokenizer.is_hf() {
        return Ok((prompt_tokens(app, &r), r));
    }
    let app = app.clone();
    tokio::task::spawn_blocking(move || (prompt_tokens(&app, &r), r))
        .await
        .map_err(|e| {
            ApiError::new(
                500,
                "InternalServerError",
                format!("prompt tokenization failed: {e}"),
            )
        })
}

fn prompt_tokens(app: &App, r: &GenRequest) -> PromptTokens {
    let text = |t: &str| {
        // Ids only when the cache needs them; counting alone is cheaper.
        let (count, ids) = if app.prefix.is_some() {
            let ids = app.tokenizer.ids(t, true);
            (ids.len() as u64, Some(ids))
        } else {
            (app.tokenizer.count(t) as u64, None)
        };
        PromptTokens {
            count,
            key: t.as_bytes().to_vec(),
            ids,
        }
    };
    match &r.prompt {
        Some(Prompt::Text(t)) => text(t),
        Some(Prompt::Texts(v)) => text(v.first().map(String::as_str).unwrap_or("")),
        Some(Prompt::Ids(ids)) => PromptTokens {
            count: ids.len() as u64,
            key: ids.iter().flat_map(|i| i.to_le_bytes()).collect(),
            ids: app.prefix.is_some().then(|| ids.clone()),
        },
        None => text(&r.chat_text()),
    }
}

/// A header's value as text: None when absent, a 400 when not visible ASCII or empty.
fn header_text(req: &Request<Incoming>, name: &str) -> Result<Option<String>, ApiError> {
    match req.headers().get(name) {
        None => Ok(None),
        Some(v) => match v.to_str() {
            Ok(s) if !s.trim().is_empty() => Ok(Some(s.to_string())),
            _ => Err(ApiError::bad(
                format!("header {name} must be a non-empty ASCII string"),
                Some(name),
            )),
        },
    }
}

/// Count a request of a session (`X-Session-ID`) in the metrics.
fn note_session(app: &App, id: &str) {
    let new = {
        let mut seen = lock(&app.sessions);
        seen.len() < MAX_SESSIONS && seen.insert(fnv1a(id.as_bytes(), 0x5E55))
    };
    app.metrics.session_request(new);
}

/// Look the prompt up in the prefix cache and count it; the cache then holds the prompt's
/// blocks and those of the answer the request will generate (`rng` as the response will draw
/// it), all but its last token, whose KV an engine never computes.
fn prefix_lookup(
    app: &App,
    salt: Option<&str>,
    ids: Option<Vec<u32>>,
    n_tokens: u32,
    rng: &SplitMix,
) -> Lookup {
    let (Some(cache), Some(mut seq)) = (&app.prefix, ids) else {
        return Lookup::default();
    };
    let prompt_len = seq.len();
    let mut answer = rng.clone();
    let vocab = &app.vocab;
    seq.extend((1..n_tokens).map(|_| vocab.ids[answer.below(vocab.len())]));
    let found = lock(cache).query_and_hold(salt, &seq, prompt_len);
    app.metrics.prefix_cache(found.queried, found.cached);
    found
}

/// How many tokens to generate and why it ends.
fn output_plan(
    app: &App,
    r: &GenRequest,
    prompt: u64,
    rng: &mut SplitMix,
) -> Result<(u32, Finish), ApiError> {
    let mml = u64::from(app.cfg.max_model_len);
    if prompt >= mml {
        return Err(ApiError::bad(
            format!("This model's maximum context length is {mml} tokens; the prompt has {prompt} tokens."),
            Some("prompt"),
        ));
    }
    let room = (mml - prompt) as u32;
    let max = match r.max_tokens() {
        Some(m) if m > room => {
            return Err(ApiError::bad(
                format!("This model's maximum context length is {mml} tokens. However, you requested {} tokens ({prompt} in the messages, {m} in the completion).", prompt + u64::from(m)),
                Some("max_tokens"),
            ))
        }
        Some(m) => m,
        None => room,
    };
    if u64::from(max) + prompt > app.cfg.engine.kv_cache_tokens {
        return Err(ApiError::bad(
            "prompt plus max_tokens exceed the engine's KV cache capacity",
            Some("max_tokens"),
        ));
    }
    let n = if let Some(fixed) = app.cfg.output_len {
        fixed.min(max)
    } else if r.ignore_eos == Some(true) {
        max
    } else {
        // EOS after an exponentially distributed length (seeded), within [min_tokens, max].
        let u = rng.unit();
        let drawn = 1.0 + (-app.cfg.eos_mean_len * (1.0 - u).ln()).floor();
        let low = r.min_tokens.unwrap_or(1).clamp(1, max);
        (drawn.min(f64::from(max)) as u32).clamp(low, max)
    };
    Ok((
        n,
        if n >= max {
            Finish::Length
        } else {
            Finish::Stop
        },
    ))
}

async fn generate(
    app: Arc<App>,
    ctl: Arc<ConnCtl>,
    req: Request<Incoming>,
    api: Api,
    received: Instant,
) -> Response<SimBody> {
    let n = app.counter.fetch_add(1, Relaxed);
    let (rid, from_header) = request_id(&req, n);
    let forced = match req
        .headers()
        .get("x-sonic-fault")
        .map(|v| v.to_str().ok().and_then(Fault::from_header))
    {
        None => None,
        Some(Some(f)) => Some(f),
        Some(None) => {
            return error(&ApiError::bad(
                "x-sonic-fault must be one of 500, 429, reset, stall, malformed",
                Some("x-sonic-fault"),
            ))
        }
    };
    let mut resp = match generate_inner(&app, ctl, req, api, received, n, &rid, forced).await {
        Ok(r) => r,
        Err(e) => error(&e),
    };
    if from_header {
        if let Ok(v) = HeaderValue::from_str(&rid) {
            resp.headers_mut().insert("x-request-id", v);
        }
    }
    resp
}

#[allow(clippy::too_many_arguments)]
async fn generate_inner(
    app: &Arc<App>,
    ctl: Arc<ConnCtl>,
    req: Request<Incoming>,
    api: Api,
    received: Instant,
    n: u64,
    rid: &str,
    forced: Option<Fault>,
) -> Result<Response<SimBody>, ApiError> {
    let session = header_text(&req, "x-session-id")?;
    let header_salt = header_text(&req, "x-cache-salt")?;
    let body = read_body(req).await?;
    let r = request::parse(&body, api)?;
    if let Some(m) = &r.model {
        if m != &app.cfg.model {
            let mut e = ApiError::new(
                404,
                "NotFoundError",
                format!("The model `{m}` does not exist."),
            );
            e.param = Some("model".into());
            return Err(e);
        }
    }
    let (tokens, r) = count_prompt(app, r).await?;
    let PromptTokens {
        count: prompt,
        key,
        ids,
    } = tokens;
    let prompt = prompt.max(1);
    let greedy = r.temperature.is_some_and(|t| t == 0.0);
    let salt = if greedy || r.seed.is_some() { 0 } else { n };
    let mut rng = SplitMix::new(mix(&[
        app.cfg.seed,
        fnv1a(&key, 0),
        r.seed.unwrap_or(0) as u64,
        salt,
    ]));
    let (n_tokens, finish) = output_plan(app, &r, prompt, &mut rng)?;
    let fault = forced.or_else(|| {
        app.cfg
            .faults
            .draw(&mut SplitMix::new(mix(&[app.cfg.seed, n, 0xFA17])))
    });
    match fault {
        Some(Fault::Status500) => {
            return Err(ApiError::new(
                500,
                "InternalServerError",
                "injected fault: internal server error",
            ))
        }
        Some(Fault::Status429) => {
            let mut resp = error(&ApiError::new(
                429,
                "RateLimitError",
                "injected fault: too many requests",
            ));
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
            return Ok(resp);
        }
        _ => {}
    }
    // The body's cache_salt wins over MAX's X-Cache-Salt header.
    let salt = r.cache_salt.as_deref().or(header_salt.as_deref());
    let cached = prefix_lookup(app, salt, ids, n_tokens, &rng)
        .cached
        .min(prompt - 1);
    if let Some(id) = &session {
        note_session(app, id);
    }
    let source = match app.cfg.exact {
        Some(x) => Source::timed(received + x.first_token_after(prompt - cached), x.itl),
        None => {
            let (tx, rx) = mpsc::unbounded_channel();
            let clamp = |n: u64| n.min(u64::from(u32::MAX)) as u32;
            let seq = NewSeq {
                prompt_len: clamp(prompt),
                cached: clamp(cached),
                output_len: n_tokens,
                tokens: tx,
            };
            if app.sched.send(seq).is_err() {
                return Err(ApiError::new(
                    503,
                    "ServiceUnavailableError",
                    "engine is shutting down",
                ));
            }
            Source::Sched(rx)
        }
    };
    let mut gen = Generation::new(
        source,
        n_tokens,
        finish,
        prompt,
        rng,
        app.vocab.clone(),
        app.metrics.clone(),
        received,
    );
    gen.cached_tokens = cached;
    let id = format!("{}{}", api.id_prefix(), rid);
    let id_json = serde_json::to_string(&id).unwrap_or_default();
    let id_json = id_json.trim_matches('"');
    let created = unix_now();
    if r.stream() {
        let tpl = Template::new(api, id_json, &app.model_json, created);
        let stream = TokenStream::new(gen, tpl, r.include_usage(), fault, app.cfg.stall, ctl);
        let mut resp = respond(200, "text/event-stream", SimBody::Stream(Box::new(stream)));
        resp.headers_mut()
            .insert("cache-control", HeaderValue::from_static("no-cache"));
        return Ok(resp);
    }
    match fault {
        Some(Fault::Reset) => {
            ctl.reset();
            std::future::pending::<()>().await;
        }
        Some(Fault::Stall) => tokio::time::sleep(app.cfg.stall).await,
        Some(Fault::Malformed) => {
            return Ok(json(200, format!("{{\"id\":\"{id_json}\",\"choices\":[{{")))
        }
        _ => {}
    }
    let Some(text) = gen.collect().await else {
        return Err(ApiError::new(
            503,
            "ServiceUnavailableError",
            "engine is shutting down",
        ));
    };
    let usage = gen.usage(n_tokens).to_json();
    let choice = match api {
        Api::Completions => {
            serde_json::json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish.as_str()})
        }
        Api::Chat => {
            serde_json::json!({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": finish.as_str()})
        }
    };
    let object = match api {
        Api::Completions => "text_completion",
        Api::Chat => "chat.completion",
    };
    let doc = serde_json::json!({"id": id, "object": object, "created": created, "model": app.cfg.model, "choices": [choice], "usage": usage});
    Ok(json(200, doc.to_string()))
}
