//! The loom model machine: each loom thread that calls [`enter_cpu`] becomes
//! a CPU, claiming its slot in the same slot table user space uses; posted
//! interrupts run at the CPU's next interrupt point whose level lets them
//! through, so loom explores delivery at every such point. Cross-calls go
//! through the same routing code as in user space (run on the CPU's behalf,
//! or post the cross-call interrupt).

use core::cell::RefCell;

use super::Post;
use super::slots;
use crate::intr::IntrTable;
use crate::ipl::CpuState;
use crate::sync::atomic::AtomicU32;

/// Slots in the model: three exclusive, one shared.
pub(crate) const MAXCPUS: usize = 4;
/// The shared slot of the model.
pub(crate) const NSHARED: usize = 1;

type Ctx = (loom::sync::Arc<CpuState>, loom::sync::Arc<IntrTable>);

loom::thread_local! {
    static CTX: RefCell<Option<Ctx>> = RefCell::new(None);
}

/// Make the calling loom thread a CPU with record `state`: the slot
/// `state.index()` if it has one (it must be free), else the first free
/// slot, else the shared one. Interrupts it takes come from `table`.
pub fn enter_cpu(state: loom::sync::Arc<CpuState>, table: loom::sync::Arc<IntrTable>) {
    let want = state.index().map(|i| i as usize);
    CTX.with(|c| *c.borrow_mut() = Some((state.clone(), table)));
    let _ = slots::claim(&state, 0, want);
}

/// Make the calling loom thread a guest on the shared slot.
pub fn enter_guest(state: loom::sync::Arc<CpuState>, table: loom::sync::Arc<IntrTable>) {
    CTX.with(|c| *c.borrow_mut() = Some((state.clone(), table)));
    slots::claim_guest(&state);
}

/// The calling loom thread stops being a CPU: exit hooks run (for an
/// exclusive CPU), pending interrupts run, the slot is freed.
pub fn exit_cpu() {
    let (state, _) = CTX
        .with(|c| c.borrow().clone())
        .expect("loom model: not a CPU");
    let i = state.index().expect("loom model: CPU without an index") as usize;
    state.reset_for_exit();
    if !state.gate().1 {
        crate::cpu::run_exit_hooks(crate::cpu::CpuId(i as u32));
    }
    slots::release(&state, i);
    CTX.with(|c| *c.borrow_mut() = None);
}

pub(crate) fn with_cpu<R>(f: impl FnOnce(&CpuState) -> R) -> R {
    CTX.with(|c| {
        let b = c.borrow();
        let (s, _) = b
            .as_ref()
            .expect("loom model: this thread has not entered a CPU");
        f(s)
    })
}

pub(crate) fn with_intr_table<R>(f: impl FnOnce(&IntrTable) -> R) -> R {
    CTX.with(|c| {
        let b = c.borrow();
        let (_, t) = b
            .as_ref()
            .expect("loom model: this thread has not entered a CPU");
        f(t)
    })
}

pub(crate) fn loom_interrupt_point() {
    CTX.with(|c| {
        if let Some((s, t)) = &*c.borrow()
            && s.pending() != 0
        {
            s.dispatch(t);
        }
    });
}

pub(crate) fn cpu_index() -> u32 {
    with_cpu(|c| c.index().expect("loom model: CPU without an index"))
}

pub(crate) use super::slots::{active_cpus, guest_threads, ncpu, xc_route};

pub(crate) fn is_guest() -> bool {
    with_cpu(|c| c.gate().1)
}

pub(crate) fn yield_now() {
    loom::thread::yield_now();
}

pub(crate) fn sleep(_word: &AtomicU32, _expected: u32) {
    loom::thread::yield_now();
}

pub(crate) fn wakeup(_word: &AtomicU32, _count: u32) {}

pub(crate) fn post_interrupt(cpu: u32, source: usize) -> Post {
    let Some((slot, target, s)) = slots::locked_active(cpu) else {
        return Post::Absent;
    };
    let r = if target.post(source) {
        Post::Delivered
    } else {
        Post::Coalesced
    };
    slots::slot_unlock(slot, s);
    r
}

pub(crate) fn xcall_interrupt() {
    crate::cpu::xcall_interrupt();
}
