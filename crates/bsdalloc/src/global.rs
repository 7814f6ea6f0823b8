//! [`Global`]: kmem as Rust's global allocator and as an
//! `allocator_api2::Allocator`.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

use allocator_api2::alloc::{AllocError, Allocator};
use bsdalloc_kmem::{KM_NOSLEEP, KMEM_ALIGN, Kmem, kmem};
use bsdalloc_uvm_pages::UvmFlags;

use crate::kernel::{Kernel, KernelConfig};

/// The kernel's kmem as the Rust global allocator (and an
/// [`allocator_api2::alloc::Allocator`]):
///
/// ```
/// #[global_allocator]
/// static A: bsdalloc::Global = bsdalloc::Global;
///
/// let v: Vec<u64> = (0..1000).collect();
/// assert_eq!(v.iter().sum::<u64>(), 499_500);
/// ```
///
/// **Mapping.** A layout of `size` bytes with alignment up to 8 is
/// `kmem_intr_alloc(size, KM_NOSLEEP)` and `dealloc` is `kmem_intr_free(p,
/// size)`: Rust gives the size back at free, as kmem wants, so no header is
/// needed. A larger alignment is met by the size asked of kmem: classes
/// from the cache line up are line aligned and page classes and whole pages
/// page aligned, so the size is raised to the line or the page when the
/// request's own class is not aligned enough (the same function of the
/// layout on free). Alignments above the page come from the kernel map
/// (`uvm_km_alloc` with that alignment). `realloc` stays in place when the
/// new size has the same class, or the same number of pages
/// ([`Kmem::resize_in_place`]); `alloc_zeroed` of whole pages clears only
/// reused pages.
///
/// **Context.** The `intr` variants: usable in interrupt handlers, and
/// never sleeping. Under a memory budget a request the pagedaemon cannot
/// make room for returns null ([`handle_alloc_error`] for `std`'s
/// collections) instead of sleeping.
///
/// **Threads.** A thread is a CPU; threads beyond the exclusive CPU slots
/// share the last slots on a locked path, so any number of threads work.
///
/// [`handle_alloc_error`]: https://doc.rust-lang.org/std/alloc/fn.handle_alloc_error.html
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Global;

/// Where a layout goes: kmem with this size, or the kernel map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Kmem(usize),
    Map(usize, usize),
}

/// The kmem size that gives `align` (above 8) to `size` bytes, or the
/// map for alignments kmem cannot give.
#[cold]
#[inline(never)]
fn place_aligned(k: &Kmem, size: usize, align: usize) -> Place {
    let ps = k.page_size();
    if align > ps {
        return Place::Map(size, align);
    }
    let line = k.size_classes().coherency_unit();
    for s in [size, size.max(align), size.max(line), size.max(ps)] {
        if k.alignment_of(s).is_some_and(|a| a >= align) {
            return Place::Kmem(s);
        }
    }
    // A size no arena can hold (alignment_of is None for all four): kmem
    // refuses it (KM_NOSLEEP: null). The map would take only alignments
    // that are page multiples.
    Place::Kmem(size)
}

#[inline(always)]
fn place(size: usize, align: usize) -> Place {
    // Size 0 is outside GlobalAlloc's contract and kmem's; one byte keeps
    // both sides of a caller's mistake consistent instead of panicking.
    let size = size.max(1);
    if align <= KMEM_ALIGN {
        Place::Kmem(size)
    } else {
        place_aligned(kmem(), size, align)
    }
}

fn map_flags(zero: bool) -> UvmFlags {
    let f = UvmFlags::WIRED | UvmFlags::NOWAIT;
    if zero { f | UvmFlags::ZERO } else { f }
}

#[inline(always)]
fn or_null(p: Option<NonNull<u8>>) -> *mut u8 {
    p.map_or(ptr::null_mut(), NonNull::as_ptr)
}

// SAFETY: every block comes from kmem (or the kernel map) for the size and
// alignment the layout asks, is exclusively the caller's until freed, and
// is freed to where it came from: `place` is a pure function of the layout,
// which the caller gives back unchanged.
unsafe impl GlobalAlloc for Global {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match place(layout.size(), layout.align()) {
            Place::Kmem(s) => or_null(kmem().intr_alloc(s, KM_NOSLEEP)),
            Place::Map(s, a) => or_null(kmem().map().uvm_km_alloc(s, a, map_flags(false))),
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match place(layout.size(), layout.align()) {
            Place::Kmem(s) => or_null(kmem().intr_zalloc(s, KM_NOSLEEP)),
            Place::Map(s, a) => or_null(kmem().map().uvm_km_alloc(s, a, map_flags(true))),
        }
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        match place(layout.size(), layout.align()) {
            // SAFETY: the caller's contract: `p` came from `alloc` with
            // this layout, hence from kmem with this size.
            Place::Kmem(s) => unsafe { kmem().intr_free(p, s) },
            Place::Map(s, _) => {
                let Some(p) = NonNull::new(p) else {
                    panic!("bsdalloc: dealloc of a null pointer");
                };
                kmem().map().uvm_km_free(p, s, UvmFlags::WIRED);
            }
        }
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        if let (Place::Kmem(old), Place::Kmem(new), Some(nn)) = (
            place(layout.size(), align),
            place(new_size, align),
            NonNull::new(p),
        ) {
            // SAFETY: a live kmem allocation of `old` bytes (the caller's
            // contract and `place`).
            if unsafe { kmem().resize_in_place(nn, old, new) } {
                return p;
            }
        }
        // SAFETY: the caller's contract: `new_size` rounded to `align`
        // does not overflow isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, align) };
        // SAFETY: a valid layout.
        let q = unsafe { self.alloc(new_layout) };
        if !q.is_null() {
            // SAFETY: both blocks hold at least the smaller size and do not
            // overlap (q is fresh); then `p` goes back with its layout.
            unsafe {
                ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                self.dealloc(p, layout);
            }
        }
        q
    }
}

/// A dangling, aligned pointer: the block of a zero-size allocation.
fn dangling(layout: Layout) -> NonNull<[u8]> {
    // An alignment is a nonzero power of two.
    let p = ptr::without_provenance_mut::<u8>(layout.align());
    // SAFETY: nonzero.
    NonNull::slice_from_raw_parts(unsafe { NonNull::new_unchecked(p) }, 0)
}

fn block(p: *mut u8, len: usize) -> Result<NonNull<[u8]>, AllocError> {
    NonNull::new(p)
        .map(|p| NonNull::slice_from_raw_parts(p, len))
        .ok_or(AllocError)
}

// SAFETY: blocks are valid for their layout until deallocated (GlobalAlloc
// above); zero-size requests get a dangling aligned pointer and are never
// passed to kmem; `Global` is a handle to the process-wide kernel, so
// copies and moves of it free each other's blocks.
unsafe impl Allocator for Global {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        // SAFETY: a nonzero size.
        block(unsafe { GlobalAlloc::alloc(self, layout) }, layout.size())
    }

    #[inline]
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        // SAFETY: a nonzero size.
        block(
            unsafe { GlobalAlloc::alloc_zeroed(self, layout) },
            layout.size(),
        )
    }

    #[inline]
    unsafe fn deallocate(&self, p: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: the caller's contract: allocated here with `layout`.
            unsafe { GlobalAlloc::dealloc(self, p.as_ptr(), layout) }
        }
    }

    unsafe fn grow(
        &self,
        p: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's contract (new.size() >= old.size()).
        unsafe { self.resize(p, old, new, false) }
    }

    unsafe fn grow_zeroed(
        &self,
        p: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's contract.
        unsafe { self.resize(p, old, new, true) }
    }

    unsafe fn shrink(
        &self,
        p: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's contract (new.size() <= old.size()).
        unsafe { self.resize(p, old, new, false) }
    }
}

impl Global {
    /// `grow`, `grow_zeroed` and `shrink`: `realloc` when the alignment
    /// stays and neither side is empty, else a new block, a copy, and the
    /// old block freed. Bytes past the old size are zeroed if asked.
    ///
    /// # Safety
    /// `p` is a live block of `old` from this allocator.
    unsafe fn resize(
        &self,
        p: NonNull<u8>,
        old: Layout,
        new: Layout,
        zero: bool,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let q = if old.size() != 0 && new.size() != 0 && old.align() == new.align() {
            // SAFETY: the caller's contract; `new` is a valid layout of
            // the same alignment.
            let q = unsafe { GlobalAlloc::realloc(self, p.as_ptr(), old, new.size()) };
            block(q, new.size())?
        } else {
            let q = if zero {
                self.allocate_zeroed(new)?
            } else {
                self.allocate(new)?
            };
            // SAFETY: disjoint blocks, each at least the copied length;
            // then the old block goes back with its layout.
            unsafe {
                ptr::copy_nonoverlapping(
                    p.as_ptr(),
                    q.cast::<u8>().as_ptr(),
                    old.size().min(new.size()),
                );
                self.deallocate(p, old);
            }
            return Ok(q);
        };
        if zero && new.size() > old.size() {
            // SAFETY: the tail of the new block.
            unsafe {
                q.cast::<u8>()
                    .as_ptr()
                    .add(old.size())
                    .write_bytes(0, new.size() - old.size());
            }
        }
        Ok(q)
    }
}

/// [`Global`] that boots the kernel from its own [`KernelConfig`] at the
/// program's first allocation: the way to give the global allocator a
/// memory budget or another machine. A program cannot call
/// [`Kernel::boot`] from `main` when bsdalloc is its global allocator,
/// because `std` allocates before `main` runs (the main thread's name), and
/// that first allocation starts the default kernel.
///
/// ```
/// use bsdalloc::{BootGlobal, KernelConfig};
///
/// #[global_allocator]
/// static A: BootGlobal = BootGlobal::new(KernelConfig::new().memory_limit(1 << 30));
///
/// let v = vec![1u8; 1 << 20];
/// assert_eq!(bsdalloc::kernel().map().stats().limit_pages * bsdalloc::kernel().page_size(), 1 << 30);
/// # drop(v);
/// ```
///
/// If the kernel is up already when the first allocation comes (booted, or
/// started by another layer), that kernel is used. A configuration the
/// kernel refuses is reported on standard error and aborts the process:
/// the allocator cannot panic, since the panic would allocate.
#[derive(Clone, Copy, Debug)]
pub struct BootGlobal {
    cfg: KernelConfig,
}

impl BootGlobal {
    /// The global allocator that boots with `cfg`.
    pub const fn new(cfg: KernelConfig) -> BootGlobal {
        BootGlobal { cfg }
    }

    #[inline(always)]
    fn ensure_booted(&self) {
        if !kmem().is_ready() {
            self.boot();
        }
    }

    #[cold]
    #[inline(never)]
    fn boot(&self) {
        match Kernel::boot(self.cfg) {
            Ok(_) | Err(crate::BootError::AlreadyBooted) => {}
            Err(e) => boot_failed(&e),
        }
    }
}

#[cfg(feature = "std")]
#[cold]
fn boot_failed(e: &crate::BootError) -> ! {
    std::eprintln!("bsdalloc: BootGlobal: {e}");
    std::process::abort()
}

#[cfg(not(feature = "std"))]
#[cold]
fn boot_failed(e: &crate::BootError) -> ! {
    panic!("bsdalloc: BootGlobal: {e}")
}

// SAFETY: boots, then forwards every call to `Global` (see its contract).
unsafe impl GlobalAlloc for BootGlobal {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.ensure_booted();
        // SAFETY: the caller's contract.
        unsafe { Global.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.ensure_booted();
        // SAFETY: the caller's contract.
        unsafe { Global.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract (the block came from `alloc`, so
        // the kernel is up).
        unsafe { Global.dealloc(p, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract.
        unsafe { Global.realloc(p, layout, new_size) }
    }
}
