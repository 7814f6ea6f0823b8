//! Interrupt priority levels, the per-CPU record, and interrupt dispatch.
//!
//! The model is NetBSD's "deferred interrupts" (what x86 calls lazy spl): each
//! CPU has a current level; an interrupt whose level is not above it is only
//! *marked pending* and runs later, when `splx` lowers the level far enough.
//! An interrupt above the current level runs at once, at its own level, on
//! the interrupted CPU. Because the level is a per-CPU variable read and
//! written only by its own CPU (and that CPU's handlers, which nest strictly),
//! raising and lowering it is a plain load and store plus a compiler fence:
//! no atomic read-modify-write and no hardware fence.

use core::fmt;

use crate::intr::{IntrTable, NSOURCES};
use crate::machine;
use crate::sync::atomic::{
    AtomicPtr, AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering, compiler_fence,
};
use crate::sync::interrupt_point;

/// NetBSD's interrupt priority levels, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Ipl {
    /// `IPL_NONE`: thread context, nothing blocked.
    None = 0,
    /// `IPL_SOFTCLOCK`: soft clock interrupts.
    SoftClock = 1,
    /// `IPL_SOFTBIO`: soft block-I/O interrupts.
    SoftBio = 2,
    /// `IPL_SOFTNET`: soft network interrupts.
    SoftNet = 3,
    /// `IPL_SOFTSERIAL`: soft serial interrupts.
    SoftSerial = 4,
    /// `IPL_VM`: everything that may allocate memory (the level of the
    /// allocators' interrupt-safe locks).
    Vm = 5,
    /// `IPL_SCHED`: clock and scheduler interrupts.
    Sched = 6,
    /// `IPL_HIGH`: everything blocked.
    High = 7,
}

impl Ipl {
    /// Every level, lowest first.
    pub const ALL: [Ipl; 8] = [
        Ipl::None,
        Ipl::SoftClock,
        Ipl::SoftBio,
        Ipl::SoftNet,
        Ipl::SoftSerial,
        Ipl::Vm,
        Ipl::Sched,
        Ipl::High,
    ];

    /// The level with this number (0 = `IPL_NONE` … 7 = `IPL_HIGH`).
    ///
    /// # Panics
    /// If `n > 7`.
    #[inline]
    pub const fn from_u8(n: u8) -> Ipl {
        match n {
            0 => Ipl::None,
            1 => Ipl::SoftClock,
            2 => Ipl::SoftBio,
            3 => Ipl::SoftNet,
            4 => Ipl::SoftSerial,
            5 => Ipl::Vm,
            6 => Ipl::Sched,
            7 => Ipl::High,
            _ => panic!("invalid IPL number"),
        }
    }

    /// A level read back from a CPU record, where only `Ipl as u8` values
    /// are ever stored: no range check on the hot paths.
    #[inline(always)]
    fn from_stored(n: u8) -> Ipl {
        debug_assert!(n <= Ipl::High as u8, "invalid stored IPL {n}");
        // SAFETY: `Ipl` is `repr(u8)` with the values 0..=7, and every
        // level field of `CpuState` is written only from an `Ipl`.
        unsafe { core::mem::transmute::<u8, Ipl>(n) }
    }

    /// NetBSD's name for the level (`IPL_VM`, …).
    pub const fn name(self) -> &'static str {
        match self {
            Ipl::None => "IPL_NONE",
            Ipl::SoftClock => "IPL_SOFTCLOCK",
            Ipl::SoftBio => "IPL_SOFTBIO",
            Ipl::SoftNet => "IPL_SOFTNET",
            Ipl::SoftSerial => "IPL_SOFTSERIAL",
            Ipl::Vm => "IPL_VM",
            Ipl::Sched => "IPL_SCHED",
            Ipl::High => "IPL_HIGH",
        }
    }
}

impl fmt::Display for Ipl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A saved priority level, returned by [`splraise`] and given back to
/// [`splx`] (NetBSD's `int s`). It holds the CPU's level byte as it was,
/// including whether a CPU-local section was open.
#[must_use = "a raised level must be restored with splx"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spl(pub(crate) u8);

impl Spl {
    /// The level this token restores.
    pub const fn ipl(self) -> Ipl {
        Ipl::from_u8(self.0 & !SECTION)
    }

    /// A token that restores `ipl` with no section open.
    #[cfg_attr(any(not(test), bsdalloc_loom), allow(dead_code))]
    pub(crate) const fn at(ipl: Ipl) -> Spl {
        Spl(ipl as u8)
    }
}

/// The top bit of a CPU's level byte: a CPU-local section (or a cross-call
/// function) is open on it. Kept in the level byte, which every section
/// entry loads and stores anyway, so that the nesting check costs no extra
/// memory access.
pub(crate) const SECTION: u8 = 0x80;

/// The level at which cross-call functions run. Per-CPU data that a
/// cross-call touches must be accessed at this level or above, as NetBSD's
/// pool_cache accesses its per-CPU state at `splvm`.
pub const XCALL_IPL: Ipl = Ipl::Vm;

const NO_CPU: u32 = u32::MAX;

/// The gate of a CPU that has no slot gate (a kernel's CPUs, a thread not
/// yet registered): always open, never written. A CPU record's gate is never
/// null, so a section's entry need not test for it.
pub(crate) static NO_GATE: AtomicU32 = AtomicU32::new(0);

/// The gate a guest thread's sections read: never open, never written, so
/// that a guest always leaves the fast path for the slot's real gate, which
/// it takes as a lock. The fast path is then one load and one test for
/// every kind of CPU.
pub(crate) static GUEST_MARK: AtomicU32 = AtomicU32::new(u32::MAX);

/// The per-CPU record the allocators' machine keeps: current level,
/// interrupt nesting, spin-mutex bookkeeping and pending interrupts.
///
/// In user space one lives in each thread's thread-local storage. A kernel
/// keeps one in each CPU's `cpu_info` and returns it from
/// [`Machine::current_cpu`](crate::Machine::current_cpu).
///
/// Every field except `pending` is written only by its own CPU (and by that
/// CPU's interrupt handlers, which always put back what they change), so
/// those accesses are relaxed loads and stores ordered by compiler fences.
pub struct CpuState {
    ipl: AtomicU8,
    /// Interrupt nesting depth; > 0 means "in interrupt context".
    depth: AtomicU32,
    /// Spin mutexes held (NetBSD's `ci_mtx_count`).
    mtx_count: AtomicU32,
    /// The level to restore when the last spin mutex is released
    /// (NetBSD's `ci_mtx_oldspl`).
    mtx_oldspl: AtomicU8,
    /// Interrupt sources posted to this CPU and not yet run; other CPUs set
    /// bits with `fetch_or`.
    pending: AtomicU64,
    /// This CPU's index, `u32::MAX` until the machine assigns one.
    index: AtomicU32,
    /// The word a section's entry reads: in user space the gate word of
    /// this CPU's slot, set by a remote CPU while it runs a cross-call on
    /// this CPU's behalf; `GUEST_MARK` for a guest thread on a shared slot;
    /// in a kernel, and before a thread registers, `NO_GATE`.
    gate: AtomicPtr<AtomicU32>,
    /// A guest thread's shared slot gate, which its sections take as a
    /// lock; null for every other CPU.
    guest_gate: AtomicPtr<AtomicU32>,
    /// Ranks of the ranked locks held in this context, a bit per rank
    /// (the debug lock-order check; see [`crate::mutex::LockRank`]).
    held_ranks: AtomicU16,
}

impl fmt::Debug for CpuState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CpuState")
            .field("index", &self.index.load(Ordering::Relaxed))
            .field("ipl", &self.curipl())
            .field("depth", &self.depth.load(Ordering::Relaxed))
            .field("mtx_count", &self.mtx_count.load(Ordering::Relaxed))
            .field("pending", &self.pending.load(Ordering::Relaxed))
            .finish()
    }
}

impl CpuState {
    /// A CPU at `IPL_NONE`, outside interrupt context, with no index yet.
    pub const fn new() -> CpuState {
        Self::with_index(NO_CPU)
    }

    /// A CPU at `IPL_NONE` with the given index (for kernels that keep one
    /// record per `cpu_info`).
    pub const fn with_index(index: u32) -> CpuState {
        CpuState {
            ipl: AtomicU8::new(Ipl::None as u8),
            depth: AtomicU32::new(0),
            mtx_count: AtomicU32::new(0),
            mtx_oldspl: AtomicU8::new(Ipl::None as u8),
            pending: AtomicU64::new(0),
            index: AtomicU32::new(index),
            gate: AtomicPtr::new(core::ptr::addr_of!(NO_GATE).cast_mut()),
            guest_gate: AtomicPtr::new(core::ptr::null_mut()),
            held_ranks: AtomicU16::new(0),
        }
    }

    /// The CPU's index, if the machine gave it one.
    #[inline]
    pub fn index(&self) -> Option<u32> {
        match self.index.load(Ordering::Relaxed) {
            NO_CPU => None,
            i => Some(i),
        }
    }

    #[cfg_attr(not(any(bsdalloc_loom, feature = "std")), allow(dead_code))]
    pub(crate) fn set_index(&self, index: Option<u32>) {
        self.index.store(index.unwrap_or(NO_CPU), Ordering::Relaxed);
    }

    /// Open a CPU-local section (or a cross-call function's context): raise
    /// to at least [`XCALL_IPL`] and mark the level byte, in one load and
    /// one store. Returns the level to restore with `splx_saved`.
    ///
    /// # Panics
    /// If a section is already open on this CPU (sections do not nest).
    #[inline]
    #[track_caller]
    pub(crate) fn section_enter(&self) -> Spl {
        interrupt_point();
        let old = self.ipl.load(Ordering::Relaxed);
        if old & SECTION != 0 {
            nested_section_panic();
        }
        // A constant in the common case (entered below XCALL_IPL), so that
        // the store does not wait for the load.
        let new = if old <= XCALL_IPL as u8 {
            XCALL_IPL as u8 | SECTION
        } else {
            old | SECTION
        };
        self.ipl.store(new, Ordering::Release);
        compiler_fence(Ordering::SeqCst);
        Spl(old)
    }

    /// The word a section's entry reads: open (0) means "go on". Never
    /// null: a slot's gate word, `NO_GATE` or `GUEST_MARK`, all statics.
    #[inline]
    pub(crate) fn entry_gate(&self) -> *const AtomicU32 {
        self.gate.load(Ordering::Relaxed).cast_const()
    }

    /// The slot gate and whether this thread is a guest on a shared slot.
    #[inline]
    pub(crate) fn gate(&self) -> (*const AtomicU32, bool) {
        let g = self.guest_gate.load(Ordering::Relaxed);
        if g.is_null() {
            (self.entry_gate(), false)
        } else {
            (g.cast_const(), true)
        }
    }

    #[cfg_attr(not(any(bsdalloc_loom, feature = "std")), allow(dead_code))]
    pub(crate) fn set_gate(&self, gate: *const AtomicU32, guest: bool) {
        // The entry gate last: a section entered in between (an interrupt
        // handler on this thread) must find a guest's real gate if it
        // finds `GUEST_MARK`.
        if guest {
            self.guest_gate.store(gate.cast_mut(), Ordering::Relaxed);
            compiler_fence(Ordering::SeqCst);
            self.gate.store(
                core::ptr::addr_of!(GUEST_MARK).cast_mut(),
                Ordering::Relaxed,
            );
        } else {
            self.gate.store(gate.cast_mut(), Ordering::Relaxed);
            compiler_fence(Ordering::SeqCst);
            self.guest_gate
                .store(core::ptr::null_mut(), Ordering::Relaxed);
        }
    }

    /// Enter interrupt context for a cross-call run on another CPU's
    /// behalf, so that the function sees what it would see on that CPU.
    #[inline]
    pub(crate) fn interrupt_context_enter(&self) {
        let d = self.depth.load(Ordering::Relaxed);
        self.depth.store(d + 1, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
    }

    #[inline]
    pub(crate) fn interrupt_context_exit(&self) {
        compiler_fence(Ordering::SeqCst);
        let d = self.depth.load(Ordering::Relaxed);
        self.depth.store(d - 1, Ordering::Relaxed);
    }

    /// The level, read by another CPU deciding whether this one is inside a
    /// CPU-local section: every level store is a Release store (a plain
    /// store on x86-64), so what this CPU wrote before it lowered its level
    /// is visible to a reader that sees the lower level.
    #[inline]
    #[cfg_attr(not(any(bsdalloc_loom, feature = "std")), allow(dead_code))]
    pub(crate) fn curipl_acquire(&self) -> Ipl {
        Ipl::from_stored(self.ipl.load(Ordering::Acquire) & !SECTION)
    }

    /// The current priority level.
    #[inline]
    pub fn curipl(&self) -> Ipl {
        Ipl::from_stored(self.ipl.load(Ordering::Relaxed) & !SECTION)
    }

    /// True while an interrupt handler runs on this CPU.
    #[inline]
    pub fn in_interrupt(&self) -> bool {
        self.depth.load(Ordering::Relaxed) > 0
    }

    /// Spin mutexes this CPU holds.
    #[inline]
    pub fn mutex_count(&self) -> u32 {
        self.mtx_count.load(Ordering::Relaxed)
    }

    /// Interrupt sources posted and not yet run (a bit per source).
    #[inline]
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Raise the level to at least `ipl`; returns the previous level.
    #[inline]
    pub fn splraise(&self, ipl: Ipl) -> Spl {
        interrupt_point();
        let old = self.ipl.load(Ordering::Relaxed);
        if ipl as u8 > old & !SECTION {
            self.ipl
                .store(ipl as u8 | (old & SECTION), Ordering::Release);
        }
        compiler_fence(Ordering::SeqCst);
        Spl(old)
    }

    /// Restore a level saved by [`CpuState::splraise`], running any
    /// interrupts that the lower level now lets through.
    ///
    /// # Panics
    /// If `s` is above the current level ("splx: raising IPL"): `splx`
    /// only ever restores a lower or equal level.
    #[inline]
    pub fn splx(&self, s: Spl, table: &IntrTable) {
        compiler_fence(Ordering::SeqCst);
        let cur = self.ipl.load(Ordering::Relaxed) & !SECTION;
        if s.0 & !SECTION > cur {
            splx_raise_panic(Ipl::from_stored(cur), s.ipl());
        }
        self.ipl.store(s.0, Ordering::Release);
        compiler_fence(Ordering::SeqCst);
        if self.pending.load(Ordering::Relaxed) != 0 {
            self.dispatch(table);
        }
    }

    /// The debug lock-order check (`debug_assertions` only): taking a lock
    /// of rank `r` while one of rank `r` or deeper is held in this context
    /// is a lock-order violation.
    #[inline]
    #[track_caller]
    pub(crate) fn rank_check(&self, r: u8) {
        if cfg!(debug_assertions) && r != 0 {
            let held = self.held_ranks.load(Ordering::Relaxed);
            if held >> r != 0 {
                rank_panic(r, held);
            }
        }
    }

    /// Record a ranked lock as held, once it is taken (after every check
    /// that may panic, so that a refused lock leaves nothing behind).
    #[inline]
    pub(crate) fn rank_enter(&self, r: u8) {
        if cfg!(debug_assertions) && r != 0 {
            let held = self.held_ranks.load(Ordering::Relaxed);
            self.held_ranks.store(held | 1 << r, Ordering::Relaxed);
        }
    }

    /// Debug check at the entry of a CPU-local section: no lock of rank
    /// `r` or deeper may be held (a cross-call running on this CPU's behalf
    /// may need it while this CPU waits at the gate).
    #[inline]
    #[track_caller]
    pub(crate) fn rank_check_below(&self, r: u8, what: &'static str) {
        if cfg!(debug_assertions) {
            let held = self.held_ranks.load(Ordering::Relaxed);
            if held >> r != 0 {
                section_rank_panic(what, held);
            }
        }
    }

    #[inline]
    pub(crate) fn rank_exit(&self, r: u8) {
        if cfg!(debug_assertions) && r != 0 {
            let held = self.held_ranks.load(Ordering::Relaxed);
            self.held_ranks.store(held & !(1 << r), Ordering::Relaxed);
        }
    }

    /// `splx` back to a level this very code saved with `splraise` (a
    /// CPU-local section's exit): no "raising" check needed.
    #[inline]
    pub(crate) fn splx_saved(&self, s: Spl, table: &IntrTable) {
        compiler_fence(Ordering::SeqCst);
        self.ipl.store(s.0, Ordering::Release);
        compiler_fence(Ordering::SeqCst);
        if self.pending.load(Ordering::Relaxed) != 0 {
            self.dispatch(table);
        }
    }

    /// Bookkeeping when a spin mutex has been acquired after `splraise`
    /// returned `s`.
    #[inline]
    pub(crate) fn mutex_enter(&self, s: Spl) {
        // Count first, then the saved level (NetBSD's order): a handler that
        // takes a spin mutex between the two sees a non-zero count and
        // leaves `mtx_oldspl` alone; one that comes before the count store
        // finishes before we write `mtx_oldspl`.
        let n = self.mtx_count.load(Ordering::Relaxed);
        self.mtx_count.store(n + 1, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        if n == 0 {
            self.mtx_oldspl.store(s.0, Ordering::Relaxed);
        }
        compiler_fence(Ordering::SeqCst);
    }

    /// Bookkeeping when a spin mutex has been released: the last one out
    /// restores the level saved by the first one in.
    #[inline]
    pub(crate) fn mutex_exit(&self, table: &IntrTable) {
        compiler_fence(Ordering::SeqCst);
        // The saved level is read before the count drops: once it is zero, a
        // handler taking a spin mutex would overwrite `mtx_oldspl`.
        let s = Spl(self.mtx_oldspl.load(Ordering::Relaxed));
        let n = self.mtx_count.load(Ordering::Relaxed);
        assert!(n > 0, "mutex_spin_exit: no spin mutex held on this CPU");
        compiler_fence(Ordering::SeqCst);
        self.mtx_count.store(n - 1, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        if n == 1 {
            self.splx(s, table);
        }
    }

    /// Mark interrupt source `source` pending on this CPU. Returns `true`
    /// if it was not pending already (pending interrupts of the same source
    /// coalesce, as a level-triggered line does).
    #[inline]
    pub fn post(&self, source: usize) -> bool {
        assert!(source < NSOURCES, "interrupt source {source} out of range");
        let bit = 1u64 << source;
        self.pending.fetch_or(bit, Ordering::Release) & bit == 0
    }

    /// Run every pending interrupt whose level is above the current one,
    /// highest level first. Called from the interrupt entry (the signal
    /// handler in user space), from `splx`, and from loom's interrupt points.
    pub fn dispatch(&self, table: &IntrTable) {
        loop {
            let pend = self.pending.load(Ordering::Acquire);
            if pend == 0 {
                return;
            }
            let cur = self.ipl.load(Ordering::Relaxed) & !SECTION;
            // Source, level, and the establishment the level is of.
            let mut best: Option<(usize, u8, Option<u64>)> = None;
            let mut bits = pend;
            while bits != 0 {
                let i = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let (ipl, which) = table.level_of(i);
                if ipl > cur && best.is_none_or(|(_, b, _)| ipl > b) {
                    best = Some((i, ipl, which));
                }
            }
            let Some((i, ipl, which)) = best else { return };
            let bit = 1u64 << i;
            // A nested handler may have claimed it between the load and here.
            if self.pending.fetch_and(!bit, Ordering::AcqRel) & bit == 0 {
                continue;
            }
            self.run_handler(table, i, ipl, which);
        }
    }

    fn run_handler(&self, table: &IntrTable, i: usize, ipl: u8, which: Option<u64>) {
        /// Puts the level and depth back, also when a handler panics (a
        /// test that expects the panic goes on with a sane CPU).
        struct Restore<'a> {
            cpu: &'a CpuState,
            ipl: u8,
            depth: u32,
            ranks: u16,
        }
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                compiler_fence(Ordering::SeqCst);
                self.cpu.held_ranks.store(self.ranks, Ordering::Relaxed);
                self.cpu.depth.store(self.depth, Ordering::Relaxed);
                self.cpu.ipl.store(self.ipl, Ordering::Release);
                compiler_fence(Ordering::SeqCst);
            }
        }
        let _restore = Restore {
            cpu: self,
            ipl: self.ipl.load(Ordering::Relaxed),
            depth: self.depth.load(Ordering::Relaxed),
            ranks: self.held_ranks.load(Ordering::Relaxed),
        };
        // A handler is a context of its own: the locks it interrupted are
        // at levels it cannot reach, so their ranks do not constrain it.
        self.held_ranks.store(0, Ordering::Relaxed);
        // The handler keeps the section mark of what it interrupted: it may
        // not open a section over one that is open (its element would be
        // the same).
        self.ipl
            .store(ipl | (_restore.ipl & SECTION), Ordering::Release);
        self.depth.store(_restore.depth + 1, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        table.invoke(i, which);
    }

    /// A thread is leaving the machine: whatever a panic left behind (a
    /// raised level, a handler depth, spin-mutex counts) no longer means
    /// anything, and must not trip the exit path's own locking.
    #[cfg_attr(not(any(bsdalloc_loom, feature = "std")), allow(dead_code))]
    pub(crate) fn reset_for_exit(&self) {
        self.held_ranks.store(0, Ordering::Relaxed);
        self.depth.store(0, Ordering::Relaxed);
        self.mtx_count.store(0, Ordering::Relaxed);
        // Release, like every level store: a CPU that reads this level to
        // decide that it may work on this one's behalf must also see what
        // this one wrote in its sections before.
        self.ipl.store(Ipl::None as u8, Ordering::Release);
        compiler_fence(Ordering::SeqCst);
    }
}

impl Default for CpuState {
    fn default() -> Self {
        CpuState::new()
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn rank_panic(r: u8, held: u16) -> ! {
    let deepest = 15 - held.leading_zeros();
    panic!(
        "mutex_vector_enter: lock order violation: taking a {} lock with a {} lock held",
        crate::mutex::LockRank::name_of(r),
        crate::mutex::LockRank::name_of(deepest as u8)
    )
}

#[cold]
#[inline(never)]
#[track_caller]
fn nested_section_panic() -> ! {
    panic!(
        "cpu-local: a CPU-local section (or cross-call function) is already open on this CPU; \
         sections do not nest"
    )
}

#[cold]
#[inline(never)]
#[track_caller]
fn section_rank_panic(what: &'static str, held: u16) -> ! {
    let deepest = 15 - held.leading_zeros();
    panic!(
        "lock order violation: {what} entered with a {} lock held",
        crate::mutex::LockRank::name_of(deepest as u8)
    )
}

#[cold]
#[inline(never)]
#[track_caller]
fn splx_raise_panic(cur: Ipl, to: Ipl) -> ! {
    panic!("splx: raising IPL from {cur} to {to}; splx only restores a level saved by splraise")
}

/// Raise the current CPU's level to at least `ipl`; returns the old level.
#[inline]
pub fn splraise(ipl: Ipl) -> Spl {
    machine::with_cpu(|c| c.splraise(ipl))
}

/// Restore a level saved by [`splraise`]; pending interrupts that the new
/// level lets through run before `splx` returns.
///
/// # Panics
/// "splx: raising IPL …" if `s` is above the current level.
#[inline]
#[track_caller]
pub fn splx(s: Spl) {
    machine::with_cpu(|c| machine::with_intr_table(|t| c.splx(s, t)))
}

/// `splvm()`: raise to `IPL_VM`.
#[inline]
pub fn splvm() -> Spl {
    splraise(Ipl::Vm)
}

/// `splhigh()`: raise to `IPL_HIGH`.
#[inline]
pub fn splhigh() -> Spl {
    splraise(Ipl::High)
}

/// `splsched()`: raise to `IPL_SCHED`.
#[inline]
pub fn splsched() -> Spl {
    splraise(Ipl::Sched)
}

/// The current CPU's level.
#[inline]
pub fn curipl() -> Ipl {
    machine::with_cpu(|c| c.curipl())
}

/// NetBSD's `cpu_intr_p()`: true inside an interrupt handler.
#[inline]
pub fn in_interrupt() -> bool {
    machine::with_cpu(|c| c.in_interrupt())
}

/// NetBSD's `ASSERT_SLEEPABLE()`: panic unless the caller may sleep (not in
/// an interrupt, no spin mutex held, level `IPL_NONE`).
#[track_caller]
pub fn assert_sleepable(what: &str) {
    machine::with_cpu(|c| {
        if c.in_interrupt() {
            panic!("{what}: sleeping in interrupt context");
        }
        if c.mutex_count() > 0 {
            panic!(
                "{what}: sleeping with {} spin mutex(es) held",
                c.mutex_count()
            );
        }
        if c.curipl() != Ipl::None {
            panic!(
                "{what}: sleeping at {}; only IPL_NONE may sleep",
                c.curipl()
            );
        }
    });
}

/// Panic with NetBSD's message if called from interrupt context: for
/// kernel-only operations (`KM_SLEEP` allocations, `IPL_NONE` pools, …).
#[track_caller]
pub fn assert_not_in_interrupt(what: &str) {
    if in_interrupt() {
        panic!("{what}: called from interrupt context");
    }
}

#[cfg(all(test, not(bsdalloc_loom)))]
mod tests {
    //! The deferred-interrupt model on a CPU record and an interrupt table
    //! of the test's own: pure logic, no machine, no signals, no OS pages,
    //! so it runs under Miri (`cargo xtask ci --full`).
    use super::*;
    use crate::sync::atomic::{AtomicBool, AtomicU32};

    #[test]
    fn a_blocked_interrupt_waits_for_splx_and_coalesces() {
        static TABLE: IntrTable = IntrTable::new();
        static RUNS: AtomicU32 = AtomicU32::new(0);
        static ONE: u32 = 1;
        fn handler(arg: &'static u32) {
            RUNS.fetch_add(*arg, Ordering::Relaxed);
        }
        let cpu = CpuState::with_index(3);
        assert_eq!(cpu.index(), Some(3));
        let src = TABLE
            .establish(Ipl::Vm, handler as fn(&'static u32), &ONE)
            .unwrap();
        let s = cpu.splraise(Ipl::Vm);
        assert_eq!(s.ipl(), Ipl::None);
        assert!(cpu.post(src.number()), "newly pending");
        assert!(
            !cpu.post(src.number()),
            "a second post coalesces with the first"
        );
        cpu.dispatch(&TABLE);
        assert_eq!(RUNS.load(Ordering::Relaxed), 0, "IPL_VM is blocked");
        assert_eq!(cpu.pending(), 1 << src.number());
        cpu.splx(s, &TABLE);
        assert_eq!(RUNS.load(Ordering::Relaxed), 1, "ran once, at splx");
        assert_eq!((cpu.pending(), TABLE.runs(src)), (0, 1));
        assert_eq!(cpu.curipl(), Ipl::None);
        assert!(!cpu.in_interrupt());
    }

    #[test]
    fn pending_interrupts_run_highest_level_first_at_their_own_level() {
        static TABLE: IntrTable = IntrTable::new();
        static CPU: CpuState = CpuState::with_index(0);
        static NEXT: AtomicU32 = AtomicU32::new(0);
        /// For each run, in order: the level it ran at, and whether in
        /// interrupt context.
        static SEEN: [AtomicU8; 3] = [const { AtomicU8::new(0) }; 3];
        static INTR: [AtomicBool; 3] = [const { AtomicBool::new(false) }; 3];
        fn handler(_: &'static ()) {
            let n = NEXT.fetch_add(1, Ordering::Relaxed) as usize;
            SEEN[n].store(CPU.curipl() as u8, Ordering::Relaxed);
            INTR[n].store(CPU.in_interrupt(), Ordering::Relaxed);
        }
        let h = handler as fn(&'static ());
        let soft = TABLE.establish(Ipl::SoftNet, h, &()).unwrap();
        let vm = TABLE.establish(Ipl::Vm, h, &()).unwrap();
        let sched = TABLE.establish(Ipl::Sched, h, &()).unwrap();
        let s = CPU.splraise(Ipl::High);
        for src in [soft, vm, sched] {
            assert!(CPU.post(src.number()));
        }
        // Down to IPL_VM: only the IPL_SCHED one gets through.
        let mid = Spl::at(Ipl::Vm);
        CPU.splx(mid, &TABLE);
        assert_eq!(NEXT.load(Ordering::Relaxed), 1);
        CPU.splx(s, &TABLE);
        assert_eq!(NEXT.load(Ordering::Relaxed), 3);
        let order: [u8; 3] = core::array::from_fn(|i| SEEN[i].load(Ordering::Relaxed));
        assert_eq!(order, [Ipl::Sched as u8, Ipl::Vm as u8, Ipl::SoftNet as u8]);
        assert!(INTR.iter().all(|b| b.load(Ordering::Relaxed)));
        assert_eq!((CPU.curipl(), CPU.in_interrupt()), (Ipl::None, false));
    }

    #[test]
    fn a_pending_interrupt_of_a_removed_source_is_dropped() {
        static TABLE: IntrTable = IntrTable::new();
        static RUNS: AtomicU32 = AtomicU32::new(0);
        fn handler(_: &'static ()) {
            RUNS.fetch_add(1, Ordering::Relaxed);
        }
        let cpu = CpuState::new();
        let src = TABLE
            .establish(Ipl::SoftClock, handler as fn(&'static ()), &())
            .unwrap();
        let s = cpu.splraise(Ipl::High);
        assert!(cpu.post(src.number()));
        TABLE.disestablish(src);
        cpu.splx(s, &TABLE);
        assert_eq!(RUNS.load(Ordering::Relaxed), 0);
        assert_eq!(cpu.pending(), 0, "dropped, not left pending for ever");
    }

    #[test]
    #[should_panic(expected = "splx: raising IPL from IPL_NONE to IPL_VM")]
    fn splx_never_raises() {
        static TABLE: IntrTable = IntrTable::new();
        let cpu = CpuState::new();
        cpu.splx(Spl::at(Ipl::Vm), &TABLE);
    }
}
