//! The machine's uptime in whole seconds (NetBSD's `time_uptime`), for
//! idle-time bookkeeping on allocation paths: cheap enough to read on every
//! page that goes idle.

/// Seconds since the system booted, from `CLOCK_MONOTONIC_COARSE`: the vDSO
/// returns the kernel's last tick without reading the time-stamp counter or
/// entering the kernel, like reading NetBSD's `time_uptime` variable
/// (`Instant::now` reads the counter: about 70 instructions and a serialising
/// read on every call).
///
/// ```
/// let a = bsdalloc_platform::uptime_secs();
/// let b = bsdalloc_platform::uptime_secs();
/// assert!(b >= a);
/// ```
#[cfg(feature = "std")]
pub fn uptime_secs() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; the clock id is a constant the
    // kernel has supported since Linux 2.6.32.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    debug_assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC_COARSE) failed");
    u64::try_from(ts.tv_sec).unwrap_or(0)
}
