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
//! Without the cfg every hook is an empty inline function.

#[cfg(bsdalloc_asan)]
use core::ffi::c_void;
use core::ptr::NonNull;

#[cfg(bsdalloc_asan)]
unsafe extern "C" {
    // AddressSanitizer's public interface (sanitizer/asan_interface.h).
    fn __asan_poison_memory_region(addr: *const c_void, size: usize);
    fn __asan_unpoison_memory_region(addr: *const c_void, size: usize);
}

/// Mark `len` bytes at `p` unaddressable (a no-op without the cfg).
#[inline(always)]
pub(crate) fn poison(p: *const u8, len: usize) {
    #[cfg(bsdalloc_asan)]
    // SAFETY: only the shadow memory changes; any address is accepted.
    unsafe {
        __asan_poison_memory_region(p.cast(), len)
    };
    #[cfg(not(bsdalloc_asan))]
    let _ = (p, len);
}

/// Mark `len` bytes at `p` addressable again (a no-op without the cfg).
#[inline(always)]
pub(crate) fn unpoison(p: *const u8, len: usize) {
    #[cfg(bsdalloc_asan)]
    // SAFETY: as in `poison`.
    unsafe {
        __asan_unpoison_memory_region(p.cast(), len)
    };
    #[cfg(not(bsdalloc_asan))]
    let _ = (p, len);
}

/// An object handed out for `size` bytes of a `class_size` class: the
/// object is addressable for the debug features' checks; call
/// [`allocated`] after them.
#[inline(always)]
pub(crate) fn handing_out(p: NonNull<u8>, class_size: usize) {
    unpoison(p.as_ptr(), class_size);
}

/// The caller may use `size` bytes; the class tail stays poisoned.
#[inline(always)]
pub(crate) fn allocated(p: NonNull<u8>, size: usize, class_size: usize) {
    poison(p.as_ptr().wrapping_add(size), class_size - size);
}

/// A cache destructor that unpoisons an object before its pool takes it
/// back (the pool writes its free-list links and debug patterns there).
#[cfg(bsdalloc_asan)]
#[derive(Debug)]
pub(crate) struct UnpoisonDtor(usize);

#[cfg(bsdalloc_asan)]
impl UnpoisonDtor {
    pub(crate) const fn all() -> [UnpoisonDtor; crate::classes::MAX_CLASSES] {
        let mut a = [const { UnpoisonDtor(0) }; crate::classes::MAX_CLASSES];
        let mut i = 0;
        while i < a.len() {
            a[i] = UnpoisonDtor(crate::classes::CANDIDATES[i].0);
            i += 1;
        }
        a
    }
}

#[cfg(bsdalloc_asan)]
impl bsdalloc_pool_cache::ObjectDtor for UnpoisonDtor {
    fn destruct(&self, obj: NonNull<u8>) {
        unpoison(obj.as_ptr(), self.0);
    }
}
