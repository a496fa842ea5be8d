//! Arrival schedule: the intended send time of every request, drawn up front from a seed.
//!
//! Everything is computed before t0 so the dispatcher only sleeps to absolute deadlines; the
//! same spec and seed always give the same times, whatever the engine under test.
//!
//! Conventions (compat.md §2.5/§3.5):
//! - `precomputed` (vLLM `bench serve`): request i waits a drawn delay d_i (the first one too);
//!   arrivals are the cumulative sums, and without ramp-up they are rescaled so the last one
//!   lands at exactly N/rate.
//! - `sequential` (MAX benchmark_serving.py): the first request goes at once and each later one
//!   a drawn interval after the previous one (no rescaling).
//!
//! A delay is Gamma(shape = burstiness, scale = 1/(rate·burstiness)) (burstiness 1 = Poisson);
//! no burstiness means constant spacing 1/rate; no rate (and no ramp-up) means all at t0.
//!
//! `unpaced` arrivals go first, all at t0, and the process draws the rest as if they were the
//! whole run (MAX's warm-started sessions start at once; cold ones follow the arrivals).
//!
//! Explicit `arrivals_s` (trace replay) override all of that: the given offsets are used as
//! they are, one per request (or per session start), and must be finite, >= 0, at most
//! [`MAX_ARRIVAL_S`] and non-decreasing.

use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Gamma};
use serde::Deserialize;

/// How arrival times are derived from the drawn delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Convention {
    Precomputed,
    Sequential,
}

/// How the per-request rate moves from `start_rps` to `end_rps` over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RampStrategy {
    Linear,
    Exponential,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RampUp {
    pub strategy: RampStrategy,
    pub start_rps: f64,
    pub end_rps: f64,
}

/// The arrival process of one run (`client.ScheduleSpec` on the Python side).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Requests per second; `None` = all at t0 (unless ramping).
    pub request_rate: Option<f64>,
    /// Gamma shape; `None` = constant spacing (`--burstiness inf`).
    pub burstiness: Option<f64>,
    #[serde(default)]
    pub ramp_up: Option<RampUp>,
    pub convention: Convention,
    pub seed: u64,
    /// Explicit intended offsets from t0 in seconds; override rate, burstiness and ramp-up.
    #[serde(default)]
    pub arrivals_s: Option<Vec<f64>>,
    /// Arrivals at t0 ahead of the drawn ones (not with `arrivals_s`).
    #[serde(default)]
    pub unpaced: usize,
}

/// Latest explicit arrival accepted (about 3 years; keeps t0 + offset inside i64 ns).
pub const MAX_ARRIVAL_S: f64 = 1e8;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    #[error("schedule.unpaced cannot be combined with schedule.arrivals_s")]
    UnpacedWithArrivals,
    #[error("schedule.request_rate must be a positive finite number, got {0}")]
    Rate(f64),
    #[error("schedule.burstiness must be a positive finite number, got {0}")]
    Burstiness(f64),
    #[error("schedule.ramp_up.{0} must be a positive finite number, got {1}")]
    Ramp(&'static str, f64),
    #[error("schedule.arrivals_s[{0}] must be a finite number of seconds in [0, 1e8], got {1}")]
    Arrival(usize, f64),
    #[error(
        "schedule.arrivals_s[{0}] is earlier than the one before it (arrivals must not decrease)"
    )]
    ArrivalOrder(usize),
    #[error(
        "schedule.arrivals_s has {got} times for {want} arrivals (one per request or session)"
    )]
    ArrivalCount { got: usize, want: usize },
}

impl ScheduleSpec {
    /// Reject values that would give NaN or infinite times.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        let ok = |x: f64| x.is_finite() && x > 0.0;
        if let Some(r) = self.request_rate {
            if !ok(r) {
                return Err(ScheduleError::Rate(r));
            }
        }
        if let Some(b) = self.burstiness {
            if !ok(b) {
                return Err(ScheduleError::Burstiness(b));
            }
        }
        if let Some(ramp) = &self.ramp_up {
            if !ok(ramp.start_rps) {
                return Err(ScheduleError::Ramp("start_rps", ramp.start_rps));
            }
            if !ok(ramp.end_rps) {
                return Err(ScheduleError::Ramp("end_rps", ramp.end_rps));
            }
        }
        if let Some(times) = &self.arrivals_s {
            for (i, &t) in times.iter().enumerate() {
                if !(t.is_finite() && (0.0..=MAX_ARRIVAL_S).contains(&t)) {
                    return Err(ScheduleError::Arrival(i, t));
                }
                if i > 0 && t < times[i - 1] {
                    return Err(ScheduleError::ArrivalOrder(i));
                }
            }
        }
        Ok(())
    }

    /// The rate of request `i` of `n` (vLLM's `_get_current_request_rate`), `None` = infinite.
    fn rate_at(&self, i: usize, n: usize) -> Option<f64> {
        match &self.ramp_up {
            Some(r) => {
                let progress = i as f64 / (n.saturating_sub(1).max(1)) as f64;
                Some(match r.strategy {
                    RampStrategy::Linear => r.start_rps + (r.end_rps - r.start_rps) * progress,
                    RampStrategy::Exponential => {
                        r.start_rps * (r.end_rps / r.start_rps).powf(progress)
                    }
                })
            }
            None => self.request_rate,
        }
    }

    /// Intended arrival offsets in seconds from t0 for `n` requests (non-decreasing).
    pub fn arrivals_s(&self, n: usize) -> Result<Vec<f64>, ScheduleError> {
        self.validate()?;
        if self.unpaced > 0 {
            if self.arrivals_s.is_some() {
                return Err(ScheduleError::UnpacedWithArrivals);
            }
            let first = self.unpaced.min(n);
            let rest = ScheduleSpec {
                unpaced: 0,
                ..self.clone()
            };
            let mut out = vec![0.0; first];
            out.extend(rest.arrivals_s(n - first)?);
            return Ok(out);
        }
        if let Some(times) = &self.arrivals_s {
            if times.len() != n {
                return Err(ScheduleError::ArrivalCount {
                    got: times.len(),
                    want: n,
                });
            }
            return Ok(times.clone());
        }
        let mut rng = StdRng::seed_from_u64(self.seed);
        let gamma = match self.burstiness {
            // Shape is validated positive and finite; scale 1 is rescaled per request below.
            Some(b) => Some(Gamma::new(b, 1.0).map_err(|_| ScheduleError::Burstiness(b))?),
            None => None,
        };
        let mut delays = Vec::with_capacity(n);
        for i in 0..n {
            let d = match self.rate_at(i, n) {
                None => 0.0,
                Some(rate) => match (&gamma, self.burstiness) {
                    // Gamma(k, θ) = θ·Gamma(k, 1) with θ = 1/(rate·k).
                    (Some(g), Some(k)) => g.sample(&mut rng) / (rate * k),
                    _ => 1.0 / rate,
                },
            };
            delays.push(d);
        }
        let mut out = Vec::with_capacity(n);
        let mut acc = 0.0;
        match self.convention {
            Convention::Precomputed => {
                for d in &delays {
                    acc += d;
                    out.push(acc);
                }
                if let (None, Some(rate), Some(&last)) =
                    (&self.ramp_up, self.request_rate, out.last())
                {
                    if last > 0.0 {
                        let factor = (n as f64 / rate) / last;
                        out.iter_mut().for_each(|t| *t *= factor);
                    }
                }
            }
            Convention::Sequential => {
                for d in &delays {
                    out.push(acc);
                    acc += d;
                }
            }
        }
        Ok(out)
    }

    /// Intended arrival offsets in integer nanoseconds from t0.
    pub fn arrivals_ns(&self, n: usize) -> Result<Vec<i64>, ScheduleError> {
        Ok(self
            .arrivals_s(n)?
            .into_iter()
            .map(|s| (s * 1e9).round() as i64)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rate: Option<f64>, burst: Option<f64>, conv: Convention) -> ScheduleSpec {
        ScheduleSpec {
            request_rate: rate,
            burstiness: burst,
            ramp_up: None,
            convention: conv,
            seed: 42,
            arrivals_s: None,
            unpaced: 0,
        }
    }

    #[test]
    fn unpaced_arrivals_go_first_and_the_rest_follow_the_process() {
        let base = spec(Some(4.0), Some(1.0), Convention::Sequential);
        let drawn = base.arrivals_s(5).unwrap();
        let warm = ScheduleSpec {
            unpaced: 3,
            ..base.clone()
        };
        let got = warm.arrivals_s(8).unwrap();
        assert_eq!(&got[..3], &[0.0, 0.0, 0.0]);
        assert_eq!(&got[3..], &drawn[..]);
        // More unpaced than arrivals: all at t0.
        let all = ScheduleSpec {
            unpaced: 9,
            ..base.clone()
        };
        assert_eq!(all.arrivals_s(2).unwrap(), vec![0.0, 0.0]);
        let both = ScheduleSpec {
            arrivals_s: Some(vec![0.0]),
            ..warm
        };
        assert_eq!(both.arrivals_s(1), Err(ScheduleError::UnpacedWithArrivals));
    }

    fn gaps(t: &[f64]) -> Vec<f64> {
        let mut g = vec![t[0]];
        g.extend(t.windows(2).map(|w| w[1] - w[0]));
        g
    }

    fn mean_cv(x: &[f64]) -> (f64, f64) {
        let n = x.len() as f64;
        let m = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n;
        (m, var.sqrt() / m)
    }

    #[test]
    fn reproducible_with_seed_and_seed_matters() {
        let a = spec(Some(10.0), Some(1.0), Convention::Precomputed);
        let mut b = a.clone();
        assert_eq!(a.arrivals_s(100).unwrap(), b.arrivals_s(100).unwrap());
        b.seed = 43;
        assert_ne!(a.arrivals_s(100).unwrap(), b.arrivals_s(100).unwrap());
    }

    #[test]
    fn precomputed_rescaled_to_n_over_rate() {
        let t = spec(Some(20.0), Some(1.0), Convention::Precomputed)
            .arrivals_s(200)
            .unwrap();
        assert!((t[199] - 10.0).abs() < 1e-9);
        assert!(t[0] > 0.0, "vLLM: the first request waits its delay too");
        assert!(t.windows(2).all(|w| w[1] >= w[0]));
    }

    #[test]
    fn sequential_first_is_immediate_and_not_rescaled() {
        let t = spec(Some(20.0), Some(1.0), Convention::Sequential)
            .arrivals_s(200)
            .unwrap();
        assert_eq!(t[0], 0.0);
        assert!((t[199] - 10.0).abs() > 1e-6);
    }

    #[test]
    fn poisson_mean_and_ks_fit() {
        let rate = 50.0;
        let t = spec(Some(rate), Some(1.0), Convention::Sequential)
            .arrivals_s(20_001)
            .unwrap();
        let mut g: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
        let (m, cv) = mean_cv(&g);
        assert!((m - 1.0 / rate).abs() < 0.03 / rate, "mean {m}");
        assert!((cv - 1.0).abs() < 0.03, "cv {cv}");
        // Kolmogorov–Smirnov against Exp(rate): D < 1.36/sqrt(n) at the 5% level.
        g.sort_by(f64::total_cmp);
        let n = g.len() as f64;
        let d = g
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let f = 1.0 - (-rate * x).exp();
                (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
            })
            .fold(0.0, f64::max);
        assert!(d < 1.36 / n.sqrt(), "KS D = {d}");
    }

    #[test]
    fn gamma_cv_follows_burstiness() {
        for b in [0.25, 0.5, 2.0, 4.0] {
            let t = spec(Some(10.0), Some(b), Convention::Precomputed)
                .arrivals_s(20_000)
                .unwrap();
            let (_, cv) = mean_cv(&gaps(&t));
            let want = 1.0 / b.sqrt();
            assert!((cv - want).abs() < 0.05 * want, "b={b} cv={cv} want={want}");
        }
    }

    #[test]
    fn constant_spacing_and_all_at_once() {
        let t = spec(Some(4.0), None, Convention::Precomputed)
            .arrivals_s(8)
            .unwrap();
        for (i, x) in t.iter().enumerate() {
            assert!((x - (i + 1) as f64 * 0.25).abs() < 1e-12);
        }
        let t = spec(Some(4.0), None, Convention::Sequential)
            .arrivals_s(3)
            .unwrap();
        assert_eq!(t, vec![0.0, 0.25, 0.5]);
        let t = spec(None, Some(1.0), Convention::Precomputed)
            .arrivals_s(5)
            .unwrap();
        assert!(t.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn ramp_up_rates() {
        let mut s = spec(None, None, Convention::Precomputed);
        s.ramp_up = Some(RampUp {
            strategy: RampStrategy::Linear,
            start_rps: 1.0,
            end_rps: 11.0,
        });
        let t = s.arrivals_s(11).unwrap();
        // Constant spacing: delay i = 1/(1 + i); no rescaling with ramp-up.
        let want: f64 = (0..11).map(|i| 1.0 / (1.0 + i as f64)).sum();
        assert!((t[10] - want).abs() < 1e-12);
        s.ramp_up = Some(RampUp {
            strategy: RampStrategy::Exponential,
            start_rps: 1.0,
            end_rps: 100.0,
        });
        let t = s.arrivals_s(3).unwrap();
        assert!((t[0] - 1.0).abs() < 1e-12);
        assert!((t[1] - t[0] - 0.1).abs() < 1e-12);
        assert!((t[2] - t[1] - 0.01).abs() < 1e-12);
    }

    #[test]
    fn invalid_values_rejected() {
        let s = spec(Some(0.0), None, Convention::Precomputed);
        assert_eq!(s.arrivals_s(1), Err(ScheduleError::Rate(0.0)));
        let s = spec(Some(1.0), Some(-1.0), Convention::Precomputed);
        assert!(s.arrivals_s(1).is_err());
        assert!(spec(Some(1.0), None, Convention::Sequential)
            .arrivals_s(0)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn explicit_arrivals_override_and_are_checked() {
        let mut s = spec(Some(1.0), Some(1.0), Convention::Precomputed);
        s.arrivals_s = Some(vec![0.0, 0.5, 0.5, 2.25]);
        assert_eq!(s.arrivals_s(4).unwrap(), vec![0.0, 0.5, 0.5, 2.25]);
        assert_eq!(s.arrivals_ns(4).unwrap()[3], 2_250_000_000);
        assert_eq!(
            s.arrivals_s(3),
            Err(ScheduleError::ArrivalCount { got: 4, want: 3 })
        );
        s.arrivals_s = Some(vec![0.0, 1.0, 0.5]);
        assert_eq!(s.arrivals_s(3), Err(ScheduleError::ArrivalOrder(2)));
        for bad in [-0.1, f64::NAN, f64::INFINITY, 2e8] {
            s.arrivals_s = Some(vec![0.0, bad]);
            let e = s.validate().unwrap_err();
            assert!(matches!(e, ScheduleError::Arrival(1, _)), "{bad}: {e}");
            assert!(e.to_string().contains("schedule.arrivals_s[1]"));
        }
    }
}
