//! Telemetry beside the client's measurements: a GPU sampler thread over NVML.
//!
//! Every sample is stamped with CLOCK_MONOTONIC nanoseconds ([`mono_ns`]), the clock of
//! Python's `time.monotonic_ns()` and of the run records' `t0_mono_ns`, so GPU samples, engine
//! `/metrics` scrapes (taken in Python) and request records share one time axis.
//!
//! NVML (`libnvidia-ml.so.1`) is loaded at run time: on a machine without the NVIDIA driver
//! [`probe`] says so and nothing else happens (no thread, no panic).

pub mod cvd;
pub mod nvml;
pub mod series;
pub mod summary;

pub use cvd::{parse_visible_devices, DeviceSel, Visible};
pub use nvml::{probe, GpuSampler, ProbeInfo};
pub use series::{DeviceInfo, GpuSample, GpuSeries};
pub use summary::{summarize, DeviceSummary};

/// Why telemetry could not start. None of these stops a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `libnvidia-ml` could not be loaded or the driver is not running.
    #[error("no NVIDIA GPU/driver found ({0})")]
    NoDriver(String),
    /// The driver is there but no device is visible (CUDA_VISIBLE_DEVICES or no GPU).
    #[error("no NVIDIA GPU visible ({0})")]
    NoDevice(String),
    /// A requested device does not exist among the visible ones.
    #[error("GPU device {0}")]
    BadDevice(String),
    /// Any other NVML failure while setting up.
    #[error("NVML error: {0}")]
    Nvml(String),
    /// Bad sampler settings (rate).
    #[error("invalid telemetry configuration: {0}")]
    Config(String),
    /// The sampler thread could not be started or ended abnormally.
    #[error("GPU sampler thread: {0}")]
    Thread(String),
}

/// CLOCK_MONOTONIC in nanoseconds (the clock of Python's `time.monotonic_ns()`).
// time_t/c_long are i64 on 64-bit Linux but not everywhere: keep the conversions.
#[allow(clippy::useless_conversion)]
pub fn mono_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    i64::from(ts.tv_sec)
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(ts.tv_nsec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mono_clock_moves_forward() {
        let a = mono_ns();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = mono_ns();
        assert!(a > 0 && b - a >= 2_000_000, "{a} {b}");
    }

    #[test]
    fn errors_name_the_cause() {
        let e = TelemetryError::NoDriver("libnvidia-ml.so.1: cannot open".into());
        assert!(e.to_string().starts_with("no NVIDIA GPU/driver found"));
    }
}
