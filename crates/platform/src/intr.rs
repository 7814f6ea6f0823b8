//! Interrupts: the machine's table of sources (NetBSD's `intr_establish`),
//! triggering a source on a CPU, and what became of it.
//!
//! A source has a level, a handler and a typed argument (a `&'static T`,
//! stored type-erased beside the handler). Posting it to a CPU
//! marks it pending there ([`CpuState::post`](crate::CpuState::post)); the
//! CPU runs it at once if its level lets it through, else when `splx`
//! lowers the level far enough (deferred interrupts, see [`crate::ipl`]).
//! Source 0 carries cross-calls.

use core::fmt;
use core::ptr;

use crate::cpu::CpuId;
use crate::ipl::{Ipl, XCALL_IPL};
use crate::machine;
use crate::sync::atomic::{AtomicPtr, AtomicU8, AtomicU64, Ordering, fence};

/// The number of interrupt sources a machine has (bits of the pending word).
pub const NSOURCES: usize = 64;

/// Interrupt source 0 is reserved for cross-calls.
pub(crate) const XCALL_SOURCE: usize = 0;

/// The handler of an interrupt source: called with the argument it was
/// established with.
pub type IntrHandler<T> = fn(&'static T);

/// A handler with its argument type erased. `fn(&'static T)` and
/// `fn(*const ())` are ABI-compatible (a reference to a sized type and a
/// thin raw pointer are passed alike), so a handler stored as the latter is
/// called with its own argument's pointer and nothing else.
type ErasedHandler = fn(*const ());

/// `handler` as an [`ErasedHandler`].
fn erase<T: Sync + 'static>(handler: IntrHandler<T>) -> ErasedHandler {
    // SAFETY: fn(&'static T) and fn(*const ()) are ABI-compatible (see
    // `ErasedHandler`); the table calls it only with the `&'static T` it
    // was established with.
    unsafe { core::mem::transmute::<IntrHandler<T>, ErasedHandler>(handler) }
}

// The state word of a source: a generation in the high bits, the phase in
// the low two. Every establish bumps the generation, so a state word names
// one establishment: the dispatcher runs a handler only if the word it
// read before the handler and its argument is still there after (a
// seqlock), and a stale handle cannot disestablish a newer establishment.
const PHASE: u64 = 0b11;
const SRC_FREE: u64 = 0;
const SRC_SETTING: u64 = 1;
const SRC_READY: u64 = 2;
const GENERATION_ONE: u64 = 4;

struct Source {
    state: AtomicU64,
    ipl: AtomicU8,
    func: AtomicPtr<()>,
    arg: AtomicPtr<()>,
    runs: AtomicU64,
}

macro_rules! intr_source_init {
    () => {
        Source {
            state: AtomicU64::new(SRC_FREE),
            ipl: AtomicU8::new(0),
            func: AtomicPtr::new(core::ptr::null_mut()),
            arg: AtomicPtr::new(core::ptr::null_mut()),
            runs: AtomicU64::new(0),
        }
    };
}

/// One consistent reading of an established source.
#[derive(Clone, Copy)]
struct Snapshot {
    state: u64,
    ipl: u8,
    func: ErasedHandler,
    arg: *const (),
}

impl Source {
    /// The source's level, handler and argument, all of one establishment,
    /// or `None` if it is not established (or changed while being read).
    fn snapshot(&self) -> Option<Snapshot> {
        // Seqlock read: state, fields, fence, state again. The fields of
        // an establish are stored between its SETTING and READY states; a
        // field of a later establish seen here makes the second load see
        // that establish's SETTING (its release fence precedes its field
        // stores, the acquire fence here follows these loads).
        let state = self.state.load(Ordering::Acquire);
        if state & PHASE != SRC_READY {
            return None;
        }
        let ipl = self.ipl.load(Ordering::Relaxed);
        let func = self.func.load(Ordering::Relaxed);
        let arg = self.arg.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if self.state.load(Ordering::Relaxed) != state {
            return None;
        }
        // SAFETY: `func` was stored from an `ErasedHandler` by the
        // establish whose READY state was read above (and again after the
        // loads), so it is that function pointer; data and function
        // pointers have the same size here.
        let func = unsafe { core::mem::transmute::<*mut (), ErasedHandler>(func) };
        Some(Snapshot {
            state,
            ipl,
            func,
            arg,
        })
    }
}

/// The machine's interrupt sources: for each, a level, a handler and an
/// argument (NetBSD's `intr_establish`), and a count of runs.
///
/// Establishing, removing and running a source pair the handler with its
/// own argument and level: a handler never runs with the argument (or at
/// the level) of another establishment of its source, even when the source
/// is re-established while its interrupts fire.
pub struct IntrTable {
    sources: [Source; NSOURCES],
}

impl fmt::Debug for IntrTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let established = self
            .sources
            .iter()
            .filter(|s| s.state.load(Ordering::Relaxed) & PHASE == SRC_READY)
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

    /// Establish `handler` at `ipl`, to be called with `arg`; returns the
    /// source.
    pub fn establish<T: Sync + 'static>(
        &self,
        ipl: Ipl,
        handler: IntrHandler<T>,
        arg: &'static T,
    ) -> Result<IntrSource, IntrError> {
        self.establish_erased(ipl, erase(handler), ptr::from_ref(arg).cast(), true)
    }

    /// The broken establish of the loom models: READY is published before
    /// the level, handler and argument are stored, so a dispatcher can pair
    /// the new state with a mix of old and new fields.
    #[cfg(bsdalloc_loom)]
    #[doc(hidden)]
    pub fn establish_unordered_for_model<T: Sync + 'static>(
        &self,
        ipl: Ipl,
        handler: IntrHandler<T>,
        arg: &'static T,
    ) -> Result<IntrSource, IntrError> {
        self.establish_erased(ipl, erase(handler), ptr::from_ref(arg).cast(), false)
    }

    /// `establish` with the types erased; `ordered` false only for the
    /// broken loom variant.
    fn establish_erased(
        &self,
        ipl: Ipl,
        func: ErasedHandler,
        arg: *const (),
        ordered: bool,
    ) -> Result<IntrSource, IntrError> {
        if ipl == Ipl::None {
            return Err(IntrError::IplNone);
        }
        for (i, s) in self.sources.iter().enumerate().skip(XCALL_SOURCE + 1) {
            let old = s.state.load(Ordering::Relaxed);
            if old & PHASE != SRC_FREE {
                continue;
            }
            let setting = (old & !PHASE).wrapping_add(GENERATION_ONE) | SRC_SETTING;
            if s.state
                .compare_exchange(old, setting, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            let ready = (setting & !PHASE) | SRC_READY;
            if !ordered {
                s.state.store(ready, Ordering::Release);
            }
            // Seqlock write: SETTING, fence, fields, READY (see `snapshot`).
            fence(Ordering::Release);
            s.ipl.store(ipl as u8, Ordering::Relaxed);
            s.func.store(func as *mut (), Ordering::Relaxed);
            s.arg.store(arg.cast_mut(), Ordering::Relaxed);
            s.runs.store(0, Ordering::Relaxed);
            s.state.store(ready, Ordering::Release);
            return Ok(IntrSource {
                number: i,
                state: ready,
            });
        }
        Err(IntrError::Full)
    }

    /// Remove a handler. Interrupts of the source still pending on some CPU
    /// are dropped when they would run; a handler already running finishes
    /// with its own argument.
    ///
    /// # Panics
    /// If `src` is not established (removed already: a stale handle, which
    /// must not remove a later establishment of the same source).
    pub fn disestablish(&self, src: IntrSource) {
        assert!(
            src.number > XCALL_SOURCE && src.number < NSOURCES,
            "intr_disestablish: bad source {}",
            src.number
        );
        let free = (src.state & !PHASE) | SRC_FREE;
        if self.sources[src.number]
            .state
            .compare_exchange(src.state, free, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            panic!(
                "intr_disestablish: source {} is not established (disestablished already)",
                src.number
            );
        }
    }

    /// How many times the handler of `src` has run (since it was
    /// established).
    pub fn runs(&self, src: IntrSource) -> u64 {
        self.sources[src.number].runs.load(Ordering::Relaxed)
    }

    /// The level to run source `i` at, and the establishment that level
    /// belongs to (`None`: a stale interrupt of a removed source, run, and
    /// dropped, at the top so that it cannot stay pending forever).
    pub(crate) fn level_of(&self, i: usize) -> (u8, Option<u64>) {
        if i == XCALL_SOURCE {
            return (XCALL_IPL as u8, None);
        }
        match self.sources[i].snapshot() {
            Some(snap) => (snap.ipl, Some(snap.state)),
            None => (Ipl::High as u8, None),
        }
    }

    /// Run source `i`, if it is still the establishment `level_of`
    /// returned (`expected`), with its own argument.
    pub(crate) fn invoke(&self, i: usize, expected: Option<u64>) {
        if i == XCALL_SOURCE {
            machine::xcall_interrupt();
            self.sources[i].runs.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let s = &self.sources[i];
        let Some(snap) = s.snapshot() else { return };
        if Some(snap.state) != expected {
            // Re-established since its level was chosen: the pending
            // interrupt was the old establishment's; drop it.
            return;
        }
        (snap.func)(snap.arg);
        s.runs.fetch_add(1, Ordering::Relaxed);
    }
}

impl Default for IntrTable {
    fn default() -> Self {
        IntrTable::new()
    }
}

/// An established interrupt source: its number and which establishment of
/// it this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IntrSource {
    number: usize,
    state: u64,
}

impl IntrSource {
    /// The source's number (bit in the pending word).
    pub fn number(self) -> usize {
        self.number
    }
}

/// What became of a triggered interrupt.
pub use crate::machine::Post as Delivery;

/// `intr_establish`: `handler` runs at `ipl`, called with `arg`, when the
/// source is triggered on a CPU. The argument is typed (NetBSD's `void *`
/// is a `&'static T` here): a handler only ever sees its own.
pub fn intr_establish<T: Sync + 'static>(
    ipl: Ipl,
    handler: IntrHandler<T>,
    arg: &'static T,
) -> Result<IntrSource, IntrError> {
    machine::with_intr_table(|t| t.establish(ipl, handler, arg))
}

/// `intr_disestablish`.
///
/// # Panics
/// If `src` was disestablished already.
pub fn intr_disestablish(src: IntrSource) {
    machine::with_intr_table(|t| t.disestablish(src));
}

/// Raise interrupt `src` on CPU `cpu`: it runs there at once if that CPU's
/// level allows, else when the CPU lowers its level. Triggers that arrive
/// while the source is still pending there coalesce ([`Delivery::Coalesced`]).
/// The interrupt line is the source number: a trigger through a stale
/// handle runs whatever is established there when it is taken (a spurious
/// interrupt, as on hardware), with that establishment's own argument.
pub fn intr_trigger(cpu: CpuId, src: IntrSource) -> Delivery {
    machine::post_interrupt(cpu.0, src.number)
}

/// How many times `src`'s handler has run, on all CPUs.
pub fn intr_runs(src: IntrSource) -> u64 {
    machine::with_intr_table(|t| t.runs(src))
}

/// Interrupt sources posted to the current CPU and not yet run, a bit per
/// source (bit 0: a cross-call). For tests and debuggers.
pub fn intr_pending() -> u64 {
    machine::with_cpu(|c| c.pending())
}

#[cfg(all(test, not(bsdalloc_loom)))]
mod tests {
    //! The table alone, no machine: runs under Miri with strict provenance
    //! (the handler goes through an `AtomicPtr` and back to a function).
    use super::*;

    struct Arg {
        magic: u32,
        seen: AtomicU64,
    }

    fn handler(a: &'static Arg) {
        assert_eq!(a.magic, 0xA5A5);
        a.seen.fetch_add(1, Ordering::Relaxed);
    }

    fn other(v: &'static u64) {
        assert_eq!(*v, 7);
    }

    #[test]
    fn a_handler_runs_with_its_own_argument_and_only_while_established() {
        static ARG: Arg = Arg {
            magic: 0xA5A5,
            seen: AtomicU64::new(0),
        };
        static SEVEN: u64 = 7;
        let t = IntrTable::new();
        let src = t.establish(Ipl::Vm, handler, &ARG).unwrap();
        let (level, which) = t.level_of(src.number());
        assert_eq!((level, which), (Ipl::Vm as u8, Some(src.state)));
        t.invoke(src.number(), which);
        assert_eq!(ARG.seen.load(Ordering::Relaxed), 1);
        assert_eq!(t.runs(src), 1);
        t.disestablish(src);
        assert_eq!(t.level_of(src.number()), (Ipl::High as u8, None));
        // Re-established with another type: the level chosen for the old
        // establishment no longer runs anything.
        let again = t.establish(Ipl::Sched, other, &SEVEN).unwrap();
        assert_eq!(again.number(), src.number());
        t.invoke(src.number(), which);
        assert_eq!(
            ARG.seen.load(Ordering::Relaxed),
            1,
            "dropped, not misrouted"
        );
        let (level, which) = t.level_of(again.number());
        assert_eq!(level, Ipl::Sched as u8);
        t.invoke(again.number(), which);
        assert_eq!(t.runs(again), 1);
    }
}
