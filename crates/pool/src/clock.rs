//! Time and logging, injectable: `time_uptime` for page idle times and the
//! hard-limit warning's rate cap, and `log(LOG_ERR, …)` for the warning.
//! Tests give a pool a [`ManualClock`] instead of sleeping ten seconds.

use core::fmt;

use bsdalloc_platform::sync::atomic::{AtomicU64, Ordering};
use bsdalloc_platform::{Ipl, SpinMutex};

/// NetBSD's `time_uptime`: seconds since boot, never going back.
pub trait Clock: Sync {
    /// Seconds since an arbitrary start.
    fn uptime(&self) -> u64;
}

/// The default clock: in user space (feature `std`) the machine's uptime
/// ([`bsdalloc_platform::uptime_secs`]); without `std`, the value the kernel
/// last gave
/// [`UptimeClock::set`] from its clock interrupt.
#[derive(Debug)]
pub struct UptimeClock(AtomicU64);

/// The default clock of every pool.
pub static UPTIME: UptimeClock = UptimeClock(AtomicU64::new(0));

impl UptimeClock {
    /// Set the uptime (kernels without `std`: call from `hardclock`).
    pub fn set(&self, secs: u64) {
        self.0.fetch_max(secs, Ordering::Relaxed);
    }
}

impl Clock for UptimeClock {
    /// The machine's uptime (a coarse clock read through the vDSO: no
    /// time-stamp counter, no system call — a pool reads it whenever a page
    /// goes idle), or what [`UptimeClock::set`] said if that is later.
    #[cfg(feature = "std")]
    fn uptime(&self) -> u64 {
        bsdalloc_platform::uptime_secs().max(self.0.load(Ordering::Relaxed))
    }

    #[cfg(not(feature = "std"))]
    fn uptime(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A clock that moves only when told to: for tests of idle times and rate
/// caps.
///
/// ```
/// use bsdalloc_pool::{Clock, ManualClock};
/// static CLOCK: ManualClock = ManualClock::new();
/// CLOCK.advance(11);
/// assert_eq!(CLOCK.uptime(), 11);
/// ```
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// At 0.
    pub const fn new() -> ManualClock {
        ManualClock(AtomicU64::new(0))
    }

    /// Move forward by `secs`.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::Relaxed);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn uptime(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Where `log(LOG_ERR, …)` lines go: the hard-limit warning.
pub trait LogSink: Sync {
    /// One error-level line from pool `wchan`.
    fn log_err(&self, wchan: &'static str, msg: &'static str);
}

/// The default sink: standard error in user space, nowhere without `std`.
#[derive(Debug)]
struct DefaultSink;

impl LogSink for DefaultSink {
    fn log_err(&self, _wchan: &'static str, _msg: &'static str) {
        #[cfg(feature = "std")]
        {
            extern crate std;
            std::eprintln!("{_msg}");
        }
    }
}

struct SinkSlot(Option<&'static dyn LogSink>);

impl fmt::Debug for SinkSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "custom"
        } else {
            "default"
        })
    }
}

static SINK: SpinMutex<SinkSlot> = SpinMutex::new(Ipl::High, SinkSlot(None));

/// Send pool log lines to `sink` instead of standard error.
pub fn pool_set_log_sink(sink: &'static dyn LogSink) {
    SINK.lock().0 = Some(sink);
}

/// `log(LOG_ERR, "%s\n", msg)`, with no lock held (the sink is unknown
/// code).
pub(crate) fn log_err(wchan: &'static str, msg: &'static str) {
    let sink = SINK.lock().0;
    match sink {
        Some(s) => s.log_err(wchan, msg),
        None => DefaultSink.log_err(wchan, msg),
    }
}
