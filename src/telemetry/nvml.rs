//! The NVML side: opening the library, choosing devices, and the sampler thread.

use std::ffi::OsStr;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};

use super::cvd::{parse_visible_devices, resolve};
use super::series::{DeviceInfo, GpuSample, GpuSeries};
use super::{mono_ns, TelemetryError};

/// The library names tried in turn (the versioned one ships with every driver; the plain
/// `.so` only with development packages).
const LIB_NAMES: [&str; 2] = ["libnvidia-ml.so.1", "libnvidia-ml.so"];
const MIB: f64 = 1024.0 * 1024.0;
/// Highest sampling rate accepted (NVML's own counters update at ~ 1-10 ms).
pub const MAX_HZ: f64 = 1000.0;

/// What a successful probe found.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeInfo {
    pub driver_version: String,
    pub devices: Vec<DeviceInfo>,
}

fn no_driver(e: NvmlError) -> TelemetryError {
    TelemetryError::NoDriver(e.to_string())
}

/// Load NVML and initialise it, or say why not (no driver is the common case).
pub fn open() -> Result<Nvml, TelemetryError> {
    // Report the first failure: the versioned name is the one every driver ships.
    let mut first = None;
    for name in LIB_NAMES {
        match Nvml::builder().lib_path(OsStr::new(name)).init() {
            Ok(nvml) => return Ok(nvml),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    Err(match first {
        Some(e @ (NvmlError::LibloadingError(_) | NvmlError::LibraryNotFound)) => no_driver(e),
        Some(e @ (NvmlError::DriverNotLoaded | NvmlError::NoPermission)) => no_driver(e),
        Some(e) => TelemetryError::Nvml(e.to_string()),
        None => TelemetryError::NoDriver("no library name tried".into()),
    })
}

/// The visible devices (CUDA_VISIBLE_DEVICES applied), optionally narrowed to logical
/// indices `wanted`.
fn visible_devices(nvml: &Nvml, wanted: Option<&[u32]>) -> Result<Vec<DeviceInfo>, TelemetryError> {
    let count = nvml
        .device_count()
        .map_err(|e| TelemetryError::Nvml(e.to_string()))?;
    let mut uuids = Vec::with_capacity(count as usize);
    let mut names = Vec::with_capacity(count as usize);
    for i in 0..count {
        let dev = nvml
            .device_by_index(i)
            .map_err(|e| TelemetryError::Nvml(format!("device {i}: {e}")))?;
        uuids.push(dev.uuid().unwrap_or_default());
        names.push(dev.name().unwrap_or_else(|_| "unknown".to_string()));
    }
    let env = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let physical = resolve(&parse_visible_devices(env.as_deref()), &uuids);
    if physical.is_empty() {
        let why = match env {
            Some(v) => format!("CUDA_VISIBLE_DEVICES={v:?} leaves none of {count} devices"),
            None => "the driver reports no devices".to_string(),
        };
        return Err(TelemetryError::NoDevice(why));
    }
    let all: Vec<DeviceInfo> = physical
        .iter()
        .enumerate()
        .map(|(logical, &p)| DeviceInfo {
            index: logical as u32,
            nvml_index: p,
            name: names.get(p as usize).cloned().unwrap_or_default(),
            uuid: uuids.get(p as usize).cloned().unwrap_or_default(),
        })
        .collect();
    match wanted {
        None => Ok(all),
        Some(list) => list
            .iter()
            .map(|&i| {
                all.get(i as usize).cloned().ok_or_else(|| {
                    TelemetryError::BadDevice(format!(
                        "{i} is not visible ({} visible device(s))",
                        all.len()
                    ))
                })
            })
            .collect(),
    }
}

/// Whether GPU sampling can run here, and on which devices.
pub fn probe() -> Result<ProbeInfo, TelemetryError> {
    let nvml = open()?;
    let devices = visible_devices(&nvml, None)?;
    Ok(ProbeInfo {
        driver_version: nvml.sys_driver_version().unwrap_or_default(),
        devices,
    })
}

fn read(dev: &Device<'_>, logical: u32) -> GpuSample {
    let mut s = GpuSample::empty(logical, mono_ns());
    if let Ok(u) = dev.utilization_rates() {
        s.gpu_util_pct = f64::from(u.gpu);
        s.mem_util_pct = f64::from(u.memory);
    }
    if let Ok(m) = dev.memory_info() {
        s.mem_used_mib = m.used as f64 / MIB;
        s.mem_free_mib = m.free as f64 / MIB;
        s.mem_total_mib = m.total as f64 / MIB;
    }
    if let Ok(p) = dev.power_usage() {
        s.power_w = f64::from(p) / 1000.0;
    }
    if let Ok(e) = dev.total_energy_consumption() {
        s.energy_mj = i64::try_from(e).unwrap_or(-1);
    }
    if let Ok(c) = dev.clock_info(Clock::SM) {
        s.sm_clock_mhz = i64::from(c);
    }
    if let Ok(t) = dev.temperature(TemperatureSensor::Gpu) {
        s.temperature_c = i64::from(t);
    }
    s
}

fn sample_loop(
    nvml: Nvml,
    devices: Vec<DeviceInfo>,
    period: Duration,
    stop: mpsc::Receiver<()>,
) -> GpuSeries {
    let handles: Vec<(u32, Device<'_>)> = devices
        .iter()
        .filter_map(|d| {
            nvml.device_by_index(d.nvml_index)
                .ok()
                .map(|h| (d.index, h))
        })
        .collect();
    let mut series = GpuSeries::default();
    let mut next = Instant::now();
    loop {
        for (logical, dev) in &handles {
            series.push(&read(dev, *logical));
        }
        next += period;
        let now = Instant::now();
        if next < now {
            next = now; // fell behind (slow NVML call): skip the missed ticks
        }
        match stop.recv_timeout(next - now) {
            Err(RecvTimeoutError::Timeout) => continue,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    // one last reading at stop, so the window's end is covered
    for (logical, dev) in &handles {
        series.push(&read(dev, *logical));
    }
    series
}

/// A running sampler thread; [`GpuSampler::stop`] ends it and returns the samples.
pub struct GpuSampler {
    devices: Vec<DeviceInfo>,
    hz: f64,
    stop_tx: Option<Sender<()>>,
    handle: Option<JoinHandle<GpuSeries>>,
    started_ns: i64,
}

impl GpuSampler {
    /// Start sampling the visible devices (or the logical indices in `devices`) `hz` times a
    /// second. The first sample is taken at once.
    pub fn start(hz: f64, devices: Option<&[u32]>) -> Result<Self, TelemetryError> {
        if !(hz.is_finite() && hz > 0.0 && hz <= MAX_HZ) {
            return Err(TelemetryError::Config(format!(
                "GPU sample rate must be in (0, {MAX_HZ}] Hz, got {hz}"
            )));
        }
        let nvml = open()?;
        let chosen = visible_devices(&nvml, devices)?;
        let period = Duration::from_secs_f64(1.0 / hz);
        let (tx, rx) = mpsc::channel();
        let for_thread = chosen.clone();
        let started_ns = mono_ns();
        let handle = std::thread::Builder::new()
            .name("sonic-gpu-sampler".into())
            .spawn(move || sample_loop(nvml, for_thread, period, rx))
            .map_err(|e| TelemetryError::Thread(e.to_string()))?;
        Ok(Self {
            devices: chosen,
            hz,
            stop_tx: Some(tx),
            handle: Some(handle),
            started_ns,
        })
    }

    pub fn devices(&self) -> &[DeviceInfo] {
        &self.devices
    }

    pub fn hz(&self) -> f64 {
        self.hz
    }

    pub fn started_ns(&self) -> i64 {
        self.started_ns
    }

    pub fn is_running(&self) -> bool {
        self.handle.is_some()
    }

    /// Stop the thread and return every sample (an empty series if already stopped).
    pub fn stop(&mut self) -> Result<GpuSeries, TelemetryError> {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(()); // the thread may already be gone; joining tells
        }
        match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| TelemetryError::Thread("the sampler thread panicked".into())),
            None => Ok(GpuSeries::default()),
        }
    }
}

impl Drop for GpuSampler {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rates_are_refused_before_loading_nvml() {
        for hz in [0.0, -1.0, f64::NAN, 1e6] {
            let err = GpuSampler::start(hz, None).err();
            assert!(
                matches!(err, Some(TelemetryError::Config(_))),
                "{hz}: {err:?}"
            );
        }
    }

    /// The NVML path on a real GPU (issue 5). Not run by `cargo test`: on a machine with the
    /// driver, `scripts/device-check.sh` runs it from a prebuilt test binary.
    #[test]
    #[ignore = "needs an NVIDIA GPU and its driver"]
    fn samples_a_real_gpu() {
        let info = probe().expect("NVML opens where a GPU is present");
        assert!(!info.devices.is_empty() && !info.driver_version.is_empty());
        let mut sampler = GpuSampler::start(50.0, None).expect("the sampler starts");
        std::thread::sleep(Duration::from_millis(500));
        let s = sampler.stop().expect("the sampler stops");
        let n_dev = info.devices.len();
        assert!(
            s.t_mono_ns.len() >= 10 * n_dev,
            "{} samples",
            s.t_mono_ns.len()
        );
        for i in 0..s.t_mono_ns.len() {
            assert!(s.mem_total_mib[i] > 0.0 && s.mem_used_mib[i] >= 0.0);
            assert!((0.0..=100.0).contains(&s.gpu_util_pct[i]));
            assert!(s.power_w[i] > 0.0 && s.temperature_c[i] > 0 && s.sm_clock_mhz[i] > 0);
            if i >= n_dev {
                assert!(
                    s.t_mono_ns[i] >= s.t_mono_ns[i - n_dev],
                    "time goes forward"
                );
            }
        }
        // The energy counter never runs backwards per device.
        for d in 0..n_dev {
            let e: Vec<i64> = (d..s.energy_mj.len())
                .step_by(n_dev)
                .map(|i| s.energy_mj[i])
                .collect();
            assert!(e.windows(2).all(|w| w[1] >= w[0]), "{e:?}");
        }
    }

    #[test]
    fn probe_never_panics() {
        // No driver here: an Err naming it. With a GPU: at least one device.
        match probe() {
            Ok(info) => assert!(!info.devices.is_empty()),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}
