//! Monotonic nanoseconds on CLOCK_MONOTONIC, the clock of Python's `time.monotonic_ns()` on
//! Linux, so other telemetry (GPU samplers, server logs) can be aligned with the records.

/// CLOCK_MONOTONIC now, in ns (a vDSO call, ~20 ns).
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // time_t / c_long are not i64 on every unix
pub fn mono_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on unix.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as i64 * 1_000_000_000 + ts.tv_nsec as i64
}

/// Fallback: a process-wide `Instant` anchor (not comparable with Python's clock).
#[cfg(not(unix))]
pub fn mono_ns() -> i64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static ANCHOR: OnceLock<Instant> = OnceLock::new();
    ANCHOR.get_or_init(Instant::now).elapsed().as_nanos() as i64
}

/// Wall-clock ns since the Unix epoch (only to label t0; never used for intervals).
pub fn unix_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Sleep until the absolute monotonic time `deadline_ns` (or at most `max_ns` from now).
///
/// Uses `clock_nanosleep(TIMER_ABSTIME)`, so time spent before the call does not add up; the
/// dispatcher thread lowers its timer slack so wake-ups are accurate to tens of µs.
pub fn sleep_until(deadline_ns: i64, max_ns: i64) {
    let now = mono_ns();
    let target = deadline_ns.min(now.saturating_add(max_ns));
    if target <= now {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let ts = libc::timespec {
            tv_sec: (target / 1_000_000_000) as libc::time_t,
            tv_nsec: (target % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: valid timespec; an EINTR return only means we wake early and re-check.
        unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
    }
    #[cfg(not(target_os = "linux"))]
    std::thread::sleep(std::time::Duration::from_nanos((target - now) as u64));
}

/// Make this thread's sleeps precise (Linux timer slack 1 ns instead of 50 µs).
pub fn precise_timer_slack() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes an unsigned long and affects only this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_sleeps() {
        let a = mono_ns();
        sleep_until(a + 2_000_000, i64::MAX);
        let b = mono_ns();
        assert!(b - a >= 2_000_000);
        sleep_until(b + 1_000_000_000, 1_000_000);
        assert!(mono_ns() - b < 500_000_000);
        assert!(unix_ns() > 1_600_000_000_000_000_000);
    }
}
