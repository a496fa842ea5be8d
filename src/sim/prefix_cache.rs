//! The sim's prefix cache, modelled on vLLM's automatic prefix caching: the prompt's tokens in
//! fixed-size blocks, each block keyed by a hash chained over the whole prefix (block i's key is
//! hash(key of block i-1, tokens of block i)), so two prompts share a block only if they agree
//! on every token up to its end. A request's salt (`cache_salt`) seeds the chain: prompts with
//! different salts never share a block. Capacity is counted in blocks; at capacity the least
//! recently used block goes first, and among one request's blocks the deepest first (vLLM
//! frees a request's blocks tail first), so a shared head outlives the tails that hang off it.
//!
//! Only whole blocks are cached; a partial last block never is. As in vLLM, the last prompt
//! token is always computed (the engine needs its logits), so a hit covers at most
//! `prompt_len - 1` tokens, rounded down to whole blocks. Generated tokens are cached too (all
//! but the last, whose KV is never computed), so a later prompt that carries an answer back
//! (a conversation's next turn) hits on it as on vLLM.

use std::collections::{BTreeMap, HashMap};

use super::rng::SplitMix;

/// Seed of the chain for requests without a salt.
const ROOT: u64 = 0x5071_C0DE_CAC4_E000;
/// Seed of the salt hash (any constant other than ROOT).
const SALT_SEED: u64 = 0x5A17_5A17_5A17_5A17;

/// A 64-bit finaliser over FNV-1a, so chained keys spread over the whole range.
fn finish(h: u64) -> u64 {
    SplitMix::new(h).next_u64()
}

/// The key of a block: its parent's key chained with the block's tokens.
pub fn chain(parent: u64, block: &[u32]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ parent;
    for t in block {
        for b in t.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    finish(h)
}

/// The chain's seed: a fixed root, or one derived from the salt.
pub fn root(salt: Option<&str>) -> u64 {
    match salt {
        None => ROOT,
        Some(s) => finish(super::rng::fnv1a(s.as_bytes(), SALT_SEED)),
    }
}

/// Outcome of one request's look-up, in tokens (vLLM counts its prefix-cache queries and hits
/// in tokens too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lookup {
    /// Prompt tokens looked up (the whole prompt).
    pub queried: u64,
    /// Prompt tokens found cached (whole blocks, at most `queried - 1`).
    pub cached: u64,
}

/// An LRU set of block keys; not thread-safe (the server keeps it behind a mutex).
#[derive(Debug)]
pub struct PrefixCache {
    block_size: usize,
    capacity: usize,
    /// Block key -> its last-use stamp.
    stamps: HashMap<u64, u64>,
    /// Last-use stamp -> block key; the first entry is the next to evict.
    order: BTreeMap<u64, u64>,
    clock: u64,
}

impl PrefixCache {
    /// `block_size` >= 1 tokens, `capacity` >= 1 blocks (the caller disables caching at 0).
    pub fn new(block_size: u32, capacity: u64) -> Self {
        PrefixCache {
            block_size: (block_size as usize).max(1),
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX).max(1),
            stamps: HashMap::new(),
            order: BTreeMap::new(),
            clock: 0,
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Blocks held now.
    pub fn len(&self) -> usize {
        self.stamps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stamps.is_empty()
    }

    /// Whether a block with this key is held (no change to its recency).
    pub fn contains(&self, key: u64) -> bool {
        self.stamps.contains_key(&key)
    }

    /// Keys of the prompt's whole blocks, in order.
    pub fn block_keys(&self, salt: Option<&str>, tokens: &[u32]) -> Vec<u64> {
        let mut parent = root(salt);
        tokens
            .chunks_exact(self.block_size)
            .map(|b| {
                parent = chain(parent, b);
                parent
            })
            .collect()
    }

    /// Look the prompt up, then hold all its whole blocks as most recently used: what a
    /// request does on arrival. Returns what was found before this request added its own.
    pub fn query(&mut self, salt: Option<&str>, prompt: &[u32]) -> Lookup {
        self.query_and_hold(salt, prompt, prompt.len())
    }

    /// Look up the first `prompt_len` of `tokens` (the prompt), then hold all whole blocks of
    /// `tokens` (the prompt followed by the generated tokens whose KV the request computes).
    pub fn query_and_hold(
        &mut self,
        salt: Option<&str>,
        tokens: &[u32],
        prompt_len: usize,
    ) -> Lookup {
        let prompt_len = prompt_len.min(tokens.len());
        let keys = self.block_keys(salt, tokens);
        let max_hit_blocks = prompt_len.saturating_sub(1) / self.block_size;
        let hit_blocks = keys
            .iter()
            .take(max_hit_blocks)
            .take_while(|k| self.stamps.contains_key(k))
            .count();
        // Deepest block first, so the head ends up the most recent of this request's blocks.
        for &k in keys.iter().rev() {
            self.touch(k);
        }
        Lookup {
            queried: prompt_len as u64,
            cached: (hit_blocks * self.block_size) as u64,
        }
    }

    /// Mark a block used now, inserting it (and evicting the least recent) if new.
    fn touch(&mut self, key: u64) {
        self.clock += 1;
        if let Some(old) = self.stamps.insert(key, self.clock) {
            self.order.remove(&old);
        } else if self.stamps.len() > self.capacity {
            if let Some((_, victim)) = self.order.pop_first() {
                self.stamps.remove(&victim);
            }
        }
        self.order.insert(self.clock, key);
    }

    /// Drop every block (`POST /reset_prefix_cache`).
    pub fn clear(&mut self) {
        self.stamps.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(range: std::ops::Range<u32>) -> Vec<u32> {
        range.collect()
    }

    #[test]
    fn keys_chain_over_the_prefix() {
        let c = PrefixCache::new(4, 100);
        let a = c.block_keys(None, &toks(0..12));
        assert_eq!(a.len(), 3);
        // Same second block, different first block: different second key.
        let mut other = toks(0..12);
        other[0] = 99;
        let b = c.block_keys(None, &other);
        assert_ne!(a[0], b[0]);
        assert_ne!(a[1], b[1]);
        assert_eq!(a[1], chain(a[0], &[4, 5, 6, 7]));
        assert_eq!(a[0], chain(root(None), &[0, 1, 2, 3]));
        // A partial last block has no key.
        assert_eq!(c.block_keys(None, &toks(0..15)), a);
    }

    #[test]
    fn hits_are_whole_shared_blocks_and_never_the_last_token() {
        let mut c = PrefixCache::new(4, 100);
        assert_eq!(
            c.query(None, &toks(0..10)),
            Lookup {
                queried: 10,
                cached: 0
            }
        );
        // Shares 10 tokens, i.e. two whole blocks (the 2 tokens of the partial block are not cached).
        let mut p = toks(0..10);
        p.extend([50, 51, 52, 53]);
        assert_eq!(c.query(None, &p).cached, 8);
        // Diverges inside block 2: only block 1 hits.
        let mut q = toks(0..6);
        q.extend([70, 71, 72]);
        assert_eq!(c.query(None, &q).cached, 4);
        // The identical 8-token prompt: the last token is always computed, so one block hits.
        let mut d = PrefixCache::new(4, 100);
        d.query(None, &toks(0..8));
        assert_eq!(d.query(None, &toks(0..8)).cached, 4);
        assert_eq!(d.query(None, &toks(0..9)).cached, 8);
        // Shorter than a block: nothing to cache or hit.
        assert_eq!(d.query(None, &toks(0..3)).cached, 0);
    }

    #[test]
    fn salts_isolate() {
        let mut c = PrefixCache::new(4, 100);
        c.query(Some("alice"), &toks(0..9));
        assert_eq!(c.query(Some("bob"), &toks(0..9)).cached, 0);
        assert_eq!(c.query(None, &toks(0..9)).cached, 0);
        assert_eq!(c.query(Some("alice"), &toks(0..9)).cached, 8);
        assert_eq!(c.query(Some("bob"), &toks(0..9)).cached, 8);
        assert_ne!(root(Some("")), root(None));
    }

    #[test]
    fn lru_evicts_the_least_recent_and_tails_first() {
        // Room for 4 blocks.
        let mut c = PrefixCache::new(2, 4);
        let a = toks(0..5); // blocks a0 a1
        let b = toks(100..105); // blocks b0 b1
        c.query(None, &a);
        c.query(None, &b);
        assert_eq!(c.len(), 4);
        // Use a again: b is now the least recent.
        assert_eq!(c.query(None, &a).cached, 4);
        // One new block evicts b's tail (b1), not its head.
        let d = toks(200..203);
        c.query(None, &d);
        assert_eq!(c.len(), 4);
        let bk = c.block_keys(None, &b);
        assert!(c.contains(bk[0]) && !c.contains(bk[1]));
        assert_eq!(c.query(None, &b).cached, 2);
        // A prompt longer than the whole cache keeps its head blocks.
        let mut big = PrefixCache::new(2, 3);
        let long = toks(0..11); // 5 whole blocks
        big.query(None, &long);
        assert_eq!(big.len(), 3);
        let keys = big.block_keys(None, &long);
        assert!(keys[..3].iter().all(|k| big.contains(*k)));
        assert_eq!(big.query(None, &long).cached, 6);
    }

    #[test]
    fn generated_tokens_are_held_for_later_prompts() {
        let mut c = PrefixCache::new(4, 100);
        // A 6-token prompt answered with 5 tokens: 10 tokens computed, 2 whole blocks held.
        let mut seq = toks(0..6);
        seq.extend(50..55);
        let first = c.query_and_hold(None, &seq[..10], 6);
        assert_eq!(
            first,
            Lookup {
                queried: 6,
                cached: 0
            }
        );
        assert_eq!(c.len(), 2);
        // The next turn carries the answer back: both blocks hit, though the first prompt had
        // only one whole block.
        let mut next = seq.clone();
        next.extend([90, 91, 92]);
        assert_eq!(c.query(None, &next).cached, 8);
    }

    #[test]
    fn clear_forgets() {
        let mut c = PrefixCache::new(4, 10);
        c.query(None, &toks(0..9));
        c.clear();
        assert!(c.is_empty());
        assert_eq!(c.query(None, &toks(0..9)).cached, 0);
    }
}
