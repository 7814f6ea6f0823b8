//! `malloc`, `free`, `realloc` (spec §5.2): the header before the
//! caller's bytes, the page-aligned layout of large requests, and the
//! kmem instance underneath.

use core::mem::size_of;
use core::ptr::{self, NonNull};

use bsdalloc_kmem::{KM_NOSLEEP, KM_SLEEP, Kmem};
use bsdalloc_platform::in_interrupt;
use bsdalloc_platform::sync::atomic::{AtomicPtr, Ordering};

use crate::flags::MFlags;
use crate::types::{MallocType, find_type};

/// `ALIGNBYTES + 1`: every block is at least this aligned (kmem's
/// smallest alignment; the header is a multiple of it).
pub const MALLOC_ALIGN: usize = 8;

/// NetBSD's `struct malloc_header`, right before the address `malloc`
/// returns: `mh_size`, and the type the block was allocated with (the
/// second word is ours: it lets `free` check its `type` argument, which
/// the statistics depend on). The header is aligned to [`MALLOC_ALIGN`];
/// on LP64 it is 16 bytes.
///
/// `mh_size` is `MALLOC_HEADER_SIZE + size` for a request of `size`
/// bytes: for requests under `PAGE_SIZE` it is also the size of the kmem
/// block (header first, caller's bytes after it); for requests of
/// `PAGE_SIZE` and more the kmem block is `PAGE_SIZE + size`, the header
/// is the last bytes of its first page, and the caller's bytes start on
/// the second page, page aligned.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MallocHeader {
    /// `mh_size`: header plus requested bytes.
    pub mh_size: usize,
    /// The type of the block; null once freed.
    pub mh_type: *const MallocType,
}

/// Bytes of [`MallocHeader`] (`sizeof(struct malloc_header)`).
pub const MALLOC_HEADER_SIZE: usize = size_of::<MallocHeader>();

const _: () = assert!(MALLOC_HEADER_SIZE.is_multiple_of(MALLOC_ALIGN));

/// The kmem instance underneath; null until the first use or
/// [`malloc_init`].
static BACKEND: AtomicPtr<Kmem> = AtomicPtr::new(ptr::null_mut());

/// Why [`malloc_init`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MallocError {
    /// malloc(9) is in use already (or was set up before) over another
    /// kmem instance.
    #[error("malloc_init: malloc(9) already uses a kmem instance")]
    AlreadyInitialised,
}

/// Put malloc(9) on the kmem instance `kmem` instead of the process-wide
/// default ([`bsdalloc_kmem::kmem`]), before any allocation: the instance
/// must outlive every block and is never changed afterwards.
///
/// ```
/// use bsdalloc_kmalloc::{M_TEMP, M_WAITOK, free, malloc, malloc_init};
/// use bsdalloc_kmem::{Kmem, KmemConfig};
///
/// static K: Kmem = Kmem::new();
/// K.bootstrap(KmemConfig::new().limit_pages(256)).unwrap();
/// malloc_init(&K).unwrap();
/// let p = malloc(64, &M_TEMP, M_WAITOK).unwrap();
/// unsafe { free(p.as_ptr(), &M_TEMP) };
/// ```
pub fn malloc_init(kmem: &'static Kmem) -> Result<(), MallocError> {
    let p = ptr::from_ref(kmem).cast_mut();
    match BACKEND.compare_exchange(ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Ok(()),
        Err(cur) if cur == p => Ok(()),
        Err(_) => Err(MallocError::AlreadyInitialised),
    }
}

/// The kmem instance malloc(9) allocates from.
#[inline(always)]
pub fn backend() -> &'static Kmem {
    let p = BACKEND.load(Ordering::Acquire);
    if p.is_null() {
        return default_backend();
    }
    // SAFETY: only `&'static Kmem`s are stored.
    unsafe { &*p }
}

#[cold]
#[inline(never)]
fn default_backend() -> &'static Kmem {
    let d = bsdalloc_kmem::kmem();
    let _ = malloc_init(d);
    backend()
}

/// Where a request goes: the kmem size and the offset of the caller's
/// bytes in the kmem block.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// `allocsize`: the kmem request.
    allocsize: usize,
    /// Offset of the returned address in the block.
    offset: usize,
}

#[inline(always)]
fn layout_for(ps: usize, size: usize) -> Option<Layout> {
    if size < ps {
        Some(Layout {
            allocsize: MALLOC_HEADER_SIZE + size,
            offset: MALLOC_HEADER_SIZE,
        })
    } else {
        // NetBSD lets this overflow into a size kmem refuses; here it is
        // refused before kmem sees it.
        Some(Layout {
            allocsize: ps.checked_add(size)?,
            offset: ps,
        })
    }
}

/// The layout a header says its block has: the inverse of `layout_for`.
#[inline(always)]
fn layout_of(ps: usize, mh_size: usize) -> Option<Layout> {
    if mh_size < MALLOC_HEADER_SIZE {
        return None;
    }
    if mh_size >= ps + MALLOC_HEADER_SIZE {
        Some(Layout {
            allocsize: (mh_size - MALLOC_HEADER_SIZE).checked_add(ps)?,
            offset: ps,
        })
    } else {
        Some(Layout {
            allocsize: mh_size,
            offset: MALLOC_HEADER_SIZE,
        })
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn waitok_in_interrupt(what: &str) -> ! {
    panic!("{what}(M_WAITOK): kmem(9) should not be used from the interrupt context")
}

#[cold]
#[inline(never)]
#[track_caller]
fn bad_flags(what: &str, flags: MFlags) -> ! {
    panic!("{what}: unknown flags in {flags:?}")
}

#[cold]
#[inline(never)]
#[track_caller]
fn never_fits(size: usize, ty: &MallocType, flags: MFlags) -> Option<NonNull<u8>> {
    if flags.may_sleep() && !flags.contains(MFlags::CANFAIL) {
        panic!(
            "malloc: out of space in kmem_map: {size} bytes of type `{ty}' can never be allocated (M_WAITOK without M_CANFAIL cannot fail)"
        );
    }
    None
}

/// `malloc(size, type, flags)`: `size` bytes (uninitialised unless
/// `M_ZERO`) accounted to `ty`, at least [`MALLOC_ALIGN`]-aligned, page
/// aligned when `size` is a page or more. Free with [`free`] and the same
/// type.
///
/// - `M_WAITOK` sleeps while the type is at its limit and while memory is
///   short, and never returns `None` — except with `M_CANFAIL` for a size
///   that can never be allocated.
/// - `M_NOWAIT` returns `None` at the type's limit or when memory is
///   short, and may be used in interrupt handlers (up to `IPL_VM`).
/// - `size` 0 is allowed, as in NetBSD: a distinct block with no usable
///   bytes.
///
/// # Panics
/// `M_WAITOK` in interrupt context ("malloc(M_WAITOK): kmem(9) should not
/// be used from the interrupt context"); unknown flag bits; a size that
/// can never be allocated with `M_WAITOK` and no `M_CANFAIL` ("malloc:
/// out of space in kmem_map: …"); a type that was detached or, defined
/// with `MALLOC_JUSTDEFINE!`, never attached.
#[inline]
#[track_caller]
pub fn malloc(size: usize, ty: &'static MallocType, flags: MFlags) -> Option<NonNull<u8>> {
    if flags.bits() & !MFlags::all().bits() != 0 {
        bad_flags("malloc", flags);
    }
    let sleep = flags.may_sleep();
    if sleep {
        if in_interrupt() {
            waitok_in_interrupt("malloc");
        }
        #[cfg(debug_assertions)]
        bsdalloc_platform::assert_sleepable("malloc(M_WAITOK)");
    }
    ty.check_attached();
    let k = backend();
    let Some(l) = layout_for(k.page_size(), size) else {
        return never_fits(size, ty, flags);
    };
    let Some(reserved) = k.allocated_size(l.allocsize) else {
        return never_fits(size, ty, flags);
    };
    let memuse = ty.charge(reserved, flags)?;
    let block = if sleep {
        // Try without sleeping first, so that a wait for the kernel map
        // shows in the type's "Kern Limit" column; KM_SLEEP never fails.
        match k.intr_alloc(l.allocsize, KM_NOSLEEP) {
            Some(b) => b,
            None => kmem_sleep(k, ty, l.allocsize),
        }
    } else {
        match k.intr_alloc(l.allocsize, KM_NOSLEEP) {
            Some(b) => b,
            None => {
                ty.uncharge(reserved);
                return None;
            }
        }
    };
    if flags.contains(MFlags::ZERO) {
        // SAFETY: the block has `allocsize` bytes.
        unsafe { block.as_ptr().write_bytes(0, l.allocsize) };
    }
    // SAFETY: `offset` is within the block (offset ≤ allocsize), and the
    // header fits before it (offset ≥ MALLOC_HEADER_SIZE); both are
    // multiples of MALLOC_ALIGN on a block at least that aligned.
    let p = unsafe {
        let p = block.add(l.offset);
        p.cast::<MallocHeader>().sub(1).write(MallocHeader {
            mh_size: MALLOC_HEADER_SIZE + size,
            mh_type: ty,
        });
        p
    };
    ty.account_alloc(reserved, memuse);
    Some(p)
}

#[cold]
#[inline(never)]
#[track_caller]
fn kmem_sleep(k: &Kmem, ty: &MallocType, allocsize: usize) -> NonNull<u8> {
    ty.account_mapblock();
    match k.intr_alloc(allocsize, KM_SLEEP) {
        Some(b) => b,
        None => unreachable!("kmem_alloc(KM_SLEEP) returned NULL"),
    }
}

/// Read and check the header of `p`, freed (or reallocated) as `ty`.
///
/// # Safety
/// `p` is non-null, and readable for the header before it.
#[inline(always)]
#[track_caller]
unsafe fn header(what: &str, p: NonNull<u8>, ty: &MallocType) -> MallocHeader {
    // SAFETY: the caller's contract.
    let h = unsafe { p.cast::<MallocHeader>().sub(1).read() };
    if !ptr::eq(h.mh_type, ty) {
        bad_type(what, p, ty, h);
    }
    h
}

#[cold]
#[inline(never)]
#[track_caller]
fn bad_type(what: &str, p: NonNull<u8>, ty: &MallocType, h: MallocHeader) -> ! {
    if h.mh_type.is_null() {
        panic!("{what}: {p:p} of type `{ty}' already freed (or not from malloc)");
    }
    match find_type(h.mh_type) {
        Some(owner) => {
            panic!("{what}: {p:p} was allocated as type `{owner}' but freed as type `{ty}'")
        }
        None => panic!(
            "{what}: {p:p} is not a malloc(9) block, or its header was overwritten (given type `{ty}')"
        ),
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn bad_size(what: &str, p: NonNull<u8>, ty: &MallocType, mh_size: usize) -> ! {
    panic!("{what}: {p:p} of type `{ty}': header size {mh_size:#x} is corrupt")
}

/// `free(addr, type)`: give back a block from [`malloc`] or [`realloc`];
/// its size comes from the header. Callable in interrupt handlers (up to
/// `IPL_VM`). Wakes `M_WAITOK` callers asleep at the type's limit when
/// this brings the type below it.
///
/// # Panics
/// `addr` null ("free(NULL, …): freeing NULL is illegal", as in NetBSD);
/// a header whose type is not `ty` — a block of another type ("… was
/// allocated as type \`A' but freed as type \`B'"), one already freed
/// whose memory was not reused yet, or no malloc block at all; a header
/// size that cannot be one of ours.
///
/// # Safety
/// `addr` came from [`malloc`] or [`realloc`] (with any type: a wrong one
/// is caught) and is not used afterwards. A pointer that never came from
/// malloc, or one freed and reused since, is not always caught.
#[inline]
#[track_caller]
pub unsafe fn free(addr: *mut u8, ty: &'static MallocType) {
    let Some(p) = NonNull::new(addr) else {
        panic!("free(NULL, {ty}): freeing NULL is illegal");
    };
    // SAFETY: the caller's contract: a malloc block has its header before
    // it.
    let h = unsafe { header("free", p, ty) };
    let k = backend();
    let Some(l) = layout_of(k.page_size(), h.mh_size) else {
        bad_size("free", p, ty, h.mh_size);
    };
    if l.offset != MALLOC_HEADER_SIZE && !p.as_ptr().addr().is_multiple_of(l.offset) {
        bad_size("free", p, ty, h.mh_size);
    }
    let Some(reserved) = k.allocated_size(l.allocsize) else {
        bad_size("free", p, ty, h.mh_size);
    };
    // SAFETY: the header is ours (checked above); mark the block freed so
    // that a second free of it is caught while the memory is not reused.
    // The block starts `offset` bytes before `p`.
    unsafe {
        (*p.cast::<MallocHeader>().sub(1).as_ptr()).mh_type = ptr::null();
        let block = p.sub(l.offset);
        k.intr_free(block.as_ptr(), l.allocsize);
    }
    ty.account_free(reserved);
}

/// `realloc(addr, size, type, flags)`:
///
/// - `addr` null: [`malloc`]`(size, ty, flags)`;
/// - `size` 0: [`free`]`(addr, ty)`, and `None`;
/// - `size` within the block's usable bytes (`mh_size` − header): `addr`
///   itself — realloc never shrinks a block;
/// - otherwise a new block of `size` bytes, the old usable bytes copied
///   into it, and the old block freed. If that allocation fails
///   (`M_NOWAIT`, `M_CANFAIL`), `None`, and `addr` stays valid and
///   unchanged.
///
/// With `M_ZERO` a new block is zeroed before the copy, so its bytes past
/// the old ones are zero.
///
/// # Panics
/// As [`malloc`] and [`free`].
///
/// # Safety
/// `addr` is null or a live block from [`malloc`] / [`realloc`]; when the
/// result is not `addr` (and `size` is not 0 or the result is `Some`),
/// `addr` is not used afterwards.
#[track_caller]
pub unsafe fn realloc(
    addr: *mut u8,
    size: usize,
    ty: &'static MallocType,
    flags: MFlags,
) -> Option<NonNull<u8>> {
    if flags.bits() & !MFlags::all().bits() != 0 {
        bad_flags("realloc", flags);
    }
    if flags.may_sleep() && in_interrupt() {
        waitok_in_interrupt("realloc");
    }
    let Some(p) = NonNull::new(addr) else {
        return malloc(size, ty, flags);
    };
    if size == 0 {
        // SAFETY: the caller's contract.
        unsafe { free(addr, ty) };
        return None;
    }
    // SAFETY: the caller's contract.
    let h = unsafe { header("realloc", p, ty) };
    let Some(cur) = h.mh_size.checked_sub(MALLOC_HEADER_SIZE) else {
        bad_size("realloc", p, ty, h.mh_size);
    };
    if size <= cur {
        return Some(p);
    }
    let n = malloc(size, ty, flags)?;
    // SAFETY: `cur` usable bytes in the old block, at least as many in the
    // new one (`size` > `cur`); two live blocks do not overlap.
    unsafe {
        ptr::copy_nonoverlapping(p.as_ptr(), n.as_ptr(), cur);
        free(addr, ty);
    }
    Some(n)
}

/// The usable bytes of a block (`mh_size` minus the header): the size it
/// was allocated with. What [`realloc`] compares a new size against.
///
/// # Panics
/// As [`free`], for a block whose header is not of type `ty`.
///
/// # Safety
/// `addr` is a live block from [`malloc`] / [`realloc`].
#[track_caller]
pub unsafe fn malloc_usable_size(addr: NonNull<u8>, ty: &MallocType) -> usize {
    // SAFETY: the caller's contract.
    let h = unsafe { header("malloc_usable_size", addr, ty) };
    h.mh_size.saturating_sub(MALLOC_HEADER_SIZE)
}

#[cfg(all(test, not(bsdalloc_loom)))]
mod tests {
    use super::*;

    #[test]
    fn layouts_invert() {
        for ps in [4096usize, 16384] {
            for size in [
                0,
                1,
                7,
                8,
                100,
                ps - 17,
                ps - 16,
                ps - 1,
                ps,
                ps + 1,
                5 * ps,
            ] {
                let l = layout_for(ps, size).unwrap();
                let back = layout_of(ps, MALLOC_HEADER_SIZE + size).unwrap();
                assert_eq!(
                    (l.allocsize, l.offset),
                    (back.allocsize, back.offset),
                    "ps {ps} size {size}"
                );
                if size < ps {
                    assert_eq!(l.allocsize, MALLOC_HEADER_SIZE + size);
                    assert_eq!(l.offset, MALLOC_HEADER_SIZE);
                } else {
                    assert_eq!(l.allocsize, ps + size);
                    assert_eq!(l.offset, ps);
                }
            }
        }
        assert!(layout_for(4096, usize::MAX - 100).is_none());
        assert!(layout_of(4096, 3).is_none());
    }

    #[test]
    fn header_is_two_words() {
        assert_eq!(MALLOC_HEADER_SIZE, 2 * size_of::<usize>());
        assert_eq!(core::mem::offset_of!(MallocHeader, mh_size), 0);
    }
}
