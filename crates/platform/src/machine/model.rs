//! The loom model machine: each loom thread that calls [`enter_cpu`] becomes
//! a CPU; interrupts posted to it run at its next interrupt point whose level
//! lets them through, so loom explores delivery at every such point.

use core::cell::RefCell;

use super::Post;
use crate::ipl::{CpuState, IntrTable};
use crate::sync::atomic::AtomicU32;

type Ctx = (loom::sync::Arc<CpuState>, loom::sync::Arc<IntrTable>);

loom::thread_local! {
    static CTX: RefCell<Option<Ctx>> = RefCell::new(None);
}

/// Make the calling loom thread the CPU `state`, with interrupt table `table`.
pub fn enter_cpu(state: loom::sync::Arc<CpuState>, table: loom::sync::Arc<IntrTable>) {
    CTX.with(|c| *c.borrow_mut() = Some((state, table)));
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
        if let Some((s, t)) = &*c.borrow() {
            if s.pending() != 0 {
                s.dispatch(t);
            }
        }
    });
}

pub(crate) fn cpu_index() -> u32 {
    with_cpu(|c| c.index().unwrap_or(0))
}

pub(crate) fn ncpu() -> usize {
    1
}

pub(crate) fn sleep(_word: &AtomicU32, _expected: u32) {
    loom::thread::yield_now();
}

pub(crate) fn wakeup(_word: &AtomicU32, _count: u32) {}

pub(crate) fn post_interrupt(_cpu: u32, _source: usize) -> Post {
    Post::Absent
}

pub(crate) fn xcall_interrupt() {}
