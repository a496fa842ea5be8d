//! Named engine profiles: plausible engines with different trade-offs, so that comparing
//! `fast-decode` with `fast-prefill` has a real, workload-dependent answer.
//! Long prompts with short answers favour `fast-prefill`; short prompts with long answers
//! favour `fast-decode` (its decode steps are cheap, its prefill is 10x dearer).

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    /// Fixed cost of every engine step (ms).
    pub step_base_ms: f64,
    /// Added per sequence decoding one token in the step (µs).
    pub decode_us_per_seq: f64,
    /// Added per prompt token prefilled in the step (µs).
    pub prefill_us_per_token: f64,
    pub max_num_seqs: u32,
    pub max_num_batched_tokens: u32,
    pub kv_cache_tokens: u64,
    pub max_model_len: u32,
}

pub const PROFILES: [Profile; 3] = [
    Profile {
        name: "default",
        step_base_ms: 5.0,
        decode_us_per_seq: 250.0,
        prefill_us_per_token: 40.0,
        max_num_seqs: 256,
        max_num_batched_tokens: 2048,
        kv_cache_tokens: 131_072,
        max_model_len: 4096,
    },
    Profile {
        name: "fast-decode",
        step_base_ms: 4.0,
        decode_us_per_seq: 100.0,
        prefill_us_per_token: 100.0,
        max_num_seqs: 256,
        max_num_batched_tokens: 2048,
        kv_cache_tokens: 131_072,
        max_model_len: 4096,
    },
    Profile {
        name: "fast-prefill",
        step_base_ms: 6.0,
        decode_us_per_seq: 300.0,
        prefill_us_per_token: 10.0,
        max_num_seqs: 256,
        max_num_batched_tokens: 2048,
        kv_cache_tokens: 131_072,
        max_model_len: 4096,
    },
];

pub fn find(name: &str) -> Option<Profile> {
    PROFILES.iter().copied().find(|p| p.name == name)
}

pub fn names() -> Vec<&'static str> {
    PROFILES.iter().map(|p| p.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_trade_off() {
        let d = find("fast-decode").unwrap();
        let p = find("fast-prefill").unwrap();
        assert!(d.decode_us_per_seq < p.decode_us_per_seq);
        assert!(d.prefill_us_per_token > p.prefill_us_per_token);
        assert!(find("nope").is_none());
        assert_eq!(names().len(), 3);
    }
}
