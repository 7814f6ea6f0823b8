//! Per-CPU storage: [`PerCpu`] for objects created at run time (each pool
//! cache owns one), [`CpuLocal`] for statics.
//!
//! ## Layout and cost
//!
//! A `PerCpu<T>` owns an array of [`MAXCPUS`] elements, each a
//! `CachePadded<T>` (128 bytes, or a multiple, on x86-64: two CPUs never
//! share a line, nor the adjacent line the prefetcher pairs with it). The
//! array is carved from a [`PageSource`] — the memory the stack owns, never
//! the Rust global allocator — and starts out zeroed, which is why `T` is
//! [`Zeroable`]. Reserved address space per object: `MAXCPUS ×
//! size_of::<CachePadded<T>>()`, rounded up to pages (64 KiB for a `T` of
//! up to 128 bytes with 512 slots); resident memory: only the pages of
//! CPUs that touched their element (one 4 KiB page holds 32 CPUs' elements
//! of 128 bytes), because the OS page source commits lazily.
//!
//! ## Access
//!
//! [`PerCpu::with`] opens a CPU-local section (see [`crate::cpu`]): a
//! thread-local load of the CPU record, a level raise and restore (the
//! "section open" mark lives in the level byte, so the nesting check costs
//! no extra memory access), one load of the slot's gate, and the element's
//! address (`base + index × stride`) — no atomic read-modify-write and no
//! fence. Threads that share a slot take the gate as a lock instead.
//! [`PerCpu::with_cpu`] and [`PerCpu::for_each_cpu`] reach other CPUs'
//! elements by cross-call, in each CPU's context; exit hooks
//! ([`crate::CpuExitHook`]) run on the exiting CPU and use
//! [`PerCpu::with`].
//!
//! Measured in one run on a 2-core AMD EPYC VM (`cargo bench -p
//! bsdalloc-benches --bench platform -- P0`; instructions from callgrind
//! with `target/release/cpu_local_ops MODE N` for two N, see that binary):
//!
//! | one increment | time | instructions |
//! |---|---|---|
//! | `PerCpu::with` | 1.76 ns | 33 |
//! | static `CpuLocal::with` | 1.75 ns | — |
//! | `splraise` + `splx` alone | 1.74 ns | — |
//! | plain `thread_local!` `Cell` | 0.55 ns | 6 |
//! | `sched_getcpu()` alone | 2.46 ns | — |
//!
//! (The instruction counts include the benchmark's own `black_box` round
//! trip, about four.)
//!
//! The difference from a thread-local is the level raise and restore: what
//! makes the element safe against the CPU's own interrupt handlers. The
//! gate (cross-calls served on the CPU's behalf, threads sharing the slot)
//! costs one load and a test: every CPU record's entry gate is a word that
//! is 0 when the way is clear — its slot's gate, `NO_GATE`, or for a guest
//! thread a word that is never 0, so a guest leaves the fast path for its
//! shared slot's lock. (Until this layout, with the guest flag tagged into
//! the gate pointer, an access took 38 instructions and 3.8–4.4 ns.)

use core::fmt;
use core::marker::PhantomData;
use core::mem::size_of;
use core::ptr::NonNull;

pub use bytemuck::Zeroable;
use crossbeam_utils::CachePadded;

use crate::cpu::{CpuId, MAXCPUS, Section, xc_broadcast, xc_unicast};
use crate::pages::{PageError, PageSource};
use crate::sync::cell::UnsafeCell;

type Elem<T> = CachePadded<UnsafeCell<T>>;

/// Per-CPU storage owned by an object created at run time.
///
/// ```
/// use bsdalloc_platform::{OS_PAGES, PerCpu, curcpu};
///
/// #[derive(Clone, Copy, Default, bytemuck::Zeroable)]
/// struct Stats { hits: u64, misses: u64 }
///
/// let stats: PerCpu<Stats> = PerCpu::new(&OS_PAGES).unwrap();
/// stats.with(|s| s.hits += 1);
/// let mut total = 0;
/// stats.for_each_cpu(|_, s| total += s.hits);
/// assert_eq!(total, 1);
/// ```
pub struct PerCpu<T> {
    base: NonNull<Elem<T>>,
    bytes: usize,
    pages: &'static dyn PageSource,
    _owns: PhantomData<T>,
}

// SAFETY: each element is reached only from its own CPU's section or from a
// cross-call in that CPU's context, one at a time; so `T: Send` suffices.
unsafe impl<T: Send> Sync for PerCpu<T> {}
// SAFETY: the array is owned memory; moving the owner moves nothing.
unsafe impl<T: Send> Send for PerCpu<T> {}

impl<T> fmt::Debug for PerCpu<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerCpu")
            .field("cpus", &MAXCPUS)
            .field("stride", &size_of::<Elem<T>>())
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl<T: Zeroable> PerCpu<T> {
    /// Zeroed storage for every CPU, from `pages`.
    pub fn new(pages: &'static dyn PageSource) -> Result<PerCpu<T>, PageError> {
        let ps = pages.page_size();
        assert!(
            core::mem::align_of::<Elem<T>>() <= ps,
            "PerCpu: element alignment above the page size"
        );
        let bytes = size_of::<Elem<T>>()
            .checked_mul(MAXCPUS)
            .and_then(|b| b.checked_next_multiple_of(ps))
            .ok_or(PageError::NoMemory {
                len: usize::MAX,
                errno: 12,
            })?;
        let p = pages.reserve(bytes, 0)?;
        // SAFETY: committing our own fresh reservation; committed memory
        // reads as zero (the PageSource contract), a valid `Elem<T>` since
        // `T: Zeroable` and the shim's cell is zero-valid.
        if let Err(e) = unsafe { pages.commit(p, bytes, false) } {
            // SAFETY: the reservation is unused.
            unsafe { pages.release(p, bytes) };
            return Err(e);
        }
        Ok(PerCpu {
            base: p.cast(),
            bytes,
            pages,
            _owns: PhantomData,
        })
    }
}

impl<T> PerCpu<T> {
    #[inline]
    fn elem(&self, cpu: CpuId) -> &UnsafeCell<T> {
        let i = cpu.index();
        if i >= MAXCPUS {
            index_panic(i);
        }
        // SAFETY: `i < MAXCPUS` and the array holds MAXCPUS initialised
        // elements for as long as `self` lives.
        unsafe { &*self.base.as_ptr().add(i) }
    }

    /// The element of the CPU a section is open on: its index comes from
    /// the machine, which keeps it below `MAXCPUS` (user space: the slot
    /// table's size; a kernel: the `Machine` contract).
    #[inline]
    fn elem_of(&self, sec: &Section) -> &UnsafeCell<T> {
        let i = sec.cpu().index();
        debug_assert!(i < MAXCPUS);
        // SAFETY: `i < MAXCPUS` (see above) and the array holds MAXCPUS
        // initialised elements for as long as `self` lives.
        unsafe { &*self.base.as_ptr().add(i) }
    }

    /// The raw element, for the loom models' broken variants only.
    ///
    /// # Safety
    /// None: using it outside a section is the bug those models catch.
    #[cfg(bsdalloc_loom)]
    #[doc(hidden)]
    pub unsafe fn __element_for_model(&self, cpu: CpuId) -> &UnsafeCell<T> {
        self.elem(cpu)
    }

    /// Bytes of address space the storage takes.
    pub fn memory(&self) -> usize {
        self.bytes
    }

    /// Run `f` on the current CPU's element, inside a CPU-local section.
    ///
    /// # Panics
    /// If a section is already open on this CPU (sections do not nest),
    /// or from a cross-call function.
    // Always inlined: LLVM's heuristic keeps the section (enter, gate,
    // exit) out of line once the caller's closure is more than trivial,
    // which costs a call and the callee's register saves on every access.
    #[inline(always)]
    #[track_caller]
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let sec = Section::enter();
        // SAFETY: the section gives this CPU exclusive use of its element
        // (see crate::cpu): no handler, cross-call or other thread touches
        // it until the section closes, and sections do not nest.
        self.elem_of(&sec).with_mut(|p| f(unsafe { &mut *p }))
    }

    /// Run `f` on CPU `cpu`'s element, in that CPU's context (a
    /// cross-call: may sleep, so thread context without spin mutexes).
    pub fn with_cpu(&self, cpu: CpuId, f: impl Fn(&mut T) + Sync)
    where
        T: Send,
    {
        xc_unicast(cpu, &|c: CpuId| {
            // SAFETY: a cross-call function runs in CPU `c`'s context, which
            // excludes that CPU's sections, and cannot open a section itself.
            self.elem(c).with_mut(|p| f(unsafe { &mut *p }))
        });
    }

    /// Visit every CPU's element in turn, each in its CPU's context.
    pub fn for_each_cpu(&self, f: impl FnMut(CpuId, &mut T) + Send)
    where
        T: Send,
    {
        let f = OneAtATime(UnsafeCell::new(f));
        xc_broadcast(&|c: CpuId| {
            // SAFETY: as in `with_cpu`; and xc_broadcast runs one cross-call
            // at a time, waiting for each, so the closure is never entered
            // twice at once.
            self.elem(c).with_mut(|p| unsafe { f.call(c, &mut *p) })
        });
    }
}

impl<T> Drop for PerCpu<T> {
    fn drop(&mut self) {
        if core::mem::needs_drop::<T>() {
            for i in 0..MAXCPUS {
                // SAFETY: every element is initialised and unreachable now
                // (`&mut self`).
                unsafe { core::ptr::drop_in_place(self.base.as_ptr().add(i)) };
            }
        }
        // SAFETY: our own reservation, committed whole, no longer used.
        unsafe {
            self.pages.decommit(self.base.cast(), self.bytes);
            self.pages.release(self.base.cast(), self.bytes);
        }
    }
}

#[cold]
#[inline(never)]
fn index_panic(i: usize) -> ! {
    panic!("PerCpu: cpu index {i} out of range (MAXCPUS {MAXCPUS})")
}

/// A closure called by one cross-call at a time.
struct OneAtATime<F>(UnsafeCell<F>);
// SAFETY: the closure runs on other CPUs (hence `F: Send`), never two at
// once (see `for_each_cpu`).
unsafe impl<F: Send> Sync for OneAtATime<F> {}

impl<F> OneAtATime<F> {
    /// # Safety
    /// No other call of this closure runs at the same time.
    unsafe fn call<T>(&self, c: CpuId, t: &mut T)
    where
        F: FnMut(CpuId, &mut T),
    {
        // SAFETY: the caller's contract gives exclusive use of the closure.
        self.0.with_mut(|g| unsafe { (*g)(c, t) })
    }
}

/// Storage with one `T` per CPU in a `static`, each on its own cache line
/// (see [`cpu_local!`](crate::cpu_local)); same access rules as [`PerCpu`].
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
    pub slots: [CachePadded<UnsafeCell<T>>; MAXCPUS],
}

impl<T> fmt::Debug for CpuLocal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CpuLocal").field("cpus", &MAXCPUS).finish()
    }
}

// SAFETY: as for PerCpu.
unsafe impl<T: Send> Sync for CpuLocal<T> {}

/// Define a static [`CpuLocal`] whose every element starts as a constant.
#[macro_export]
macro_rules! cpu_local {
    ($(#[$m:meta])* $vis:vis static $name:ident : CpuLocal<$t:ty> = $init:expr ;) => {
        $(#[$m])*
        $vis static $name: $crate::CpuLocal<$t> = $crate::CpuLocal {
            slots: [const { $crate::__private::CachePadded::new(
                $crate::sync::cell::UnsafeCell::new($init)) };
                $crate::MAXCPUS],
        };
    };
}

impl<T> CpuLocal<T> {
    /// Run `f` on the current CPU's element, inside a CPU-local section.
    ///
    /// # Panics
    /// As [`PerCpu::with`].
    #[inline]
    #[track_caller]
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let sec = Section::enter();
        let i = sec.cpu().index();
        debug_assert!(i < MAXCPUS);
        // SAFETY: the machine keeps a section's CPU index below MAXCPUS
        // (see PerCpu::elem_of).
        let slot = unsafe { self.slots.get_unchecked(i) };
        // SAFETY: as in PerCpu::with.
        slot.with_mut(|p| f(unsafe { &mut *p }))
    }

    /// Run `f` on CPU `cpu`'s element, on that CPU (a cross-call).
    pub fn with_cpu(&self, cpu: CpuId, f: impl Fn(&mut T) + Sync)
    where
        T: Send,
    {
        xc_unicast(cpu, &|c: CpuId| {
            // SAFETY: as in PerCpu::with_cpu.
            self.slots[c.index()].with_mut(|p| f(unsafe { &mut *p }))
        });
    }

    /// Visit every CPU's element in turn, each on its own CPU.
    pub fn for_each_cpu(&self, f: impl FnMut(CpuId, &mut T) + Send)
    where
        T: Send,
    {
        let f = OneAtATime(UnsafeCell::new(f));
        xc_broadcast(&|c: CpuId| {
            // SAFETY: as in PerCpu::for_each_cpu.
            self.slots[c.index()].with_mut(|p| unsafe { f.call(c, &mut *p) })
        });
    }
}
