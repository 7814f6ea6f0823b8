//! CPUs: indices, CPU-local storage, cross-calls (NetBSD's `xcall(9)`),
//! thread-exit hooks, and the interrupt API (`intr_establish`, triggering).

use core::fmt;

use crate::ipl::{IntrError, IntrHandler, Ipl, XCALL_IPL};
#[cfg(not(bsdalloc_loom))]
use crate::ipl::{XCALL_SOURCE, assert_sleepable};
use crate::machine;
#[cfg(not(bsdalloc_loom))]
use crate::machine::Post;
#[cfg(not(bsdalloc_loom))]
use crate::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use crate::sync::cell::UnsafeCell;

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

/// The most CPUs (in user space: threads at once) the machine supports.
#[cfg(all(not(bsdalloc_loom), feature = "std"))]
pub const MAXCPUS: usize = machine::MAXCPUS;
/// The most CPUs the machine supports.
#[cfg(any(bsdalloc_loom, not(feature = "std")))]
pub const MAXCPUS: usize = 256;

/// The current CPU (`curcpu()`). In user space the first call on a thread
/// claims a slot for it.
#[inline]
pub fn curcpu() -> CpuId {
    CpuId(machine::cpu_index())
}

/// `ncpu`: CPUs that exist. In user space, the highest slot ever used plus
/// one (slots are reused after threads exit).
pub fn ncpu() -> usize {
    machine::ncpu()
}

/// Threads that are CPUs right now (user space only).
#[cfg(all(not(bsdalloc_loom), feature = "std"))]
pub fn active_cpus() -> usize {
    machine::active_cpus()
}

#[cfg(not(bsdalloc_loom))]
struct XcRequest<'a> {
    f: &'a (dyn Fn(CpuId) + Sync),
}

#[cfg(not(bsdalloc_loom))]
static XC_LOCK: crate::mutex::AdaptiveMutex<()> = crate::mutex::AdaptiveMutex::new(());
#[cfg(not(bsdalloc_loom))]
static XC_REQ: AtomicUsize = AtomicUsize::new(0);
#[cfg(not(bsdalloc_loom))]
static XC_DONE: AtomicU32 = AtomicU32::new(0);

/// The cross-call interrupt handler: runs the posted function on this CPU.
#[cfg(not(bsdalloc_loom))]
pub(crate) fn xcall_interrupt() {
    let p = XC_REQ.load(Ordering::Acquire) as *const XcRequest<'_>;
    if p.is_null() {
        return;
    }
    // SAFETY: the requester keeps the request alive until it sees XC_DONE,
    // which is set only below, after the call.
    let req = unsafe { &*p };
    (req.f)(curcpu());
    XC_DONE.store(1, Ordering::Release);
    machine::wakeup(&XC_DONE, 1);
}

/// `xc_unicast`: run `f` on CPU `cpu`, at [`XCALL_IPL`], and wait for it.
///
/// `f` runs in that CPU's context (in user space: on that thread, from an
/// interrupt), so it may touch the CPU's per-CPU data exactly as the CPU's
/// own code does at `IPL_VM`. If no thread owns the CPU, `f` runs here on
/// its behalf while the slot is held so that no thread can claim it.
///
/// # Panics
/// From interrupt context or with a spin mutex held: waiting for another
/// CPU that may itself wait for that lock would deadlock
/// ("xc_unicast: sleeping …").
#[cfg(not(bsdalloc_loom))]
#[track_caller]
pub fn xc_unicast(cpu: CpuId, f: &(dyn Fn(CpuId) + Sync)) {
    assert_sleepable("xc_unicast");
    let _serialise = XC_LOCK.lock();
    if cpu == curcpu() {
        let s = crate::ipl::splraise(XCALL_IPL);
        f(cpu);
        crate::ipl::splx(s);
        return;
    }
    let req = XcRequest { f };
    loop {
        XC_DONE.store(0, Ordering::Relaxed);
        XC_REQ.store(&req as *const XcRequest<'_> as usize, Ordering::Release);
        match machine::post_interrupt(cpu.0, XCALL_SOURCE) {
            Post::Delivered | Post::Coalesced => {
                while XC_DONE.load(Ordering::Acquire) == 0 {
                    machine::sleep(&XC_DONE, 0);
                }
                break;
            }
            Post::Absent => {
                XC_REQ.store(0, Ordering::Release);
                let mut run = || {
                    let s = crate::ipl::splraise(XCALL_IPL);
                    f(cpu);
                    crate::ipl::splx(s);
                };
                if machine::run_on_absent(cpu.0, &mut run) {
                    break;
                }
            }
        }
    }
    XC_REQ.store(0, Ordering::Release);
}

/// `xc_broadcast`: run `f` on every CPU in turn (see [`xc_unicast`]).
#[cfg(not(bsdalloc_loom))]
#[track_caller]
pub fn xc_broadcast(f: &(dyn Fn(CpuId) + Sync)) {
    // The caller is a CPU too: claim its slot before counting.
    curcpu();
    for i in 0..ncpu() {
        xc_unicast(CpuId(i as u32), f);
    }
}

/// Storage with one `T` per CPU, each on its own cache line.
///
/// The current CPU reaches its own element with [`CpuLocal::with`], which
/// holds the level at [`XCALL_IPL`] for the duration: that is what keeps a
/// cross-call from running against the same element mid-update. Another CPU
/// reaches an element only through [`CpuLocal::with_cpu`], which runs on that
/// CPU by cross-call.
///
/// ```
/// use bsdalloc_platform::{CpuLocal, cpu_local};
///
/// cpu_local! { static HITS: CpuLocal<u64> = 0; }
/// HITS.with(|n| *n += 1);
/// HITS.with(|n| *n += 1);
/// let mut total = 0;
/// HITS.for_each_cpu(|_, n| total += *n);
/// assert_eq!(total, 2);
/// ```
pub struct CpuLocal<T> {
    #[doc(hidden)]
    pub slots: [CacheLine<UnsafeCell<T>>; MAXCPUS],
}

/// A value on its own 64-byte cache line.
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub struct CacheLine<T>(pub T);

impl<T> fmt::Debug for CpuLocal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CpuLocal").field("cpus", &MAXCPUS).finish()
    }
}

// SAFETY: each element is accessed only by its own CPU at XCALL_IPL, or by
// a cross-call running on that CPU; so `T: Send` suffices.
unsafe impl<T: Send> Sync for CpuLocal<T> {}

/// Define a static [`CpuLocal`] whose every element starts as a constant.
#[macro_export]
macro_rules! cpu_local {
    ($(#[$m:meta])* $vis:vis static $name:ident : CpuLocal<$t:ty> = $init:expr ;) => {
        $(#[$m])*
        $vis static $name: $crate::CpuLocal<$t> = $crate::CpuLocal {
            slots: [const { $crate::CacheLine($crate::sync::cell::UnsafeCell::new($init)) };
                $crate::MAXCPUS],
        };
    };
}

impl<T> CpuLocal<T> {
    /// Run `f` on the current CPU's element, at [`XCALL_IPL`] or above.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let s = crate::ipl::splraise(XCALL_IPL);
        let i = curcpu().index();
        // SAFETY: the element belongs to this CPU; at XCALL_IPL no
        // cross-call can run on this CPU, and no other CPU touches it.
        let r = self.slots[i].0.with_mut(|p| f(unsafe { &mut *p }));
        crate::ipl::splx(s);
        r
    }

    /// Run `f` on CPU `cpu`'s element, on that CPU (a cross-call).
    #[cfg(not(bsdalloc_loom))]
    pub fn with_cpu(&self, cpu: CpuId, f: impl Fn(&mut T) + Sync)
    where
        T: Send,
    {
        xc_unicast(cpu, &|c: CpuId| {
            // SAFETY: this runs on CPU `c` at XCALL_IPL (or on its behalf
            // while its slot is held), the only place its element is used.
            self.slots[c.index()].0.with_mut(|p| f(unsafe { &mut *p }))
        });
    }

    /// Visit every CPU's element in turn, each on its own CPU.
    #[cfg(not(bsdalloc_loom))]
    pub fn for_each_cpu(&self, mut f: impl FnMut(CpuId, &mut T) + Send)
    where
        T: Send,
    {
        let f = crate::mutex::SpinMutex::<_>::new(Ipl::High, &mut f);
        xc_broadcast(&|c: CpuId| {
            let mut g = f.lock();
            // SAFETY: as in `with_cpu`.
            self.slots[c.index()]
                .0
                .with_mut(|p| (*g)(c, unsafe { &mut *p }));
        });
    }
}

const NHOOKS: usize = 16;
#[cfg(not(bsdalloc_loom))]
static EXIT_HOOKS: [AtomicUsize; NHOOKS] = [const { AtomicUsize::new(0) }; NHOOKS];

/// Why a hook could not be registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cpu_exit_hook_establish: all {NHOOKS} CPU exit hooks are in use")]
pub struct HookTableFull;

/// Register `hook`, called on a thread that is about to stop being CPU
/// `cpu` (user space: thread exit), on that thread, at `IPL_NONE`, so that
/// per-CPU caches can give their objects back.
#[cfg(not(bsdalloc_loom))]
pub fn cpu_exit_hook_establish(hook: fn(CpuId)) -> Result<(), HookTableFull> {
    for h in &EXIT_HOOKS {
        if h.compare_exchange(0, hook as usize, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(());
        }
    }
    Err(HookTableFull)
}

#[cfg(all(not(bsdalloc_loom), feature = "std"))]
pub(crate) fn run_exit_hooks(cpu: CpuId) {
    for h in &EXIT_HOOKS {
        let raw = h.load(Ordering::Acquire);
        if raw != 0 {
            // SAFETY: stored from a `fn(CpuId)` by cpu_exit_hook_establish.
            let hook: fn(CpuId) = unsafe { core::mem::transmute::<usize, fn(CpuId)>(raw) };
            hook(cpu);
        }
    }
}

/// An established interrupt source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IntrSource(pub(crate) usize);

impl IntrSource {
    /// The source's number (bit in the pending word).
    pub fn number(self) -> usize {
        self.0
    }
}

/// What became of a triggered interrupt.
pub use crate::machine::Post as Delivery;

/// `intr_establish`: a handler that runs at `ipl` when the source is
/// triggered on a CPU.
pub fn intr_establish(ipl: Ipl, handler: IntrHandler, arg: usize) -> Result<IntrSource, IntrError> {
    machine::with_intr_table(|t| t.establish(ipl, handler, arg)).map(IntrSource)
}

/// `intr_disestablish`.
pub fn intr_disestablish(src: IntrSource) {
    machine::with_intr_table(|t| t.disestablish(src.0));
}

/// Raise interrupt `src` on CPU `cpu`: it runs there at once if that CPU's
/// level allows, else when the CPU lowers its level. Triggers that arrive
/// while the source is still pending there coalesce ([`Delivery::Coalesced`]).
pub fn intr_trigger(cpu: CpuId, src: IntrSource) -> Delivery {
    machine::post_interrupt(cpu.0, src.0)
}

/// How many times `src`'s handler has run, on all CPUs.
pub fn intr_runs(src: IntrSource) -> u64 {
    machine::with_intr_table(|t| t.runs(src.0))
}
