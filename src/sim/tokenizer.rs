//! Prompt token counting and the output vocabulary. With a tokenizer file (tokenizer.json or
//! an HF directory) the sim counts like the engine would; otherwise a built-in
//! whitespace-and-punctuation tokenizer. Output is drawn from whole-word pieces (" word")
//! that are single tokens, checked at start-up, so re-tokenizing the generated text gives
//! exactly `completion_tokens` tokens.

use std::path::Path;

use super::error::SimError;
use super::rng::SplitMix;

/// Words the built-in tokenizer emits (each " word" is one built-in token).
const BUILTIN_WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by",
    "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an",
    "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there",
    "been", "if", "more", "when", "will", "would", "who", "so", "no", "time", "light", "river",
    "stone", "summer", "winter", "morning", "evening", "garden", "window", "silver", "golden",
    "quiet", "bright", "gentle", "wander",
];

const MAX_PIECES: usize = 512;

pub enum SimTokenizer {
    Builtin,
    Hf(Box<tokenizers::Tokenizer>),
}

/// The output vocabulary: text pieces, their JSON-escaped form and token ids.
#[derive(Debug, Clone)]
pub struct Vocab {
    pub pieces: Vec<String>,
    pub json: Vec<String>,
    pub ids: Vec<u32>,
}

impl Vocab {
    fn new(pieces: Vec<String>, ids: Vec<u32>) -> Self {
        let json = pieces
            .iter()
            .map(|p| {
                let s = serde_json::to_string(p).unwrap_or_else(|_| "\"\"".into());
                s[1..s.len() - 1].to_string()
            })
            .collect();
        Vocab { pieces, json, ids }
    }

    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }
}

/// The built-in tokenizer's pieces: runs of alphanumerics, and each other non-space char.
pub fn builtin_pieces(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        rest = rest.trim_start();
        let first = rest.chars().next()?;
        let end = if first.is_alphanumeric() {
            rest.find(|c: char| !c.is_alphanumeric())
                .unwrap_or(rest.len())
        } else {
            first.len_utf8()
        };
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

fn builtin_id(piece: &str) -> u32 {
    (super::rng::fnv1a(piece.as_bytes(), 0) % 50_000) as u32
}

impl SimTokenizer {
    /// Load the tokenizer (None = built-in) and pick and verify its output vocabulary.
    pub fn load(path: Option<&str>) -> Result<(SimTokenizer, Vocab), SimError> {
        let Some(path) = path else {
            let pieces: Vec<String> = BUILTIN_WORDS.iter().map(|w| format!(" {w}")).collect();
            let ids = pieces.iter().map(|p| builtin_id(p.trim())).collect();
            return Ok((SimTokenizer::Builtin, Vocab::new(pieces, ids)));
        };
        let fail = |why: String| SimError::Tokenizer {
            path: path.to_string(),
            why,
        };
        let p = Path::new(path);
        let file = if p.is_dir() {
            p.join("tokenizer.json")
        } else {
            p.to_path_buf()
        };
        if !file.is_file() {
            return Err(fail("no tokenizer.json there".into()));
        }
        let mut tok = tokenizers::Tokenizer::from_file(&file).map_err(|e| fail(e.to_string()))?;
        tok.with_padding(None);
        tok.with_truncation(None).map_err(|e| fail(e.to_string()))?;
        let t = SimTokenizer::Hf(Box::new(tok));
        let vocab = t.pick_vocab().map_err(fail)?;
        Ok((t, vocab))
    }

    fn hf_ids(tok: &tokenizers::Tokenizer, text: &str, special: bool) -> Result<Vec<u32>, String> {
        tok.encode(text, special)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| e.to_string())
    }

    /// Whole-word vocabulary entries whose " word" text encodes to exactly that one id,
    /// then a check that a random sequence of them round-trips.
    fn pick_vocab(&self) -> Result<Vocab, String> {
        let SimTokenizer::Hf(tok) = self else {
            return Err("not a tokenizer file".into());
        };
        let (mut pieces, mut ids) = (Vec::new(), Vec::new());
        let size = tok.get_vocab_size(false) as u32;
        for id in 0..size {
            if pieces.len() >= MAX_PIECES {
                break;
            }
            let Some(raw) = tok.id_to_token(id) else {
                continue;
            };
            let word = raw.trim_start_matches(['Ġ', '▁', ' ']);
            if word.len() < 2
                || word.len() + 2 < raw.len()
                || !word.bytes().all(|b| b.is_ascii_alphabetic())
            {
                continue;
            }
            let piece = format!(" {word}");
            if Self::hf_ids(tok, &piece, false).ok().as_deref() == Some(&[id][..]) {
                pieces.push(piece);
                ids.push(id);
            }
        }
        if pieces.len() < 8 {
            return Err(format!(
                "only {} whole-word tokens round-trip; cannot generate exact text with it",
                pieces.len()
            ));
        }
        let vocab = Vocab::new(pieces, ids);
        let mut rng = SplitMix::new(42);
        let picks: Vec<usize> = (0..256).map(|_| rng.below(vocab.len())).collect();
        let text: String = picks.iter().map(|&i| vocab.pieces[i].as_str()).collect();
        let want: Vec<u32> = picks.iter().map(|&i| vocab.ids[i]).collect();
        if Self::hf_ids(tok, &text, false)? != want {
            return Err("generated sample text does not re-tokenize to the same ids".into());
        }
        Ok(vocab)
    }

    /// A real (Hugging Face) tokenizer, whose counting costs enough to keep off async workers.
    pub fn is_hf(&self) -> bool {
        matches!(self, SimTokenizer::Hf(_))
    }

    /// Token count of a completion prompt (with the tokenizer's special tokens, like vLLM).
    pub fn count(&self, text: &str) -> usize {
        match self {
            SimTokenizer::Builtin => builtin_pieces(text).count(),
            SimTokenizer::Hf(t) => Self::hf_ids(t, text, true).map(|v| v.len()).unwrap_or(0),
        }
    }

    /// Token ids (for `/tokenize`); the built-in tokenizer hashes its pieces to ids.
    pub fn ids(&self, text: &str, special: bool) -> Vec<u32> {
        match self {
            SimTokenizer::Builtin => builtin_pieces(text).map(builtin_id).collect(),
            SimTokenizer::Hf(t) => Self::hf_ids(t, text, special).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_splits_words_and_punctuation() {
        let p: Vec<&str> = builtin_pieces("Hello, world!  It's 42.").collect();
        assert_eq!(p, ["Hello", ",", "world", "!", "It", "'", "s", "42", "."]);
        let (t, v) = SimTokenizer::load(None).unwrap();
        let text: String = v.pieces.iter().map(String::as_str).collect();
        assert_eq!(t.count(&text), v.len());
    }

    #[test]
    fn fixture_tokenizer_round_trips() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tokenizer");
        let (t, v) = SimTokenizer::load(Some(dir)).unwrap();
        assert!(v.len() >= 8);
        assert!(v.pieces.iter().all(|p| p.starts_with(' ')));
        let text: String = v.pieces.iter().map(String::as_str).collect();
        assert_eq!(t.ids(&text, false), v.ids);
        assert!(SimTokenizer::load(Some("/nonexistent")).is_err());
    }
}
