//! `fork` from a multithreaded program: quiesce the allocator.
//!
//! A child has one thread, the one that forked. Any lock another thread
//! held at that moment — a pool's, a cache's depot, an arena's, the kernel
//! map's — stays held in the child for ever, and its first allocation
//! that needs it hangs. glibc's answer for its own arenas is to take every
//! arena lock in `fork`'s prepare handler. The workspace's locks are
//! private to its layers, so this crate takes the other road to the same
//! state: the prepare handler waits until **no thread is inside the
//! allocator** and holds new entries at the door until `fork` returns;
//! then no allocator lock is held by anyone, and no CPU is inside a
//! CPU-local section (whose level would make the child's cross-calls
//! signal a thread that does not exist).
//!
//! **The door costs the fast path no atomic read-modify-write and no
//! fence.** Each CPU slot has an "inside" word. A thread that owns its
//! slot stores 1 on entry, reads [`FORKING`] after a compiler fence, and
//! stores 0 on the way out; threads sharing one of the last
//! [`NSHARED`](bsdalloc::platform::cpu::NSHARED) slots count with atomic
//! adds (their path is the slow one anyway). The prepare handler stores
//! `FORKING`, makes every running thread execute a full fence
//! (`membarrier`, the platform's [`heavy_fence`]) and then reads every
//! slot's word: a thread that entered before the fence is seen inside and
//! waited for; one that enters after it sees `FORKING`, steps out again
//! and waits for the parent or child handler to clear it. This is the
//! asymmetric Dekker pair the platform's cross-calls use.
//!
//! Then the handler takes the machine's own locks
//! ([`fork_prepare`](bsdalloc::platform::fork_prepare)): the exit lock,
//! which a thread holds from its CPU exit hooks (they take its caches'
//! depot locks) to its slot's release, so no thread is half gone; then
//! every CPU slot's lock in index order, so no thread is half way into
//! becoming a CPU. The lock order is the workspace's: the door (every
//! allocator lock) before the exit lock before the slot locks.
//!
//! In the child ([`fork_child`](bsdalloc::platform::fork_child)) the
//! other threads' CPU slots are freed, and what their caches held moves
//! to the depots (`pool_cache_cpu_init` of each, run on its behalf): the
//! child has one CPU, with nothing stranded.
//!
//! Not covered (see the crate docs): without `membarrier` (Linux before
//! 4.14, or a seccomp filter) the door is best effort.
//!
//! [`heavy_fence`]: bsdalloc::platform::sync::heavy_fence

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering, compiler_fence, fence};

use bsdalloc::platform::cpu::{MAXCPUS, NSHARED};
use bsdalloc::platform::{self, curcpu, ncpu};

/// One slot's "inside" word, on a cache line of its own: the fast path
/// writes it on every call, and neighbours belong to other threads.
#[repr(align(64))]
struct Inside(AtomicU32);

static INSIDE: [Inside; MAXCPUS] = [const { Inside(AtomicU32::new(0)) }; MAXCPUS];
/// Set by the prepare handler; entries wait while it is.
static FORKING: AtomicBool = AtomicBool::new(false);
/// Serialises forks (two threads forking at once).
static FORK_LOCK: AtomicBool = AtomicBool::new(false);

/// The first shared slot.
const SHARED_FROM: usize = MAXCPUS - NSHARED;

/// This thread is inside the allocator on CPU slot `.0`.
#[derive(Debug)]
pub(crate) struct Door(usize);

impl Door {
    /// Step in (the kernel is up, this thread's re-entry guard is set: a
    /// first `curcpu` may allocate through libc and land in the bootstrap
    /// arena).
    #[inline(always)]
    pub(crate) fn enter() -> Door {
        let i = curcpu().index();
        loop {
            let w = &INSIDE[i].0;
            if i < SHARED_FROM {
                w.store(1, Ordering::Relaxed);
            } else {
                w.fetch_add(1, Ordering::Relaxed);
            }
            // Orders the store above before the load below for the
            // compiler; the prepare handler's membarrier does it for the
            // CPU.
            compiler_fence(Ordering::SeqCst);
            if !FORKING.load(Ordering::Relaxed) {
                return Door(i);
            }
            wait_out(i);
        }
    }
}

impl Drop for Door {
    #[inline(always)]
    fn drop(&mut self) {
        let w = &INSIDE[self.0].0;
        if self.0 < SHARED_FROM {
            w.store(0, Ordering::Release);
        } else {
            w.fetch_sub(1, Ordering::Release);
        }
    }
}

/// A fork is being prepared: step out, wait until it is done.
#[cold]
#[inline(never)]
fn wait_out(i: usize) {
    let w = &INSIDE[i].0;
    if i < SHARED_FROM {
        w.store(0, Ordering::Release);
    } else {
        w.fetch_sub(1, Ordering::Release);
    }
    while FORKING.load(Ordering::Acquire) {
        // SAFETY: no preconditions.
        unsafe { libc::sched_yield() };
    }
}

/// The forking thread's re-entry flag before `prepare` set it (restored
/// by the parent's and the child's handler; forks are serialised).
static WAS_BUSY: AtomicBool = AtomicBool::new(false);

extern "C" fn prepare() {
    while FORK_LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        // SAFETY: no preconditions.
        unsafe { libc::sched_yield() };
    }
    // Handlers registered before ours run after it, with the door closed:
    // what they allocate on this thread comes from the bootstrap arena.
    WAS_BUSY.store(crate::boot::set_busy(true), Ordering::Relaxed);
    FORKING.store(true, Ordering::Relaxed);
    if !bsdalloc::platform::sync::heavy_fence() {
        // Best effort without membarrier: this thread's side of the pair.
        fence(Ordering::SeqCst);
    }
    for w in INSIDE.iter().take(ncpu().min(MAXCPUS)) {
        while w.0.load(Ordering::Acquire) != 0 {
            // SAFETY: no preconditions.
            unsafe { libc::sched_yield() };
        }
    }
    // Shared slots lie above `ncpu` only if none was ever used.
    for w in &INSIDE[SHARED_FROM..] {
        while w.0.load(Ordering::Acquire) != 0 {
            // SAFETY: no preconditions.
            unsafe { libc::sched_yield() };
        }
    }
    // Nobody is inside: the machine's own locks now (the exit lock, which
    // waits for a thread running its exit hooks, then every CPU slot's).
    platform::fork_prepare();
}

extern "C" fn parent() {
    platform::fork_parent();
    open_door();
}

extern "C" fn child() {
    // The other threads' CPUs are gone: free their slots, and move what
    // their caches held to the depots (run here, on their behalf), so the
    // child's CPU state is its own thread's and nothing is stranded.
    platform::fork_child(&mut |cpu| bsdalloc::pool_cache::pool_cache_cpu_init(cpu));
    open_door();
}

fn open_door() {
    FORKING.store(false, Ordering::Release);
    crate::boot::set_busy(WAS_BUSY.load(Ordering::Relaxed));
    FORK_LOCK.store(false, Ordering::Release);
}

/// Register the fork handlers (once, when the kernel boots; glibc's
/// registration may allocate, and lands in the bootstrap arena then).
pub(crate) fn install() {
    // SAFETY: plain `extern "C" fn()`s with static lifetime.
    let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    if rc != 0 {
        crate::boot::say(format_args!(
            "bsdalloc: pthread_atfork failed ({rc}): a child of a multithreaded parent may hang in malloc"
        ));
    }
}
