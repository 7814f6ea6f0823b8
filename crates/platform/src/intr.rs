//! Interrupts: the machine's table of sources (NetBSD's `intr_establish`),
//! triggering a source on a CPU, and what became of it.
//!
//! A source has a level, a handler and an argument. Posting it to a CPU
//! marks it pending there ([`CpuState::post`](crate::CpuState::post)); the
//! CPU runs it at once if its level lets it through, else when `splx`
//! lowers the level far enough (deferred interrupts, see [`crate::ipl`]).
//! Source 0 carries cross-calls.

use core::fmt;

use crate::cpu::CpuId;
use crate::ipl::{Ipl, XCALL_IPL};
use crate::machine;
use crate::sync::atomic::{AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering};

/// The number of interrupt sources a machine has (bits of the pending word).
pub const NSOURCES: usize = 64;

/// Interrupt source 0 is reserved for cross-calls.
pub(crate) const XCALL_SOURCE: usize = 0;

/// The handler of an interrupt source: called with the source's argument.
pub type IntrHandler = fn(usize);

const SRC_FREE: u8 = 0;
const SRC_SETTING: u8 = 1;
const SRC_READY: u8 = 2;

struct Source {
    state: AtomicU8,
    ipl: AtomicU8,
    /// The handler, kept as a raw pointer rather than an integer so that
    /// it keeps its provenance (calling a function pointer rebuilt from an
    /// integer is undefined behaviour under strict provenance).
    func: AtomicPtr<()>,
    arg: AtomicUsize,
    runs: AtomicU64,
}

macro_rules! intr_source_init {
    () => {
        Source {
            state: AtomicU8::new(SRC_FREE),
            ipl: AtomicU8::new(0),
            func: AtomicPtr::new(core::ptr::null_mut()),
            arg: AtomicUsize::new(0),
            runs: AtomicU64::new(0),
        }
    };
}

/// The machine's interrupt sources: for each, a level, a handler and an
/// argument (NetBSD's `intr_establish`), and a count of runs.
pub struct IntrTable {
    sources: [Source; NSOURCES],
}

impl fmt::Debug for IntrTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let established = self
            .sources
            .iter()
            .filter(|s| s.state.load(Ordering::Relaxed) == SRC_READY)
            .count();
        f.debug_struct("IntrTable")
            .field("established", &established)
            .finish()
    }
}

/// Why an interrupt source could not be established.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IntrError {
    /// `IPL_NONE` is not an interrupt level.
    #[error("intr_establish: an interrupt cannot run at IPL_NONE")]
    IplNone,
    /// All sources are in use.
    #[error("intr_establish: all {NSOURCES} interrupt sources are in use")]
    Full,
}

impl IntrTable {
    /// An empty table (source 0 is the cross-call source, handled by the
    /// machine itself).
    pub const fn new() -> IntrTable {
        IntrTable {
            sources: [const { intr_source_init!() }; NSOURCES],
        }
    }

    /// Establish a handler at `ipl`; returns its source number.
    pub fn establish(&self, ipl: Ipl, func: IntrHandler, arg: usize) -> Result<usize, IntrError> {
        if ipl == Ipl::None {
            return Err(IntrError::IplNone);
        }
        for (i, s) in self.sources.iter().enumerate().skip(XCALL_SOURCE + 1) {
            if s.state
                .compare_exchange(SRC_FREE, SRC_SETTING, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                s.ipl.store(ipl as u8, Ordering::Relaxed);
                s.func.store(func as *mut (), Ordering::Relaxed);
                s.arg.store(arg, Ordering::Relaxed);
                s.runs.store(0, Ordering::Relaxed);
                s.state.store(SRC_READY, Ordering::Release);
                return Ok(i);
            }
        }
        Err(IntrError::Full)
    }

    /// Remove a handler. Interrupts of the source still pending on some CPU
    /// are dropped when they would run.
    pub fn disestablish(&self, source: usize) {
        assert!(
            source > XCALL_SOURCE && source < NSOURCES,
            "intr_disestablish: bad source {source}"
        );
        self.sources[source]
            .state
            .store(SRC_FREE, Ordering::Release);
    }

    /// How many times the handler of `source` has run.
    pub fn runs(&self, source: usize) -> u64 {
        self.sources[source].runs.load(Ordering::Relaxed)
    }

    pub(crate) fn level_of(&self, i: usize) -> u8 {
        if i == XCALL_SOURCE {
            return XCALL_IPL as u8;
        }
        let s = &self.sources[i];
        if s.state.load(Ordering::Acquire) == SRC_READY {
            s.ipl.load(Ordering::Relaxed)
        } else {
            // A stale interrupt of a removed source: run (and drop) it at
            // the top so it cannot stay pending forever.
            Ipl::High as u8
        }
    }

    pub(crate) fn invoke(&self, i: usize) {
        if i == XCALL_SOURCE {
            machine::xcall_interrupt();
            self.sources[i].runs.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let s = &self.sources[i];
        if s.state.load(Ordering::Acquire) != SRC_READY {
            return;
        }
        let raw = s.func.load(Ordering::Relaxed);
        // SAFETY: `func` was stored from an `IntrHandler` by `establish`
        // before the Release store of SRC_READY that the Acquire load above
        // observed; a fn pointer cast to a raw pointer and back is the same
        // pointer, provenance included.
        let func: IntrHandler = unsafe { core::mem::transmute::<*mut (), IntrHandler>(raw) };
        func(s.arg.load(Ordering::Relaxed));
        s.runs.fetch_add(1, Ordering::Relaxed);
    }
}

impl Default for IntrTable {
    fn default() -> Self {
        IntrTable::new()
    }
}

/// An established interrupt source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IntrSource(pub(crate) usize);

impl IntrSource {
    /// The source's number (bit in the pending word).
    pub fn number(self) -> usize {
        self.0
    }
}

/// What became of a triggered interrupt.
pub use crate::machine::Post as Delivery;

/// `intr_establish`: a handler that runs at `ipl` when the source is
/// triggered on a CPU.
pub fn intr_establish(ipl: Ipl, handler: IntrHandler, arg: usize) -> Result<IntrSource, IntrError> {
    machine::with_intr_table(|t| t.establish(ipl, handler, arg)).map(IntrSource)
}

/// `intr_disestablish`.
pub fn intr_disestablish(src: IntrSource) {
    machine::with_intr_table(|t| t.disestablish(src.0));
}

/// Raise interrupt `src` on CPU `cpu`: it runs there at once if that CPU's
/// level allows, else when the CPU lowers its level. Triggers that arrive
/// while the source is still pending there coalesce ([`Delivery::Coalesced`]).
pub fn intr_trigger(cpu: CpuId, src: IntrSource) -> Delivery {
    machine::post_interrupt(cpu.0, src.0)
}

/// How many times `src`'s handler has run, on all CPUs.
pub fn intr_runs(src: IntrSource) -> u64 {
    machine::with_intr_table(|t| t.runs(src.0))
}

/// Interrupt sources posted to the current CPU and not yet run, a bit per
/// source (bit 0: a cross-call). For tests and debuggers.
pub fn intr_pending() -> u64 {
    machine::with_cpu(|c| c.pending())
}
