//! The raw kernel mutexes: the lock word they share, the spin and adaptive
//! flavours of taking and releasing it, and the three kinds of `kmutex_t`
//! built on them (plus the machine's plain spin lock).

use core::fmt;

use super::{GuardNoSend, LockRank, RawMutex};
use crate::ipl::{CpuState, Ipl};
use crate::machine;
use crate::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use crate::sync::{Backoff, interrupt_point};

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
/// Locked, and somebody may be asleep on the word (adaptive mutexes).
const CONTENDED: u32 = 2;

/// The state every raw kernel mutex shares. The spin flavour locks `owner`
/// (the address of the holder's [`CpuState`]; 0 when free); the adaptive
/// flavour locks `state`, a 32-bit futex word, and records the holder in
/// `owner` for "locking against myself".
pub(super) struct LockWord {
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
pub(super) fn spin_enter<const RAISE_FIRST: bool>(ipl: Ipl, rank: u8, w: &LockWord) {
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
    pub(super) ipl: Ipl,
    pub(super) rank: LockRank,
    pub(super) word: LockWord,
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
