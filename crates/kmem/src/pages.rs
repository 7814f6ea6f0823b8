//! A page source with larger pages than the one under it: a machine
//! whose `PAGE_SIZE` is a multiple of the host's (16 KiB pages on a 4 KiB
//! host), so that the kernel map, the arenas, the pools and kmem's size
//! classes all run at the configured page size.

use core::fmt;
use core::ptr::NonNull;

use bsdalloc_platform::{Committed, PageError, PageSource, PageStats, Protection};

/// Pages of `page_size` bytes made of `page_size / inner.page_size()` pages
/// of `inner`. Every range the layers above pass is a multiple of the
/// large page, hence of the small one: each call goes straight through,
/// and reservations are aligned to the large page.
pub struct LargePages {
    inner: &'static dyn PageSource,
    page_size: usize,
}

impl fmt::Debug for LargePages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LargePages")
            .field("page_size", &self.page_size)
            .field("inner_page_size", &self.inner.page_size())
            .finish()
    }
}

impl LargePages {
    /// Pages of `page_size` bytes over `inner`.
    ///
    /// # Panics
    /// If `page_size` is not a power-of-two multiple of `inner`'s page size.
    pub fn new(inner: &'static dyn PageSource, page_size: usize) -> LargePages {
        let ips = inner.page_size();
        assert!(
            page_size.is_power_of_two() && page_size >= ips,
            "kmem: page size {page_size:#x} is not a power-of-two multiple of the machine's {ips:#x}"
        );
        LargePages { inner, page_size }
    }

    fn check(&self, addr: usize, len: usize) -> Result<(), PageError> {
        let mask = self.page_size - 1;
        if len == 0 || addr & mask != 0 || len & mask != 0 {
            return Err(PageError::BadRange { addr, len });
        }
        Ok(())
    }
}

// SAFETY: every call is passed to `inner` unchanged (with a larger
// alignment for reservations), so `inner`'s guarantees hold: fresh,
// exclusive ranges that read as zero when committed.
unsafe impl PageSource for LargePages {
    fn page_size(&self) -> usize {
        self.page_size
    }

    fn reserve(&self, len: usize, align: usize) -> Result<NonNull<u8>, PageError> {
        self.check(0, len)?;
        self.inner.reserve(len, align.max(self.page_size))
    }

    unsafe fn commit(
        &self,
        addr: NonNull<u8>,
        len: usize,
        wire: bool,
    ) -> Result<Committed, PageError> {
        self.check(addr.as_ptr().addr(), len)?;
        // SAFETY: the caller's contract, for the same reservation.
        unsafe { self.inner.commit(addr, len, wire) }
    }

    unsafe fn decommit(&self, addr: NonNull<u8>, len: usize) {
        // SAFETY: the caller's contract.
        unsafe { self.inner.decommit(addr, len) }
    }

    unsafe fn protect(
        &self,
        addr: NonNull<u8>,
        len: usize,
        prot: Protection,
    ) -> Result<(), PageError> {
        // SAFETY: the caller's contract.
        unsafe { self.inner.protect(addr, len, prot) }
    }

    unsafe fn release(&self, addr: NonNull<u8>, len: usize) {
        // SAFETY: the caller's contract.
        unsafe { self.inner.release(addr, len) }
    }

    fn stats(&self) -> PageStats {
        self.inner.stats()
    }
}
