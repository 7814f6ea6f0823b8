//! CPUs: indices, CPU-local sections, cross-calls (NetBSD's `xcall(9)`) and
//! CPU exit hooks.
//!
//! ## CPU-local sections
//!
//! Per-CPU data ([`PerCpu`](crate::PerCpu), [`CpuLocal`](crate::CpuLocal))
//! is touched only inside a *section*: the CPU raises its level to
//! [`XCALL_IPL`](crate::XCALL_IPL), so neither an interrupt handler that allocates nor a
//! cross-call can run on it meanwhile, and then passes its slot's *gate*:
//!
//! - a CPU that owns its slot reads the gate word once (no atomic
//!   read-modify-write, no fence: [`light_fence`] is a compiler fence) and
//!   goes on if it is clear;
//! - a thread that shares a slot with others (there are more threads than
//!   slots) takes the gate as a lock: the slower, locked path.
//!
//! Sections never nest on one CPU (two would hand out the same element
//! twice); opening one inside another, or inside a cross-call function,
//! panics.
//!
//! ## Cross-calls without signals to sleeping threads
//!
//! [`xc_unicast`] must run a function in another CPU's context. A CPU that
//! is inside a section (its level is at least `XCALL_IPL`) is sent the
//! cross-call interrupt and runs the function when it lowers its level, as
//! on hardware. Any other CPU — typically a thread asleep in a system call
//! at `IPL_NONE` — is not disturbed at all: the caller sets the target's
//! gate, makes every running thread execute a full fence ([`heavy_fence`],
//! `membarrier(2)`), and if the target's level is still below `XCALL_IPL`
//! it runs the function itself, on the target's behalf. The target cannot
//! have entered a section unseen: it stores its level before it reads the
//! gate, the caller stores the gate before it reads the level, and the fence
//! pair orders the two. A target that enters a section meanwhile finds the
//! gate set and waits until the caller is done. Slots without a thread, and
//! shared slots, are served on their behalf under the slot's lock.
//!
//! Because a CPU entering a section may wait for a cross-call running on
//! its behalf, **a section is never entered while holding a lock that a
//! cross-call function takes** (the workspace lock order puts CPU-local
//! sections above every allocator lock).
//!
//! [`light_fence`]: crate::sync::light_fence
//! [`heavy_fence`]: crate::sync::heavy_fence

use core::fmt;
use core::ptr;

use crate::intr::XCALL_SOURCE;
use crate::ipl::{CpuState, Spl, assert_sleepable};
use crate::machine::{self, Post, Route};
use crate::mutex::AdaptiveMutex;
use crate::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};
use crate::sync::{Backoff, light_fence};

/// A CPU's index (NetBSD's `cpu_index(ci)`); in user space, a thread slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuId(pub u32);

impl CpuId {
    /// The index as a `usize`, for indexing per-CPU arrays.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for CpuId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cpu{}", self.0)
    }
}

/// The most CPUs the machine supports (in user space: slots; threads beyond
/// the exclusive slots share the last [`NSHARED`] of them).
pub const MAXCPUS: usize = machine::MAXCPUS;

/// Slots (at the top of the index range) that threads share once every
/// other slot has a thread of its own. 0 in a kernel.
pub const NSHARED: usize = machine::NSHARED;

/// The current CPU (`curcpu()`). In user space the first call on a thread
/// claims a slot for it (an exclusive one if any is free, else a shared one).
#[inline]
pub fn curcpu() -> CpuId {
    CpuId(machine::cpu_index())
}

/// `ncpu`: CPUs that exist. In user space, the highest slot ever used plus
/// one (slots are reused after threads exit).
pub fn ncpu() -> usize {
    machine::ncpu()
}

/// Threads that are CPUs right now, guests on shared slots included (user
/// space and the loom model).
#[cfg(any(bsdalloc_loom, feature = "std"))]
pub fn active_cpus() -> usize {
    machine::active_cpus()
}

/// Threads sharing a slot right now (user space and the loom model).
#[cfg(any(bsdalloc_loom, feature = "std"))]
pub fn guest_threads() -> usize {
    machine::guest_threads()
}

// ---- fork (user space) ----

/// `fork` from a multithreaded process, step 1 of 3 (a `pthread_atfork`
/// prepare handler): take the machine's own locks — the exit lock, which
/// an exiting thread holds from its exit hooks to its slot's release, then
/// every CPU slot's lock in index order — so that the child does not start
/// with one held by a thread that does not exist there. Then call
/// [`fork_parent`] in the parent and [`fork_child`] in the child.
///
/// The caller first makes sure that no thread is inside the allocator
/// (the locks of the layers above, CPU-local sections): cmalloc's door.
/// Raises this thread to `IPL_HIGH` until the fork is done.
#[cfg(all(not(bsdalloc_loom), feature = "std"))]
pub fn fork_prepare() {
    machine::fork_prepare()
}

/// `fork`, step 2 in the parent: release what [`fork_prepare`] took.
#[cfg(all(not(bsdalloc_loom), feature = "std"))]
pub fn fork_parent() {
    machine::fork_parent()
}

/// `fork`, step 2 in the child: only this thread exists. Every CPU slot
/// another thread owned is freed (its pending interrupts and cross-call
/// state dropped), the shared slots keep only this thread, and
/// [`active_cpus`] is 1 again; the locks [`fork_prepare`] took are
/// released. Then `reclaim` runs for each freed CPU, so that the layers
/// above can take back what those CPUs had cached (`pool_cache_cpu_init`
/// moves their groups to the depots, running on their behalf).
///
/// ```no_run
/// use bsdalloc_platform::{CpuId, fork_prepare, fork_parent, fork_child, active_cpus};
///
/// fork_prepare();
/// // SAFETY: a plain fork; the child only allocates and exits.
/// match unsafe { libc::fork() } {
///     0 => {
///         fork_child(&mut |cpu: CpuId| { let _ = cpu; /* pool_cache_cpu_init(cpu) */ });
///         assert_eq!(active_cpus(), 1);
///         unsafe { libc::_exit(0) };
///     }
///     _ => fork_parent(),
/// }
/// ```
#[cfg(all(not(bsdalloc_loom), feature = "std"))]
pub fn fork_child(reclaim: &mut dyn FnMut(CpuId)) {
    machine::fork_child(reclaim)
}

// ---- sections ----

/// An open CPU-local section on the current CPU; closing it (drop) lowers
/// the level again, also when unwinding.
pub(crate) struct Section {
    s: Spl,
    cpu: CpuId,
    guest_gate: *const AtomicU32,
}

impl Section {
    /// Raise to `XCALL_IPL` and pass the gate.
    ///
    /// # Panics
    /// If a section is already open on this CPU.
    #[inline]
    #[track_caller]
    pub(crate) fn enter() -> Section {
        machine::with_cpu(|c| {
            // CPU-local sections rank above the pool_cache locks (which a
            // cache takes inside its section).
            c.rank_check_below(
                crate::mutex::LockRank::PoolCache as u8,
                "a CPU-local section",
            );
            let cpu = match c.index() {
                Some(i) => CpuId(i),
                None => curcpu(),
            };
            // Raises to XCALL_IPL and marks the section open, or panics if
            // one is (in the same byte: no extra memory access).
            let s = c.section_enter();
            // Level first, gate second (see the module docs).
            light_fence();
            // SAFETY: a CPU record's entry gate is never null: a slot's gate
            // word, `NO_GATE` or `GUEST_MARK`, statics that outlive the
            // thread.
            let g = unsafe { &*c.entry_gate() };
            let mut guest_gate = ptr::null();
            if g.load(Ordering::Acquire) != 0 {
                guest_gate = gate_closed(c, g);
            }
            Section { s, cpu, guest_gate }
        })
    }

    /// The CPU this section is on.
    #[inline]
    pub(crate) fn cpu(&self) -> CpuId {
        self.cpu
    }
}

impl Drop for Section {
    #[inline]
    fn drop(&mut self) {
        if !self.guest_gate.is_null() {
            // SAFETY: taken in `enter`; a static slot word.
            gate_unlock(unsafe { &*self.guest_gate });
        }
        machine::with_cpu(|c| machine::with_intr_table(|t| c.splx_saved(self.s, t)));
    }
}

/// A section found its entry gate closed: a guest takes its shared slot's
/// gate as a lock (returned, for the section's exit to release); an owner
/// waits for the remote CPU working on its behalf (null returned).
#[cold]
#[inline(never)]
fn gate_closed(c: &CpuState, entry: &AtomicU32) -> *const AtomicU32 {
    let (gate, guest) = c.gate();
    if guest {
        // SAFETY: a shared slot's gate word, a static.
        gate_lock(unsafe { &*gate });
        gate
    } else {
        gate_wait(entry);
        ptr::null()
    }
}

const GATE_OPEN: u32 = 0;
const GATE_HELD: u32 = 1;
const GATE_SLEEPERS: u32 = 2;

/// Wait until a remote CPU has finished what it runs on our behalf.
#[cold]
fn gate_wait(g: &AtomicU32) {
    let backoff = Backoff::new();
    while g.load(Ordering::Acquire) != GATE_OPEN {
        if backoff.is_completed() {
            // Announce a sleeper so the remote side wakes us.
            let _ = g.compare_exchange(
                GATE_HELD,
                GATE_SLEEPERS,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            machine::sleep(g, GATE_SLEEPERS);
        } else {
            backoff.snooze();
        }
    }
}

/// Take a gate as a lock (shared slots, and remote CPUs serving them or
/// running on an owner's behalf).
pub(crate) fn gate_lock(g: &AtomicU32) {
    if g.compare_exchange(GATE_OPEN, GATE_HELD, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        return;
    }
    let backoff = Backoff::new();
    loop {
        if backoff.is_completed() {
            if g.swap(GATE_SLEEPERS, Ordering::Acquire) == GATE_OPEN {
                return;
            }
            machine::sleep(g, GATE_SLEEPERS);
        } else {
            backoff.snooze();
            if g.compare_exchange(GATE_OPEN, GATE_HELD, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

/// Release a gate and wake whoever sleeps on it.
pub(crate) fn gate_unlock(g: &AtomicU32) {
    if g.swap(GATE_OPEN, Ordering::Release) == GATE_SLEEPERS {
        machine::wakeup(g, u32::MAX);
    }
}

/// Run a cross-call function for `cpu` on the calling thread: at
/// `XCALL_IPL`, in interrupt context, with the section counter set so that
/// the function cannot open a section and alias the element it was given.
pub(crate) fn run_xcall_here(cpu: CpuId, f: &(dyn Fn(CpuId) + Sync)) {
    machine::with_cpu(|c| {
        // The caller may sleep (xc_unicast checked), so no section is open.
        let s = c.section_enter();
        c.interrupt_context_enter();
        struct Restore<'a>(&'a CpuState, Spl);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                self.0.interrupt_context_exit();
                machine::with_intr_table(|t| self.0.splx_saved(self.1, t));
            }
        }
        let _restore = Restore(c, s);
        f(cpu);
    })
}

// ---- cross-calls ----

struct XcRequest<'a> {
    f: &'a (dyn Fn(CpuId) + Sync),
    cpu: CpuId,
}

static XC_LOCK: AdaptiveMutex<()> = AdaptiveMutex::new(());
static XC_REQ: AtomicPtr<XcRequest<'static>> = AtomicPtr::new(ptr::null_mut());
static XC_DONE: AtomicU32 = AtomicU32::new(0);

/// The cross-call interrupt handler: runs the posted function on this CPU.
pub(crate) fn xcall_interrupt() {
    let p = XC_REQ.load(Ordering::Acquire);
    if p.is_null() {
        return;
    }
    // SAFETY: the requester keeps the request alive until it sees XC_DONE,
    // which is set only below, after the call.
    let req = unsafe { &*p };
    machine::with_cpu(|c| {
        // Delivered only below XCALL_IPL, so outside any section; mark one
        // open so that the function cannot open another over the element it
        // was given.
        let s = c.section_enter();
        (req.f)(req.cpu);
        machine::with_intr_table(|t| c.splx_saved(s, t));
    });
    XC_DONE.store(1, Ordering::Release);
    machine::wakeup(&XC_DONE, 1);
}

/// `xc_unicast`: run `f` in CPU `cpu`'s context, at [`XCALL_IPL`](crate::XCALL_IPL), and wait
/// for it. `f` gets `cpu`; use it, not [`curcpu`], to find that CPU's data.
///
/// A CPU inside a CPU-local section runs `f` itself, from the cross-call
/// interrupt, when it leaves the section. Any other CPU is left alone (a
/// thread asleep in a system call is not woken, nor does it see `EINTR`):
/// `f` runs here on its behalf, while that CPU is kept out of its sections
/// (see the module docs). Either way `f` runs in interrupt context and may
/// not open a CPU-local section.
///
/// # Panics
/// From interrupt context or with a spin mutex held: waiting for another
/// CPU that may itself wait for that lock would deadlock
/// ("xc_unicast: sleeping …").
#[track_caller]
pub fn xc_unicast(cpu: CpuId, f: &(dyn Fn(CpuId) + Sync)) {
    assert_sleepable("xc_unicast");
    let _serialise = XC_LOCK.lock();
    if cpu == curcpu() && !machine::is_guest() {
        run_xcall_here(cpu, f);
        return;
    }
    let req = XcRequest { f, cpu };
    loop {
        let mut here = || run_xcall_here(cpu, f);
        if let Route::Ran = machine::xc_route(cpu.0, &mut here) {
            return;
        }
        XC_DONE.store(0, Ordering::Relaxed);
        // The request outlives its publication: it is withdrawn below
        // before this function returns.
        let p: *const XcRequest<'_> = &req;
        XC_REQ.store(p.cast::<XcRequest<'static>>().cast_mut(), Ordering::Release);
        match machine::post_interrupt(cpu.0, XCALL_SOURCE) {
            Post::Delivered | Post::Coalesced => {
                while XC_DONE.load(Ordering::Acquire) == 0 {
                    machine::sleep(&XC_DONE, 0);
                }
                XC_REQ.store(ptr::null_mut(), Ordering::Release);
                return;
            }
            Post::Absent => {
                // The thread left between the routing and the post: route
                // again (the slot is free or exiting now).
                XC_REQ.store(ptr::null_mut(), Ordering::Release);
            }
        }
    }
}

/// `xc_broadcast`: run `f` in every CPU's context in turn (see
/// [`xc_unicast`]).
#[track_caller]
pub fn xc_broadcast(f: &(dyn Fn(CpuId) + Sync)) {
    // The caller is a CPU too: claim its slot before counting.
    curcpu();
    for i in 0..ncpu() {
        xc_unicast(CpuId(i as u32), f);
    }
}

// ---- exit hooks ----

/// Something that keeps per-CPU state and must hear when a CPU goes away
/// (in user space: a thread exits), so it can give that CPU's cached
/// objects back. Plain functions `fn(CpuId)` implement it.
pub trait CpuExitHook: Sync {
    /// Called on the thread that is about to stop being CPU `cpu`, at
    /// `IPL_NONE`, still as that CPU (CPU-local sections work). Must not
    /// register or unregister hooks.
    fn cpu_exit(&self, cpu: CpuId);
}

impl CpuExitHook for fn(CpuId) {
    fn cpu_exit(&self, cpu: CpuId) {
        self(cpu)
    }
}

/// A registration of a [`CpuExitHook`], embedded in the object it serves
/// (no allocation): register it once the object has its final, `'static`
/// address, unregister it before the object goes away.
///
/// ```
/// use bsdalloc_platform::{CpuId, ExitHook, cpu_exit_hook_register, cpu_exit_hook_unregister};
///
/// fn on_exit(cpu: CpuId) { let _ = cpu; /* give cpu's cache back */ }
/// static HOOK: ExitHook = ExitHook::new(&(on_exit as fn(CpuId)));
/// cpu_exit_hook_register(&HOOK);
/// std::thread::spawn(|| { bsdalloc_platform::curcpu(); }).join().unwrap(); // on_exit ran
/// cpu_exit_hook_unregister(&HOOK);
/// ```
pub struct ExitHook {
    hook: &'static dyn CpuExitHook,
    next: AtomicPtr<ExitHook>,
    registered: AtomicBool,
}

impl fmt::Debug for ExitHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExitHook")
            .field("registered", &self.registered.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ExitHook {
    /// A registration for `hook`, not yet registered.
    pub const fn new(hook: &'static dyn CpuExitHook) -> ExitHook {
        ExitHook {
            hook,
            next: AtomicPtr::new(ptr::null_mut()),
            registered: AtomicBool::new(false),
        }
    }
}

/// The head of the registered hooks (an atomic, so a loom model starts
/// each execution with an empty list), changed and walked under
/// `HOOKS_LOCK`: an adaptive mutex, because exiting threads hold it while
/// they call the hooks (unknown code that takes spin mutexes of its own),
/// and unregistering waits for them.
static HOOKS: AtomicPtr<ExitHook> = AtomicPtr::new(ptr::null_mut());
static HOOKS_LOCK: AdaptiveMutex<()> = AdaptiveMutex::new(());

/// Register `hook` (idempotent).
pub fn cpu_exit_hook_register(hook: &'static ExitHook) {
    let _l = HOOKS_LOCK.lock();
    if hook.registered.swap(true, Ordering::Relaxed) {
        return;
    }
    hook.next
        .store(HOOKS.load(Ordering::Relaxed), Ordering::Relaxed);
    let me: *const ExitHook = hook;
    HOOKS.store(me.cast_mut(), Ordering::Release);
}

/// Unregister `hook`; once this returns, no thread calls it any more.
pub fn cpu_exit_hook_unregister(hook: &'static ExitHook) {
    let _l = HOOKS_LOCK.lock();
    if !hook.registered.swap(false, Ordering::Relaxed) {
        return;
    }
    let me: *const ExitHook = hook;
    let head = HOOKS.load(Ordering::Relaxed);
    if ptr::eq(head, me) {
        HOOKS.store(hook.next.load(Ordering::Relaxed), Ordering::Release);
        return;
    }
    let mut p = head;
    while !p.is_null() {
        // SAFETY: list members are registered `'static` hooks.
        let h = unsafe { &*p };
        let n = h.next.load(Ordering::Relaxed);
        if ptr::eq(n, me) {
            h.next
                .store(hook.next.load(Ordering::Relaxed), Ordering::Relaxed);
            return;
        }
        p = n;
    }
}

/// Run every registered hook for `cpu` (the machine calls this on the
/// exiting thread).
#[cfg_attr(not(any(bsdalloc_loom, feature = "std")), allow(dead_code))]
pub(crate) fn run_exit_hooks(cpu: CpuId) {
    let _l = HOOKS_LOCK.lock();
    let mut p = HOOKS.load(Ordering::Acquire);
    while !p.is_null() {
        // SAFETY: registered hooks stay valid until unregistered, which
        // waits for this lock.
        let h = unsafe { &*p };
        h.hook.cpu_exit(cpu);
        p = h.next.load(Ordering::Relaxed);
    }
}
