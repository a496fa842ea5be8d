//! A long, seeded fuzz run of every parser that reads bytes a server or a client sent: the
//! client's SSE framing (`client::sse`) and event decoding (`client::decode`, streamed and
//! whole bodies) and the sim's request parser (`sim::request`). The property tests in
//! `cargo test` run a few hundred cases each; this runs millions, on stable Rust, on demand:
//!
//! ```text
//! nice -n 10 cargo run --release --example fuzz_parsers -- --inputs 10000000 --seed 1
//! ```
//!
//! Inputs rotate over five kinds: random bytes (half from SSE's own vocabulary), generated
//! valid streams, mutated valid streams, whole JSON bodies (valid, mutated, random) and sim
//! request bodies (valid, mutated, random). Each stream is fed whole and in random reads.
//! Checks: no panic; the same events for any split of any stream; the events of a valid stream
//! are exactly the ones framed, and each decodes to the text it was made from; the decoder
//! never holds more than its cap and holds nothing after the end; a 17 MiB event is an error,
//! not 17 MiB held; the sim answers every body with a request or a 400. Input `i` is drawn
//! from `(seed, i)` alone, so `--only i` replays one failure. Exit 1 when any check failed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use _core::client::config::ApiKind;
use _core::client::decode::{decode_event, decode_full, KIND_DONE, KIND_NO_CHOICE, KIND_TEXT};
use _core::client::sse::{Oversize, SseDecoder, MAX_EVENT_BYTES};
use _core::sim::request::parse as parse_request;
use _core::sim::rng::SplitMix;
use _core::sim::sse::Api;

const APIS: [ApiKind; 4] = [
    ApiKind::Completions,
    ApiKind::Chat,
    ApiKind::Tgi,
    ApiKind::Trtllm,
];
const KINDS: [&str; 5] = [
    "random SSE bytes",
    "valid SSE streams",
    "mutated SSE streams",
    "whole JSON bodies",
    "sim request bodies",
];
/// A 17 MiB event is fed once every this many inputs (and once at the start).
const OVERSIZE_EVERY: u64 = 1 << 20;
/// SSE's and JSON's own vocabulary, so random input reaches the parsers' interesting states.
const TOKENS: &[&[u8]] = &[
    b"data:",
    b"data: ",
    b"\n",
    b"\r",
    b"\r\n",
    b"\n\n",
    b":",
    b": ping",
    b"event: x",
    b"id: 1",
    b"retry: 5",
    b"\xEF\xBB\xBF",
    b"[DONE]",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\\",
    b",",
    b"\"choices\":",
    b"\"text\":",
    b"\"delta\":",
    b"\"usage\":",
    b"\"error\":",
    b"null",
    b"1e999",
    b"\xC3\xA9",
    b"\xF0\x9F",
    b"\xFF",
];
/// Text pieces of generated answers: ASCII, JSON escapes once encoded, multi-byte UTF-8.
const PIECES: &[&str] = &[
    "a", " the", "Hello", "\n", "\r\n", "\"", "\\", "é", "中文", "🦀", "\u{2028}", "\t", "{", "}",
    "data: ", ":", "[DONE]", "\u{0}", " ", "",
];

struct Args {
    inputs: u64,
    seed: u64,
    only: Option<u64>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        inputs: 10_000_000,
        seed: 1,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or(format!("{name} needs a value"))?;
            v.replace('_', "")
                .parse()
                .map_err(|_| format!("{name}: not a number: {v}"))
        };
        match flag.as_str() {
            "--inputs" => a.inputs = value("--inputs")?,
            "--seed" => a.seed = value("--seed")?,
            "--only" => a.only = Some(value("--only")?),
            "-h" | "--help" => {
                return Err(
                    "usage: fuzz_parsers [--inputs N (10000000)] [--seed S (1)] [--only I]".into(),
                )
            }
            other => return Err(format!("unknown argument {other} (see --help)")),
        }
    }
    Ok(a)
}

/// What the run went through, beyond the input count (so a reader can tell it reached the
/// parsers' depths rather than bouncing off their first byte).
#[derive(Default)]
struct Stats {
    events: u64,
    texts_checked: u64,
    sim_accepted: u64,
    sim_refused: u64,
}

/// A failed check: the message says what and with which input.
struct Fail(String);

type Check = Result<(), Fail>;

fn fail<T>(msg: String) -> Result<T, Fail> {
    Err(Fail(msg))
}

fn show(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(300)];
    format!(
        "{:?}{}",
        String::from_utf8_lossy(cut),
        if bytes.len() > 300 { "…" } else { "" }
    )
}

// ------------------------------------------------------------------ generators

fn random_bytes(rng: &mut SplitMix, max_len: usize) -> Vec<u8> {
    let len = rng.below(max_len + 1);
    let vocab = rng.below(2) == 0;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        if vocab && rng.below(3) > 0 {
            out.extend_from_slice(TOKENS[rng.below(TOKENS.len())]);
        } else {
            out.push(rng.next_u64() as u8);
        }
    }
    out
}

fn text(rng: &mut SplitMix) -> String {
    (0..rng.below(6))
        .map(|_| PIECES[rng.below(PIECES.len())])
        .collect()
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// One event's JSON for `api` and the text (and kind) decoding it must give.
fn event_json(rng: &mut SplitMix, api: ApiKind) -> (String, &'static str, u8, String) {
    let t = text(rng);
    let kind = if t.is_empty() { 1 } else { KIND_TEXT };
    let q = json_str(&t);
    let finish = ["null", "\"stop\"", "\"length\""][rng.below(3)];
    let json = match (api, rng.below(8)) {
        (ApiKind::Completions | ApiKind::Chat, 0) => {
            let (p, c) = (rng.below(5000), rng.below(5000));
            let doc = format!(
                r#"{{"id":"x","choices":[],"usage":{{"prompt_tokens":{p},"completion_tokens":{c}}}}}"#
            );
            return (doc, "usage", KIND_NO_CHOICE, String::new());
        }
        (ApiKind::Completions, _) => format!(
            r#"{{"id":"cmpl-1","object":"text_completion","choices":[{{"index":0,"text":{q},"logprobs":null,"finish_reason":{finish}}}],"usage":null}}"#
        ),
        (ApiKind::Chat, _) => format!(
            r#"{{"id":"chat-1","choices":[{{"index":0,"delta":{{"role":"assistant","content":{q}}},"finish_reason":{finish}}}]}}"#
        ),
        (ApiKind::Tgi, _) => format!(
            r#"{{"index":1,"token":{{"id":3,"text":{q},"logprob":-0.5,"special":false}},"generated_text":null,"details":null}}"#
        ),
        (ApiKind::Trtllm, _) => {
            format!(r#"{{"model_name":"ensemble","sequence_end":false,"text_output":{q}}}"#)
        }
    };
    (json, "text", kind, t)
}

/// An event's expected decoding.
struct Want {
    data: String,
    kind: u8,
    text: String,
}

/// A valid stream as a server could frame it: BOM, comments and other fields, data split over
/// several lines (at a JSON whitespace position), any of the three line ends.
fn valid_stream(rng: &mut SplitMix, api: ApiKind) -> (Vec<u8>, Vec<Want>) {
    let mut bytes = Vec::new();
    let mut want = Vec::new();
    let mut after_cr = false;
    // After a lone `\r`, an end starting with `\n` would be read as the pair `\r\n`.
    let mut end = |b: &mut Vec<u8>, rng: &mut SplitMix| {
        let pick = rng.below(3);
        let e: &[u8] = match (after_cr, pick) {
            (false, 0) => b"\n",
            (_, 1) => b"\r\n",
            _ => b"\r",
        };
        after_cr = e == b"\r";
        b.extend_from_slice(e);
    };
    if rng.below(8) == 0 {
        bytes.extend_from_slice(b"\xEF\xBB\xBF");
    }
    for i in 0..=rng.below(8) {
        if rng.below(4) == 0 {
            let extra: &[u8] = [
                &b": ping"[..],
                b"event: message",
                b"id: 7",
                b"retry: 100",
                b":",
            ][rng.below(5)];
            bytes.extend_from_slice(extra);
            end(&mut bytes, rng);
        }
        let (data, kind, t) = if i > 0 && rng.below(10) == 0 {
            ("[DONE]".to_string(), KIND_DONE, String::new())
        } else {
            let (j, _, k, t) = event_json(rng, api);
            (j, k, t)
        };
        let lines: Vec<&str> = if rng.below(5) == 0 && data.starts_with('{') {
            vec![&data[..1], &data[1..]] // joined with `\n`: still the same JSON
        } else {
            vec![&data]
        };
        for l in &lines {
            bytes.extend_from_slice(if rng.below(4) == 0 {
                b"data:"
            } else {
                b"data: "
            });
            bytes.extend_from_slice(l.as_bytes());
            end(&mut bytes, rng);
        }
        end(&mut bytes, rng);
        want.push(Want {
            data: lines.join("\n"),
            kind,
            text: t,
        });
    }
    (bytes, want)
}

fn mutate(rng: &mut SplitMix, mut b: Vec<u8>) -> Vec<u8> {
    for _ in 0..=rng.below(4) {
        let n = b.len();
        let at = rng.below(n + 1);
        match rng.below(7) {
            0 if n > 0 => b[at.min(n - 1)] ^= 1 << rng.below(8),
            1 if n > 0 => b[at.min(n - 1)] = TOKENS[rng.below(TOKENS.len())][0],
            2 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                b.splice(at..at, t.iter().copied());
            }
            3 => {
                let end = (at + rng.below(16)).min(n);
                b.drain(at..end);
            }
            4 => {
                let end = (at + rng.below(32)).min(n);
                let dup = b[at..end].to_vec();
                b.splice(at..at, dup);
            }
            5 => b.truncate(at),
            _ => b.insert(at, rng.next_u64() as u8),
        }
    }
    b
}

/// Cut points for feeding `len` bytes in reads: none, every byte, or a few random ones.
fn splits(rng: &mut SplitMix, len: usize) -> Vec<usize> {
    let mut at: Vec<usize> = match rng.below(6) {
        0 => (0..=len).collect(),
        _ => (0..rng.below(12)).map(|_| rng.below(len + 1)).collect(),
    };
    at.push(0);
    at.push(len);
    at.sort_unstable();
    at
}

// ------------------------------------------------------------------ checks

/// The events of `bytes` fed in reads cut at `cuts`, checking the decoder's bound as it goes.
fn events(bytes: &[u8], cuts: &[usize]) -> Result<Vec<Vec<u8>>, Fail> {
    let mut d = SseDecoder::new();
    let mut out = Vec::new();
    let mut on = |e: &[u8]| -> Result<(), Oversize> {
        out.push(e.to_vec());
        Ok(())
    };
    for w in cuts.windows(2) {
        if d.feed(&bytes[w[0]..w[1]], &mut on).is_err() {
            return fail(format!("Oversize on {} bytes", bytes.len()));
        }
        if d.held() > MAX_EVENT_BYTES {
            return fail(format!("holds {} bytes", d.held()));
        }
    }
    if d.finish(&mut on).is_err() {
        return fail("Oversize at finish".into());
    }
    if d.held() != 0 {
        return fail(format!("still holds {} bytes after the end", d.held()));
    }
    Ok(out)
}

/// Whole vs. split: the same events; then each decodes (or fails) without panicking.
fn check_stream(rng: &mut SplitMix, bytes: &[u8], st: &mut Stats) -> Result<Vec<Vec<u8>>, Fail> {
    let whole = events(bytes, &[0, bytes.len()])?;
    let cuts = splits(rng, bytes.len());
    let split = events(bytes, &cuts)?;
    if split != whole {
        let how = if cuts.len() > 16 {
            "one byte per read".to_string()
        } else {
            format!("reads cut at {cuts:?}")
        };
        return fail(format!(
            "{how} gave {} events, whole gave {}, for {}",
            split.len(),
            whole.len(),
            show(bytes)
        ));
    }
    let api = APIS[rng.below(APIS.len())];
    for e in &whole {
        let _ = decode_event(api, e);
    }
    st.events += whole.len() as u64;
    Ok(whole)
}

fn check_valid_stream(rng: &mut SplitMix, st: &mut Stats) -> Check {
    let api = APIS[rng.below(APIS.len())];
    let (bytes, want) = valid_stream(rng, api);
    let got = check_stream(rng, &bytes, st)?;
    let datas: Vec<&[u8]> = want.iter().map(|w| w.data.as_bytes()).collect();
    if got != datas {
        return fail(format!(
            "framed {} events, decoded {:?}",
            want.len(),
            show(&bytes)
        ));
    }
    for w in &want {
        match decode_event(api, w.data.as_bytes()) {
            Ok(ev) if ev.kind == w.kind && ev.text == w.text => st.texts_checked += 1,
            Ok(ev) => {
                return fail(format!(
                    "{api:?} event {:?} decoded to kind {} text {:?}, want kind {} text {:?}",
                    w.data, ev.kind, ev.text, w.kind, w.text
                ))
            }
            Err(e) => return fail(format!("{api:?} valid event {:?} refused: {e}", w.data)),
        }
    }
    Ok(())
}

/// A whole (non-streamed) body: valid ones decode to their text; any bytes never panic.
fn check_body(rng: &mut SplitMix, st: &mut Stats) -> Check {
    let api = APIS[rng.below(APIS.len())];
    let (json, _, kind, t) = event_json(rng, api);
    let json = match (api, rng.below(2)) {
        (ApiKind::Chat, 0) => json.replace("\"delta\"", "\"message\""),
        (ApiKind::Tgi, 0) => format!("[{}]", json),
        _ => json,
    };
    match rng.below(3) {
        0 => match decode_full(api, json.as_bytes()) {
            Ok(ev) if ev.kind == kind && ev.text == t => {
                st.texts_checked += 1;
                Ok(())
            }
            Ok(ev) => fail(format!(
                "{api:?} body {json} gave kind {} text {:?}",
                ev.kind, ev.text
            )),
            Err(e) => fail(format!("{api:?} valid body {json} refused: {e}")),
        },
        1 => {
            let b = mutate(rng, json.into_bytes());
            for api in APIS {
                let _ = decode_full(api, &b);
            }
            Ok(())
        }
        _ => {
            let b = random_bytes(rng, 256);
            for api in APIS {
                let _ = decode_full(api, &b);
            }
            Ok(())
        }
    }
}

const REQ_FIELDS: &[&str] = &[
    "model",
    "prompt",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "min_tokens",
    "stream",
    "stream_options",
    "ignore_eos",
    "temperature",
    "top_p",
    "seed",
    "n",
    "stop",
    "logprobs",
    "logit_bias",
    "chat_template_kwargs",
    "bogus",
];
const REQ_VALUES: &[&str] = &[
    "null",
    "true",
    "-1",
    "0",
    "3",
    "1e308",
    "18446744073709551616",
    "2.5",
    "\"x\"",
    "\"\"",
    "[]",
    "[1,2]",
    "[\"a\"]",
    "{}",
    "{\"include_usage\":true}",
    "{\"a\":1}",
    "[{\"role\":\"user\",\"content\":\"hi\"}]",
    "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"p\"}]}]",
    "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":1}]}]",
    "[{\"role\":1}]",
];

const GOOD_FIELDS: &[(&str, &str)] = &[
    ("max_tokens", "8"),
    ("stream", "true"),
    ("stream_options", "{\"include_usage\":true}"),
    ("ignore_eos", "true"),
    ("temperature", "0.7"),
    ("top_p", "1"),
    ("seed", "3"),
    ("stop", "[\"x\"]"),
    ("min_tokens", "2"),
    ("n", "1"),
    ("logprobs", "null"),
];

fn request_body(rng: &mut SplitMix) -> String {
    let mut fields = vec!["\"model\":\"m\"".to_string()];
    if rng.below(2) == 0 {
        fields.push(format!("\"prompt\":{}", json_str(&text(rng))));
    } else {
        fields.push(format!(
            "\"messages\":[{{\"role\":\"user\",\"content\":{}}}]",
            json_str(&text(rng))
        ));
    }
    // Half the bodies get only fields of the right type (most are accepted), half get any
    // field with any value (most are refused, each for its own reason).
    let well_typed = rng.below(2) == 0;
    for _ in 0..rng.below(6) {
        let field = if well_typed {
            let (k, v) = GOOD_FIELDS[rng.below(GOOD_FIELDS.len())];
            format!("\"{k}\":{v}")
        } else {
            let k = REQ_FIELDS[rng.below(REQ_FIELDS.len())];
            format!("\"{k}\":{}", REQ_VALUES[rng.below(REQ_VALUES.len())])
        };
        fields.push(field);
    }
    format!("{{{}}}", fields.join(","))
}

/// The sim answers every body with a request or a 400; an accepted one is usable.
fn check_request(rng: &mut SplitMix, st: &mut Stats) -> Check {
    let body = match rng.below(3) {
        0 => request_body(rng).into_bytes(),
        1 => {
            let b = request_body(rng).into_bytes();
            mutate(rng, b)
        }
        _ => random_bytes(rng, 256),
    };
    for api in [Api::Completions, Api::Chat] {
        match parse_request(&body, api) {
            Ok(r) => {
                let _ = (r.stream(), r.include_usage(), r.max_tokens(), r.chat_text());
                st.sim_accepted += 1;
            }
            Err(e) if e.status == 400 => {
                let _ = e.to_json();
                st.sim_refused += 1;
            }
            Err(e) => return fail(format!("status {} for {}", e.status, show(&body))),
        }
    }
    Ok(())
}

/// 17 MiB in one event (one line, or many data lines), in random reads: an error at the cap,
/// never more than the cap plus one read held, and nothing held after it.
fn check_oversize(rng: &mut SplitMix) -> Check {
    let many_lines = rng.below(2) == 0;
    let mut d = SseDecoder::new();
    let mut on = |_: &[u8]| -> Result<(), Oversize> { Ok(()) };
    let block: Vec<u8> = if many_lines {
        [b"data: ".as_slice(), &[b'x'; 4093], b"\n"].concat()
    } else {
        vec![b'x'; 4096]
    };
    if d.feed(b"data: ", &mut on).is_err() {
        return fail("Oversize on the first read".into());
    }
    let mut fed = 0usize;
    while fed <= MAX_EVENT_BYTES + (1 << 20) {
        let read = 1 + rng.below(64);
        let chunk = block.repeat(read);
        fed += chunk.len();
        if d.feed(&chunk, &mut on).is_err() {
            return if d.held() == 0 {
                Ok(())
            } else {
                fail(format!("holds {} bytes after Oversize", d.held()))
            };
        }
        if d.held() > MAX_EVENT_BYTES + chunk.len() {
            return fail(format!("holds {} bytes (read {})", d.held(), chunk.len()));
        }
    }
    fail(format!("{fed} bytes in one event and no error"))
}

fn one(kind: usize, rng: &mut SplitMix, st: &mut Stats) -> Check {
    match kind {
        0 => {
            let b = random_bytes(rng, 512);
            check_stream(rng, &b, st).map(drop)
        }
        1 => check_valid_stream(rng, st),
        2 => {
            let api = APIS[rng.below(APIS.len())];
            let (b, _) = valid_stream(rng, api);
            let b = mutate(rng, b);
            check_stream(rng, &b, st).map(drop)
        }
        3 => check_body(rng, st),
        _ => check_request(rng, st),
    }
}

/// Input `i`'s generator: a function of the seed and `i` alone.
fn rng_for(seed: u64, i: u64) -> SplitMix {
    let mut mix = SplitMix::new(seed ^ i.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    SplitMix::new(mix.next_u64())
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("fuzz_parsers: {msg}");
            std::process::exit(2);
        }
    };
    // Panics are caught and reported as failures with their input's index.
    std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));
    let range = match a.only {
        Some(i) => i..i + 1,
        None => 0..a.inputs,
    };
    let started = Instant::now();
    let mut counts = [0u64; 5];
    let mut oversize = 0u64;
    let mut failures = 0u64;
    let mut st = Stats::default();
    for i in range {
        let kind = (i % KINDS.len() as u64) as usize;
        let mut rng = rng_for(a.seed, i);
        let result = catch_unwind(AssertUnwindSafe(|| {
            if i % OVERSIZE_EVERY == 0 {
                check_oversize(&mut rng)?;
            }
            one(kind, &mut rng, &mut st)
        }));
        counts[kind] += 1;
        oversize += u64::from(i % OVERSIZE_EVERY == 0);
        let msg = match result {
            Ok(Ok(())) => continue,
            Ok(Err(Fail(m))) => m,
            Err(_) => "panicked (message above)".to_string(),
        };
        failures += 1;
        if failures <= 20 {
            eprintln!(
                "FAIL input {i} ({}; --seed {} --only {i}): {msg}",
                KINDS[kind], a.seed
            );
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let total: u64 = counts.iter().sum();
    println!("fuzz_parsers: seed {}", a.seed);
    for (name, n) in KINDS.iter().zip(counts) {
        println!("  {name:<20} {n:>12}");
    }
    println!("  {:<20} {oversize:>12}", "17 MiB events");
    println!(
        "  {} SSE events framed and compared, {} decoded texts checked, sim bodies: {} \
         accepted, {} refused with 400",
        st.events, st.texts_checked, st.sim_accepted, st.sim_refused
    );
    println!(
        "{total} inputs in {secs:.1} s ({:.0}/s): {}",
        total as f64 / secs.max(1e-9),
        if failures == 0 {
            "no panic, every check held".to_string()
        } else {
            format!("{failures} FAILED")
        }
    );
    std::process::exit(i32::from(failures > 0));
}
