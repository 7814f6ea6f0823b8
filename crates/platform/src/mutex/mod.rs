//! Kernel mutexes in lock_api's shape: one generic [`Mutex<R, T>`] with one
//! guard, over an `unsafe trait` [`RawMutex`], and NetBSD's kinds of
//! `kmutex_t` as raw implementations:
//!
//! - [`RawSpinMutex`] — `mutex_init(&m, MUTEX_SPIN, ipl)`: acquiring raises
//!   the CPU to the mutex's IPL first, so an interrupt handler at or below
//!   that level can never run on this CPU while the lock is held (and
//!   deadlock on it). The level saved by the first spin mutex a CPU takes is
//!   restored when the last one is released (`ci_mtx_count` /
//!   `ci_mtx_oldspl`), so releases may happen in any order.
//! - [`RawAdaptiveMutex`] — `mutex_init(&m, MUTEX_DEFAULT, IPL_NONE)`: spins
//!   briefly, then sleeps. Thread context only, never with a spin mutex
//!   held.
//! - [`RawKMutex`] — `mutex_init(&m, MUTEX_DEFAULT, ipl)` as NetBSD decides
//!   it at run time: adaptive at `IPL_NONE`, a spin mutex above. A vmem arena
//!   takes its lock this way, so an `IPL_NONE` arena's waiters sleep instead
//!   of spinning.
//!
//! [`SpinMutex`], [`AdaptiveMutex`] and [`KMutex`] name the three.
//!
//! The uncontended spin mutex is one compare-exchange on the owner word to
//! lock and a release store to unlock, around the level bookkeeping:
//! 4.3 ns per lock+unlock against parking_lot's 5.2 ns and std's 4.5 ns in
//! the same run (2-core AMD EPYC VM, `cargo bench -p bsdalloc-benches
//! --bench platform -- lock-unlock`; 56 instructions against 11 under
//! callgrind — the time goes to the locked instructions, of which we have
//! one and parking_lot two).
//!
//! ## Lock rules of the workspace
//!
//! 1. **Never call out to unknown code with a spin mutex held**: writers,
//!    callbacks, sources, hooks, anything that may allocate or block. Take a
//!    snapshot under the lock, release it, then format or call. (A thread
//!    interrupted inside the C library's `free` may run a handler that spins
//!    on the very lock the writer needs.) The page source ([`PageSource`]) is
//!    the machine itself, below every lock, and is the documented
//!    exception.
//! 2. **Order**, outermost first: pool list → pool_cache → pool → vmem arena
//!    → boundary-tag supply and registries. The adaptive locks of slow
//!    paths (cross-call serialisation, registries walked in thread context)
//!    are taken before any spin mutex, never inside one. Locks created with
//!    a [`LockRank`] are checked against this order in debug builds.
//! 3. **Sleep only at `IPL_NONE` with no spin mutex held**: a wait channel or
//!    an adaptive mutex refuses otherwise, with NetBSD's message.
//!
//! [`PageSource`]: crate::PageSource

use core::fmt;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};

mod raw;

pub use raw::{RawAdaptiveMutex, RawKMutex, RawSpinLock, RawSpinMutex};

use crate::ipl::Ipl;
use crate::sync::cell::{MutPtr, UnsafeCell};

/// Where a lock stands in the workspace lock order (outermost first). A
/// ranked lock may be taken only while every ranked lock held in the same
/// context is of a strictly smaller rank; debug builds check it and panic
/// with "lock order violation". Interrupt handlers are contexts of their
/// own. Unranked locks ([`LockRank::None`]) are not checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum LockRank {
    /// Not part of the checked order.
    None = 0,
    /// The global list of pools (`pool_head`).
    PoolList = 1,
    /// A pool cache's own lock (depot, groups).
    PoolCache = 2,
    /// A pool's lock.
    Pool = 3,
    /// A vmem arena's lock.
    Arena = 4,
    /// A kernel map's state (page bitmaps, budget).
    MapState = 5,
    /// The boundary-tag supply, descriptor slabs and registries.
    Registry = 6,
}

impl LockRank {
    pub(crate) fn name_of(r: u8) -> &'static str {
        match r {
            1 => "pool list",
            2 => "pool_cache",
            3 => "pool",
            4 => "vmem arena",
            5 => "kernel map",
            6 => "registry",
            _ => "unranked",
        }
    }
}

/// A raw lock, the shape of lock_api's `RawMutex`.
///
/// # Safety
/// Implementations must provide mutual exclusion: between a successful
/// `lock`/`try_lock` and the matching `unlock`, no other caller's `lock` or
/// `try_lock` succeeds; acquisition synchronises with the previous release
/// (Acquire / Release).
pub unsafe trait RawMutex {
    /// An unlocked lock (for spin mutexes: at `IPL_HIGH`).
    const INIT: Self;

    /// Whether a guard may be sent to another thread. Every kernel mutex
    /// belongs to the CPU (or thread) that took it, so ours are not `Send`.
    type GuardMarker;

    /// Acquire.
    fn lock(&self);

    /// Acquire if free, without waiting.
    fn try_lock(&self) -> bool;

    /// Release.
    ///
    /// # Safety
    /// The caller holds the lock.
    unsafe fn unlock(&self);

    /// Whether anybody holds the lock.
    fn is_locked(&self) -> bool;

    /// Whether the caller holds it (NetBSD's `mutex_owned`).
    fn is_owned(&self) -> bool;
}

/// Marker making a guard `!Send`.
#[derive(Debug)]
pub struct GuardNoSend(PhantomData<*mut ()>);

/// A kernel mutex protecting a `T`, over the raw lock `R`.
///
/// ```
/// use bsdalloc_platform::{AdaptiveMutex, Ipl, KMutex, SpinMutex, curipl};
///
/// static COUNTER: SpinMutex<u64> = SpinMutex::new(Ipl::Vm, 0);
/// let mut g = COUNTER.lock();
/// *g += 1;
/// assert_eq!(curipl(), Ipl::Vm); // interrupts at IPL_VM and below are held off
/// drop(g);
/// assert_eq!(curipl(), Ipl::None);
///
/// static LIST: AdaptiveMutex<[u32; 4]> = AdaptiveMutex::new([0; 4]);
/// LIST.lock()[2] = 7;
///
/// // MUTEX_DEFAULT: adaptive at IPL_NONE, spin above.
/// static ARENA: KMutex<usize> = KMutex::new(Ipl::None, 0);
/// assert!(ARENA.raw().is_adaptive());
/// ```
pub struct Mutex<R, T: ?Sized> {
    raw: R,
    data: UnsafeCell<T>,
}

/// The IPL spin mutex (`MUTEX_SPIN`).
pub type SpinMutex<T> = Mutex<RawSpinMutex, T>;
/// A guard of a [`SpinMutex`].
pub type SpinMutexGuard<'a, T> = MutexGuard<'a, RawSpinMutex, T>;
/// The adaptive mutex (`MUTEX_DEFAULT`, `IPL_NONE`).
pub type AdaptiveMutex<T> = Mutex<RawAdaptiveMutex, T>;
/// A guard of an [`AdaptiveMutex`].
pub type AdaptiveMutexGuard<'a, T> = MutexGuard<'a, RawAdaptiveMutex, T>;
/// `kmutex_t` with `MUTEX_DEFAULT`: adaptive at `IPL_NONE`, spin above.
pub type KMutex<T> = Mutex<RawKMutex, T>;
/// A guard of a [`KMutex`].
pub type KMutexGuard<'a, T> = MutexGuard<'a, RawKMutex, T>;

// SAFETY: the mutex hands out access to `T` to one holder at a time; the
// data moves between threads only by the holder's release and the next
// holder's acquire, so `T: Send` suffices.
unsafe impl<R: RawMutex + Send, T: ?Sized + Send> Send for Mutex<R, T> {}
// SAFETY: as above; `&Mutex` only yields `&mut T` through the lock.
unsafe impl<R: RawMutex + Sync, T: ?Sized + Send> Sync for Mutex<R, T> {}

impl<R: RawMutex + fmt::Debug, T: ?Sized> fmt::Debug for Mutex<R, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex")
            .field("raw", &self.raw)
            .finish_non_exhaustive()
    }
}

impl<R, T> Mutex<R, T> {
    /// A mutex over an explicit raw lock.
    pub const fn from_raw(raw: R, data: T) -> Self {
        Mutex {
            raw,
            data: UnsafeCell::new(data),
        }
    }

    /// The protected value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T> Mutex<RawSpinMutex, T> {
    /// A spin mutex at `ipl` protecting `data`.
    pub const fn new(ipl: Ipl, data: T) -> Self {
        Self::from_raw(RawSpinMutex::new(ipl), data)
    }

    /// A spin mutex at `ipl` with a place in the lock order.
    pub const fn ranked(ipl: Ipl, rank: LockRank, data: T) -> Self {
        Self::from_raw(RawSpinMutex::ranked(ipl, rank), data)
    }
}

impl<T> Mutex<RawAdaptiveMutex, T> {
    /// An adaptive mutex protecting `data`.
    pub const fn new(data: T) -> Self {
        Self::from_raw(RawAdaptiveMutex::new(), data)
    }

    /// An adaptive mutex with a place in the lock order.
    pub const fn ranked(rank: LockRank, data: T) -> Self {
        Self::from_raw(RawAdaptiveMutex::ranked(rank), data)
    }
}

impl<T> Mutex<RawKMutex, T> {
    /// `mutex_init(…, MUTEX_DEFAULT, ipl)` protecting `data`.
    pub const fn new(ipl: Ipl, data: T) -> Self {
        Self::from_raw(RawKMutex::new(ipl), data)
    }

    /// `mutex_init(…, MUTEX_DEFAULT, ipl)` with a place in the lock order.
    pub const fn ranked(ipl: Ipl, rank: LockRank, data: T) -> Self {
        Self::from_raw(RawKMutex::ranked(ipl, rank), data)
    }
}

impl<T: ?Sized> Mutex<RawSpinMutex, T> {
    /// The level this mutex raises to.
    pub fn ipl(&self) -> Ipl {
        self.raw.ipl
    }

    /// The broken acquisition of the loom models: the level is raised only
    /// after the lock is taken.
    #[cfg(bsdalloc_loom)]
    #[doc(hidden)]
    pub fn lock_raising_late_for_model(&self) -> MutexGuard<'_, RawSpinMutex, T> {
        raw::spin_enter::<false>(self.raw.ipl, self.raw.rank as u8, &self.raw.word);
        MutexGuard::new(self)
    }
}

impl<R: RawMutex, T: ?Sized> Mutex<R, T> {
    /// The raw lock.
    pub fn raw(&self) -> &R {
        &self.raw
    }

    /// `mutex_enter`.
    ///
    /// # Panics
    /// With NetBSD's messages: "locking against myself" if the caller
    /// already holds it (which an interrupt handler would find if its level
    /// were not blocked); an `IPL_NONE` spin mutex or any adaptive mutex
    /// taken in interrupt context; an adaptive mutex taken with a spin
    /// mutex held.
    #[inline]
    #[track_caller]
    pub fn lock(&self) -> MutexGuard<'_, R, T> {
        self.raw.lock();
        MutexGuard::new(self)
    }

    /// `mutex_tryenter`: acquire if free, without waiting.
    #[inline]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, R, T>> {
        self.raw.try_lock().then(|| MutexGuard::new(self))
    }

    /// Whether somebody holds it.
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// Whether the caller holds it (NetBSD's `mutex_owned`).
    pub fn owned(&self) -> bool {
        self.raw.is_owned()
    }

    /// Exclusive access without locking, through `&mut self`.
    pub fn get_mut(&mut self) -> &mut T {
        // SAFETY: `&mut self` proves nobody else can reach the data.
        self.data.with_mut(|p| unsafe { &mut *p })
    }
}

/// Holds a [`Mutex`]; dropping it releases the lock (and, for a spin mutex,
/// restores the level).
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct MutexGuard<'a, R: RawMutex, T: ?Sized> {
    mutex: &'a Mutex<R, T>,
    data: ManuallyDrop<MutPtr<T>>,
    _marker: PhantomData<R::GuardMarker>,
}

impl<'a, R: RawMutex, T: ?Sized> MutexGuard<'a, R, T> {
    #[inline]
    fn new(mutex: &'a Mutex<R, T>) -> Self {
        MutexGuard {
            mutex,
            data: ManuallyDrop::new(mutex.data.get_mut()),
            _marker: PhantomData,
        }
    }

    /// The mutex this guard holds (for sleeping on a wait channel).
    pub fn mutex(this: &Self) -> &'a Mutex<R, T> {
        this.mutex
    }
}

impl<R: RawMutex, T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, R, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<R: RawMutex, T: ?Sized> Deref for MutexGuard<'_, R, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the caller holds the lock.
        unsafe { &*MutPtr::deref(&self.data) }
    }
}

impl<R: RawMutex, T: ?Sized> DerefMut for MutexGuard<'_, R, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves the caller holds the lock, and `&mut
        // self` that this is the only access through it.
        unsafe { MutPtr::deref(&self.data) }
    }
}

impl<R: RawMutex, T: ?Sized> Drop for MutexGuard<'_, R, T> {
    #[inline]
    #[track_caller]
    fn drop(&mut self) {
        // SAFETY: the pointer is dropped once, here, before the release, so
        // loom sees this access end before the next holder's begins.
        unsafe { ManuallyDrop::drop(&mut self.data) };
        // SAFETY: the guard's existence proves the lock is held.
        unsafe { self.mutex.raw.unlock() };
    }
}
