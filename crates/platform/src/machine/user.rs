//! The user-space machine (Linux).
//!
//! **CPUs are threads.** A thread becomes a CPU the first time it asks for
//! its index: it claims a free slot in a static table of [`MAXCPUS`] slots
//! (the slow path, once per thread) and remembers the index in its
//! thread-local [`CpuState`]. From then on a CPU-local access is a
//! thread-local load: no atomic read-modify-write, no fence. At thread exit a
//! `pthread_key` destructor (which runs after Rust's own thread-local
//! destructors and allocates nothing) runs the exit hooks, so caches can give
//! the slot's objects back, drains interrupts still pending, and frees the
//! slot for the next thread.
//!
//! **Interrupts are signals.** Posting source `n` to CPU `i` sets bit `n` in
//! that CPU's pending word (`fetch_or`) and sends it a real-time signal with
//! `tgkill`, under the slot's lock so that the thread cannot exit and its id
//! be reused in between. The signal handler runs `CpuState::dispatch` on the
//! interrupted thread: sources above its current level run at once, the rest
//! stay pending until `splx` lowers the level. The handler preserves
//! `errno`.
//!
//! At most one signal is in flight per CPU (the slot's `kick` flag, cleared
//! by the handler before it dispatches): real-time signals queue, and a
//! thread that clears its pending bits at `splx` faster than its signals
//! arrive would otherwise collect a queue of them — `EAGAIN` from `tgkill`
//! at `RLIMIT_SIGPENDING`.
//!
//! The signal is blocked while its handler runs (no `SA_NODEFER`): a post
//! after the handler cleared `kick` sends the next signal at once, and
//! delivered nested it would clear `kick` again and invite the next — under
//! a storm from several CPUs the nesting outgrew the thread's stack. Blocked,
//! the one signal waits until the handler returns. Interrupts still nest
//! where they must: a handler that lowers its level (`splx`, a spin mutex's
//! exit) dispatches what is pending above it, and the dispatch loop runs
//! what arrived during a handler before the signal handler returns.
//!
//! **Sleep is a futex** on the wait channel's sequence word.

use core::ffi::{c_int, c_void};
use std::thread_local;

use super::Post;
use super::slots::{self, Claim};
use crate::intr::IntrTable;
use crate::ipl::CpuState;
use crate::mutex::{RawAdaptiveMutex, RawMutex};
use crate::sync::atomic::{AtomicU8, AtomicU32, Ordering, fence};

/// CPU slots: threads that are CPUs at once, the last [`NSHARED`] shared.
pub(crate) const MAXCPUS: usize = 512;
/// Slots shared by the threads beyond the exclusive ones.
pub(crate) const NSHARED: usize = 16;

thread_local! {
    static CPU: CpuState = const { CpuState::new() };
}

pub(crate) static TABLE: IntrTable = IntrTable::new();

#[inline(always)]
pub(crate) fn with_cpu<R>(f: impl FnOnce(&CpuState) -> R) -> R {
    CPU.with(f)
}

#[inline(always)]
pub(crate) fn with_intr_table<R>(f: impl FnOnce(&IntrTable) -> R) -> R {
    f(&TABLE)
}

#[inline]
pub(crate) fn cpu_index() -> u32 {
    CPU.with(|c| match c.index() {
        Some(i) => i,
        None => register(c),
    })
}

pub(crate) use super::slots::{active_cpus, guest_threads, ncpu, xc_route};

pub(crate) fn is_guest() -> bool {
    CPU.with(|c| c.gate().1)
}

pub(crate) fn yield_now() {
    std::thread::yield_now();
}

/// A guest's pthread-key value has this bit set.
const GUEST_TAG: usize = 1 << (usize::BITS - 1);

#[cold]
#[inline(never)]
fn register(c: &CpuState) -> u32 {
    init_once();
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as u32;
    let (i, tag) = match slots::claim(c, tid, None) {
        Claim::Exclusive(i) => (i, 0),
        Claim::Guest(i) => (i, GUEST_TAG),
    };
    // SAFETY: KEY was created by init_once; the value is a non-null
    // integer token, never dereferenced.
    let rc = unsafe {
        libc::pthread_setspecific(
            KEY.load(Ordering::Acquire),
            core::ptr::without_provenance::<c_void>((i as usize + 1) | tag),
        )
    };
    assert_eq!(rc, 0, "pthread_setspecific failed: {rc}");
    i
}

static INIT: AtomicU8 = AtomicU8::new(0);
static KEY: AtomicU32 = AtomicU32::new(0);

fn init_once() {
    if INIT.load(Ordering::Acquire) == 2 {
        return;
    }
    if INIT
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is a valid out-pointer; the destructor has the
        // signature pthread expects.
        let rc = unsafe { libc::pthread_key_create(&mut key, Some(slot_exit)) };
        assert_eq!(rc, 0, "pthread_key_create failed: {rc}");
        KEY.store(key, Ordering::Release);
        install_signal_handler();
        INIT.store(2, Ordering::Release);
    } else {
        while INIT.load(Ordering::Acquire) != 2 {
            core::hint::spin_loop();
        }
    }
}

/// The signal that carries interrupts: `SIGRTMIN + 4`.
pub(crate) fn interrupt_signal() -> c_int {
    libc::SIGRTMIN() + 4
}

fn install_signal_handler() {
    // SAFETY: a zeroed sigaction is a valid starting value; the handler is
    // an `extern "C" fn(c_int)` as sa_sigaction expects without SA_SIGINFO.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_interrupt as extern "C" fn(c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        let rc = libc::sigaction(interrupt_signal(), &sa, core::ptr::null_mut());
        assert_eq!(rc, 0, "sigaction for the interrupt signal failed");
    }
}

extern "C" fn on_interrupt(_sig: c_int) {
    // SAFETY: __errno_location returns this thread's errno slot.
    let errno = unsafe { *libc::__errno_location() };
    CPU.with(|c| {
        if let Some(slot) = c.index().and_then(|i| slots::SLOTS.get(i as usize)) {
            // Before the pending word is read (the store-load order that
            // `post_interrupt` mirrors): a post after this sends a signal
            // of its own, one before it is seen by this dispatch.
            slot.kick.swap(0, Ordering::SeqCst);
            fence(Ordering::SeqCst);
        }
        c.dispatch(&TABLE)
    });
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Held by an exiting thread from its exit hooks to its slot's release,
/// and by [`fork_prepare`] until the fork is done: a child never starts
/// with a thread half gone (its hooks holding a cache's locks, its slot
/// `EXITING`).
static EXIT_LOCK: RawAdaptiveMutex = RawAdaptiveMutex::new();

/// The pthread-key destructor: the thread is exiting.
unsafe extern "C" fn slot_exit(value: *mut c_void) {
    let v = value.addr();
    let i = (v & !GUEST_TAG) - 1;
    CPU.with(|c| c.reset_for_exit());
    EXIT_LOCK.lock();
    if v & GUEST_TAG == 0 {
        // A shared slot lives on: only an exclusive CPU goes away.
        crate::cpu::run_exit_hooks(crate::cpu::CpuId(i as u32));
    }
    CPU.with(|c| slots::release(c, i));
    // SAFETY: taken above.
    unsafe { EXIT_LOCK.unlock() };
}

/// The level [`fork_prepare`] raised from, for the parent and the child.
static FORK_SPL: AtomicU8 = AtomicU8::new(0);

/// See [`crate::cpu::fork_prepare`].
pub(crate) fn fork_prepare() {
    EXIT_LOCK.lock();
    let s = CPU.with(|c| c.splraise(crate::ipl::Ipl::High));
    slots::lock_all();
    FORK_SPL.store(s.0, Ordering::Relaxed);
}

fn fork_done() {
    let s = crate::ipl::Spl(FORK_SPL.load(Ordering::Relaxed));
    CPU.with(|c| c.splx(s, &TABLE));
    // SAFETY: `fork_prepare` took it on this thread (the child's thread is
    // the forking one).
    unsafe { EXIT_LOCK.unlock() };
}

/// See [`crate::cpu::fork_parent`].
pub(crate) fn fork_parent() {
    slots::unlock_all();
    fork_done();
}

/// See [`crate::cpu::fork_child`].
pub(crate) fn fork_child(reclaim: &mut dyn FnMut(crate::cpu::CpuId)) {
    let me = CPU.with(|c| c.index().map(|i| (i as usize, c.gate().1)));
    let mut dead = [0u64; MAXCPUS / 64];
    slots::forget_other_threads(me, &mut dead);
    slots::unlock_all();
    fork_done();
    for (w, &bits) in dead.iter().enumerate() {
        let mut bits = bits;
        while bits != 0 {
            let b = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            reclaim(crate::cpu::CpuId((w * 64 + b) as u32));
        }
    }
}

pub(crate) fn post_interrupt(cpu: u32, source: usize) -> Post {
    let Some((slot, target, s)) = slots::locked_active(cpu) else {
        return Post::Absent;
    };
    let result = if target.post(source) {
        let me = CPU.with(|c| core::ptr::eq(c, target));
        // Only if no signal is on its way (see the module docs); the fence
        // orders the pending bit before the flag (see `on_interrupt`).
        fence(Ordering::SeqCst);
        if !me && slot.kick.swap(1, Ordering::SeqCst) == 0 {
            // SAFETY: plain syscall; the tid is alive while the slot is
            // ACTIVE and we hold its lock.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_tgkill,
                    libc::getpid(),
                    slot.tid.load(Ordering::Relaxed) as c_int,
                    interrupt_signal(),
                )
            };
            assert_eq!(rc, 0, "tgkill to CPU {cpu} failed");
        }
        Post::Delivered
    } else {
        Post::Coalesced
    };
    // Unlocking lowers the level: a self-posted interrupt runs here.
    slots::slot_unlock(slot, s);
    result
}

pub(crate) fn xcall_interrupt() {
    crate::cpu::xcall_interrupt();
}

const FUTEX_WAIT_PRIVATE: c_int = libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG;
const FUTEX_WAKE_PRIVATE: c_int = libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG;

pub(crate) fn sleep(word: &AtomicU32, expected: u32) {
    // SAFETY: the futex word is a live, aligned u32; a null timeout means
    // "no timeout". EINTR and EAGAIN are spurious wakeups for the caller.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            FUTEX_WAIT_PRIVATE,
            expected,
            core::ptr::null::<libc::timespec>(),
        );
    }
}

pub(crate) fn wakeup(word: &AtomicU32, count: u32) {
    let n = count.min(i32::MAX as u32) as c_int;
    // SAFETY: the futex word is a live, aligned u32.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), FUTEX_WAKE_PRIVATE, n);
    }
}

const MEMBARRIER_CMD_PRIVATE_EXPEDITED: c_int = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: c_int = 1 << 4;

/// 0: not tried yet, 1: available, 2: refused (old kernel, seccomp).
static MEMBARRIER: AtomicU8 = AtomicU8::new(0);

/// `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`: every running thread of
/// the process executes a full fence before this returns.
pub(crate) fn heavy_fence() -> bool {
    let state = match MEMBARRIER.load(Ordering::Acquire) {
        0 => {
            // SAFETY: plain syscall; registration has no preconditions.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_membarrier,
                    MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
                    0,
                    0,
                )
            };
            let s = if rc == 0 { 1 } else { 2 };
            MEMBARRIER.store(s, Ordering::Release);
            s
        }
        s => s,
    };
    if state != 1 {
        return false;
    }
    // SAFETY: plain syscall, registered above.
    let rc = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) };
    rc == 0
}
