//! NetBSD's entry points by name, over the process-wide default instance.

use core::ptr::NonNull;

use crate::flags::KmFlags;
use crate::kmem::{Kmem, KmemConfig, KmemError};

/// The process-wide default instance.
static DEFAULT: Kmem = Kmem::new_default();

/// The process-wide kmem instance behind the `kmem_*` functions. With
/// `std` it is set up at first use, over pool's standard kernel map
/// ([`bsdalloc_pool::kernel_map`]); without, call [`kmem_init`] first.
pub fn kmem() -> &'static Kmem {
    &DEFAULT
}

/// `kmem_init`: set up the default instance from `cfg` (before its first
/// use). A second call, or one after the first use set it up, returns
/// [`KmemError::AlreadyInitialised`].
///
/// # Panics
/// From interrupt context.
pub fn kmem_init(cfg: KmemConfig) -> Result<&'static Kmem, KmemError> {
    DEFAULT.bootstrap(cfg).map(|()| &DEFAULT)
}

/// The default instance's set-up at first use: one lock (the instance's)
/// covers building and publishing, so racing first users wait for the
/// first one's instance instead of building their own.
#[cold]
#[track_caller]
pub(crate) fn default_boot() {
    #[cfg(feature = "std")]
    {
        let cfg = KmemConfig::new().map(bsdalloc_pool::kernel_map());
        match DEFAULT.bootstrap(cfg) {
            Ok(()) | Err(KmemError::AlreadyInitialised) => {}
            Err(e) => panic!("kmem: cannot set up the default instance: {e}"),
        }
    }
}

/// `kmem_alloc(size, flags)` on the default instance: see [`Kmem::alloc`].
///
/// ```
/// use bsdalloc_kmem::{KM_SLEEP, kmem_alloc, kmem_free};
///
/// let p = kmem_alloc(100, KM_SLEEP).unwrap();
/// unsafe {
///     p.as_ptr().write_bytes(7, 100);
///     kmem_free(p.as_ptr(), 100);
/// }
/// ```
#[inline]
#[track_caller]
pub fn kmem_alloc(size: usize, flags: KmFlags) -> Option<NonNull<u8>> {
    DEFAULT.alloc(size, flags)
}

/// `kmem_zalloc`: see [`Kmem::zalloc`].
#[inline]
#[track_caller]
pub fn kmem_zalloc(size: usize, flags: KmFlags) -> Option<NonNull<u8>> {
    DEFAULT.zalloc(size, flags)
}

/// `kmem_free(p, size)`: see [`Kmem::free`].
///
/// # Safety
/// As [`Kmem::free`], for the default instance.
#[inline]
#[track_caller]
pub unsafe fn kmem_free(p: *mut u8, size: usize) {
    // SAFETY: the caller's contract.
    unsafe { DEFAULT.free(p, size) }
}

/// `kmem_intr_alloc`: see [`Kmem::intr_alloc`].
#[inline]
#[track_caller]
pub fn kmem_intr_alloc(size: usize, flags: KmFlags) -> Option<NonNull<u8>> {
    DEFAULT.intr_alloc(size, flags)
}

/// `kmem_intr_zalloc`: see [`Kmem::intr_zalloc`].
#[inline]
#[track_caller]
pub fn kmem_intr_zalloc(size: usize, flags: KmFlags) -> Option<NonNull<u8>> {
    DEFAULT.intr_zalloc(size, flags)
}

/// `kmem_intr_free`: see [`Kmem::intr_free`].
///
/// # Safety
/// As [`Kmem::free`], for the default instance.
#[inline]
#[track_caller]
pub unsafe fn kmem_intr_free(p: *mut u8, size: usize) {
    // SAFETY: the caller's contract.
    unsafe { DEFAULT.intr_free(p, size) }
}
