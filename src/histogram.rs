//! A latency histogram at a stated precision (HDR): percentiles of pooled per-chunk values
//! (ITL) of a run whose chunks do not stay in memory. Values are integers (ns); counts and
//! min/max are exact, a percentile is within 10^-digits of the true value, relative.

use hdrhistogram::Histogram;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HistogramError {
    #[error("significant_digits must be 1 to 5, got {0}")]
    Digits(u8),
    #[error("a latency cannot be negative: {0} ns")]
    Negative(i64),
    #[error("percentile must be in [0, 100], got {0}")]
    Percentile(String),
    #[error("cannot record {0} ns")]
    Record(i64),
}

/// Non-negative integer latencies, auto-resizing to any magnitude.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    inner: Histogram<u64>,
    digits: u8,
}

impl LatencyHistogram {
    pub fn new(digits: u8) -> Result<Self, HistogramError> {
        let inner = Histogram::new(digits).map_err(|_| HistogramError::Digits(digits))?;
        Ok(Self { inner, digits })
    }

    pub fn significant_digits(&self) -> u8 {
        self.digits
    }

    /// Record every value; nothing is recorded when one is negative.
    pub fn record_all(&mut self, values: &[i64]) -> Result<(), HistogramError> {
        if let Some(&v) = values.iter().find(|&&v| v < 0) {
            return Err(HistogramError::Negative(v));
        }
        for &v in values {
            // Auto-resizing: only a value beyond the u64 range could fail.
            self.inner
                .record(v as u64)
                .map_err(|_| HistogramError::Record(v))?;
        }
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The value at percentile `p` (0..=100): the highest value equivalent to it at this
    /// precision, as HdrHistogram reports it; `None` when empty.
    pub fn percentile(&self, p: f64) -> Result<Option<u64>, HistogramError> {
        if !(0.0..=100.0).contains(&p) {
            return Err(HistogramError::Percentile(p.to_string()));
        }
        if self.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.inner.value_at_percentile(p)))
    }

    pub fn min(&self) -> Option<u64> {
        (!self.is_empty()).then(|| self.inner.min())
    }

    pub fn max(&self) -> Option<u64> {
        (!self.is_empty()).then(|| self.inner.max())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_within_the_stated_precision() {
        let mut h = LatencyHistogram::new(3).unwrap();
        let values: Vec<i64> = (1..=100_000).map(|i| i * 1_000).collect();
        h.record_all(&values).unwrap();
        assert_eq!(h.len(), 100_000);
        for p in [1.0, 50.0, 90.0, 99.0, 99.9] {
            let exact = (p / 100.0 * 100_000.0_f64).round() * 1_000.0;
            let got = h.percentile(p).unwrap().unwrap() as f64;
            assert!(
                (got - exact).abs() / exact <= 1e-3,
                "p{p}: {got} vs {exact}"
            );
        }
        assert_eq!(
            h.max(),
            Some(100_000_000).map(|m| h.inner.highest_equivalent(m))
        );
    }

    #[test]
    fn bad_input_is_refused() {
        assert_eq!(
            LatencyHistogram::new(9).unwrap_err(),
            HistogramError::Digits(9)
        );
        let mut h = LatencyHistogram::new(3).unwrap();
        assert_eq!(
            h.record_all(&[5, -1]).unwrap_err(),
            HistogramError::Negative(-1)
        );
        assert!(h.is_empty(), "nothing recorded");
        assert_eq!(h.percentile(50.0), Ok(None));
        assert!(h.percentile(101.0).is_err());
    }
}
