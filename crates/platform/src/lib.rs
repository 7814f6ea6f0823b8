//! # bsdalloc-platform — the machine under the allocators
//!
//! What NetBSD's machine-dependent code gives its memory allocators, as one
//! small `no_std` crate: CPUs and CPU-local storage, interrupt priority
//! levels (`splraise`/`splx`), spin mutexes that raise the level while held,
//! wait channels for sleeping allocations, cross-calls between CPUs, raw
//! pages, and fault injection. With the `std` feature (the default) it *is*
//! that machine, in user space: threads are CPUs and POSIX signals are real,
//! asynchronous interrupts.
//!
//! ```
//! use bsdalloc_platform::{intr_establish, intr_trigger, curcpu, in_interrupt, Ipl, SpinMutex};
//! use std::sync::atomic::{AtomicU32, Ordering};
//!
//! static LOCK: SpinMutex<u32> = SpinMutex::new(Ipl::Vm, 0);
//! static SEEN: AtomicU32 = AtomicU32::new(0);
//!
//! fn handler(_arg: usize) {
//!     assert!(in_interrupt());
//!     *LOCK.lock() += 1;          // safe: the interrupted code cannot hold LOCK
//!     SEEN.fetch_add(1, Ordering::SeqCst);
//! }
//!
//! let src = intr_establish(Ipl::Vm, handler, 0).unwrap();
//! let me = curcpu();
//! {
//!     let g = LOCK.lock();        // raises this CPU to IPL_VM
//!     intr_trigger(me, src);      // deferred: IPL_VM is blocked
//!     assert_eq!(SEEN.load(Ordering::SeqCst), 0);
//!     drop(g);                    // splx: the handler runs here
//! }
//! assert_eq!(SEEN.load(Ordering::SeqCst), 1);
//! assert_eq!(*LOCK.lock(), 1);
//! ```
//!
//! ## Design (the big theory)
//!
//! **Levels.** Each CPU has a current [`Ipl`]. [`splraise`] raises it and
//! returns the old level ([`Spl`]); [`splx`] restores it. Interrupts are
//! *deferred*, as in NetBSD's x86 port: an interrupt at or below the
//! current level is only marked pending in the CPU's [`CpuState`]; `splx`
//! runs what the lower level lets through, highest level first. An
//! interrupt above the current level runs at once, at its own level, on
//! the interrupted CPU, with [`in_interrupt`] true. The level is a per-CPU
//! variable that only its CPU (and its own, strictly nesting, handlers)
//! writes, so a raise or a restore is a plain load and store plus a
//! compiler fence.
//!
//! **Spin mutexes.** [`SpinMutex`] is NetBSD's `mutex_spin_enter`: raise to
//! the mutex's level, then spin for the lock. A handler at or below that
//! level therefore never runs on a CPU that holds the lock. The CPU counts
//! the spin mutexes it holds and restores the level saved by the first when
//! the last is released (`ci_mtx_count`, `ci_mtx_oldspl`). A CPU that
//! tries to take a spin mutex it already holds panics with "locking against
//! myself" — what an interrupt handler would hit if its level were not
//! blocked. [`AdaptiveMutex`] is for `IPL_NONE` slow paths: it sleeps.
//!
//! **Wait channels.** [`WaitChannel`] is `cv_wait`/`cv_broadcast` over a
//! futex-like sequence word; it is what `VM_SLEEP`, `PR_WAITOK` and
//! `KM_SLEEP` sleep on. Sleeping in interrupt context, or with a spin mutex
//! held, panics.
//!
//! **CPUs in user space.** A thread is a CPU. Its first [`curcpu`] claims
//! one of [`MAXCPUS`] slots; afterwards a CPU-local access
//! ([`CpuLocal::with`]) is a thread-local load, a level raise and restore,
//! and the access: no atomic read-modify-write, no fence. At thread exit the
//! exit hooks ([`cpu_exit_hook_establish`]) run on the exiting thread, so
//! caches can give the slot's objects back, and the slot is freed.
//!
//! **Cross-calls.** [`xc_unicast`] runs a function *on* another CPU, as
//! NetBSD's `xcall(9)` does: it posts the cross-call interrupt to that CPU
//! (a signal to that thread) and sleeps until the function has run there,
//! at [`XCALL_IPL`]. So per-CPU data needs no atomics as long as its owner
//! touches it at `XCALL_IPL` or above: the cross-call simply waits until the
//! owner lowers its level. If no thread owns the CPU, the function runs on
//! the caller on its behalf while the slot is held. This is the per-slot
//! protocol; it needs no `membarrier` and costs the fast path nothing.
//!
//! **Interrupts in user space.** [`intr_establish`] registers a handler at
//! a level; [`intr_trigger`] posts it to a CPU (`fetch_or` into the target's
//! pending word, then `tgkill` with `SIGRTMIN+4`). The signal handler runs
//! the target's dispatch: a handler whose level is blocked stays pending
//! until `splx`. Triggers that arrive while the same source is still pending
//! coalesce, as on a level-triggered line.
//!
//! **Pages.** [`PageSource`] reserves address space, commits (and wires)
//! pages, gives them back so resident memory drops, protects guard pages
//! and releases ranges; [`OsPages`] does it with mmap. Each request passes
//! the [`PAGE_FAULTS`] injection point.
//!
//! **Lock order.** Slot locks (`IPL_HIGH`, internal) are leaves. The
//! cross-call lock is adaptive and taken only where sleeping is allowed.
//!
//! ## Implementing the machine in a kernel
//!
//! Build without the `std` feature and implement [`Machine`]; then name the
//! type once with [`set_machine!`]:
//!
//! ```ignore
//! use bsdalloc_platform::{CpuState, Machine, set_machine};
//! use core::sync::atomic::AtomicU32;
//!
//! struct MyKernel;
//! unsafe impl Machine for MyKernel {
//!     fn current_cpu() -> &'static CpuState { &curcpu_info().bsdalloc_state }
//!     fn cpu(index: u32) -> Option<&'static CpuState> { cpu_info(index).map(|ci| &ci.bsdalloc_state) }
//!     fn ncpu() -> u32 { NCPU.load() }
//!     fn send_ipi(index: u32) { lapic_send_ipi(index, BSDALLOC_VECTOR) }
//!     fn sleep(word: &AtomicU32, expected: u32) { sleepq_wait_if_equal(word, expected) }
//!     fn wakeup(word: &AtomicU32, count: u32) { sleepq_wake(word, count) }
//! }
//! set_machine!(MyKernel);
//! // In the IPI / interrupt entry: `bsdalloc_platform::hardintr()`.
//! ```
//!
//! ## NetBSD ↔ Rust
//!
//! | NetBSD | bsdalloc-platform |
//! |---|---|
//! | `IPL_NONE` … `IPL_HIGH` | [`Ipl`] |
//! | `int s = splraise(ipl)`, `splvm()`, `splhigh()`, `splx(s)` | [`splraise`], [`splvm`], [`splhigh`], [`splx`] → [`Spl`] |
//! | `cpu_intr_p()` | [`in_interrupt`] |
//! | `ASSERT_SLEEPABLE()` | [`assert_sleepable`] |
//! | `mutex_init(…, MUTEX_SPIN, ipl)`, `mutex_spin_enter/exit` | [`SpinMutex::new`], [`SpinMutex::lock`], guard drop |
//! | `mutex_init(…, MUTEX_DEFAULT, IPL_NONE)`, `mutex_enter/exit` | [`AdaptiveMutex`] |
//! | `mutex_owned`, `mutex_tryenter` | [`SpinMutex::owned`], [`SpinMutex::try_lock`] |
//! | `cv_wait`, `cv_signal`, `cv_broadcast` | [`WaitChannel::wait`], [`WaitChannel::signal`], [`WaitChannel::broadcast`] |
//! | `curcpu()`, `cpu_index()`, `ncpu`, `MAXCPUS` | [`curcpu`] → [`CpuId`], [`ncpu`], [`MAXCPUS`] |
//! | `percpu(9)` | [`CpuLocal`], [`cpu_local!`] |
//! | `xc_unicast`, `xc_broadcast` + `xc_wait` | [`xc_unicast`], [`xc_broadcast`] (both wait) |
//! | `intr_establish`, `intr_disestablish` | [`intr_establish`], [`intr_disestablish`] |
//! | `uvm_pagealloc` + `pmap_kenter_pa` (wired), `pmap_kremove` | [`PageSource::commit`], [`PageSource::decommit`] |
//! | `uvm_map` (VA only), `uvm_unmap` | [`PageSource::reserve`], [`PageSource::release`] |
//! | `pmap_protect` | [`PageSource::protect`] |
//! | fault injection (`fault(4)`) | [`FaultInjector`], [`PAGE_FAULTS`] |
//!
//! ## Features and cfgs
//!
//! - `std` (default): the user-space machine and [`OsPages`]; Linux.
//! - `--cfg bsdalloc_loom`: every atomic and cell from loom, and a model
//!   machine for the loom tests. Outside semver.
#![no_std]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "std")]
extern crate std;

pub mod cpu;
pub mod fault;
pub mod ipl;
mod machine;
pub mod mutex;
pub mod pages;
pub mod sync;
pub mod wait;

#[cfg(all(not(bsdalloc_loom), feature = "std"))]
pub use cpu::active_cpus;
pub use cpu::{
    CacheLine, CpuId, CpuLocal, Delivery, HookTableFull, IntrSource, MAXCPUS, curcpu,
    intr_disestablish, intr_establish, intr_runs, intr_trigger, ncpu,
};
#[cfg(not(bsdalloc_loom))]
pub use cpu::{cpu_exit_hook_establish, xc_broadcast, xc_unicast};
pub use fault::FaultInjector;
pub use ipl::{
    CpuState, IntrError, IntrHandler, IntrTable, Ipl, NSOURCES, Spl, XCALL_IPL,
    assert_not_in_interrupt, assert_sleepable, curipl, in_interrupt, splhigh, splraise, splsched,
    splvm, splx,
};
pub use mutex::{
    AdaptiveMutex, AdaptiveMutexGuard, RawMutex, RawSpinLock, SpinMutex, SpinMutexGuard,
};
#[cfg(not(bsdalloc_loom))]
pub use pages::PAGE_FAULTS;
pub use pages::{Committed, PageError, PageSource, PageStats, Protection};
#[cfg(all(not(bsdalloc_loom), feature = "std"))]
pub use pages::{OS_PAGES, OsPages, page_size, resident_bytes};
pub use wait::WaitChannel;

/// The machine a kernel provides (see the crate docs). In user space the
/// `std` feature provides it; do not implement it there.
///
/// # Safety
/// `current_cpu` must return the record of the CPU the caller runs on, and
/// the caller must not migrate while it holds it at a raised level (a kernel
/// does not preempt above `IPL_NONE`, or pins the thread); `cpu(i)` returns
/// CPU `i`'s record, whose `index()` is `i`; `send_ipi(i)` makes CPU `i`
/// call [`hardintr`] soon; `sleep` returns when `word` may differ from
/// `expected` (spurious returns allowed), and `wakeup` ends the sleep of up
/// to `count` sleepers on `word`.
pub unsafe trait Machine {
    /// The record of the CPU the caller runs on.
    fn current_cpu() -> &'static CpuState;
    /// CPU `index`'s record, if that CPU exists.
    fn cpu(index: u32) -> Option<&'static CpuState>;
    /// How many CPUs exist.
    fn ncpu() -> u32;
    /// Interrupt CPU `index`.
    fn send_ipi(index: u32);
    /// Sleep while `*word == expected`.
    fn sleep(word: &sync::atomic::AtomicU32, expected: u32);
    /// Wake up to `count` sleepers on `word`.
    fn wakeup(word: &sync::atomic::AtomicU32, count: u32);
}

/// Name the kernel's [`Machine`] implementation (no-`std` builds only).
#[macro_export]
macro_rules! set_machine {
    ($t:ty) => {
        #[unsafe(no_mangle)]
        fn __bsdalloc_machine_current_cpu() -> &'static $crate::CpuState {
            <$t as $crate::Machine>::current_cpu()
        }
        #[unsafe(no_mangle)]
        fn __bsdalloc_machine_cpu(index: u32) -> Option<&'static $crate::CpuState> {
            <$t as $crate::Machine>::cpu(index)
        }
        #[unsafe(no_mangle)]
        fn __bsdalloc_machine_ncpu() -> u32 {
            <$t as $crate::Machine>::ncpu()
        }
        #[unsafe(no_mangle)]
        fn __bsdalloc_machine_send_ipi(index: u32) {
            <$t as $crate::Machine>::send_ipi(index)
        }
        #[unsafe(no_mangle)]
        fn __bsdalloc_machine_sleep(word: &$crate::sync::atomic::AtomicU32, expected: u32) {
            <$t as $crate::Machine>::sleep(word, expected)
        }
        #[unsafe(no_mangle)]
        fn __bsdalloc_machine_wakeup(word: &$crate::sync::atomic::AtomicU32, count: u32) {
            <$t as $crate::Machine>::wakeup(word, count)
        }
    };
}

/// The interrupt entry: run this CPU's pending interrupts that its level
/// lets through. A kernel calls it from its IPI handler; in user space the
/// signal handler does.
pub fn hardintr() {
    machine::with_cpu(|c| machine::with_intr_table(|t| c.dispatch(t)));
}

/// Loom-only: the model machine.
#[cfg(bsdalloc_loom)]
pub mod model {
    pub use crate::machine::model::enter_cpu;
}
