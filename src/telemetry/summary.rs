//! Per-GPU summaries over a time window (MAX's numbers plus energy).

use super::series::{GpuSample, GpuSeries};

/// One device over one window. NaN where no sample carried the field.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSummary {
    pub device: u32,
    pub samples: usize,
    /// MAX `peak_gpu_memory_mib`: the largest memory in use.
    pub peak_used_mib: f64,
    /// MAX `available_gpu_memory_mib`: the smallest free memory.
    pub min_free_mib: f64,
    /// MAX `gpu_utilization`: the mean utilisation %.
    pub mean_util_pct: f64,
    pub max_util_pct: f64,
    pub mean_mem_util_pct: f64,
    pub mean_power_w: f64,
    pub max_temperature_c: f64,
    pub mean_sm_clock_mhz: f64,
    /// Energy over the window in joules: the energy counter's delta between the samples that
    /// bracket the window when the device has one, else the trapezoid integral of power.
    pub energy_j: f64,
    /// "counter", "power" or "none".
    pub energy_source: &'static str,
    /// Seconds between the first and last sample used for energy.
    pub energy_span_s: f64,
}

fn finite(v: impl Iterator<Item = f64>) -> Vec<f64> {
    v.filter(|x| x.is_finite()).collect()
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::min)
}

/// Indices `[a, b]` of the samples that bracket `[start, end]`: the last sample at or before
/// `start` (else the first) to the first at or after `end` (else the last).
fn bracket(rows: &[GpuSample], start: i64, end: i64) -> Option<(usize, usize)> {
    if rows.is_empty() {
        return None;
    }
    let a = rows.iter().rposition(|s| s.t_mono_ns <= start).unwrap_or(0);
    let b = rows
        .iter()
        .position(|s| s.t_mono_ns >= end)
        .unwrap_or(rows.len() - 1);
    Some((a, b.max(a)))
}

fn energy(rows: &[GpuSample]) -> (f64, &'static str, f64) {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return (f64::NAN, "none", 0.0);
    };
    let span = (last.t_mono_ns - first.t_mono_ns) as f64 / 1e9;
    if rows.len() >= 2 && rows.iter().all(|s| s.energy_mj >= 0) && last.energy_mj >= first.energy_mj
    {
        return (
            (last.energy_mj - first.energy_mj) as f64 / 1000.0,
            "counter",
            span,
        );
    }
    let pts: Vec<(f64, f64)> = rows
        .iter()
        .filter(|s| s.power_w.is_finite())
        .map(|s| (s.t_mono_ns as f64 / 1e9, s.power_w))
        .collect();
    if pts.len() < 2 {
        return (f64::NAN, "none", span);
    }
    let joules = pts
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
        .sum();
    (joules, "power", span)
}

/// Summaries of every device in `devices` over `[start_ns, end_ns]` (None = unbounded).
/// Statistics use the samples inside the window (all of the device's samples when none falls
/// inside); energy uses the samples that bracket it.
pub fn summarize(
    series: &GpuSeries,
    devices: &[u32],
    start_ns: Option<i64>,
    end_ns: Option<i64>,
) -> Vec<DeviceSummary> {
    let start = start_ns.unwrap_or(i64::MIN);
    let end = end_ns.unwrap_or(i64::MAX);
    devices
        .iter()
        .map(|&device| {
            let all = series.of_device(device);
            let mut inside: Vec<GpuSample> = all
                .iter()
                .filter(|s| s.t_mono_ns >= start && s.t_mono_ns <= end)
                .copied()
                .collect();
            if inside.is_empty() {
                inside.clone_from(&all);
            }
            let col = |f: fn(&GpuSample) -> f64| finite(inside.iter().map(f));
            let used = col(|s| s.mem_used_mib);
            let free = col(|s| s.mem_free_mib);
            let util = col(|s| s.gpu_util_pct);
            let (energy_j, energy_source, energy_span_s) = match bracket(&all, start, end) {
                Some((a, b)) => energy(&all[a..=b]),
                None => (f64::NAN, "none", 0.0),
            };
            DeviceSummary {
                device,
                samples: inside.len(),
                peak_used_mib: max(&used),
                min_free_mib: min(&free),
                mean_util_pct: mean(&util),
                max_util_pct: max(&util),
                mean_mem_util_pct: mean(&col(|s| s.mem_util_pct)),
                mean_power_w: mean(&col(|s| s.power_w)),
                max_temperature_c: max(&finite(
                    inside
                        .iter()
                        .filter(|s| s.temperature_c >= 0)
                        .map(|s| s.temperature_c as f64),
                )),
                mean_sm_clock_mhz: mean(&finite(
                    inside
                        .iter()
                        .filter(|s| s.sm_clock_mhz >= 0)
                        .map(|s| s.sm_clock_mhz as f64),
                )),
                energy_j,
                energy_source,
                energy_span_s,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(device: u32, t_s: f64, used: f64, util: f64, power: f64, energy: i64) -> GpuSample {
        let mut s = GpuSample::empty(device, (t_s * 1e9) as i64);
        s.mem_used_mib = used;
        s.mem_free_mib = 1000.0 - used;
        s.mem_total_mib = 1000.0;
        s.gpu_util_pct = util;
        s.power_w = power;
        s.energy_mj = energy;
        s
    }

    fn series(rows: &[GpuSample]) -> GpuSeries {
        let mut s = GpuSeries::default();
        rows.iter().for_each(|r| s.push(r));
        s
    }

    #[test]
    fn peak_min_mean_over_the_window() {
        let s = series(&[
            sample(0, 0.0, 100.0, 0.0, 50.0, 0),
            sample(0, 1.0, 300.0, 50.0, 150.0, 100_000),
            sample(0, 2.0, 200.0, 100.0, 250.0, 300_000),
            sample(0, 3.0, 900.0, 10.0, 50.0, 450_000),
        ]);
        let out = summarize(&s, &[0], Some(500_000_000), Some(2_500_000_000));
        let d = &out[0];
        assert_eq!(d.samples, 2);
        assert_eq!(d.peak_used_mib, 300.0);
        assert_eq!(d.min_free_mib, 700.0);
        assert_eq!(d.mean_util_pct, 75.0);
        assert_eq!(d.max_util_pct, 100.0);
        // bracket: samples at 0 s and 3 s; counter 450 J
        assert_eq!(d.energy_source, "counter");
        assert!((d.energy_j - 450.0).abs() < 1e-9);
        assert!((d.energy_span_s - 3.0).abs() < 1e-9);
    }

    #[test]
    fn energy_from_power_without_a_counter() {
        let s = series(&[
            sample(1, 0.0, 1.0, 0.0, 100.0, -1),
            sample(1, 1.0, 1.0, 0.0, 200.0, -1),
            sample(1, 3.0, 1.0, 0.0, 200.0, -1),
        ]);
        let d = &summarize(&s, &[1], None, None)[0];
        assert_eq!(d.energy_source, "power");
        // 1 s at mean 150 W + 2 s at 200 W
        assert!((d.energy_j - 550.0).abs() < 1e-9);
        assert_eq!(d.mean_power_w, 500.0 / 3.0);
    }

    #[test]
    fn unsupported_fields_give_nan() {
        let s = series(&[GpuSample::empty(0, 1), GpuSample::empty(0, 2)]);
        let d = &summarize(&s, &[0, 3], None, None);
        assert!(d[0].peak_used_mib.is_nan() && d[0].mean_util_pct.is_nan());
        assert!(d[0].energy_j.is_nan());
        assert_eq!(d[0].energy_source, "none");
        assert_eq!(d[1].samples, 0);
        assert!(d[1].min_free_mib.is_nan());
    }

    #[test]
    fn empty_window_falls_back_to_every_sample() {
        let s = series(&[sample(0, 0.0, 10.0, 20.0, 1.0, 5)]);
        let d = &summarize(&s, &[0], Some(5_000_000_000), Some(6_000_000_000))[0];
        assert_eq!(d.samples, 1);
        assert_eq!(d.peak_used_mib, 10.0);
    }
}
