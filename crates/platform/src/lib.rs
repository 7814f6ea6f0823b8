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
//! // The handler's argument is typed: here, the counter it bumps.
//! fn handler(seen: &'static AtomicU32) {
//!     assert!(in_interrupt());
//!     *LOCK.lock() += 1;          // safe: the interrupted code cannot hold LOCK
//!     seen.fetch_add(1, Ordering::SeqCst);
//! }
//!
//! let src = intr_establish(Ipl::Vm, handler, &SEEN).unwrap();
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
//! **Mutexes.** One generic [`Mutex<R, T>`](Mutex) with one guard over the
//! `unsafe trait` [`RawMutex`] (lock_api's shape), and NetBSD's kinds of
//! `kmutex_t` as raw locks. [`SpinMutex`] is `mutex_spin_enter`: raise to the
//! mutex's level, then spin for the lock, so a handler at or below that
//! level never runs on a CPU that holds it. The CPU counts the spin mutexes
//! it holds and restores the level saved by the first when the last is
//! released (`ci_mtx_count`, `ci_mtx_oldspl`). Taking one twice panics with
//! "locking against myself" — what an interrupt handler would hit if its
//! level were not blocked. [`AdaptiveMutex`] spins briefly, then sleeps, for
//! `IPL_NONE` paths; [`KMutex`] is `MUTEX_DEFAULT`, adaptive at `IPL_NONE`
//! and a spin mutex above, chosen at run time (a vmem arena's lock). The
//! workspace's lock rules are in [`mutex`]: no unknown code under a spin
//! mutex, the lock order, sleeping only at `IPL_NONE`.
//!
//! **Sleeping.** [`WaitChannel`] is `cv_wait`/`cv_broadcast` over a
//! futex-like sequence word, for any kernel mutex as interlock.
//! [`WaitQueue`] is a FIFO of sleepers that each say how much they wait for
//! (bytes, pages), so that a free wakes only those it can satisfy. Sleeping
//! in interrupt context, or with a spin mutex held, panics.
//!
//! **CPUs in user space.** A thread is a CPU. Its first [`curcpu`] claims
//! one of the [`MAXCPUS`] slots; threads beyond the exclusive slots share
//! the last [`NSHARED`] ones (any number of threads keeps working, on a
//! slower, locked path). At thread exit the exit hooks
//! ([`cpu_exit_hook_register`]) run on the exiting thread, so caches can
//! give the slot's objects back, and the slot is freed.
//!
//! **Per-CPU data.** [`PerCpu`] is storage an object owns (carved from a
//! [`PageSource`], never the Rust global allocator), [`CpuLocal`] the static
//! kind. A CPU touches its element inside a *section* (see [`cpu`]): a
//! level raise to [`XCALL_IPL`] and one load of its slot's gate — no atomic
//! read-modify-write, no fence; a thread on a shared slot takes the gate as
//! a lock instead. Sections do not nest.
//!
//! **Cross-calls.** [`xc_unicast`] runs a function in another CPU's
//! context, as NetBSD's `xcall(9)` does. A CPU inside a section is posted
//! the cross-call interrupt (a signal to that thread) and runs the function
//! when it lowers its level. Every other CPU is left alone — a thread asleep
//! in a system call sees no signal and no `EINTR`: the caller closes the
//! CPU's gate, makes every running thread execute a full fence
//! (`membarrier(2)`), and, finding the CPU still outside any section, runs
//! the function itself on its behalf; a CPU that enters a section meanwhile
//! waits at the gate. Slots without a thread, and shared slots, are served
//! on their behalf under the slot's lock.
//!
//! **Interrupts in user space.** [`intr_establish`] registers a handler at
//! a level, with a typed argument (stored type-erased; the establishment,
//! removal and dispatch of a source are paired by a generation in its state
//! word, seqlock-style, so a handler never runs with another
//! establishment's argument or level); [`intr_trigger`] posts it to a CPU (`fetch_or` into the target's
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
//! **loom.** Under `--cfg bsdalloc_loom` every atomic and cell comes from
//! loom through the [`sync`] shim, which keeps `const fn` constructors (so
//! statics and every crate above build unchanged); the model machine runs
//! the same slot table and cross-call routing as user space.
//!
//! **Lock order.** Slot locks (`IPL_HIGH`, internal) are leaves. The
//! cross-call lock and the exit-hook registry are adaptive and taken only
//! where sleeping is allowed; a CPU-local section is never entered holding
//! a lock that a cross-call function takes.
//!
//! ## Implementing the machine in a kernel
//!
//! Build without the `std` feature (`default-features = false`) and
//! implement [`Machine`]; then name the type once with [`set_machine!`].
//! Keep a [`CpuState`] in each CPU's `cpu_info`, call [`hardintr`] from the
//! IPI vector, and count in `ncpu` only CPUs that are up (a cross-call waits
//! for each of them to take its IPI). Pages come from your own
//! [`PageSource`]; vmem has no default meta source without `std`, so give it
//! one (`bsdalloc_vmem::vmem_subsystem_init`) before the first arena.
//!
//! ```no_run
//! use bsdalloc_platform::sync::atomic::{AtomicU32, Ordering};
//! use bsdalloc_platform::{CpuState, Machine, set_machine};
//! # struct CpuInfo { bsdalloc_state: CpuState }
//! # fn curcpu_info() -> &'static CpuInfo { unimplemented!() }
//! # fn cpu_info(_: u32) -> Option<&'static CpuInfo> { None }
//! # static NCPU: AtomicU32 = AtomicU32::new(1);
//! # const BSDALLOC_VECTOR: u8 = 0xf3;
//! # fn lapic_send_ipi(_: u32, _: u8) {}
//! # fn sleepq_wait_if_equal(_: &AtomicU32, _: u32) {}
//! # fn sleepq_wake(_: &AtomicU32, _: u32) {}
//!
//! struct MyKernel;
//! // SAFETY: curcpu_info() is the running CPU's, threads do not migrate
//! // above IPL_NONE, cpu_info(i) is CPU i's, and the IPI vector calls
//! // bsdalloc_platform::hardintr().
//! unsafe impl Machine for MyKernel {
//!     fn current_cpu() -> &'static CpuState { &curcpu_info().bsdalloc_state }
//!     fn cpu(index: u32) -> Option<&'static CpuState> { cpu_info(index).map(|ci| &ci.bsdalloc_state) }
//!     fn ncpu() -> u32 { NCPU.load(Ordering::Acquire) }
//!     fn send_ipi(index: u32) { lapic_send_ipi(index, BSDALLOC_VECTOR) }
//!     fn sleep(word: &AtomicU32, expected: u32) { sleepq_wait_if_equal(word, expected) }
//!     fn wakeup(word: &AtomicU32, count: u32) { sleepq_wake(word, count) }
//! }
//! set_machine!(MyKernel);
//! ```
//!
//! A runnable one is the workspace's test kernel, `tests/kernel`
//! (`cargo run -p bsdalloc-test-kernel`): CPUs that are threads, IPIs that
//! the CPUs take at their interrupt points, futex sleep and wakeup, pages
//! from a static array behind its own [`PageSource`] and vmem meta source;
//! it boots vmem and uvm-pages, then the whole stack (kmem, pool caches,
//! malloc(9)) through the `bsdalloc` facade's `Kernel::boot`, allocates on
//! every CPU, cross-calls, takes interrupts that allocate, and checks that
//! nothing called the Rust global allocator. Build such a kernel as its
//! own package (`-p`): Cargo unifies features across the packages it
//! builds together, and any of them that turns `std` on selects the
//! user-space machine instead.
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
//! | `mutex_init(…, MUTEX_DEFAULT, ipl)` (kind chosen by `ipl`) | [`KMutex`] |
//! | CPU exit callbacks (`cpu_offline`) | [`ExitHook`], [`cpu_exit_hook_register`] |
//! | `mutex_owned`, `mutex_tryenter` | [`SpinMutex::owned`], [`SpinMutex::try_lock`] |
//! | `cv_wait`, `cv_signal`, `cv_broadcast` | [`WaitChannel::wait`], [`WaitChannel::signal`], [`WaitChannel::broadcast`] |
//! | `curcpu()`, `cpu_index()`, `ncpu`, `MAXCPUS` | [`curcpu`] → [`CpuId`], [`ncpu`], [`MAXCPUS`] |
//! | `percpu(9)` | [`PerCpu`] (objects), [`CpuLocal`], [`cpu_local!`] (statics) |
//! | `xc_unicast`, `xc_broadcast` + `xc_wait` | [`xc_unicast`], [`xc_broadcast`] (both wait) |
//! | `intr_establish(…, handler, void *arg)`, `intr_disestablish` | [`intr_establish`] with a typed `&'static T` argument ([`IntrHandler<T>`](IntrHandler)), [`intr_disestablish`] |
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
pub mod intr;
pub mod ipl;
mod machine;
pub mod mutex;
pub mod pages;
pub mod percpu;
pub mod sync;
pub mod time;
pub mod wait;

pub use cpu::{
    CpuExitHook, CpuId, ExitHook, MAXCPUS, NSHARED, cpu_exit_hook_register,
    cpu_exit_hook_unregister, curcpu, ncpu, xc_broadcast, xc_unicast,
};
#[cfg(any(bsdalloc_loom, feature = "std"))]
pub use cpu::{active_cpus, guest_threads};
#[cfg(all(not(bsdalloc_loom), feature = "std"))]
pub use cpu::{fork_child, fork_parent, fork_prepare};
pub use fault::FaultInjector;
pub use intr::{
    Delivery, IntrError, IntrHandler, IntrSource, IntrTable, NSOURCES, intr_disestablish,
    intr_establish, intr_pending, intr_runs, intr_trigger,
};
pub use ipl::{
    CpuState, Ipl, Spl, XCALL_IPL, assert_not_in_interrupt, assert_sleepable, curipl, in_interrupt,
    splhigh, splraise, splsched, splvm, splx,
};
pub use mutex::{
    AdaptiveMutex, AdaptiveMutexGuard, GuardNoSend, KMutex, KMutexGuard, LockRank, Mutex,
    MutexGuard, RawAdaptiveMutex, RawKMutex, RawMutex, RawSpinLock, RawSpinMutex, SpinMutex,
    SpinMutexGuard,
};
pub use pages::PAGE_FAULTS;
pub use pages::{Committed, CountingPages, PageError, PageSource, PageStats, Protection};
#[cfg(feature = "std")]
pub use pages::{OS_PAGES, OsPages, page_size, resident_bytes};
pub use percpu::{CpuLocal, PerCpu, Zeroable};
#[cfg(feature = "std")]
pub use time::uptime_secs;
pub use wait::{WaitChannel, WaitQueue, kpause};

/// The machine a kernel provides (see the crate docs). In user space the
/// `std` feature provides it; do not implement it there.
///
/// # Safety
/// `current_cpu` must return the record of the CPU the caller runs on, and
/// the caller must not migrate while it holds it at a raised level (a kernel
/// does not preempt above `IPL_NONE`, or pins the thread); every CPU's
/// record has an index, below [`MAXCPUS`]; `cpu(i)` returns CPU `i`'s
/// record, whose `index()` is `i`; `send_ipi(i)` makes CPU `i`
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
    pub use crate::machine::model::{enter_cpu, enter_guest, exit_cpu};
}

#[doc(hidden)]
pub mod __private {
    //! For the crate's macros.
    pub use crossbeam_utils::CachePadded;
}
