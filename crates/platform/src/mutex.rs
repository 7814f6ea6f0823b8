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

use crate::ipl::{CpuState, Ipl};
use crate::machine;
use crate::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use crate::sync::cell::{MutPtr, UnsafeCell};
use crate::sync::{Backoff, interrupt_point};

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

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
/// Locked, and somebody may be asleep on the word (adaptive mutexes).
const CONTENDED: u32 = 2;

/// The state every raw kernel mutex shares. The spin flavour locks `owner`
/// (the address of the holder's [`CpuState`]; 0 when free); the adaptive
/// flavour locks `state`, a 32-bit futex word, and records the holder in
/// `owner` for "locking against myself".
struct LockWord {
    state: AtomicU32,
    owner: AtomicUsize,
}

impl LockWord {
    const fn new() -> LockWord {
        LockWord {
            state: AtomicU32::new(UNLOCKED),
            owner: AtomicUsize::new(0),
        }
    }

    #[inline]
    fn try_acquire(&self) -> bool {
        self.state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// The contended path of the spin flavour, which locks `owner`.
    #[cold]
    #[track_caller]
    fn spin_acquire_owner(&self, me: usize, ipl: Ipl) {
        let backoff = Backoff::new();
        loop {
            let cur = self.owner.load(Ordering::Relaxed);
            if cur == me {
                panic_against_myself(ipl);
            }
            if cur == 0 {
                if self
                    .owner
                    .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
            } else {
                backoff.snooze();
                // Interrupts above the mutex's level may still be taken
                // while spinning, as on hardware.
                interrupt_point();
            }
        }
    }

    #[cold]
    fn sleep_acquire(&self) {
        let backoff = Backoff::new();
        while !backoff.is_completed() {
            backoff.snooze();
            if self.try_acquire() {
                return;
            }
        }
        while self.state.swap(CONTENDED, Ordering::Acquire) != UNLOCKED {
            machine::sleep(&self.state, CONTENDED);
        }
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != UNLOCKED || self.owner.load(Ordering::Relaxed) != 0
    }
}

#[inline]
fn cpu_id(c: &CpuState) -> usize {
    c as *const CpuState as usize
}

#[cold]
#[inline(never)]
#[track_caller]
fn panic_none_in_interrupt() -> ! {
    panic!("mutex_vector_enter: IPL_NONE spin mutex acquired from interrupt context")
}

#[cold]
#[inline(never)]
#[track_caller]
fn panic_against_myself(ipl: Ipl) -> ! {
    panic!("mutex_vector_enter: locking against myself (spin mutex at {ipl})")
}

// ---- the spin flavour ----

/// `mutex_spin_enter`: raise to `ipl`, then take the lock.
/// `RAISE_FIRST = false` is the classic bug of raising the level only after
/// taking the lock; only the loom models use it, to prove they catch the
/// window it opens.
#[inline(always)]
#[track_caller]
fn spin_enter<const RAISE_FIRST: bool>(ipl: Ipl, rank: u8, w: &LockWord) {
    machine::with_cpu(|c| {
        c.rank_check(rank);
        if ipl == Ipl::None && c.in_interrupt() {
            panic_none_in_interrupt();
        }
        let early = if RAISE_FIRST {
            Some(c.splraise(ipl))
        } else {
            None
        };
        interrupt_point();
        // The spin flavour locks the owner word itself: one compare-exchange
        // from 0 to this CPU's identity, and "locking against myself" costs
        // nothing unless the lock is taken.
        let me = cpu_id(c);
        if w.owner
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            w.spin_acquire_owner(me, ipl);
        }
        c.rank_enter(rank);
        interrupt_point();
        let s = match early {
            Some(s) => s,
            None => c.splraise(ipl),
        };
        c.mutex_enter(s);
        interrupt_point();
    })
}

#[inline(always)]
fn spin_try_enter(ipl: Ipl, rank: u8, w: &LockWord) -> bool {
    machine::with_cpu(|c| {
        if ipl == Ipl::None && c.in_interrupt() {
            panic_none_in_interrupt();
        }
        let s = c.splraise(ipl);
        if w.owner
            .compare_exchange(0, cpu_id(c), Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            c.rank_enter(rank);
            c.mutex_enter(s);
            true
        } else {
            machine::with_intr_table(|t| c.splx(s, t));
            false
        }
    })
}

#[inline(always)]
#[track_caller]
fn spin_exit(ipl: Ipl, rank: u8, w: &LockWord) {
    machine::with_cpu(|c| {
        c.rank_exit(rank);
        let cur = c.curipl();
        if cur < ipl {
            spin_exit_low_panic(cur, ipl);
        }
        if w.owner.load(Ordering::Relaxed) != cpu_id(c) {
            spin_exit_owner_panic();
        }
        w.owner.store(0, Ordering::Release);
        interrupt_point();
        machine::with_intr_table(|t| c.mutex_exit(t));
    })
}

#[cold]
#[inline(never)]
#[track_caller]
fn spin_exit_low_panic(cur: Ipl, ipl: Ipl) -> ! {
    panic!(
        "mutex_vector_exit: spin mutex released at {cur}, below its level {ipl}; \
         someone lowered the IPL while holding it"
    )
}

#[cold]
#[inline(never)]
#[track_caller]
fn spin_exit_owner_panic() -> ! {
    panic!("mutex_vector_exit: spin mutex released by a CPU that does not hold it")
}

#[inline]
fn owned_here(w: &LockWord) -> bool {
    machine::with_cpu(|c| w.owner.load(Ordering::Relaxed) == cpu_id(c))
}

// ---- the adaptive flavour ----

#[inline(always)]
#[track_caller]
fn adaptive_enter(rank: u8, w: &LockWord) {
    let me = machine::with_cpu(|c| {
        c.rank_check(rank);
        if c.in_interrupt() {
            adaptive_panic("mutex_vector_enter: adaptive mutex acquired from interrupt context");
        }
        if c.mutex_count() > 0 {
            adaptive_panic("mutex_vector_enter: adaptive mutex acquired with a spin mutex held");
        }
        cpu_id(c)
    });
    if w.owner.load(Ordering::Relaxed) == me {
        adaptive_panic("mutex_vector_enter: locking against myself (adaptive mutex)");
    }
    if !w.try_acquire() {
        w.sleep_acquire();
    }
    w.owner.store(me, Ordering::Relaxed);
    machine::with_cpu(|c| c.rank_enter(rank));
}

#[inline(always)]
fn adaptive_try_enter(rank: u8, w: &LockWord) -> bool {
    let me = machine::with_cpu(|c| {
        if c.in_interrupt() {
            adaptive_panic("mutex_vector_enter: adaptive mutex acquired from interrupt context");
        }
        cpu_id(c)
    });
    if w.try_acquire() {
        w.owner.store(me, Ordering::Relaxed);
        machine::with_cpu(|c| c.rank_enter(rank));
        true
    } else {
        false
    }
}

#[inline(always)]
#[track_caller]
fn adaptive_exit(rank: u8, w: &LockWord) {
    machine::with_cpu(|c| c.rank_exit(rank));
    w.owner.store(0, Ordering::Relaxed);
    if w.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
        machine::wakeup(&w.state, 1);
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn adaptive_panic(msg: &'static str) -> ! {
    panic!("{msg}")
}

/// The raw IPL spin mutex (`MUTEX_SPIN`).
pub struct RawSpinMutex {
    ipl: Ipl,
    rank: LockRank,
    word: LockWord,
}

impl RawSpinMutex {
    /// An unlocked spin mutex at `ipl`.
    pub const fn new(ipl: Ipl) -> RawSpinMutex {
        Self::ranked(ipl, LockRank::None)
    }

    /// An unlocked spin mutex at `ipl`, checked against the lock order.
    pub const fn ranked(ipl: Ipl, rank: LockRank) -> RawSpinMutex {
        RawSpinMutex {
            ipl,
            rank,
            word: LockWord::new(),
        }
    }

    /// The level it raises to.
    pub fn ipl(&self) -> Ipl {
        self.ipl
    }
}

impl fmt::Debug for RawSpinMutex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawSpinMutex")
            .field("ipl", &self.ipl)
            .field("locked", &self.word.is_locked())
            .finish()
    }
}

// SAFETY: the compare-exchange from UNLOCKED with Acquire succeeds for one
// caller at a time; unlock stores UNLOCKED with Release.
unsafe impl RawMutex for RawSpinMutex {
    const INIT: Self = RawSpinMutex::new(Ipl::High);
    type GuardMarker = GuardNoSend;

    #[inline]
    #[track_caller]
    fn lock(&self) {
        spin_enter::<true>(self.ipl, self.rank as u8, &self.word)
    }

    #[inline]
    fn try_lock(&self) -> bool {
        spin_try_enter(self.ipl, self.rank as u8, &self.word)
    }

    #[inline]
    #[track_caller]
    unsafe fn unlock(&self) {
        spin_exit(self.ipl, self.rank as u8, &self.word)
    }

    fn is_locked(&self) -> bool {
        self.word.is_locked()
    }

    fn is_owned(&self) -> bool {
        owned_here(&self.word)
    }
}

/// The raw adaptive mutex (`MUTEX_DEFAULT` at `IPL_NONE`).
pub struct RawAdaptiveMutex {
    rank: LockRank,
    word: LockWord,
}

impl RawAdaptiveMutex {
    /// An unlocked adaptive mutex.
    pub const fn new() -> RawAdaptiveMutex {
        Self::ranked(LockRank::None)
    }

    /// An unlocked adaptive mutex, checked against the lock order.
    pub const fn ranked(rank: LockRank) -> RawAdaptiveMutex {
        RawAdaptiveMutex {
            rank,
            word: LockWord::new(),
        }
    }
}

impl Default for RawAdaptiveMutex {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RawAdaptiveMutex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawAdaptiveMutex")
            .field("locked", &self.word.is_locked())
            .finish()
    }
}

// SAFETY: as for RawSpinMutex; the sleeping path swaps in CONTENDED with
// Acquire and returns only when it found the lock free.
unsafe impl RawMutex for RawAdaptiveMutex {
    const INIT: Self = RawAdaptiveMutex::new();
    type GuardMarker = GuardNoSend;

    #[inline]
    #[track_caller]
    fn lock(&self) {
        adaptive_enter(self.rank as u8, &self.word)
    }

    #[inline]
    fn try_lock(&self) -> bool {
        adaptive_try_enter(self.rank as u8, &self.word)
    }

    #[inline]
    #[track_caller]
    unsafe fn unlock(&self) {
        adaptive_exit(self.rank as u8, &self.word)
    }

    fn is_locked(&self) -> bool {
        self.word.is_locked()
    }

    fn is_owned(&self) -> bool {
        owned_here(&self.word)
    }
}

/// The raw `kmutex_t` of `mutex_init(&m, MUTEX_DEFAULT, ipl)`: adaptive at
/// `IPL_NONE`, a spin mutex at any higher level, decided at run time.
pub struct RawKMutex {
    ipl: Ipl,
    rank: LockRank,
    word: LockWord,
}

impl RawKMutex {
    /// An unlocked mutex for `ipl`.
    pub const fn new(ipl: Ipl) -> RawKMutex {
        Self::ranked(ipl, LockRank::None)
    }

    /// An unlocked mutex for `ipl`, checked against the lock order.
    pub const fn ranked(ipl: Ipl, rank: LockRank) -> RawKMutex {
        RawKMutex {
            ipl,
            rank,
            word: LockWord::new(),
        }
    }

    /// The level (`IPL_NONE`: adaptive).
    pub fn ipl(&self) -> Ipl {
        self.ipl
    }

    /// Whether this mutex sleeps (adaptive) rather than spins.
    pub fn is_adaptive(&self) -> bool {
        self.ipl == Ipl::None
    }
}

impl fmt::Debug for RawKMutex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawKMutex")
            .field("ipl", &self.ipl)
            .field("adaptive", &self.is_adaptive())
            .field("locked", &self.word.is_locked())
            .finish()
    }
}

// SAFETY: one of the two implementations above, chosen by a field that
// never changes.
unsafe impl RawMutex for RawKMutex {
    const INIT: Self = RawKMutex::new(Ipl::None);
    type GuardMarker = GuardNoSend;

    #[inline]
    #[track_caller]
    fn lock(&self) {
        if self.is_adaptive() {
            adaptive_enter(self.rank as u8, &self.word)
        } else {
            spin_enter::<true>(self.ipl, self.rank as u8, &self.word)
        }
    }

    #[inline]
    fn try_lock(&self) -> bool {
        if self.is_adaptive() {
            adaptive_try_enter(self.rank as u8, &self.word)
        } else {
            spin_try_enter(self.ipl, self.rank as u8, &self.word)
        }
    }

    #[inline]
    #[track_caller]
    unsafe fn unlock(&self) {
        if self.is_adaptive() {
            adaptive_exit(self.rank as u8, &self.word)
        } else {
            spin_exit(self.ipl, self.rank as u8, &self.word)
        }
    }

    fn is_locked(&self) -> bool {
        self.word.is_locked()
    }

    fn is_owned(&self) -> bool {
        owned_here(&self.word)
    }
}

/// A plain test-and-test-and-set lock with no IPL bookkeeping, for the
/// machine's own internals (slot tables), which raise the level themselves.
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

impl Default for RawSpinLock {
    fn default() -> Self {
        Self::new()
    }
}

impl RawSpinLock {
    /// An unlocked lock.
    pub const fn new() -> Self {
        RawSpinLock {
            locked: AtomicBool::new(false),
        }
    }

    /// Acquire, spinning.
    #[inline]
    pub fn lock(&self) {
        if !self.try_lock() {
            let backoff = Backoff::new();
            while !self.try_lock() {
                while self.locked.load(Ordering::Relaxed) {
                    backoff.snooze();
                    interrupt_point();
                }
            }
        }
    }

    /// Acquire if free.
    #[inline]
    pub fn try_lock(&self) -> bool {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Release.
    ///
    /// # Safety
    /// The caller holds the lock.
    #[inline]
    pub unsafe fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// Whether somebody holds it.
    #[inline]
    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }
}

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
        spin_enter::<false>(self.raw.ipl, self.raw.rank as u8, &self.raw.word);
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
