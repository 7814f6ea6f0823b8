//! The kernel backend: every machine service comes from the functions that
//! [`set_machine!`](crate::set_machine) defines for the kernel's
//! [`Machine`](crate::Machine) implementation.

use super::Post;
use crate::intr::IntrTable;
use crate::ipl::CpuState;
use crate::sync::atomic::AtomicU32;

unsafe extern "Rust" {
    fn __bsdalloc_machine_current_cpu() -> &'static CpuState;
    fn __bsdalloc_machine_cpu(index: u32) -> Option<&'static CpuState>;
    fn __bsdalloc_machine_ncpu() -> u32;
    fn __bsdalloc_machine_send_ipi(index: u32);
    fn __bsdalloc_machine_sleep(word: &AtomicU32, expected: u32);
    fn __bsdalloc_machine_wakeup(word: &AtomicU32, count: u32);
}

static TABLE: IntrTable = IntrTable::new();

#[inline]
pub(crate) fn with_cpu<R>(f: impl FnOnce(&CpuState) -> R) -> R {
    // SAFETY: `set_machine!` defines the symbol from a safe trait method.
    f(unsafe { __bsdalloc_machine_current_cpu() })
}

#[inline]
pub(crate) fn with_intr_table<R>(f: impl FnOnce(&IntrTable) -> R) -> R {
    f(&TABLE)
}

pub(crate) fn cpu_index() -> u32 {
    with_cpu(|c| {
        c.index()
            .expect("machine: the current CPU's CpuState has no index")
    })
}

pub(crate) fn ncpu() -> usize {
    // SAFETY: defined by `set_machine!` from a safe trait method.
    unsafe { __bsdalloc_machine_ncpu() as usize }
}

pub(crate) fn sleep(word: &AtomicU32, expected: u32) {
    // SAFETY: defined by `set_machine!` from a safe trait method.
    unsafe { __bsdalloc_machine_sleep(word, expected) }
}

pub(crate) fn wakeup(word: &AtomicU32, count: u32) {
    // SAFETY: defined by `set_machine!` from a safe trait method.
    unsafe { __bsdalloc_machine_wakeup(word, count) }
}

pub(crate) fn post_interrupt(cpu: u32, source: usize) -> Post {
    // SAFETY: defined by `set_machine!` from a safe trait method.
    match unsafe { __bsdalloc_machine_cpu(cpu) } {
        None => Post::Absent,
        Some(c) => {
            if c.post(source) {
                // SAFETY: as above.
                unsafe { __bsdalloc_machine_send_ipi(cpu) };
                Post::Delivered
            } else {
                Post::Coalesced
            }
        }
    }
}

pub(crate) fn xcall_interrupt() {
    crate::cpu::xcall_interrupt();
}

/// A kernel's cross-calls are IPIs that every CPU takes promptly: nothing
/// is ever run on another CPU's behalf, so no asymmetric fence is needed.
pub(crate) fn heavy_fence() -> bool {
    false
}

/// CPUs a kernel may have.
pub(crate) const MAXCPUS: usize = 256;
/// A kernel has a CPU per processor: no shared slots.
pub(crate) const NSHARED: usize = 0;

pub(crate) fn is_guest() -> bool {
    false
}

/// In a kernel every CPU takes the cross-call IPI promptly.
pub(crate) fn xc_route(_cpu: u32, _run: &mut dyn FnMut()) -> super::Route {
    super::Route::Post
}
