//! Room for a run's connections, made before the clock starts.
//!
//! - The soft limit on open files (`RLIMIT_NOFILE`) is often 1,024, below what a run of
//!   1,000 streams needs: its connects would fail with EMFILE. It is raised to what the run
//!   needs, up to the hard limit (SGLang's `bench_serving` and vLLM's server raise it to
//!   65,535 the same way).
//! - Linux grows a process's table of file descriptors by doubling it when a new descriptor
//!   does not fit, and in a multi-threaded process each growth waits for an RCU grace period.
//!   Measured here: a 20 ms stall inside the `socket()` call that opened a run's 256th
//!   connection, on the worker thread that every stream of the run shared, in the middle of
//!   its first wave (and the same in the sim's `accept`). Asking once for a descriptor above
//!   the number a run will use makes the table that big off the clock; a table never shrinks.

use std::os::fd::AsRawFd;

/// The most descriptors reserved at once: 65,536 entries cost about 0.5 MB of table.
const MAX_RESERVED: usize = 1 << 16;

/// Make room for `extra` more descriptors than are open now (at most `MAX_RESERVED`): raise
/// the soft limit if it is lower (never above the hard limit), then grow the table. Best
/// effort: what cannot be done here happens, or fails, when the descriptors are opened.
pub fn reserve(extra: usize) {
    let Ok(probe) = std::fs::File::open("/dev/null") else {
        return;
    };
    let lowest_free = probe.as_raw_fd();
    let Ok(base) = usize::try_from(lowest_free) else {
        return;
    };
    let needed = base.saturating_add(extra.min(MAX_RESERVED));
    let allowed = raise_soft_limit(needed.saturating_add(1));
    let Ok(want) = libc::c_int::try_from(needed.min(allowed.saturating_sub(1))) else {
        return;
    };
    if want <= lowest_free {
        return;
    }
    // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor we own onto the lowest free number at
    // or above `want`, which makes the kernel grow the table to hold it; we close it at once.
    let high = unsafe { libc::fcntl(lowest_free, libc::F_DUPFD_CLOEXEC, want) };
    if high >= 0 {
        // SAFETY: `high` was just returned to us and nothing else knows it.
        unsafe { libc::close(high) };
    }
}

/// Raise the soft `RLIMIT_NOFILE` to `needed` when it is lower, up to the hard limit;
/// the soft limit afterwards (0 if it cannot be read).
fn raise_soft_limit(needed: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the valid rlimit we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 0;
    }
    let soft = usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX);
    let hard = usize::try_from(limit.rlim_max).unwrap_or(usize::MAX);
    let target = needed.min(hard);
    if target <= soft {
        return soft;
    }
    let Ok(cur) = libc::rlim_t::try_from(target) else {
        return soft;
    };
    limit.rlim_cur = cur;
    // SAFETY: setrlimit reads the valid rlimit we pass; the soft value is within the hard.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
        target
    } else {
        soft
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table's size as the kernel reports it (`FDSize` in /proc/self/status).
    fn table_size() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn grows_the_table_and_leaves_no_descriptor_open() {
        let open_before = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count())
            .unwrap_or(0);
        // Under the common soft limit of 1,024 descriptors.
        reserve(900);
        assert!(table_size() >= 900, "FDSize {}", table_size());
        let open_after = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count())
            .unwrap_or(0);
        // Other tests run in parallel threads and may hold descriptors for a moment.
        assert!(
            open_after <= open_before + 8,
            "{open_before} -> {open_after}"
        );
    }
}
