//! The CPU slot table shared by the user-space machine and the loom model,
//! so that loom checks the very code user space runs: claiming and
//! releasing slots, guests on shared slots, and the routing of cross-calls
//! (run on a CPU's behalf, or post the cross-call interrupt).
//!
//! A slot is `FREE`, `ACTIVE` (one thread owns it), `EXITING` (its thread is
//! leaving), `BORROWED` (a cross-call runs on behalf of the absent CPU) or
//! `SHARED` (one of the last [`NSHARED`] slots, for threads beyond the
//! exclusive ones). State changes happen under the slot's lock, taken at
//! `IPL_HIGH` because interrupt handlers post interrupts too.

use super::{MAXCPUS, NSHARED, Route, with_cpu, with_intr_table};
use crate::cpu::{gate_lock, gate_unlock};
use crate::ipl::{CpuState, Ipl, Spl, XCALL_IPL};
use crate::mutex::RawSpinLock;
use crate::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use crate::sync::heavy_fence;

pub(crate) const FREE: u32 = 0;
pub(crate) const ACTIVE: u32 = 1;
pub(crate) const EXITING: u32 = 2;
pub(crate) const BORROWED: u32 = 3;
pub(crate) const SHARED: u32 = 4;

/// Slots a thread may own alone.
pub(crate) const EXCLUSIVE: usize = MAXCPUS - NSHARED;

pub(crate) struct Slot {
    pub(crate) state: AtomicU32,
    pub(crate) lock: RawSpinLock,
    /// The owner's CPU record (ACTIVE slots).
    pub(crate) cpu: AtomicPtr<CpuState>,
    /// The gate (see `crate::cpu`): set while a remote CPU runs on the
    /// owner's behalf; for SHARED slots, the lock of their sections.
    pub(crate) gate: AtomicU32,
    /// Threads on a SHARED slot.
    pub(crate) guests: AtomicU32,
    /// The owner's kernel thread id (user space: where signals go).
    pub(crate) tid: AtomicU32,
    /// User space: an interrupt signal is on its way to the owner (1) and
    /// its handler has not started yet. Posts then send no other: one
    /// signal in flight per CPU, as an APIC holds one request per vector.
    pub(crate) kick: AtomicU32,
}

pub(crate) static SLOTS: [Slot; MAXCPUS] = [const {
    Slot {
        state: AtomicU32::new(FREE),
        lock: RawSpinLock::new(),
        cpu: AtomicPtr::new(core::ptr::null_mut()),
        gate: AtomicU32::new(0),
        guests: AtomicU32::new(0),
        tid: AtomicU32::new(0),
        kick: AtomicU32::new(0),
    }
}; MAXCPUS];

static HWM: AtomicUsize = AtomicUsize::new(0);
static ACTIVE_COUNT: AtomicUsize = AtomicUsize::new(0);
static GUEST_COUNT: AtomicUsize = AtomicUsize::new(0);
static GUEST_RR: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn ncpu() -> usize {
    HWM.load(Ordering::Relaxed).max(1)
}

pub(crate) fn active_cpus() -> usize {
    ACTIVE_COUNT.load(Ordering::Relaxed) + GUEST_COUNT.load(Ordering::Relaxed)
}

pub(crate) fn guest_threads() -> usize {
    GUEST_COUNT.load(Ordering::Relaxed)
}

pub(crate) fn slot_lock(slot: &Slot) -> Spl {
    // IPL_HIGH: interrupt handlers post interrupts too, and must not find
    // the slot lock held by the code they interrupted.
    let s = with_cpu(|c| c.splraise(Ipl::High));
    slot.lock.lock();
    s
}

pub(crate) fn slot_unlock(slot: &Slot, s: Spl) {
    // SAFETY: paired with `slot_lock` by every caller.
    unsafe { slot.lock.unlock() };
    with_cpu(|c| with_intr_table(|t| c.splx(s, t)));
}

/// Where a thread landed.
#[allow(dead_code)]
pub(crate) enum Claim {
    /// Its own slot.
    Exclusive(u32),
    /// A shared slot.
    Guest(u32),
}

/// Make the calling thread (record `c`, kernel thread `tid`) a CPU: the
/// first free exclusive slot, else a shared one, round robin. Exactly
/// `want` if given (the loom model names its CPUs).
pub(crate) fn claim(c: &CpuState, tid: u32, want: Option<usize>) -> Claim {
    let range = match want {
        Some(i) => i..i + 1,
        None => 0..EXCLUSIVE,
    };
    for i in range {
        let slot = &SLOTS[i];
        loop {
            if slot.state.load(Ordering::Relaxed) != FREE && want.is_none() {
                break;
            }
            let s = slot_lock(slot);
            let st = slot.state.load(Ordering::Relaxed);
            if st == FREE {
                slot.state.store(ACTIVE, Ordering::Relaxed);
                slot.tid.store(tid, Ordering::Relaxed);
                // A signal sent to the previous owner may never have run.
                slot.kick.store(0, Ordering::Relaxed);
                slot.cpu
                    .store(c as *const CpuState as *mut CpuState, Ordering::Relaxed);
                slot_unlock(slot, s);
                c.set_index(Some(i as u32));
                c.set_gate(&slot.gate, false);
                HWM.fetch_max(i + 1, Ordering::Relaxed);
                ACTIVE_COUNT.fetch_add(1, Ordering::Relaxed);
                return Claim::Exclusive(i as u32);
            }
            slot_unlock(slot, s);
            // A named CPU coming online waits for a cross-call served on
            // its behalf, or its previous thread's exit, to finish.
            if want.is_none() || !(st == BORROWED || st == EXITING) {
                break;
            }
            super::yield_now();
        }
    }
    assert!(
        NSHARED > 0 && want.is_none(),
        "bsdalloc-platform: CPU slot {want:?} is taken"
    );
    claim_guest(c)
}

/// Make the calling thread a guest on one of the shared slots, round robin.
pub(crate) fn claim_guest(c: &CpuState) -> Claim {
    // (The model has one shared slot: the modulo is then always 0.)
    #[allow(clippy::modulo_one)]
    let i = EXCLUSIVE + GUEST_RR.fetch_add(1, Ordering::Relaxed) % NSHARED;
    let slot = &SLOTS[i];
    loop {
        let s = slot_lock(slot);
        let st = slot.state.load(Ordering::Relaxed);
        // A cross-call may be served on behalf of the not yet shared slot:
        // wait until it is done.
        if st == FREE || st == SHARED {
            slot.state.store(SHARED, Ordering::Relaxed);
            slot.guests.fetch_add(1, Ordering::Relaxed);
            slot_unlock(slot, s);
            break;
        }
        slot_unlock(slot, s);
        super::yield_now();
    }
    c.set_index(Some(i as u32));
    c.set_gate(&slot.gate, true);
    HWM.fetch_max(i + 1, Ordering::Relaxed);
    GUEST_COUNT.fetch_add(1, Ordering::Relaxed);
    Claim::Guest(i as u32)
}

/// The thread leaves CPU `i`; exit hooks have run. Runs what is still
/// pending for it, waits for any cross-call running on its behalf (its
/// record must outlive that), and frees the slot.
pub(crate) fn release(c: &CpuState, i: usize) {
    let slot = &SLOTS[i];
    let (_, guest) = c.gate();
    if guest {
        slot.guests.fetch_sub(1, Ordering::Relaxed);
        GUEST_COUNT.fetch_sub(1, Ordering::Relaxed);
        c.set_gate(&crate::ipl::NO_GATE, false);
        c.set_index(None);
        return;
    }
    let s = slot_lock(slot);
    slot.state.store(EXITING, Ordering::Relaxed);
    // SAFETY: taken just above; the level stays at IPL_HIGH.
    unsafe { slot.lock.unlock() };
    // Nothing can be posted any more; run what was, at the level the
    // thread had.
    with_intr_table(|t| c.splx(s, t));
    loop {
        let s = slot_lock(slot);
        if slot.gate.load(Ordering::Acquire) == 0 {
            slot.state.store(FREE, Ordering::Relaxed);
            slot.tid.store(0, Ordering::Relaxed);
            slot.cpu.store(core::ptr::null_mut(), Ordering::Relaxed);
            slot_unlock(slot, s);
            break;
        }
        slot_unlock(slot, s);
        super::yield_now();
    }
    c.set_gate(&crate::ipl::NO_GATE, false);
    c.set_index(None);
    ACTIVE_COUNT.fetch_sub(1, Ordering::Relaxed);
}

/// Decide how a cross-call reaches CPU `cpu` (see `crate::cpu`): run `run`
/// here on its behalf if nobody owns it, if it is shared, or if its owner
/// is outside any section; otherwise tell the caller to post the
/// cross-call interrupt.
pub(crate) fn xc_route(cpu: u32, run: &mut dyn FnMut()) -> Route {
    let Some(slot) = SLOTS.get(cpu as usize) else {
        run();
        return Route::Ran;
    };
    loop {
        let s = slot_lock(slot);
        match slot.state.load(Ordering::Relaxed) {
            FREE => {
                slot.state.store(BORROWED, Ordering::Relaxed);
                slot_unlock(slot, s);
                run();
                let s = slot_lock(slot);
                slot.state.store(FREE, Ordering::Relaxed);
                slot_unlock(slot, s);
                return Route::Ran;
            }
            SHARED => {
                slot_unlock(slot, s);
                gate_lock(&slot.gate);
                run();
                gate_unlock(&slot.gate);
                return Route::Ran;
            }
            ACTIVE => {
                // Close the gate while the slot cannot change hands; the
                // owner's exit waits for it to open again, so its record
                // stays valid meanwhile.
                slot.gate.store(1, Ordering::Relaxed);
                let target = slot.cpu.load(Ordering::Relaxed);
                slot_unlock(slot, s);
                // Gate first, level second; the owner does the reverse.
                let idle = heavy_fence() && {
                    // SAFETY: an ACTIVE slot's record lives until the slot is
                    // freed, which waits for the gate.
                    let t = unsafe { &*target };
                    t.curipl_acquire() < XCALL_IPL
                };
                if idle {
                    run();
                }
                gate_unlock(&slot.gate);
                return if idle { Route::Ran } else { Route::Post };
            }
            _ => {
                // EXITING or BORROWED: wait for it to settle.
                slot_unlock(slot, s);
                super::yield_now();
            }
        }
    }
}

/// The owner's record if CPU `cpu` is ACTIVE, with the slot locked; the
/// caller posts to it and unlocks (so the owner cannot leave meanwhile).
pub(crate) fn locked_active(cpu: u32) -> Option<(&'static Slot, &'static CpuState, Spl)> {
    let slot = SLOTS.get(cpu as usize)?;
    let s = slot_lock(slot);
    if slot.state.load(Ordering::Relaxed) == ACTIVE {
        // SAFETY: an ACTIVE slot's record lives until the slot is freed,
        // which needs this lock.
        let t = unsafe { &*slot.cpu.load(Ordering::Relaxed) };
        Some((slot, t, s))
    } else {
        slot_unlock(slot, s);
        None
    }
}

// ---- fork (user space) ----

/// `fork`'s prepare step: every slot's lock, in index order (no path
/// holds two, so any order is deadlock-free; this one is the documented
/// one). The caller has raised its level to `IPL_HIGH`, as [`slot_lock`]
/// does, so that no interrupt handler on this thread spins on them.
#[cfg(not(bsdalloc_loom))]
pub(crate) fn lock_all() {
    for slot in &SLOTS {
        slot.lock.lock();
    }
}

/// Every slot's lock released (the parent after `fork`, and the child once
/// [`forget_other_threads`] has run).
#[cfg(not(bsdalloc_loom))]
pub(crate) fn unlock_all() {
    for slot in SLOTS.iter().rev() {
        // SAFETY: `lock_all` took every one.
        unsafe { slot.lock.unlock() };
    }
}

/// In a `fork`'s child, with every slot lock held ([`lock_all`]): only
/// the calling thread exists here, on slot `me` (`None` if it never
/// became a CPU; `guest` if it shares its slot). Every other exclusive
/// slot is freed — its thread's interrupts, gate and kick go with it —
/// and marked in `dead` (bit `i % 64` of word `i / 64`), so the caller
/// can hand those CPUs' cached objects back; the shared slots keep only
/// this thread as a guest, if it is one. The counters follow.
#[cfg(not(bsdalloc_loom))]
pub(crate) fn forget_other_threads(me: Option<(usize, bool)>, dead: &mut [u64; MAXCPUS / 64]) {
    for (i, slot) in SLOTS.iter().enumerate() {
        let mine = me.is_some_and(|(m, _)| m == i);
        // Nobody runs on anybody's behalf in a one-thread process, and no
        // signal is on its way: the parent's are not inherited.
        slot.gate.store(0, Ordering::Relaxed);
        slot.kick.store(0, Ordering::Relaxed);
        match slot.state.load(Ordering::Relaxed) {
            SHARED => slot.guests.store(u32::from(mine), Ordering::Relaxed),
            ACTIVE | EXITING | BORROWED if !mine => {
                slot.state.store(FREE, Ordering::Relaxed);
                slot.tid.store(0, Ordering::Relaxed);
                slot.cpu.store(core::ptr::null_mut(), Ordering::Relaxed);
                dead[i / 64] |= 1 << (i % 64);
            }
            _ => {}
        }
    }
    let (exclusive, guest) = match me {
        None => (0, 0),
        Some((_, false)) => (1, 0),
        Some((_, true)) => (0, 1),
    };
    ACTIVE_COUNT.store(exclusive, Ordering::Relaxed);
    GUEST_COUNT.store(guest, Ordering::Relaxed);
}
