//! Incremental Server-Sent Events decoder over the body's byte chunks.
//!
//! Lines may be split across reads; `\n`, `\r\n` and a lone `\r` end lines (as the SSE spec
//! says, even when a `\r\n` pair is split between two reads); a leading UTF-8 BOM is dropped;
//! `:` lines are comments; several `data:` lines of one event are joined with `\n`; a blank line
//! ends the event. Buffers are reused, so a steady stream decodes without allocating. `event:`,
//! `id:` and `retry:` are ignored (no LLM server we speak to needs them).

/// The largest event (or line) kept while it is incomplete. An LLM chunk is at most a few
/// kilobytes; a stream that sends 16 MiB without ending an event is broken or hostile, and
/// buffering it further would let one response take the client's memory.
pub const MAX_EVENT_BYTES: usize = 16 << 20;

/// An event grew past `MAX_EVENT_BYTES`; the buffers were dropped.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("an SSE event grew past {MAX_EVENT_BYTES} bytes without ending")]
pub struct Oversize;

/// Decoder state carried between reads.
#[derive(Default)]
pub struct SseDecoder {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    /// The last line ended with `\r`: a `\n` right after it belongs to that line end.
    after_cr: bool,
    /// No line has ended yet (a BOM may lead the first one).
    seen_line: bool,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one read; `on_event` gets each completed event's data (an error stops decoding).
    /// Memory stays under `MAX_EVENT_BYTES` plus one read: past it, `Oversize`.
    pub fn feed<E: From<Oversize>>(
        &mut self,
        chunk: &[u8],
        on_event: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if chunk.is_empty() {
            return Ok(());
        }
        let mut start = 0;
        if std::mem::take(&mut self.after_cr) && chunk.first() == Some(&b'\n') {
            start = 1;
        }
        while let Some(rel) = memchr::memchr2(b'\r', b'\n', &chunk[start..]) {
            let end = start + rel;
            let mut next = end + 1;
            if chunk[end] == b'\r' {
                match chunk.get(next) {
                    Some(b'\n') => next += 1,
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
            let seg = &chunk[start..end];
            start = next;
            self.check_size()?;
            if self.line.is_empty() {
                self.line_done(seg, on_event)?;
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(seg);
                let r = self.line_done(&line, on_event);
                line.clear();
                self.line = line;
                r?;
            }
        }
        self.line.extend_from_slice(&chunk[start..]);
        self.check_size()
    }

    /// Held bytes (the open line and the open event's data).
    pub fn held(&self) -> usize {
        self.line.len() + self.data.len()
    }

    fn check_size<E: From<Oversize>>(&mut self) -> Result<(), E> {
        if self.held() > MAX_EVENT_BYTES {
            *self = SseDecoder::default();
            return Err(Oversize.into());
        }
        Ok(())
    }

    /// End of body: a last line without newline and an event without blank line still count.
    pub fn finish<E: From<Oversize>>(
        &mut self,
        on_event: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, on_event)?;
        }
        self.line_done(b"", on_event)
    }

    fn line_done<E: From<Oversize>>(
        &mut self,
        line: &[u8],
        on_event: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let line = if self.seen_line {
            line
        } else {
            self.seen_line = true;
            line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line)
        };
        if line.is_empty() {
            if self.has_data {
                self.has_data = false;
                let r = on_event(&self.data);
                self.data.clear();
                return r;
            }
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if name == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(reads: &[&[u8]]) -> Vec<String> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        let mut f = |e: &[u8]| -> Result<(), Oversize> {
            out.push(String::from_utf8_lossy(e).into_owned());
            Ok(())
        };
        for r in reads {
            d.feed(r, &mut f).unwrap();
        }
        d.finish(&mut f).unwrap();
        out
    }

    #[test]
    fn simple_and_done() {
        assert_eq!(
            decode(&[b"data: {\"a\":1}\n\ndata: [DONE]\n\n"]),
            vec!["{\"a\":1}", "[DONE]"]
        );
    }

    #[test]
    fn split_reads_at_every_byte() {
        let s = b"data: {\"a\":1}\r\n\r\n: keep-alive\r\n\r\ndata:x\n\n";
        for cut in 0..s.len() {
            let got = decode(&[&s[..cut], &s[cut..]]);
            assert_eq!(got, vec!["{\"a\":1}", "x"], "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = s.chunks(1).collect();
        assert_eq!(decode(&bytes), vec!["{\"a\":1}", "x"]);
    }

    #[test]
    fn comments_multiline_and_other_fields() {
        let got = decode(&[b": hi\nevent: msg\nid: 3\ndata: a\ndata: b\nretry: 5\n\n"]);
        assert_eq!(got, vec!["a\nb"]);
    }

    #[test]
    fn unterminated_last_event_is_flushed() {
        assert_eq!(decode(&[b"data: x\n\ndata: y"]), vec!["x", "y"]);
        assert!(decode(&[b"\n\n: only a comment\n"]).is_empty());
    }

    #[test]
    fn lone_cr_and_split_crlf_end_lines() {
        let s = b"data: a\r\rdata: b\r\n\r\ndata: c\n\r\n";
        for cut in 0..s.len() {
            let got = decode(&[&s[..cut], &s[cut..]]);
            assert_eq!(got, vec!["a", "b", "c"], "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = s.chunks(1).collect();
        assert_eq!(decode(&bytes), vec!["a", "b", "c"]);
        // A CR ending one read and a CR starting the next are two line ends: a blank line.
        assert_eq!(decode(&[b"data: x\r", b"\rdata: y"]), vec!["x", "y"]);
        // An empty read between the CR and its LF does not split the pair.
        assert_eq!(decode(&[b"data: x\r", b"", b"\ndata: y\n\n"]), vec!["x\ny"]);
    }

    #[test]
    fn leading_bom_is_dropped_once() {
        let s = b"\xEF\xBB\xBFdata: a\n\n\xEF\xBB\xBFdata: b\n\n";
        for cut in 0..s.len() {
            let got = decode(&[&s[..cut], &s[cut..]]);
            // A BOM later in the stream is part of a line whose field is not `data`.
            assert_eq!(got, vec!["a"], "cut at {cut}");
        }
    }

    #[test]
    fn callback_error_stops() {
        let mut d = SseDecoder::new();
        let mut n = 0;
        let r = d.feed(b"data: a\n\ndata: b\n\n", &mut |_e: &[u8]| {
            n += 1;
            Err(Oversize)
        });
        assert_eq!(r, Err(Oversize));
        assert_eq!(n, 1);
    }

    /// Events as a server could frame them: data lines (several per event), comments, other
    /// fields, any of the three line ends; returns the bytes and the events' data.
    fn frame(events: &[(Vec<String>, bool)], ends: &[u8]) -> (Vec<u8>, Vec<String>) {
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        let mut k = 0;
        // A lone `\r` followed by an end that starts with `\n` would read as one `\r\n`:
        // after a `\r`, the next end is a `\r` too.
        let mut after_cr = false;
        let mut end = |b: &mut Vec<u8>| {
            let pick = if after_cr {
                2
            } else {
                ends[k % ends.len()] % 3
            };
            b.extend_from_slice(match pick {
                0 => &b"\n"[..],
                1 => b"\r\n",
                _ => b"\r",
            });
            after_cr = pick == 2;
            k += 1;
        };
        for (lines, comment) in events {
            if *comment {
                bytes.extend_from_slice(b": keep-alive");
                end(&mut bytes);
                bytes.extend_from_slice(b"event: message");
                end(&mut bytes);
            }
            for l in lines {
                bytes.extend_from_slice(b"data: ");
                bytes.extend_from_slice(l.as_bytes());
                end(&mut bytes);
            }
            end(&mut bytes);
            want.push(lines.join("\n"));
        }
        (bytes, want)
    }

    /// `bytes` fed in reads cut at `cuts` (positions, any order, repeats allowed).
    fn decode_split(bytes: &[u8], cuts: &[usize]) -> Vec<String> {
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        at.push(0);
        at.push(bytes.len());
        at.sort_unstable();
        let reads: Vec<&[u8]> = at.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
        decode(&reads)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// However the reads cut a valid stream, the same events come out.
        #[test]
        fn any_split_gives_the_same_events(
            events in proptest::collection::vec(
                (proptest::collection::vec("[^\r\n]{0,40}", 1..4), proptest::bool::ANY),
                1..12,
            ),
            ends in proptest::collection::vec(0u8..3, 1..8),
            cuts in proptest::collection::vec(0usize..100_000, 0..24),
        ) {
            let (bytes, want) = frame(&events, &ends);
            proptest::prop_assert_eq!(decode_split(&bytes, &cuts), want.clone());
            proptest::prop_assert_eq!(decode(&[&bytes]), want);
        }

        /// Arbitrary bytes in arbitrary reads: no panic, and the decoder never holds more
        /// than the cap.
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..4096),
            cuts in proptest::collection::vec(0usize..100_000, 0..16),
        ) {
            let _ = decode_split(&bytes, &cuts);
            let mut d = SseDecoder::new();
            let mut f = |_: &[u8]| -> Result<(), Oversize> { Ok(()) };
            let _ = d.feed(&bytes, &mut f);
            proptest::prop_assert!(d.held() <= MAX_EVENT_BYTES);
        }
    }

    #[test]
    fn an_event_that_never_ends_is_cut_off_at_the_cap() {
        let mut d = SseDecoder::new();
        let mut f = |_: &[u8]| -> Result<(), Oversize> { Ok(()) };
        let block = vec![b'x'; 1 << 20];
        d.feed(b"data: ", &mut f).unwrap();
        let mut failed = false;
        for _ in 0..(MAX_EVENT_BYTES >> 20) + 2 {
            if d.feed(&block, &mut f).is_err() {
                failed = true;
                break;
            }
            assert!(d.held() <= MAX_EVENT_BYTES + block.len());
        }
        assert!(failed, "a line past the cap must be an error");
        assert_eq!(d.held(), 0, "the buffers are dropped");
        // Many data lines of one event that never ends count as well.
        let mut d = SseDecoder::new();
        let line = [b"data: ".as_slice(), &block, b"\n"].concat();
        let failed = (0..(MAX_EVENT_BYTES >> 20) + 2).any(|_| d.feed(&line, &mut f).is_err());
        assert!(failed && d.held() == 0);
    }
}
