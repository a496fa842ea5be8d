//! Options of the simulated engine as handed over from Python (JSON), and their validation
//! into a resolved [`Config`]. Unknown fields are refused, never ignored.

use std::time::Duration;

use serde::Deserialize;

use super::error::SimError;
use super::faults::FaultRates;
use super::profiles;
use super::scheduler::EngineParams;

/// Options as given (JSON object; field names are the snake_case of the CLI flags).
/// Engine-model fields left out take the profile's value.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimOptions {
    pub host: String,
    pub port: u16,
    pub profile: String,
    pub model: String,
    pub tokenizer: Option<String>,
    pub seed: u64,
    pub max_model_len: Option<u32>,
    pub max_num_seqs: Option<u32>,
    pub max_num_batched_tokens: Option<u32>,
    pub kv_cache_tokens: Option<u64>,
    pub step_base_ms: Option<f64>,
    pub decode_us_per_seq: Option<f64>,
    pub prefill_us_per_token: Option<f64>,
    /// Mean output length (tokens) where EOS ends a request that does not set ignore_eos.
    pub eos_mean_len: f64,
    pub ttft_ms: Option<f64>,
    pub itl_ms: Option<f64>,
    pub output_len: Option<u32>,
    /// Exact mode: added to the TTFT per uncached prompt token (µs); 0 keeps TTFT fixed.
    pub exact_prefill_us_per_token: f64,
    pub enable_prefix_caching: bool,
    pub prefix_block_size: u32,
    /// Capacity in blocks; None = kv_cache_tokens / prefix_block_size; 0 disables caching.
    pub prefix_cache_blocks: Option<u64>,
    pub fail_500: f64,
    pub fail_429: f64,
    pub fail_reset: f64,
    pub fail_stall: f64,
    pub fail_malformed: f64,
    pub stall_s: f64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            host: "127.0.0.1".into(),
            port: 0,
            profile: "default".into(),
            model: "sonic-sim".into(),
            tokenizer: None,
            seed: 0,
            max_model_len: None,
            max_num_seqs: None,
            max_num_batched_tokens: None,
            kv_cache_tokens: None,
            step_base_ms: None,
            decode_us_per_seq: None,
            prefill_us_per_token: None,
            eos_mean_len: 128.0,
            ttft_ms: None,
            itl_ms: None,
            output_len: None,
            exact_prefill_us_per_token: 0.0,
            enable_prefix_caching: true,
            prefix_block_size: 16,
            prefix_cache_blocks: None,
            fail_500: 0.0,
            fail_429: 0.0,
            fail_reset: 0.0,
            fail_stall: 0.0,
            fail_malformed: 0.0,
            stall_s: 3600.0,
        }
    }
}

/// Exact-timing mode: first token `ttft + prefill_us_per_token × uncached prompt tokens`
/// after the request arrives, then one every `itl`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExactTiming {
    pub ttft: Duration,
    pub itl: Duration,
    pub prefill_us_per_token: f64,
}

impl ExactTiming {
    /// Time from arrival to the first token of a request with `uncached` prompt tokens.
    pub fn first_token_after(&self, uncached: u64) -> Duration {
        self.ttft + Duration::from_secs_f64(self.prefill_us_per_token * uncached as f64 / 1e6)
    }
}

/// The prefix cache, when enabled: block size in tokens and capacity in blocks (both >= 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixCaching {
    pub block_size: u32,
    pub capacity_blocks: u64,
}

/// Validated options.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub profile: &'static str,
    pub model: String,
    pub tokenizer: Option<String>,
    pub seed: u64,
    pub max_model_len: u32,
    pub engine: EngineParams,
    pub eos_mean_len: f64,
    pub exact: Option<ExactTiming>,
    pub output_len: Option<u32>,
    pub prefix: Option<PrefixCaching>,
    pub faults: FaultRates,
    pub stall: Duration,
}

fn non_negative(field: &'static str, v: f64) -> Result<f64, SimError> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(SimError::field(
            field,
            format!("must be a finite number >= 0, got {v}"),
        ))
    }
}

fn probability(field: &'static str, v: f64) -> Result<f64, SimError> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(SimError::field(
            field,
            format!("must be a probability in [0, 1], got {v}"),
        ))
    }
}

fn positive<T: PartialOrd + Default + std::fmt::Display>(
    field: &'static str,
    v: T,
) -> Result<T, SimError> {
    if v > T::default() {
        Ok(v)
    } else {
        Err(SimError::field(field, format!("must be >= 1, got {v}")))
    }
}

impl SimOptions {
    pub fn from_json(text: &str) -> Result<Self, SimError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| SimError::Options(e.to_string()))?;
        serde_json::from_value(value.clone()).map_err(|e| {
            // Name the offending field: check each one on its own.
            let field = value.as_object().and_then(|m| {
                m.iter().find_map(|(k, v)| {
                    let one =
                        serde_json::Value::Object([(k.clone(), v.clone())].into_iter().collect());
                    serde_json::from_value::<SimOptions>(one)
                        .err()
                        .map(|_| k.clone())
                })
            });
            match field {
                Some(f) => SimError::Options(format!("`{f}`: {e}")),
                None => SimError::Options(e.to_string()),
            }
        })
    }

    pub fn resolve(&self) -> Result<Config, SimError> {
        let p = profiles::find(&self.profile).ok_or_else(|| {
            SimError::field(
                "profile",
                format!(
                    "unknown profile {:?} (known: {})",
                    self.profile,
                    profiles::names().join(", ")
                ),
            )
        })?;
        if self.host.trim().is_empty() {
            return Err(SimError::field("host", "must not be empty"));
        }
        if self.model.trim().is_empty() {
            return Err(SimError::field("model", "must not be empty"));
        }
        let engine = EngineParams {
            step_base_ms: non_negative(
                "step_base_ms",
                self.step_base_ms.unwrap_or(p.step_base_ms),
            )?,
            decode_us_per_seq: non_negative(
                "decode_us_per_seq",
                self.decode_us_per_seq.unwrap_or(p.decode_us_per_seq),
            )?,
            prefill_us_per_token: non_negative(
                "prefill_us_per_token",
                self.prefill_us_per_token.unwrap_or(p.prefill_us_per_token),
            )?,
            max_num_seqs: positive("max_num_seqs", self.max_num_seqs.unwrap_or(p.max_num_seqs))?,
            max_num_batched_tokens: positive(
                "max_num_batched_tokens",
                self.max_num_batched_tokens
                    .unwrap_or(p.max_num_batched_tokens),
            )?,
            kv_cache_tokens: positive(
                "kv_cache_tokens",
                self.kv_cache_tokens.unwrap_or(p.kv_cache_tokens),
            )?,
        };
        let max_model_len = positive(
            "max_model_len",
            self.max_model_len.unwrap_or(p.max_model_len),
        )?;
        let exact = match (self.ttft_ms, self.itl_ms) {
            (None, None) => None,
            (Some(t), Some(i)) => Some(ExactTiming {
                ttft: Duration::from_secs_f64(non_negative("ttft_ms", t)?.min(1e12) / 1e3),
                itl: Duration::from_secs_f64(non_negative("itl_ms", i)?.min(1e12) / 1e3),
                prefill_us_per_token: non_negative(
                    "exact_prefill_us_per_token",
                    self.exact_prefill_us_per_token,
                )?
                .min(1e9),
            }),
            (Some(_), None) => {
                return Err(SimError::field(
                    "itl_ms",
                    "exact mode needs both ttft_ms and itl_ms",
                ))
            }
            (None, Some(_)) => {
                return Err(SimError::field(
                    "ttft_ms",
                    "exact mode needs both ttft_ms and itl_ms",
                ))
            }
        };
        if exact.is_none() && self.exact_prefill_us_per_token != 0.0 {
            return Err(SimError::field(
                "exact_prefill_us_per_token",
                "applies only in exact mode (with ttft_ms and itl_ms); the batching model charges prefill_us_per_token",
            ));
        }
        let block_size = positive("prefix_block_size", self.prefix_block_size)?;
        let capacity_blocks = self
            .prefix_cache_blocks
            .unwrap_or(engine.kv_cache_tokens / u64::from(block_size));
        let prefix = (self.enable_prefix_caching && capacity_blocks > 0).then_some(PrefixCaching {
            block_size,
            capacity_blocks,
        });
        if let Some(n) = self.output_len {
            positive("output_len", n)?;
        }
        let eos_mean_len = non_negative("eos_mean_len", self.eos_mean_len)?;
        let faults = FaultRates {
            status_500: probability("fail_500", self.fail_500)?,
            status_429: probability("fail_429", self.fail_429)?,
            reset: probability("fail_reset", self.fail_reset)?,
            stall: probability("fail_stall", self.fail_stall)?,
            malformed: probability("fail_malformed", self.fail_malformed)?,
        };
        let stall_s = non_negative("stall_s", self.stall_s)?;
        Ok(Config {
            host: self.host.trim().to_string(),
            port: self.port,
            profile: p.name,
            model: self.model.clone(),
            tokenizer: self.tokenizer.clone().filter(|t| !t.is_empty()),
            seed: self.seed,
            max_model_len,
            engine,
            eos_mean_len,
            exact,
            output_len: self.output_len,
            prefix,
            faults,
            stall: Duration::from_secs_f64(stall_s.min(1e9)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        match SimOptions::from_json(json).and_then(|o| o.resolve()) {
            Ok(_) => panic!("accepted {json}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_resolve_from_profile() {
        let c = SimOptions::from_json(r#"{"profile": "fast-prefill", "max_num_seqs": 2}"#)
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(c.engine.max_num_seqs, 2);
        assert_eq!(c.engine.prefill_us_per_token, 10.0);
        assert!(c.exact.is_none());
    }

    #[test]
    fn bad_options_name_the_field() {
        assert!(err(r#"{"bogus": 1}"#).contains("bogus"));
        assert!(err(r#"{"profile": "x"}"#).contains("profile"));
        assert!(err(r#"{"fail_500": 1.5}"#).contains("fail_500"));
        assert!(err(r#"{"max_num_seqs": 0}"#).contains("max_num_seqs"));
        assert!(err(r#"{"ttft_ms": 5}"#).contains("itl_ms"));
        assert!(err(r#"{"itl_ms": -1, "ttft_ms": 1}"#).contains("itl_ms"));
        assert!(err(r#"{"port": "x"}"#).contains("port"));
        assert!(err(r#"{"prefix_block_size": 0}"#).contains("prefix_block_size"));
        assert!(err(r#"{"exact_prefill_us_per_token": 5}"#).contains("exact mode"));
        assert!(
            err(r#"{"ttft_ms": 1, "itl_ms": 1, "exact_prefill_us_per_token": -1}"#)
                .contains("exact_prefill_us_per_token")
        );
        assert!(err(r#"{"enable_prefix_caching": "yes"}"#).contains("enable_prefix_caching"));
    }

    #[test]
    fn prefix_caching_defaults_follow_vllm() {
        let c = SimOptions::default().resolve().unwrap();
        // On by default with 16-token blocks, as in vLLM; capacity = the KV cache in blocks.
        assert_eq!(
            c.prefix,
            Some(PrefixCaching {
                block_size: 16,
                capacity_blocks: 131_072 / 16
            })
        );
        let off = |json: &str| {
            SimOptions::from_json(json)
                .unwrap()
                .resolve()
                .unwrap()
                .prefix
        };
        assert_eq!(off(r#"{"enable_prefix_caching": false}"#), None);
        assert_eq!(off(r#"{"prefix_cache_blocks": 0}"#), None);
        assert_eq!(
            off(r#"{"prefix_block_size": 64, "kv_cache_tokens": 1000}"#),
            Some(PrefixCaching {
                block_size: 64,
                capacity_blocks: 15
            })
        );
    }

    #[test]
    fn exact_mode() {
        let c = SimOptions::from_json(r#"{"ttft_ms": 50, "itl_ms": 2.5, "output_len": 8}"#)
            .unwrap()
            .resolve()
            .unwrap();
        let e = c.exact.unwrap();
        assert_eq!(e.ttft, Duration::from_millis(50));
        assert_eq!(e.itl, Duration::from_micros(2500));
        assert_eq!(c.output_len, Some(8));
        assert_eq!(e.first_token_after(1000), e.ttft);
        let c = SimOptions::from_json(
            r#"{"ttft_ms": 50, "itl_ms": 1, "exact_prefill_us_per_token": 250}"#,
        )
        .unwrap()
        .resolve()
        .unwrap();
        let e = c.exact.unwrap();
        assert_eq!(e.first_token_after(40), Duration::from_millis(60));
    }
}
