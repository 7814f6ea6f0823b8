//! The allocator proper: C sizes and alignments onto kmem, and `free`
//! without a size.
//!
//! The `header` feature (a measurement, see the crate docs) replaces the
//! lookup with a size header; the lookup's items are unused then.
#![cfg_attr(feature = "header", allow(dead_code, unused_imports, unused_variables))]

use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};

use bsdalloc::kmem::{KM_NOSLEEP, Kmem, kmem};

/// What `malloc` guarantees, as glibc on x86-64: `2 * sizeof(size_t)`.
pub(crate) const MIN_ALIGN: usize = 16;

/// The largest alignment above a page handed out so far: how far back
/// `free` looks for the allocation an over-aligned pointer lies in.
static MAX_ALIGN: AtomicUsize = AtomicUsize::new(0);
static BIG_ALIGNED_LIVE: AtomicUsize = AtomicUsize::new(0);
static LEAKED: AtomicUsize = AtomicUsize::new(0);

/// Marks the header of an over-page-aligned block (xored with its
/// address, so a stale or copied header does not match elsewhere).
const ALIGNED_MAGIC: usize = 0x6273_6461_6c69_676e; // "bsdalign"

/// This crate's counters, for the report.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Counters {
    pub(crate) big_aligned_live: usize,
    pub(crate) leaked: usize,
}

pub(crate) fn counters() -> Counters {
    Counters {
        big_aligned_live: BIG_ALIGNED_LIVE.load(Ordering::Relaxed),
        leaked: LEAKED.load(Ordering::Relaxed),
    }
}

#[inline(always)]
pub(crate) fn set_errno(e: i32) {
    // SAFETY: this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

#[cold]
pub(crate) fn enomem() -> *mut u8 {
    set_errno(libc::ENOMEM);
    ptr::null_mut()
}

/// The kmem size for `n` bytes of `malloc`: at least one byte (`malloc(0)`
/// returns a unique pointer, as glibc's does), rounded to 16 so that the
/// class is one whose objects are 16-aligned (see the crate docs,
/// "Alignment"). `None` on overflow.
#[inline(always)]
fn kmem_size(n: usize) -> Option<usize> {
    n.max(1).checked_next_multiple_of(MIN_ALIGN)
}

#[inline(always)]
fn or_enomem(p: Option<NonNull<u8>>) -> *mut u8 {
    match p {
        Some(p) => p.as_ptr(),
        None => enomem(),
    }
}

/// Whether `free`'s size lookup works on this kernel.
pub(crate) fn lookup_works() -> bool {
    let k = kmem();
    let Some(p) = k.intr_alloc(MIN_ALIGN, KM_NOSLEEP) else {
        return false;
    };
    let ok = k.lookup_size(p.as_ptr()).is_some();
    // SAFETY: allocated just above with this size.
    unsafe { k.intr_free(p.as_ptr(), MIN_ALIGN) };
    ok
}

/// `malloc(n)` (`calloc` with `zero`).
#[inline(always)]
pub(crate) fn alloc(n: usize, zero: bool) -> *mut u8 {
    let Some(s) = kmem_size(n) else {
        return enomem();
    };
    #[cfg(feature = "header")]
    return header::alloc(s, zero);
    #[cfg(not(feature = "header"))]
    {
        let k = kmem();
        let p = if zero {
            k.intr_zalloc(s, KM_NOSLEEP)
        } else {
            k.intr_alloc(s, KM_NOSLEEP)
        };
        let p = or_enomem(p);
        debug_assert!(p.is_null() || p.addr().is_multiple_of(MIN_ALIGN));
        if s > COLOUR_FROM && !p.is_null() {
            return colour(k, p, s, zero);
        }
        p
    }
}

/// Sizes above this may come page aligned (kmem's 4096-byte and larger
/// classes, whole pages).
const COLOUR_FROM: usize = 2048;
/// A colour step: a cache line (and a multiple of [`MIN_ALIGN`]).
const COLOUR_STEP: usize = 64;

/// **Colouring.** A block that kmem hands out page aligned (a class of a
/// page or more, whole pages) starts at an offset inside its first page
/// when its size leaves room: 0, 64, 128 … bytes, by the page's number,
/// as pool(9) colours the first item of successive pages. Page-aligned
/// buffers 4K-alias each other and the kernel's page-cache pages: the
/// kernel's `read`/`pread` copy into them (`rep movsb`) ran 3.5 times
/// slower, and sqlite3, whose page buffers are 4096 + ~270 bytes, spent
/// 30% of its time there instead of 9% (K8). `free` finds the start again
/// from the page (`p` rounded down; see [`find`]).
///
/// `zero`: `kmem_zalloc` cleared the `s` bytes at `p` (a class object) or
/// every page; the colour's bytes past `s` are cleared here.
#[inline(never)]
#[cfg(not(feature = "header"))]
fn colour(k: &Kmem, p: *mut u8, s: usize, zero: bool) -> *mut u8 {
    let ps = k.page_size();
    let Some(a) = k.allocated_size(s) else {
        return p;
    };
    if a < ps || !p.addr().is_multiple_of(ps) {
        return p;
    }
    // Colours stay inside the first page.
    let slots = (a - s).min(ps - COLOUR_STEP) / COLOUR_STEP + 1;
    let c = (p.addr() / ps % slots) * COLOUR_STEP;
    if zero && c != 0 {
        // SAFETY: `s + c <= a`: inside the allocation.
        unsafe { p.add(s).write_bytes(0, c) };
    }
    p.wrapping_add(c)
}

/// `n` bytes aligned to `align` (a power of two).
pub(crate) fn alloc_aligned(align: usize, n: usize) -> *mut u8 {
    if align <= MIN_ALIGN {
        return alloc(n, false);
    }
    let Some(s) = kmem_size(n) else {
        return enomem();
    };
    #[cfg(feature = "header")]
    return header::alloc_aligned(align, s);
    #[cfg(not(feature = "header"))]
    {
        let k = kmem();
        let ps = k.page_size();
        if align <= ps {
            // Raise the size until its class is aligned enough: classes
            // from the cache line up are line aligned, page classes and
            // whole pages page aligned (the facade's `Global` does the
            // same). `free` finds the raised size from the address.
            let line = k.size_classes().coherency_unit();
            for t in [s, s.max(align), s.max(line), s.max(ps)] {
                if k.alignment_of(t).is_some_and(|a| a >= align) {
                    return or_enomem(k.intr_alloc(t, KM_NOSLEEP));
                }
            }
            return enomem();
        }
        big_aligned(k, align, s)
    }
}

/// An alignment above the page: whole pages of `n + align` bytes from kmem
/// and the aligned address inside them. If that is not the first page,
/// the 16 bytes before it hold the first page's address and a check word;
/// `free` finds the allocation by walking back from the address to the
/// page tag of its first page (at most `align` bytes), then checks the
/// header (see [`free_unknown`]).
#[cfg(not(feature = "header"))]
fn big_aligned(k: &Kmem, align: usize, n: usize) -> *mut u8 {
    let ps = k.page_size();
    let Some(total) = n
        .checked_next_multiple_of(ps)
        .and_then(|b| b.checked_add(align - ps))
    else {
        return enomem();
    };
    let Some(base) = k.intr_alloc(total, KM_NOSLEEP) else {
        return enomem();
    };
    let base = base.as_ptr();
    let off = base.align_offset(align);
    if off == 0 {
        // The first page: an ordinary large allocation to `free`.
        return base;
    }
    MAX_ALIGN.fetch_max(align, Ordering::Relaxed);
    BIG_ALIGNED_LIVE.fetch_add(1, Ordering::Relaxed);
    let p = base.wrapping_add(off);
    // SAFETY: `off` is a nonzero multiple of the page (both `base` and
    // `align` are page multiples), so the 16 bytes before `p` are inside
    // the allocation; `p` is 16-aligned.
    unsafe {
        let h = p.sub(16).cast::<usize>();
        h.write(base.addr());
        h.add(1).write(ALIGNED_MAGIC ^ p.addr());
    }
    p
}

/// What `free` and `realloc` know of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Block {
    /// A kmem allocation of this size (its class's object size, or its
    /// whole pages): `kmem_free(p, size)`.
    Kmem(usize),
    /// An over-page-aligned block inside the kmem allocation at `base` of
    /// `size` bytes.
    Inner { base: *mut u8, size: usize },
    /// A coloured block (see [`colour`]) inside the kmem allocation at
    /// `base` of `size` bytes.
    Coloured { base: *mut u8, size: usize },
}

impl Block {
    /// The bytes usable at `p`.
    pub(crate) fn usable(self, p: *const u8) -> usize {
        match self {
            Block::Kmem(s) => s,
            Block::Inner { base, size } | Block::Coloured { base, size } => {
                size - (p.addr() - base.addr())
            }
        }
    }
}

/// The block at `p`, a pointer of ours (`None`: not one).
///
/// # Safety
/// The kernel is up.
#[inline(always)]
#[cfg(not(feature = "header"))]
pub(crate) unsafe fn find(p: *mut u8) -> Option<Block> {
    let k = kmem();
    match k.lookup_size(p) {
        // Objects of a page or more start on a page: an offset is a colour.
        Some(s) if s >= k.page_size() && !p.addr().is_multiple_of(k.page_size()) => {
            Some(Block::Coloured {
                base: p.with_addr(p.addr() & !(k.page_size() - 1)),
                size: s,
            })
        }
        Some(s) => Some(Block::Kmem(s)),
        None => find_coloured_pages(k, p).or_else(|| find_inner(p)),
    }
}

/// A coloured block of whole pages: the page tag answers only for the
/// first page's own address.
#[inline(never)]
#[cfg(not(feature = "header"))]
fn find_coloured_pages(k: &Kmem, p: *mut u8) -> Option<Block> {
    let ps = k.page_size();
    let off = p.addr() % ps;
    if off == 0 || !off.is_multiple_of(COLOUR_STEP) {
        return None;
    }
    let base = p.with_addr(p.addr() - off);
    // Tagged at its own address: the first page of whole pages.
    let size = k.lookup_size(base)?;
    (size >= ps).then_some(Block::Coloured { base, size })
}

/// The page tags say nothing of `p`: an over-page-aligned block, or not
/// ours. Walk back a page at a time, at most the largest such alignment
/// handed out, to the first tagged page: ours if that is the first page
/// of a large allocation reaching past `p` and the header before `p` says
/// so. Every page read is inside that live allocation.
#[cold]
#[inline(never)]
#[cfg(not(feature = "header"))]
fn find_inner(p: *mut u8) -> Option<Block> {
    let k = kmem();
    let ps = k.page_size();
    let max = MAX_ALIGN.load(Ordering::Relaxed);
    if max == 0 || !p.addr().is_multiple_of(ps) {
        return None;
    }
    let mut back = ps;
    while back < max {
        let q = p.addr().checked_sub(back)?;
        let q = p.with_addr(q);
        if let Some(size) = k.lookup_size(q) {
            if q.addr() + size <= p.addr() {
                return None;
            }
            // SAFETY: `p - 16` lies in the live allocation at `q` (it
            // reaches past `p`, and `p - q >= ps`).
            let (base, check) = unsafe {
                let h = p.sub(16).cast::<usize>();
                (h.read(), h.add(1).read())
            };
            return (base == q.addr() && check == ALIGNED_MAGIC ^ p.addr())
                .then_some(Block::Inner { base: q, size });
        }
        back += ps;
    }
    None
}

/// Give `b`, found at `p`, back to kmem.
///
/// # Safety
/// `b` is what [`find`] said of `p`, which is not used again.
#[inline(always)]
#[cfg(not(feature = "header"))]
pub(crate) unsafe fn release(p: *mut u8, b: Block) {
    match b {
        // SAFETY: the caller's contract: a live kmem allocation of `s`.
        Block::Kmem(s) => unsafe { kmem().intr_free(p, s) },
        Block::Inner { base, size } => {
            // SAFETY: as above, the allocation `p` lies in.
            unsafe {
                p.sub(16).cast::<usize>().add(1).write(0);
                kmem().intr_free(base, size);
            }
            BIG_ALIGNED_LIVE.fetch_sub(1, Ordering::Relaxed);
        }
        // SAFETY: as above, the allocation `p` lies in.
        Block::Coloured { base, size } => unsafe { kmem().intr_free(base, size) },
    }
}

/// `free(p)` of a pointer that is not null and not the bootstrap arena's.
///
/// # Safety
/// The kernel is up; `p` is not used again.
#[inline(always)]
pub(crate) unsafe fn free(p: *mut u8) {
    #[cfg(feature = "header")]
    // SAFETY: the caller's contract.
    return unsafe { header::free(p) };
    #[cfg(not(feature = "header"))]
    // SAFETY: the caller's contract; `release` gets what `find` said.
    unsafe {
        match find(p) {
            Some(b) => release(p, b),
            None => invalid("free", p),
        }
    }
}

/// `free` of something this allocator never returned (or returned and
/// took back): glibc's message, and abort. Always on: the lookup found
/// nothing already, so checking costs the valid frees nothing.
#[cold]
#[inline(never)]
pub(crate) fn invalid(what: &str, p: *const u8) -> ! {
    crate::boot::die(format_args!("{what}(): invalid pointer {p:p}"))
}

/// A free that came in while this thread was inside the allocator and
/// cannot go to kmem without recursing: kept (counted in the report).
pub(crate) fn leak() {
    LEAKED.fetch_add(1, Ordering::Relaxed);
}

/// The usable size of the block at `p` (not null, not the bootstrap
/// arena's).
///
/// # Safety
/// The kernel is up; `p` is a live block of ours.
pub(crate) unsafe fn usable_size(p: *mut u8) -> usize {
    #[cfg(feature = "header")]
    // SAFETY: the caller's contract.
    return unsafe { header::usable(p) };
    #[cfg(not(feature = "header"))]
    // SAFETY: the caller's contract.
    match unsafe { find(p) } {
        Some(b) => b.usable(p),
        None => invalid("malloc_usable_size", p),
    }
}

/// `realloc(p, n)` for `p` not null and not the bootstrap arena's, `n`
/// not 0.
///
/// # Safety
/// The kernel is up; `p` is a live block of ours, not used again unless
/// null is returned.
pub(crate) unsafe fn realloc(p: *mut u8, n: usize) -> *mut u8 {
    let Some(s) = kmem_size(n) else {
        return enomem();
    };
    #[cfg(feature = "header")]
    // SAFETY: the caller's contract.
    let old = unsafe { header::usable(p) };
    #[cfg(not(feature = "header"))]
    // SAFETY: the caller's contract.
    let old = match unsafe { find(p) } {
        Some(Block::Kmem(old)) => {
            // SAFETY: a live allocation of `old` bytes (the lookup).
            if unsafe { kmem().resize_in_place(NonNull::new_unchecked(p), old, s) } {
                return p;
            }
            old
        }
        Some(Block::Coloured { base, size }) => {
            let off = p.addr() - base.addr();
            // SAFETY: a live allocation of `size` bytes at `base`.
            if s.checked_add(off).is_some_and(|t| unsafe {
                kmem().resize_in_place(NonNull::new_unchecked(base), size, t)
            }) {
                return p;
            }
            size - off
        }
        Some(b) => b.usable(p),
        None => invalid("realloc", p),
    };
    let q = alloc(n, false);
    if !q.is_null() {
        // SAFETY: disjoint live blocks of at least the copied length; then
        // `p` goes back.
        unsafe {
            ptr::copy_nonoverlapping(p, q, old.min(n));
            free(p);
        }
    }
    q
}

/// The measured alternative to the page-tag lookup: malloc(9)'s way, a
/// header before each block holding the size asked of kmem (16 bytes,
/// to keep the 16-byte alignment).
#[cfg(feature = "header")]
mod header {
    use super::*;

    const HDR: usize = 16;

    #[inline(always)]
    pub(super) fn alloc(s: usize, zero: bool) -> *mut u8 {
        let Some(t) = s.checked_add(HDR) else {
            return enomem();
        };
        let p = if zero {
            kmem().intr_zalloc(t, KM_NOSLEEP)
        } else {
            kmem().intr_alloc(t, KM_NOSLEEP)
        };
        let Some(p) = p else { return enomem() };
        // SAFETY: `t` bytes of ours; the header is the first 16.
        unsafe {
            p.as_ptr().cast::<usize>().write(t);
            p.as_ptr().cast::<usize>().add(1).write(0);
            p.as_ptr().add(HDR)
        }
    }

    pub(super) fn alloc_aligned(align: usize, s: usize) -> *mut u8 {
        let Some(t) = s.checked_add(align).and_then(|t| t.checked_add(HDR)) else {
            return enomem();
        };
        let Some(base) = kmem().intr_alloc(t, KM_NOSLEEP) else {
            return enomem();
        };
        let base = base.as_ptr();
        let p = base.wrapping_add(HDR);
        let p = p.wrapping_add(p.align_offset(align));
        // SAFETY: `p - 16 >= base` and `p + s <= base + t`.
        unsafe {
            p.sub(HDR).cast::<usize>().write(t);
            p.sub(HDR)
                .cast::<usize>()
                .add(1)
                .write(p.addr() - base.addr());
        }
        p
    }

    /// # Safety
    /// `p` is a live block of this variant.
    #[inline(always)]
    pub(super) unsafe fn free(p: *mut u8) {
        // SAFETY: the caller's contract: a header precedes `p`.
        unsafe {
            let h = p.sub(HDR).cast::<usize>();
            let (t, off) = (h.read(), h.add(1).read());
            kmem().intr_free(p.sub(off + HDR * usize::from(off == 0)), t);
        }
    }

    /// # Safety
    /// `p` is a live block of this variant.
    pub(super) unsafe fn usable(p: *mut u8) -> usize {
        // SAFETY: the caller's contract.
        unsafe {
            let h = p.sub(HDR).cast::<usize>();
            let (t, off) = (h.read(), h.add(1).read());
            t - off.max(HDR)
        }
    }
}
