//! Fault injection: which fault (if any) a request gets, drawn from seeded probabilities or
//! forced by the `x-sonic-fault` request header (deterministic client tests).

use super::rng::SplitMix;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500 instead of a response.
    Status500,
    /// HTTP 429 (with Retry-After) instead of a response.
    Status429,
    /// Abrupt connection close (RST) mid-stream, before the terminating chunk.
    Reset,
    /// Stop sending mid-stream for the configured stall time.
    Stall,
    /// One unparseable SSE data line mid-stream.
    Malformed,
}

impl Fault {
    /// Parse the `x-sonic-fault` header value.
    pub fn from_header(v: &str) -> Option<Fault> {
        match v.trim().to_ascii_lowercase().as_str() {
            "500" => Some(Fault::Status500),
            "429" => Some(Fault::Status429),
            "reset" => Some(Fault::Reset),
            "stall" => Some(Fault::Stall),
            "malformed" => Some(Fault::Malformed),
            _ => None,
        }
    }

    /// Mid-stream faults strike before event `at` of `n` tokens (event n is the tail):
    /// after some tokens, always before the terminating chunk.
    pub fn strike_at(n_tokens: u32) -> u32 {
        (n_tokens / 2).max(1)
    }
}

/// Probability of each fault per request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultRates {
    pub status_500: f64,
    pub status_429: f64,
    pub reset: f64,
    pub stall: f64,
    pub malformed: f64,
}

impl FaultRates {
    pub fn any(&self) -> bool {
        self.status_500 + self.status_429 + self.reset + self.stall + self.malformed > 0.0
    }

    /// Independent draws in a fixed order; the first that fires wins.
    pub fn draw(&self, rng: &mut SplitMix) -> Option<Fault> {
        if !self.any() {
            return None;
        }
        [
            (self.status_500, Fault::Status500),
            (self.status_429, Fault::Status429),
            (self.reset, Fault::Reset),
            (self.stall, Fault::Stall),
            (self.malformed, Fault::Malformed),
        ]
        .into_iter()
        .find(|(p, _)| *p > 0.0 && rng.unit() < *p)
        .map(|(_, f)| f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_draws() {
        assert_eq!(Fault::from_header(" Reset "), Some(Fault::Reset));
        assert_eq!(Fault::from_header("nope"), None);
        let mut rng = SplitMix::new(1);
        let always = FaultRates {
            status_429: 1.0,
            ..Default::default()
        };
        assert_eq!(always.draw(&mut rng), Some(Fault::Status429));
        assert_eq!(FaultRates::default().draw(&mut rng), None);
        let half = FaultRates {
            status_500: 0.5,
            ..Default::default()
        };
        let hits = (0..10_000)
            .filter(|_| half.draw(&mut rng).is_some())
            .count();
        assert!((4_500..5_500).contains(&hits), "{hits}");
        assert_eq!(Fault::strike_at(1), 1);
        assert_eq!(Fault::strike_at(10), 5);
    }
}
