//! Size lookup from an address ([`KmemConfig::size_lookup`]): a tag per
//! page of the kmem arena saying what the page holds — objects of a size
//! class, or the first page of a large allocation and its length — so that
//! the size of an allocation is found in constant time from its address
//! alone. What a C `free(p)`, which gets no size, needs.
//!
//! The tags are written where pages change hands, never on the object
//! paths: a size-class pool taking a page from the kernel map (or giving
//! it back), and a large allocation or free. A lookup is one load.
//!
//! [`KmemConfig::size_lookup`]: crate::KmemConfig::size_lookup

use core::ptr::NonNull;

use bsdalloc_platform::sync::atomic::{AtomicU32, Ordering};
use bsdalloc_pool::{KmemAllocator, PoolAllocator, PrFlags};
use bsdalloc_uvm_pages::KernelMap;

/// Tag of the first page of a large allocation: this bit, and the
/// allocation's length in pages below it.
const LARGE: u32 = 1 << 31;

/// What a page of the kmem arena holds, as [`PageOwners::get`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// Nothing kmem knows of: not kmem memory, a page inside a large
    /// allocation, or a free page.
    Unknown,
    /// Objects of size class `i`.
    Class(usize),
    /// The first of `n` pages of a large allocation.
    Large(usize),
}

/// One `u32` tag per page of the kmem arena, in memory straight from the
/// map's page source, committed unwired: bookkeeping of the map like its
/// own page bitmaps, outside its memory budget, and (with the OS's pages)
/// demand-zero, so pages of the table appear as pages of the arena are
/// first used.
pub(crate) struct PageOwners {
    base: usize,
    npages: usize,
    pshift: u32,
    tags: NonNull<AtomicU32>,
    bytes: usize,
}

// SAFETY: the table is atomics, in memory that lives as long as the
// instance; the rest is immutable.
unsafe impl Sync for PageOwners {}
// SAFETY: as above.
unsafe impl Send for PageOwners {}

impl PageOwners {
    /// The table for `map`'s kmem arena, or `None` if the map has no
    /// address space for it.
    pub(crate) fn new(map: &'static KernelMap) -> Option<PageOwners> {
        let ps = map.page_size();
        let (base, size) = map.kmem_range();
        let npages = size / ps;
        let src = map.page_source();
        let bytes = (npages.checked_mul(4)?)
            .next_multiple_of(src.page_size())
            .max(src.page_size());
        let tags = src.reserve(bytes, 0).ok()?;
        // SAFETY: our fresh reservation, whole.
        if unsafe { src.commit(tags, bytes, false) }.is_err() {
            // SAFETY: the reservation is unused.
            unsafe { src.release(tags, bytes) };
            return None;
        }
        Some(PageOwners {
            base,
            npages,
            pshift: ps.trailing_zeros(),
            tags: tags.cast(),
            bytes,
        })
    }

    /// Give the table back to `map`.
    ///
    /// # Safety
    /// Nobody reads or writes the table any more.
    pub(crate) unsafe fn free(&self, map: &KernelMap) {
        let src = map.page_source();
        // SAFETY: the caller's contract; the table is one reservation.
        unsafe {
            src.decommit(self.tags.cast(), self.bytes);
            src.release(self.tags.cast(), self.bytes);
        }
    }

    #[inline(always)]
    fn slot(&self, va: usize) -> Option<&AtomicU32> {
        let i = va.wrapping_sub(self.base) >> self.pshift;
        // SAFETY: `i` is below the table's length; the table lives as long
        // as `self`.
        (i < self.npages).then(|| unsafe { &*self.tags.as_ptr().add(i) })
    }

    fn set(&self, va: usize, tag: u32) {
        if let Some(s) = self.slot(va) {
            s.store(tag, Ordering::Relaxed);
        }
    }

    /// The page of `va` now holds objects of class `i`.
    pub(crate) fn set_class(&self, va: usize, i: usize) {
        self.set(va, i as u32 + 1);
    }

    /// `va` starts a large allocation of `pages` pages (or, with 0, no
    /// longer does).
    pub(crate) fn set_large(&self, va: usize, pages: usize) {
        let tag = if pages == 0 {
            0
        } else {
            LARGE | u32::try_from(pages).unwrap_or(LARGE - 1)
        };
        self.set(va, tag);
    }

    /// `va` no longer starts a large allocation of `pages` pages: the tag
    /// is cleared if it says exactly that, and left alone otherwise.
    pub(crate) fn clear_large(&self, va: usize, pages: usize) {
        if let Some(s) = self.slot(va) {
            let tag = LARGE | u32::try_from(pages).unwrap_or(LARGE - 1);
            let _ = s.compare_exchange(tag, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// The page of `va` holds nothing kmem tracks.
    pub(crate) fn clear(&self, va: usize) {
        self.set(va, 0);
    }

    /// What the page of `va` holds. Relaxed: whoever frees an allocation
    /// got its address after the tag was written (the object or the large
    /// allocation was handed to it through the allocator).
    #[inline(always)]
    pub(crate) fn get(&self, va: usize) -> Owner {
        let Some(s) = self.slot(va) else {
            return Owner::Unknown;
        };
        match s.load(Ordering::Relaxed) {
            0 => Owner::Unknown,
            t if t & LARGE != 0 => Owner::Large((t & !LARGE) as usize),
            t => Owner::Class(t as usize - 1),
        }
    }
}

/// A size class's page allocator: the map's kmem arena, as every class
/// uses, tagging each page it hands out with the class.
pub(crate) struct ClassAllocator {
    pub(crate) inner: KmemAllocator,
    pub(crate) class: usize,
    pub(crate) owners: Option<&'static PageOwners>,
}

// SAFETY: forwards to `KmemAllocator` (see its contract); the tag stores
// are atomics and take no lock.
unsafe impl PoolAllocator for ClassAllocator {
    fn pagesz(&self) -> usize {
        self.inner.pagesz()
    }

    fn alloc(&self, pagesz: usize, flags: PrFlags) -> Option<NonNull<u8>> {
        let p = self.inner.alloc(pagesz, flags)?;
        if let Some(o) = self.owners {
            o.set_class(p.as_ptr().addr(), self.class);
        }
        Some(p)
    }

    unsafe fn free(&self, page: NonNull<u8>, pagesz: usize) {
        if let Some(o) = self.owners {
            o.clear(page.as_ptr().addr());
        }
        // SAFETY: the caller's contract.
        unsafe { self.inner.free(page, pagesz) }
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }
}
