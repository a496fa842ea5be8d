//! Columnar GPU samples (one row per device per tick).

/// A device as the sampler sees it: `index` is the logical index (position among the visible
/// devices, as CUDA numbers them for the engine), `nvml_index` the physical one.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    pub index: u32,
    pub nvml_index: u32,
    pub name: String,
    pub uuid: String,
}

/// One reading of one device. NaN (floats) or -1 (integers) where NVML does not support the
/// field on this device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuSample {
    pub device: u32,
    pub t_mono_ns: i64,
    pub gpu_util_pct: f64,
    pub mem_util_pct: f64,
    pub mem_used_mib: f64,
    pub mem_free_mib: f64,
    pub mem_total_mib: f64,
    pub power_w: f64,
    pub energy_mj: i64,
    pub sm_clock_mhz: i64,
    pub temperature_c: i64,
}

impl GpuSample {
    /// A sample with every field unsupported.
    pub fn empty(device: u32, t_mono_ns: i64) -> Self {
        Self {
            device,
            t_mono_ns,
            gpu_util_pct: f64::NAN,
            mem_util_pct: f64::NAN,
            mem_used_mib: f64::NAN,
            mem_free_mib: f64::NAN,
            mem_total_mib: f64::NAN,
            power_w: f64::NAN,
            energy_mj: -1,
            sm_clock_mhz: -1,
            temperature_c: -1,
        }
    }
}

/// Samples in columns, in the order they were taken.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuSeries {
    pub device: Vec<u32>,
    pub t_mono_ns: Vec<i64>,
    pub gpu_util_pct: Vec<f64>,
    pub mem_util_pct: Vec<f64>,
    pub mem_used_mib: Vec<f64>,
    pub mem_free_mib: Vec<f64>,
    pub mem_total_mib: Vec<f64>,
    pub power_w: Vec<f64>,
    pub energy_mj: Vec<i64>,
    pub sm_clock_mhz: Vec<i64>,
    pub temperature_c: Vec<i64>,
}

impl GpuSeries {
    pub fn len(&self) -> usize {
        self.t_mono_ns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.t_mono_ns.is_empty()
    }

    pub fn push(&mut self, s: &GpuSample) {
        self.device.push(s.device);
        self.t_mono_ns.push(s.t_mono_ns);
        self.gpu_util_pct.push(s.gpu_util_pct);
        self.mem_util_pct.push(s.mem_util_pct);
        self.mem_used_mib.push(s.mem_used_mib);
        self.mem_free_mib.push(s.mem_free_mib);
        self.mem_total_mib.push(s.mem_total_mib);
        self.power_w.push(s.power_w);
        self.energy_mj.push(s.energy_mj);
        self.sm_clock_mhz.push(s.sm_clock_mhz);
        self.temperature_c.push(s.temperature_c);
    }

    /// Row `i` as a sample (None past the end).
    pub fn get(&self, i: usize) -> Option<GpuSample> {
        Some(GpuSample {
            device: *self.device.get(i)?,
            t_mono_ns: *self.t_mono_ns.get(i)?,
            gpu_util_pct: *self.gpu_util_pct.get(i)?,
            mem_util_pct: *self.mem_util_pct.get(i)?,
            mem_used_mib: *self.mem_used_mib.get(i)?,
            mem_free_mib: *self.mem_free_mib.get(i)?,
            mem_total_mib: *self.mem_total_mib.get(i)?,
            power_w: *self.power_w.get(i)?,
            energy_mj: *self.energy_mj.get(i)?,
            sm_clock_mhz: *self.sm_clock_mhz.get(i)?,
            temperature_c: *self.temperature_c.get(i)?,
        })
    }

    /// The rows of one device, in time order.
    pub fn of_device(&self, device: u32) -> Vec<GpuSample> {
        (0..self.len())
            .filter(|&i| self.device[i] == device)
            .filter_map(|i| self.get(i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_read_back() {
        let mut s = GpuSeries::default();
        let mut a = GpuSample::empty(0, 10);
        a.mem_used_mib = 5.0;
        s.push(&a);
        s.push(&GpuSample::empty(1, 11));
        assert_eq!(s.len(), 2);
        assert_eq!(s.get(0).map(|x| x.mem_used_mib), Some(5.0));
        assert_eq!(s.of_device(1).len(), 1);
        assert!(s.get(2).is_none());
    }
}
