//! Fault injection: make the N-th request fail, or each with a probability.
//!
//! Off by default. When off, [`FaultInjector::should_fail`] is one relaxed
//! load and a not-taken branch.

use core::fmt;

use crate::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

const OFF: u8 = 0;
const NTH: u8 = 1;
const PROBABILITY: u8 = 2;

/// A fault-injection point.
///
/// ```
/// use bsdalloc_platform::FaultInjector;
///
/// static POINT: FaultInjector = FaultInjector::new();
/// POINT.fail_nth(2);
/// assert!(!POINT.should_fail()); // 1st request passes
/// assert!(POINT.should_fail());  // 2nd fails
/// assert!(!POINT.should_fail()); // and only that one
/// assert_eq!(POINT.injected(), 1);
/// ```
pub struct FaultInjector {
    mode: AtomicU8,
    /// Requests seen since armed.
    seen: AtomicU64,
    /// NTH: which request fails (1-based).
    nth: AtomicU64,
    /// PROBABILITY: failures per 2^32 requests.
    threshold: AtomicU32,
    rng: AtomicU64,
    injected: AtomicU64,
}

impl fmt::Debug for FaultInjector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultInjector")
            .field("mode", &self.mode.load(Ordering::Relaxed))
            .field("injected", &self.injected())
            .finish_non_exhaustive()
    }
}

macro_rules! fault_init {
    () => {
        FaultInjector {
            mode: AtomicU8::new(OFF),
            seen: AtomicU64::new(0),
            nth: AtomicU64::new(0),
            threshold: AtomicU32::new(0),
            rng: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
            injected: AtomicU64::new(0),
        }
    };
}

impl FaultInjector {
    /// A disarmed point.
    pub const fn new() -> Self {
        fault_init!()
    }

    /// Fail exactly the `n`-th request from now (1-based), then pass again.
    ///
    /// # Panics
    /// If `n` is 0.
    pub fn fail_nth(&self, n: u64) {
        assert!(n > 0, "fail_nth: requests are counted from 1");
        self.mode.store(OFF, Ordering::SeqCst);
        self.seen.store(0, Ordering::SeqCst);
        self.nth.store(n, Ordering::SeqCst);
        self.mode.store(NTH, Ordering::SeqCst);
    }

    /// Fail each request with probability `p` (0.0 ..= 1.0), drawn from a
    /// generator seeded with `seed` (so runs repeat).
    ///
    /// # Panics
    /// If `p` is not within 0.0 ..= 1.0.
    pub fn fail_with_probability(&self, p: f64, seed: u64) {
        assert!(
            (0.0..=1.0).contains(&p),
            "fail_with_probability: {p} is not a probability"
        );
        self.mode.store(OFF, Ordering::SeqCst);
        self.threshold
            .store((p * u32::MAX as f64) as u32, Ordering::SeqCst);
        self.rng.store(seed | 1, Ordering::SeqCst);
        self.seen.store(0, Ordering::SeqCst);
        self.mode.store(PROBABILITY, Ordering::SeqCst);
    }

    /// Disarm.
    pub fn off(&self) {
        self.mode.store(OFF, Ordering::SeqCst);
    }

    /// Whether the point is armed.
    pub fn is_armed(&self) -> bool {
        self.mode.load(Ordering::Relaxed) != OFF
    }

    /// Failures injected so far (never reset).
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// Requests seen since the point was last armed.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// Called at the injection point for each request: whether to fail it.
    #[inline]
    pub fn should_fail(&self) -> bool {
        if self.mode.load(Ordering::Relaxed) == OFF {
            return false;
        }
        self.should_fail_slow()
    }

    #[cold]
    fn should_fail_slow(&self) -> bool {
        let fail = match self.mode.load(Ordering::Acquire) {
            NTH => {
                let k = self.seen.fetch_add(1, Ordering::AcqRel) + 1;
                k == self.nth.load(Ordering::Relaxed)
            }
            PROBABILITY => {
                self.seen.fetch_add(1, Ordering::Relaxed);
                // xorshift64*, advanced with a CAS loop so threads never
                // draw the same number.
                let mut x = self.rng.load(Ordering::Relaxed);
                let next = loop {
                    let mut y = x;
                    y ^= y >> 12;
                    y ^= y << 25;
                    y ^= y >> 27;
                    match self
                        .rng
                        .compare_exchange_weak(x, y, Ordering::Relaxed, Ordering::Relaxed)
                    {
                        Ok(_) => break y,
                        Err(cur) => x = cur,
                    }
                };
                let r = (next.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32;
                r < self.threshold.load(Ordering::Relaxed)
            }
            _ => false,
        };
        if fail {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        fail
    }
}

impl Default for FaultInjector {
    fn default() -> Self {
        Self::new()
    }
}
