//! Wait channels: NetBSD's condition variables (`cv_wait`, `cv_signal`,
//! `cv_broadcast`), the sleep behind `VM_SLEEP`, `PR_WAITOK` and `KM_SLEEP`.
//!
//! A channel is a sequence word. A sleeper reads it while holding its
//! interlock, releases the interlock, and sleeps until the word changes
//! (a futex in user space); a waker bumps the word and wakes sleepers. A
//! wakeup between the release and the sleep changes the word, so the sleep
//! returns at once: no wakeup is lost. Like `cv_wait`, a wait may also
//! return spuriously; callers re-check their condition in a loop.

use core::fmt;

use crate::ipl::assert_sleepable;
use crate::machine;
use crate::mutex::{AdaptiveMutexGuard, RawMutex, SpinMutexGuard};
use crate::sync::atomic::{AtomicU32, Ordering};

/// A condition variable / wait channel.
///
/// ```
/// use bsdalloc_platform::{Ipl, SpinMutex, WaitChannel};
///
/// static FREE: SpinMutex<u32> = SpinMutex::new(Ipl::Vm, 0);
/// static CV: WaitChannel = WaitChannel::new("demo");
///
/// let t = std::thread::spawn(|| {
///     let mut g = FREE.lock();
///     while *g == 0 {
///         g = CV.wait(g); // drops the lock and its IPL while asleep
///     }
///     *g -= 1;
/// });
/// *FREE.lock() += 1;
/// CV.broadcast();
/// t.join().unwrap();
/// assert_eq!(*FREE.lock(), 0);
/// ```
pub struct WaitChannel {
    seq: AtomicU32,
    waiters: AtomicU32,
    name: &'static str,
}

impl fmt::Debug for WaitChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitChannel")
            .field("name", &self.name)
            .field("waiters", &self.waiters.load(Ordering::Relaxed))
            .finish()
    }
}

impl WaitChannel {
    /// A channel; `name` is the wait message (`wmesg`) shown in panics.
    #[cfg(not(bsdalloc_loom))]
    pub const fn new(name: &'static str) -> WaitChannel {
        WaitChannel {
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            name,
        }
    }

    /// A channel; `name` is the wait message (`wmesg`) shown in panics.
    #[cfg(bsdalloc_loom)]
    pub fn new(name: &'static str) -> WaitChannel {
        WaitChannel {
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            name,
        }
    }

    /// The wait message.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Threads currently asleep (or about to sleep) on the channel.
    pub fn waiters(&self) -> u32 {
        self.waiters.load(Ordering::Relaxed)
    }

    /// `cv_wait` with a spin mutex as interlock: release it (and its IPL),
    /// sleep until woken, take it again.
    ///
    /// # Panics
    /// In interrupt context, or when, with the interlock released, the CPU
    /// still holds another spin mutex or runs above `IPL_NONE` (sleeping
    /// there would deadlock the CPU).
    #[track_caller]
    pub fn wait<'a, T: ?Sized, R: RawMutex>(
        &self,
        guard: SpinMutexGuard<'a, T, R>,
    ) -> SpinMutexGuard<'a, T, R> {
        if crate::ipl::in_interrupt() {
            panic!(
                "cv_wait: sleeping in interrupt context on \"{}\"",
                self.name
            );
        }
        let seq = self.prepare();
        let m = SpinMutexGuard::mutex(&guard);
        drop(guard);
        self.sleep(seq);
        m.lock()
    }

    /// `cv_wait` with an adaptive mutex as interlock.
    ///
    /// # Panics
    /// As [`WaitChannel::wait`].
    #[track_caller]
    pub fn wait_adaptive<'a, T: ?Sized>(
        &self,
        guard: AdaptiveMutexGuard<'a, T>,
    ) -> AdaptiveMutexGuard<'a, T> {
        if crate::ipl::in_interrupt() {
            panic!(
                "cv_wait: sleeping in interrupt context on \"{}\"",
                self.name
            );
        }
        let seq = self.prepare();
        let m = AdaptiveMutexGuard::mutex(&guard);
        drop(guard);
        self.sleep(seq);
        m.lock()
    }

    fn prepare(&self) -> u32 {
        // Both under the interlock: a waker that changes state under it
        // afterwards sees this waiter and a new sequence number.
        self.waiters.fetch_add(1, Ordering::Relaxed);
        self.seq.load(Ordering::Acquire)
    }

    #[track_caller]
    fn sleep(&self, seq: u32) {
        machine::with_cpu(|c| {
            if c.mutex_count() > 0 || c.curipl() != crate::Ipl::None {
                self.waiters.fetch_sub(1, Ordering::Relaxed);
                panic!(
                    "cv_wait: sleeping on \"{}\" with {} spin mutex(es) held at {}",
                    self.name,
                    c.mutex_count(),
                    c.curipl()
                );
            }
        });
        assert_sleepable("cv_wait");
        machine::sleep(&self.seq, seq);
        self.waiters.fetch_sub(1, Ordering::Relaxed);
    }

    /// `cv_signal`: wake one sleeper.
    pub fn signal(&self) {
        self.seq.fetch_add(1, Ordering::Release);
        if self.waiters.load(Ordering::Relaxed) != 0 {
            machine::wakeup(&self.seq, 1);
        }
    }

    /// `cv_broadcast`: wake every sleeper.
    pub fn broadcast(&self) {
        self.seq.fetch_add(1, Ordering::Release);
        if self.waiters.load(Ordering::Relaxed) != 0 {
            machine::wakeup(&self.seq, u32::MAX);
        }
    }
}
