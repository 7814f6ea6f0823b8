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
use core::ptr;

use crate::ipl::assert_sleepable;
use crate::machine;
use crate::mutex::{MutexGuard, RawMutex};
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
    pub const fn new(name: &'static str) -> WaitChannel {
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

    /// `cv_wait`: release the interlock (and, for a spin mutex, its IPL),
    /// sleep until woken, take it again. Works with every kernel mutex.
    ///
    /// # Panics
    /// In interrupt context, or when, with the interlock released, the CPU
    /// still holds another spin mutex or runs above `IPL_NONE` (sleeping
    /// there would deadlock the CPU).
    #[track_caller]
    pub fn wait<'a, R: RawMutex, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, R, T>,
    ) -> MutexGuard<'a, R, T> {
        if crate::ipl::in_interrupt() {
            panic!(
                "cv_wait: sleeping in interrupt context on \"{}\"",
                self.name
            );
        }
        let seq = self.prepare();
        let m = MutexGuard::mutex(&guard);
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
        if let Err(e) = check_may_sleep(self.name) {
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            e.panic();
        }
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

/// Why the caller may not sleep.
struct NoSleep {
    name: &'static str,
    count: u32,
    ipl: crate::Ipl,
}

impl NoSleep {
    #[cold]
    #[track_caller]
    fn panic(self) -> ! {
        panic!(
            "cv_wait: sleeping on \"{}\" with {} spin mutex(es) held at {}",
            self.name, self.count, self.ipl
        )
    }
}

/// With the interlock released: no spin mutex held, level `IPL_NONE`.
#[track_caller]
fn check_may_sleep(name: &'static str) -> Result<(), NoSleep> {
    machine::with_cpu(|c| {
        if c.mutex_count() > 0 || c.curipl() != crate::Ipl::None {
            return Err(NoSleep {
                name,
                count: c.mutex_count(),
                ipl: c.curipl(),
            });
        }
        Ok(())
    })?;
    assert_sleepable("cv_wait");
    Ok(())
}

/// A sleeper on a [`WaitQueue`]: lives on the sleeping thread's stack while
/// it is queued.
struct Waiter {
    woken: AtomicU32,
    want: usize,
    tag: u64,
    next: *mut Waiter,
    prev: *mut Waiter,
}

/// A FIFO queue of sleepers, each waiting for a known amount of something
/// (bytes of an arena, pages of a budget), so that whoever gives that
/// something back wakes only the sleepers it can satisfy, instead of every
/// sleeper (a thundering herd that then spins on the interlock).
///
/// The queue lives inside the data a [`Mutex`](crate::Mutex) protects, and
/// every operation on it happens with that mutex held: the mutex is the
/// interlock. Sleepers are queued on their own stacks (no allocation); a
/// waker unlinks a sleeper, sets its word and wakes it while still holding
/// the interlock, and the sleeper takes the interlock again before it
/// returns, so its node outlives every access to it.
///
/// ```
/// use bsdalloc_platform::{AdaptiveMutex, WaitQueue};
///
/// struct Budget { free: usize, sleepers: WaitQueue }
/// static B: AdaptiveMutex<Budget> =
///     AdaptiveMutex::new(Budget { free: 0, sleepers: WaitQueue::new() });
///
/// let t = std::thread::spawn(|| {
///     let mut g = B.lock();
///     while g.free < 3 {
///         g = WaitQueue::wait(g, |b| &mut b.sleepers, 3, "budget");
///     }
///     g.free -= 3;
/// });
/// loop {
///     let mut g = B.lock();
///     if g.sleepers.len() == 1 {
///         g.free += 3;
///         let mut left = g.free;
///         // Wake only whom the budget can satisfy.
///         g.sleepers.wake(|want| left >= want && { left -= want; true });
///         break;
///     }
/// }
/// t.join().unwrap();
/// assert_eq!(B.lock().free, 0);
/// ```
pub struct WaitQueue {
    head: *mut Waiter,
    tail: *mut Waiter,
    len: usize,
}

// SAFETY: the nodes belong to threads asleep under the interlock that also
// protects the queue; they are touched only with it held.
unsafe impl Send for WaitQueue {}

impl fmt::Debug for WaitQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitQueue").field("len", &self.len).finish()
    }
}

impl Default for WaitQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl WaitQueue {
    /// An empty queue.
    pub const fn new() -> WaitQueue {
        WaitQueue {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
            len: 0,
        }
    }

    /// Sleepers queued now.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nobody sleeps here.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sleep until a waker picks this sleeper (`want` tells the waker what
    /// it needs). `queue` finds the queue inside the locked data. Releases
    /// the interlock while asleep and returns with it held again; the
    /// caller re-checks its condition, as with `cv_wait`.
    ///
    /// # Panics
    /// As [`WaitChannel::wait`], with `wmesg` in the message.
    #[track_caller]
    pub fn wait<'a, R: RawMutex, T: ?Sized>(
        guard: MutexGuard<'a, R, T>,
        queue: impl Fn(&mut T) -> &mut WaitQueue,
        want: usize,
        wmesg: &'static str,
    ) -> MutexGuard<'a, R, T> {
        Self::wait_tagged(guard, queue, want, 0, wmesg)
    }

    /// [`WaitQueue::wait`] with a `tag` the waker sees beside `want` (an
    /// arena passes the state generation at which the sleeper last failed,
    /// so a waker does not wake it again for the very same state).
    #[track_caller]
    pub fn wait_tagged<'a, R: RawMutex, T: ?Sized>(
        mut guard: MutexGuard<'a, R, T>,
        queue: impl Fn(&mut T) -> &mut WaitQueue,
        want: usize,
        tag: u64,
        wmesg: &'static str,
    ) -> MutexGuard<'a, R, T> {
        if crate::ipl::in_interrupt() {
            panic!("cv_wait: sleeping in interrupt context on \"{wmesg}\"");
        }
        let mut node = Waiter {
            woken: AtomicU32::new(0),
            want,
            tag,
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
        };
        let np: *mut Waiter = &raw mut node;
        // SAFETY: the node stays where it is until this function returns,
        // and leaves the queue before that (see below).
        unsafe { queue(&mut guard).push(np) };
        let m = MutexGuard::mutex(&guard);
        drop(guard);
        if let Err(e) = check_may_sleep(wmesg) {
            let mut g = m.lock();
            // SAFETY: still queued, or already unlinked by a waker.
            unsafe { queue(&mut g).remove_if_queued(np) };
            drop(g);
            e.panic();
        }
        // SAFETY: only this thread reads the node's word here; wakers write
        // it with the interlock held.
        let woken = unsafe { &(*np).woken };
        while woken.load(Ordering::Acquire) == 0 {
            machine::sleep(woken, 0);
        }
        // The waker unlinked the node and may still be inside `wakeup` on
        // its word: it holds the interlock until it is done, and this lock
        // waits for that.
        m.lock()
    }

    /// # Safety
    /// `w` is a live node on no queue, that stays put until it is removed.
    unsafe fn push(&mut self, w: *mut Waiter) {
        // SAFETY: caller's contract; the tail, if any, is a live node.
        unsafe {
            (*w).prev = self.tail;
            (*w).next = ptr::null_mut();
            if self.tail.is_null() {
                self.head = w;
            } else {
                (*self.tail).next = w;
            }
        }
        self.tail = w;
        self.len += 1;
    }

    /// # Safety
    /// `w` is on this queue.
    unsafe fn unlink(&mut self, w: *mut Waiter) {
        // SAFETY: caller's contract; neighbours are live nodes.
        unsafe {
            let (p, n) = ((*w).prev, (*w).next);
            if p.is_null() {
                self.head = n;
            } else {
                (*p).next = n;
            }
            if n.is_null() {
                self.tail = p;
            } else {
                (*n).prev = p;
            }
            (*w).next = ptr::null_mut();
            (*w).prev = ptr::null_mut();
        }
        self.len -= 1;
    }

    /// # Safety
    /// `w` is a live node that is on this queue or on none.
    unsafe fn remove_if_queued(&mut self, w: *mut Waiter) {
        let mut p = self.head;
        while !p.is_null() {
            if p == w {
                // SAFETY: found on this queue.
                unsafe { self.unlink(w) };
                return;
            }
            // SAFETY: queued nodes are live.
            p = unsafe { (*p).next };
        }
    }

    /// Wake, in FIFO order, every sleeper for which `admit(want)` says yes
    /// (the closure keeps track of what it has promised). Returns how many
    /// were woken.
    pub fn wake(&mut self, mut admit: impl FnMut(usize) -> bool) -> usize {
        self.wake_tagged(|want, _| admit(want))
    }

    /// [`WaitQueue::wake`], with each sleeper's tag.
    pub fn wake_tagged(&mut self, mut admit: impl FnMut(usize, u64) -> bool) -> usize {
        let mut n = 0;
        let mut p = self.head;
        while !p.is_null() {
            // SAFETY: queued nodes are live until their sleeper has taken
            // the interlock again, which the caller holds.
            unsafe {
                let next = (*p).next;
                if admit((*p).want, (*p).tag) {
                    self.unlink(p);
                    (*p).woken.store(1, Ordering::Release);
                    machine::wakeup(&(*p).woken, 1);
                    n += 1;
                }
                p = next;
            }
        }
        n
    }

    /// Wake every sleeper.
    pub fn wake_all(&mut self) -> usize {
        self.wake_tagged(|_, _| true)
    }
}

/// NetBSD's `kpause(9)` for one tick: give up the processor briefly before
/// retrying something that failed for lack of memory. In user space a 1 ms
/// sleep; on the kernel backend, which has no timer, a short spin.
///
/// # Panics
/// Where the caller may not sleep, as [`crate::assert_sleepable`].
#[track_caller]
pub fn kpause() {
    assert_sleepable("kpause");
    #[cfg(feature = "std")]
    std::thread::sleep(core::time::Duration::from_millis(1));
    #[cfg(not(feature = "std"))]
    for _ in 0..10_000 {
        crate::sync::spin_loop();
    }
}
