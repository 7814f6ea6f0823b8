//! Kernel-style mutexes: the IPL spin mutex of the allocation paths, and an
//! adaptive (sleeping) mutex for `IPL_NONE` slow paths.
//!
//! [`SpinMutex`] follows lock_api's shape: a [`RawMutex`] trait with a
//! constant initialiser and a guard marker, and one generic mutex built on it.
//! What it adds is NetBSD's `mutex_spin_enter`: acquiring raises the CPU to
//! the mutex's IPL first, so an interrupt handler at or below that level can
//! never run on this CPU while the lock is held (and deadlock on it). The
//! level saved by the first spin mutex a CPU takes is restored when the last
//! one is released (`ci_mtx_count` / `ci_mtx_oldspl`), so releases may happen
//! in any order.

use core::fmt;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};

use crate::ipl::{CpuState, Ipl};
use crate::machine;
use crate::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use crate::sync::cell::{MutPtr, UnsafeCell};
use crate::sync::{interrupt_point, spin_loop};

/// A raw lock, the shape of lock_api's `RawMutex`.
///
/// # Safety
/// Implementations must provide mutual exclusion: between a successful
/// `lock`/`try_lock` and the matching `unlock`, no other caller's `lock` or
/// `try_lock` succeeds; `unlock` releases with Release ordering and
/// acquisition uses Acquire ordering.
pub unsafe trait RawMutex {
    /// An unlocked lock.
    #[cfg(not(bsdalloc_loom))]
    const INIT: Self;

    /// An unlocked lock (loom's atomics cannot be built in constants).
    #[cfg(bsdalloc_loom)]
    fn init() -> Self;

    /// Whether a guard may be sent to another thread. Spin locks held at a
    /// raised IPL belong to their CPU, so ours is not `Send`.
    type GuardMarker;

    /// Acquire, spinning.
    fn lock(&self);

    /// Acquire if free.
    fn try_lock(&self) -> bool;

    /// Release.
    ///
    /// # Safety
    /// The caller holds the lock.
    unsafe fn unlock(&self);

    /// Whether the lock is held by anybody.
    fn is_locked(&self) -> bool;
}

/// Marker making a guard `!Send`.
#[derive(Debug)]
pub struct GuardNoSend(PhantomData<*mut ()>);

/// A test-and-test-and-set spin lock.
pub struct RawSpinLock {
    locked: AtomicBool,
}

impl fmt::Debug for RawSpinLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawSpinLock")
            .field("locked", &self.is_locked())
            .finish()
    }
}

impl RawSpinLock {
    /// An unlocked lock.
    #[cfg(not(bsdalloc_loom))]
    pub const fn new() -> Self {
        RawSpinLock {
            locked: AtomicBool::new(false),
        }
    }

    /// An unlocked lock.
    #[cfg(bsdalloc_loom)]
    pub fn new() -> Self {
        RawSpinLock {
            locked: AtomicBool::new(false),
        }
    }
}

#[cfg(not(bsdalloc_loom))]
impl Default for RawSpinLock {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: the compare-exchange from false to true with Acquire ordering
// succeeds for one caller at a time, and unlock stores false with Release.
unsafe impl RawMutex for RawSpinLock {
    #[cfg(not(bsdalloc_loom))]
    const INIT: Self = RawSpinLock::new();

    #[cfg(bsdalloc_loom)]
    fn init() -> Self {
        RawSpinLock::new()
    }

    type GuardMarker = GuardNoSend;

    #[inline]
    fn lock(&self) {
        while !self.try_lock() {
            while self.locked.load(Ordering::Relaxed) {
                spin_loop();
                // Interrupts above the mutex's level may still be taken
                // while spinning, as on hardware.
                interrupt_point();
            }
        }
    }

    #[inline]
    fn try_lock(&self) -> bool {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    #[inline]
    unsafe fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }
}

/// NetBSD's spin mutex (`mutex_init(&m, MUTEX_DEFAULT, ipl)` with
/// `ipl > IPL_NONE`, or `MUTEX_SPIN`): a lock that raises the CPU to `ipl`
/// while held.
///
/// ```
/// use bsdalloc_platform::{Ipl, SpinMutex, curipl};
///
/// static COUNTER: SpinMutex<u64> = SpinMutex::new(Ipl::Vm, 0);
///
/// let mut g = COUNTER.lock();
/// *g += 1;
/// assert_eq!(curipl(), Ipl::Vm); // interrupts at IPL_VM and below are held off
/// drop(g);
/// assert_eq!(curipl(), Ipl::None);
/// ```
pub struct SpinMutex<T: ?Sized, R: RawMutex = RawSpinLock> {
    raw: R,
    ipl: Ipl,
    /// Identity of the holding CPU (address of its `CpuState`), 0 if free.
    owner: AtomicUsize,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex hands out access to `T` to one holder at a time; the
// data moves between threads only by the holder's release and the next
// holder's acquire, so `T: Send` suffices.
unsafe impl<T: ?Sized + Send, R: RawMutex + Send> Send for SpinMutex<T, R> {}
// SAFETY: as above; `&SpinMutex` only yields `&mut T` through the lock.
unsafe impl<T: ?Sized + Send, R: RawMutex + Sync> Sync for SpinMutex<T, R> {}

impl<T: ?Sized, R: RawMutex> fmt::Debug for SpinMutex<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpinMutex")
            .field("ipl", &self.ipl)
            .field("locked", &self.raw.is_locked())
            .finish_non_exhaustive()
    }
}

impl<T, R: RawMutex> SpinMutex<T, R> {
    /// A mutex at `ipl` protecting `data`.
    #[cfg(not(bsdalloc_loom))]
    pub const fn new(ipl: Ipl, data: T) -> Self {
        SpinMutex {
            raw: R::INIT,
            ipl,
            owner: AtomicUsize::new(0),
            data: UnsafeCell::new(data),
        }
    }

    /// A mutex at `ipl` protecting `data`.
    #[cfg(bsdalloc_loom)]
    pub fn new(ipl: Ipl, data: T) -> Self {
        SpinMutex {
            raw: R::init(),
            ipl,
            owner: AtomicUsize::new(0),
            data: UnsafeCell::new(data),
        }
    }

    /// The protected value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

fn cpu_id(c: &CpuState) -> usize {
    c as *const CpuState as usize
}

impl<T: ?Sized, R: RawMutex> SpinMutex<T, R> {
    /// The level this mutex raises to.
    pub fn ipl(&self) -> Ipl {
        self.ipl
    }

    /// Whether some CPU holds it.
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// Whether the current CPU holds it (NetBSD's `mutex_owned`).
    pub fn owned(&self) -> bool {
        machine::with_cpu(|c| self.owner.load(Ordering::Relaxed) == cpu_id(c))
    }

    /// `mutex_spin_enter`: raise to the mutex's IPL, then acquire.
    ///
    /// # Panics
    /// "locking against myself" if this CPU already holds it (which an
    /// interrupt handler would find if its level were not blocked), and
    /// when an `IPL_NONE` spin mutex is taken in interrupt context.
    #[inline]
    #[track_caller]
    pub fn lock(&self) -> SpinMutexGuard<'_, T, R> {
        self.lock_impl::<true>()
    }

    /// The acquisition path. `RAISE_FIRST = false` is the classic bug of
    /// raising the level only after taking the lock; only the loom models
    /// use it, to prove they catch the window it opens.
    #[inline]
    #[track_caller]
    fn lock_impl<const RAISE_FIRST: bool>(&self) -> SpinMutexGuard<'_, T, R> {
        machine::with_cpu(|c| {
            if self.ipl == Ipl::None && c.in_interrupt() {
                panic!("mutex_vector_enter: IPL_NONE spin mutex acquired from interrupt context");
            }
            let early = if RAISE_FIRST {
                Some(c.splraise(self.ipl))
            } else {
                None
            };
            interrupt_point();
            if self.owner.load(Ordering::Relaxed) == cpu_id(c) {
                panic!(
                    "mutex_vector_enter: locking against myself (spin mutex at {})",
                    self.ipl
                );
            }
            self.raw.lock();
            self.owner.store(cpu_id(c), Ordering::Relaxed);
            interrupt_point();
            let s = match early {
                Some(s) => s,
                None => c.splraise(self.ipl),
            };
            c.mutex_enter(s);
            interrupt_point();
        });
        SpinMutexGuard {
            mutex: self,
            data: ManuallyDrop::new(self.data.get_mut()),
            _marker: PhantomData,
        }
    }

    /// The broken acquisition of the loom models: the level is raised only
    /// after the lock is taken.
    #[cfg(bsdalloc_loom)]
    #[doc(hidden)]
    pub fn lock_raising_late_for_model(&self) -> SpinMutexGuard<'_, T, R> {
        self.lock_impl::<false>()
    }

    /// `mutex_tryenter`: acquire if free, without spinning.
    pub fn try_lock(&self) -> Option<SpinMutexGuard<'_, T, R>> {
        let got = machine::with_cpu(|c| {
            if self.ipl == Ipl::None && c.in_interrupt() {
                panic!("mutex_vector_enter: IPL_NONE spin mutex acquired from interrupt context");
            }
            let s = c.splraise(self.ipl);
            if self.raw.try_lock() {
                self.owner.store(cpu_id(c), Ordering::Relaxed);
                c.mutex_enter(s);
                true
            } else {
                machine::with_intr_table(|t| c.splx(s, t));
                false
            }
        });
        got.then(|| SpinMutexGuard {
            mutex: self,
            data: ManuallyDrop::new(self.data.get_mut()),
            _marker: PhantomData,
        })
    }

    #[inline]
    #[track_caller]
    fn unlock(&self) {
        machine::with_cpu(|c| {
            let cur = c.curipl();
            if cur < self.ipl {
                panic!(
                    "mutex_vector_exit: spin mutex released at {cur}, below its level {}; \
                     someone lowered the IPL while holding it",
                    self.ipl
                );
            }
            if self.owner.load(Ordering::Relaxed) != cpu_id(c) {
                panic!("mutex_vector_exit: spin mutex released by a CPU that does not hold it");
            }
            self.owner.store(0, Ordering::Relaxed);
            // SAFETY: the owner check above shows this CPU holds the lock.
            unsafe { self.raw.unlock() };
            interrupt_point();
            machine::with_intr_table(|t| c.mutex_exit(t));
        });
    }

    /// Exclusive access without locking, through `&mut self`.
    pub fn get_mut(&mut self) -> &mut T {
        // SAFETY: `&mut self` proves nobody else can reach the data.
        self.data.with_mut(|p| unsafe { &mut *p })
    }
}

/// Holds a [`SpinMutex`]; releasing it restores the level.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct SpinMutexGuard<'a, T: ?Sized, R: RawMutex = RawSpinLock> {
    mutex: &'a SpinMutex<T, R>,
    data: ManuallyDrop<MutPtr<T>>,
    _marker: PhantomData<R::GuardMarker>,
}

impl<'a, T: ?Sized, R: RawMutex> SpinMutexGuard<'a, T, R> {
    /// The mutex this guard holds (for sleeping on a wait channel).
    pub fn mutex(this: &Self) -> &'a SpinMutex<T, R> {
        this.mutex
    }
}

impl<T: ?Sized + fmt::Debug, R: RawMutex> fmt::Debug for SpinMutexGuard<'_, T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized, R: RawMutex> Deref for SpinMutexGuard<'_, T, R> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves this CPU holds the lock.
        unsafe { &*MutPtr::deref(&self.data) }
    }
}

impl<T: ?Sized, R: RawMutex> DerefMut for SpinMutexGuard<'_, T, R> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves this CPU holds the lock, and `&mut self`
        // that this is the only access through it.
        unsafe { MutPtr::deref(&self.data) }
    }
}

impl<T: ?Sized, R: RawMutex> Drop for SpinMutexGuard<'_, T, R> {
    #[track_caller]
    fn drop(&mut self) {
        // SAFETY: the pointer is dropped once, here, before the release, so
        // loom sees this access end before the next holder's begins.
        unsafe { ManuallyDrop::drop(&mut self.data) };
        self.mutex.unlock();
    }
}

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

/// NetBSD's adaptive mutex (`mutex_init(&m, MUTEX_DEFAULT, IPL_NONE)`): spins
/// briefly, then sleeps. Thread context only; never taken with a spin mutex
/// held.
///
/// ```
/// use bsdalloc_platform::AdaptiveMutex;
///
/// static LIST: AdaptiveMutex<[u32; 4]> = AdaptiveMutex::new([0; 4]);
/// LIST.lock()[2] = 7;
/// assert_eq!(LIST.lock()[2], 7);
/// ```
pub struct AdaptiveMutex<T: ?Sized> {
    state: AtomicU32,
    owner: AtomicUsize,
    data: UnsafeCell<T>,
}

// SAFETY: one holder at a time, handed over by Release/Acquire on `state`.
unsafe impl<T: ?Sized + Send> Send for AdaptiveMutex<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Send> Sync for AdaptiveMutex<T> {}

impl<T: ?Sized> fmt::Debug for AdaptiveMutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveMutex")
            .field("locked", &(self.state.load(Ordering::Relaxed) != UNLOCKED))
            .finish_non_exhaustive()
    }
}

impl<T> AdaptiveMutex<T> {
    /// An unlocked mutex protecting `data`.
    #[cfg(not(bsdalloc_loom))]
    pub const fn new(data: T) -> Self {
        AdaptiveMutex {
            state: AtomicU32::new(UNLOCKED),
            owner: AtomicUsize::new(0),
            data: UnsafeCell::new(data),
        }
    }

    /// An unlocked mutex protecting `data`.
    #[cfg(bsdalloc_loom)]
    pub fn new(data: T) -> Self {
        AdaptiveMutex {
            state: AtomicU32::new(UNLOCKED),
            owner: AtomicUsize::new(0),
            data: UnsafeCell::new(data),
        }
    }
}

impl<T: ?Sized> AdaptiveMutex<T> {
    /// `mutex_enter`.
    ///
    /// # Panics
    /// From interrupt context, with a spin mutex held, or when this CPU
    /// already holds it ("locking against myself").
    #[track_caller]
    pub fn lock(&self) -> AdaptiveMutexGuard<'_, T> {
        let me = machine::with_cpu(|c| {
            if c.in_interrupt() {
                panic!("mutex_vector_enter: adaptive mutex acquired from interrupt context");
            }
            if c.mutex_count() > 0 {
                panic!("mutex_vector_enter: adaptive mutex acquired with a spin mutex held");
            }
            cpu_id(c)
        });
        if self.owner.load(Ordering::Relaxed) == me {
            panic!("mutex_vector_enter: locking against myself (adaptive mutex)");
        }
        if self
            .state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        self.owner.store(me, Ordering::Relaxed);
        AdaptiveMutexGuard {
            mutex: self,
            data: ManuallyDrop::new(self.data.get_mut()),
            _marker: PhantomData,
        }
    }

    #[cold]
    fn lock_contended(&self) {
        for _ in 0..100 {
            spin_loop();
            if self
                .state
                .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
        while self.state.swap(CONTENDED, Ordering::Acquire) != UNLOCKED {
            machine::sleep(&self.state, CONTENDED);
        }
    }

    fn unlock(&self) {
        self.owner.store(0, Ordering::Relaxed);
        if self.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            machine::wakeup(&self.state, 1);
        }
    }
}

/// Holds an [`AdaptiveMutex`].
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct AdaptiveMutexGuard<'a, T: ?Sized> {
    mutex: &'a AdaptiveMutex<T>,
    data: ManuallyDrop<MutPtr<T>>,
    _marker: PhantomData<*mut ()>,
}

impl<'a, T: ?Sized> AdaptiveMutexGuard<'a, T> {
    /// The mutex this guard holds.
    pub fn mutex(this: &Self) -> &'a AdaptiveMutex<T> {
        this.mutex
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for AdaptiveMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized> Deref for AdaptiveMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves this thread holds the lock.
        unsafe { &*MutPtr::deref(&self.data) }
    }
}

impl<T: ?Sized> DerefMut for AdaptiveMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves this thread holds the lock.
        unsafe { MutPtr::deref(&self.data) }
    }
}

impl<T: ?Sized> Drop for AdaptiveMutexGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: dropped once, before the release (see SpinMutexGuard).
        unsafe { ManuallyDrop::drop(&mut self.data) };
        self.mutex.unlock();
    }
}
