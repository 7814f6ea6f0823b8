//! Tracking hooks for memory checkers, so that they see inside kmem's
//! slabs: a pool page is one block to the outside, and a use after free or
//! an overrun into the rest of a size class's object would go unseen.
//!
//! Under `--cfg bsdalloc_asan` (with `-Zsanitizer=address`; `cargo xtask
//! ci --full` runs the suite so) a freed object is poisoned in
//! AddressSanitizer's shadow memory for its whole class size, and an
//! allocated one is unpoisoned for the bytes asked for, its class tail
//! left poisoned. The caches' destructor unpoisons an object before it
//! goes back to its pool, which keeps its own links in free items. Large
//! allocations are not tracked: their pages go back to the kernel map and
//! are reused by pools for their own headers.
//!
//! Under `--cfg bsdalloc_valgrind` the same hooks make Valgrind client
//! requests (through the `crabgrind` crate): an allocated object is a
//! `VALGRIND_MALLOCLIKE_BLOCK` of the bytes asked for, its class tail
//! `VALGRIND_MAKE_MEM_NOACCESS`; a free is a `VALGRIND_FREELIKE_BLOCK`
//! (memcheck reports an invalid or double free there), the whole object
//! left no-access while it sits in a cache. Around kmem's own reads and
//! writes of an object (the debug footer, redzone and poison, the pool's
//! free-list links once the destructor has run) it is
//! `VALGRIND_MAKE_MEM_DEFINED`, as pool memory is to memcheck outside any
//! block. Large allocations are blocks too (leaks and overruns past the
//! size inside the last page are seen); when freed, their pages are
//! defined memory again, since the map may hand them to a pool, so a use
//! after free of a large allocation is not seen. Natively a client
//! request is a few no-op instructions: the same build runs without
//! Valgrind.
//!
//! Without either cfg every hook is an empty inline function. Guard mode
//! (`guard`) has no hooks: its allocations end at unmapped guard pages,
//! and freed address space stays unmapped for a while.

#[cfg(bsdalloc_asan)]
use core::ffi::c_void;
use core::ptr::NonNull;

#[cfg(bsdalloc_asan)]
unsafe extern "C" {
    // AddressSanitizer's public interface (sanitizer/asan_interface.h).
    fn __asan_poison_memory_region(addr: *const c_void, size: usize);
    fn __asan_unpoison_memory_region(addr: *const c_void, size: usize);
}

/// Mark `len` bytes at `p` unaddressable for ASan (a no-op without the
/// cfg).
#[inline(always)]
fn poison(p: *const u8, len: usize) {
    #[cfg(bsdalloc_asan)]
    // SAFETY: only the shadow memory changes; any address is accepted.
    unsafe {
        __asan_poison_memory_region(p.cast(), len)
    };
    #[cfg(not(bsdalloc_asan))]
    let _ = (p, len);
}

/// Mark `len` bytes at `p` addressable again for ASan (a no-op without
/// the cfg).
#[inline(always)]
fn unpoison(p: *const u8, len: usize) {
    #[cfg(bsdalloc_asan)]
    // SAFETY: as in `poison`.
    unsafe {
        __asan_unpoison_memory_region(p.cast(), len)
    };
    #[cfg(not(bsdalloc_asan))]
    let _ = (p, len);
}

/// Valgrind's client requests (memcheck's, and the core's heap-block
/// ones). Each changes only Valgrind's view of the memory, and is a no-op
/// when not running on Valgrind.
#[cfg(bsdalloc_valgrind)]
mod vg {
    use crabgrind::memcheck::{self, MemState};

    fn mark(p: *const u8, len: usize, state: MemState) {
        // The result only says whether the range was addressable (and is
        // inverted natively): nothing to act on.
        let _ = memcheck::mark_mem(p.cast_mut().cast(), len, state);
    }

    /// `VALGRIND_MAKE_MEM_NOACCESS`.
    pub(super) fn noaccess(p: *const u8, len: usize) {
        mark(p, len, MemState::NoAccess);
    }

    /// `VALGRIND_MAKE_MEM_DEFINED`.
    pub(super) fn defined(p: *const u8, len: usize) {
        mark(p, len, MemState::Defined);
    }

    /// `VALGRIND_MALLOCLIKE_BLOCK(p, size, 0, zeroed)`: a heap block of
    /// `size` bytes, undefined unless `zeroed`, no redzone (the tail is
    /// marked apart).
    pub(super) fn malloclike(p: *const u8, size: usize, zeroed: bool) {
        memcheck::alloc::malloc(p.cast_mut().cast(), size, 0, zeroed);
    }

    /// `VALGRIND_FREELIKE_BLOCK(p, 0)`.
    pub(super) fn freelike(p: *const u8) {
        memcheck::alloc::free(p.cast_mut().cast(), 0);
    }

    /// `VALGRIND_RESIZEINPLACE_BLOCK(p, old, new, 0)`.
    pub(super) fn resize(p: *const u8, old: usize, new: usize) {
        memcheck::alloc::resize_inplace(p.cast_mut().cast(), old, new, 0);
    }
}

/// An object handed out for `size` bytes of a `class_size` class: the
/// object is addressable (and, to memcheck, defined) for the debug
/// features' checks; call [`allocated`] after them.
#[inline(always)]
pub(crate) fn handing_out(p: NonNull<u8>, class_size: usize) {
    unpoison(p.as_ptr(), class_size);
    #[cfg(bsdalloc_valgrind)]
    vg::defined(p.as_ptr(), class_size);
}

/// The caller may use `size` bytes; the class tail stays poisoned (no
/// access to memcheck).
///
/// The bytes are undefined to memcheck even for `kmem_zalloc`, which
/// zeroes them right after: its writes define them.
#[inline(always)]
pub(crate) fn allocated(p: NonNull<u8>, size: usize, class_size: usize) {
    poison(p.as_ptr().wrapping_add(size), class_size - size);
    #[cfg(bsdalloc_valgrind)]
    {
        vg::malloclike(p.as_ptr(), size, false);
        vg::noaccess(p.as_ptr().wrapping_add(size), class_size - size);
    }
}

/// An allocation of `old` bytes now holds `new` in place, within `room`
/// bytes (its class, or its whole pages): usable up to `new`, the rest
/// poisoned (no access to memcheck).
#[inline(always)]
pub(crate) fn resized(p: NonNull<u8>, old: usize, new: usize, room: usize) {
    unpoison(p.as_ptr(), new);
    poison(p.as_ptr().wrapping_add(new), room - new);
    #[cfg(bsdalloc_valgrind)]
    {
        vg::resize(p.as_ptr(), old, new);
        vg::noaccess(p.as_ptr().wrapping_add(new), room - new);
    }
    #[cfg(not(bsdalloc_valgrind))]
    let _ = old;
}

/// An object is being freed: it is a block no more, and addressable
/// (defined) for the footer, redzone and poison work; call [`freed`]
/// after it.
#[inline(always)]
pub(crate) fn freeing(p: NonNull<u8>, class_size: usize) {
    unpoison(p.as_ptr(), class_size);
    #[cfg(bsdalloc_valgrind)]
    {
        // First, so that a double or foreign free is reported as such,
        // before kmem's own checks read the object.
        vg::freelike(p.as_ptr());
        vg::defined(p.as_ptr(), class_size);
    }
}

/// The object goes into its cache: no access until handed out again, or
/// until the destructor gives it back to its pool.
#[inline(always)]
pub(crate) fn freed(p: NonNull<u8>, class_size: usize) {
    poison(p.as_ptr(), class_size);
    #[cfg(bsdalloc_valgrind)]
    vg::noaccess(p.as_ptr(), class_size);
}

/// A large allocation of `size` bytes over `bytes` of whole pages: a
/// block of `size` bytes to memcheck (defined if the map `zeroed` it:
/// `kmem_zalloc` writes nothing more), the rest of the last page no
/// access. Not tracked for ASan.
#[inline(always)]
pub(crate) fn large_allocated(p: NonNull<u8>, size: usize, bytes: usize, zeroed: bool) {
    #[cfg(bsdalloc_valgrind)]
    {
        vg::malloclike(p.as_ptr(), size, zeroed);
        vg::noaccess(p.as_ptr().wrapping_add(size), bytes - size);
    }
    #[cfg(not(bsdalloc_valgrind))]
    let _ = (p, size, bytes, zeroed);
}

/// A large allocation is being freed: no block any more, and its pages
/// are plain (defined) memory again before the map takes them back.
#[inline(always)]
pub(crate) fn large_freeing(p: NonNull<u8>, bytes: usize) {
    #[cfg(bsdalloc_valgrind)]
    {
        vg::freelike(p.as_ptr());
        vg::defined(p.as_ptr(), bytes);
    }
    #[cfg(not(bsdalloc_valgrind))]
    let _ = (p, bytes);
}

/// A cache destructor that makes an object addressable (and defined to
/// memcheck) before its pool takes it back (the pool writes its free-list
/// links and debug patterns there, and reads them back).
#[cfg(any(bsdalloc_asan, bsdalloc_valgrind))]
#[derive(Debug)]
pub(crate) struct TrackDtor(usize);

#[cfg(any(bsdalloc_asan, bsdalloc_valgrind))]
impl TrackDtor {
    pub(crate) const fn all() -> [TrackDtor; crate::classes::MAX_CLASSES] {
        let mut a = [const { TrackDtor(0) }; crate::classes::MAX_CLASSES];
        let mut i = 0;
        while i < a.len() {
            a[i] = TrackDtor(crate::classes::CANDIDATES[i].0);
            i += 1;
        }
        a
    }
}

#[cfg(any(bsdalloc_asan, bsdalloc_valgrind))]
impl bsdalloc_pool_cache::ObjectDtor for TrackDtor {
    fn destruct(&self, obj: NonNull<u8>) {
        unpoison(obj.as_ptr(), self.0);
        #[cfg(bsdalloc_valgrind)]
        vg::defined(obj.as_ptr(), self.0);
    }
}
