//! The allocation and free paths (spec §4.3): the size decides between a
//! size-class cache and whole pages from `kva`, the same way on free.

use core::ptr::NonNull;

use bsdalloc_platform::in_interrupt;
use bsdalloc_platform::sync::atomic::Ordering;
use bsdalloc_pool::PrFlags;
use bsdalloc_pool_cache::RawPoolCache;
use bsdalloc_vmem::VmFlags;

use crate::flags::{KMEM_ALIGN, KMEM_SHIFT, KmFlags, SIZE_SIZE};
use crate::kmem::{Inner, Kmem};
use crate::owners::{Owner, PageOwners};

/// Where a size goes: a class (with the bytes the object holds, footer
/// and redzone included), or whole pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Class index, `allocsz`.
    Cache(usize, usize),
    /// Page-rounded bytes.
    Pages(usize),
    /// No allocation of this size can exist.
    TooBig,
}

/// `allocsz` for a requested size: rounded to 8, plus the size footer
/// (`kmem-size`), plus a chunk of 8 if the padding left for the redzone
/// is under 2 bytes (`redzone`). `None` on overflow.
#[inline(always)]
pub(crate) fn allocsz(size: usize) -> Option<usize> {
    let rsize = size.checked_next_multiple_of(KMEM_ALIGN)?;
    let extra = if cfg!(feature = "redzone") && rsize - size < crate::debug::REDZONE_MIN {
        KMEM_ALIGN
    } else {
        0
    };
    rsize.checked_add(SIZE_SIZE + extra)
}

#[inline(always)]
pub(crate) fn route(k: &Inner, size: usize) -> Route {
    let Some(a) = allocsz(size) else {
        return Route::TooBig;
    };
    if let Some(i) = k.classes.index(a) {
        return Route::Cache(i, a);
    }
    // The large size comes from the rounded request, not `allocsz`: no
    // footer or redzone on whole pages.
    match size.checked_next_multiple_of(k.ps) {
        Some(b) if b <= k.arena_size => Route::Pages(b),
        _ => Route::TooBig,
    }
}

/// Whether the fast path exists: no debug feature and no memory-checker
/// hook changes what an allocation does beyond the cache's get and put.
pub(crate) const FAST: bool = !cfg!(any(
    feature = "kmem-size",
    feature = "redzone",
    feature = "poison",
    feature = "guard",
    bsdalloc_asan,
    bsdalloc_valgrind
));

/// Slots of the fast table: sizes 1 … `KMEM_MAXSIZE` in steps of 8.
pub(crate) const FAST_SLOTS: usize = (crate::flags::KMEM_MAXSIZE >> KMEM_SHIFT) + 1;

/// The fast table of an instance: for each slot, the cache that
/// [`route`] picks for the slot's largest size (every size of the slot
/// rounds to it).
pub(crate) fn fast_table(
    classes: &crate::classes::SizeClasses,
    caches: &[Option<&'static RawPoolCache>; crate::classes::MAX_CLASSES],
) -> [Option<&'static RawPoolCache>; FAST_SLOTS] {
    let mut t = [None; FAST_SLOTS];
    if FAST {
        for (slot, e) in t.iter_mut().enumerate().skip(1) {
            if let Some(i) = allocsz(slot << KMEM_SHIFT).and_then(|a| classes.index(a)) {
                *e = caches[i];
            }
        }
    }
    t
}

/// The fast table's slot for `size`, or `None` (size 0, or above
/// `KMEM_MAXSIZE`).
#[inline(always)]
fn fast_slot(size: usize) -> Option<usize> {
    // size - 1 < KMEM_MAXSIZE, i.e. 1 ..= KMEM_MAXSIZE, in one compare.
    (size.wrapping_sub(1) < crate::flags::KMEM_MAXSIZE).then(|| (size + 7) >> KMEM_SHIFT)
}

#[inline(always)]
fn pr_flags(flags: KmFlags) -> PrFlags {
    if flags == KmFlags::SLEEP {
        PrFlags::WAITOK
    } else {
        PrFlags::NOWAIT
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn bad_flags(what: &str, flags: KmFlags) -> ! {
    panic!("{what}: exactly one of KM_SLEEP and KM_NOSLEEP is required, not {flags:?}")
}

#[cold]
#[inline(never)]
#[track_caller]
fn size_zero(what: &str) -> ! {
    panic!("{what}: size 0 (kernel diagnostic assertion \"requested_size > 0\" failed)")
}

#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn intr_context() -> ! {
    panic!("kmem(9) should not be used from the interrupt context")
}

#[cold]
#[inline(never)]
#[track_caller]
fn never_fits(k: &Inner, size: usize, flags: KmFlags) -> Option<NonNull<u8>> {
    if flags == KmFlags::SLEEP {
        panic!(
            "kmem_alloc: {size} bytes can never be allocated (the kmem arena has {:#x}); KM_SLEEP cannot fail",
            k.arena_size
        );
    }
    None
}

#[cold]
#[inline(never)]
#[track_caller]
fn sleep_failed(size: usize) -> ! {
    panic!("kmem_alloc: KM_SLEEP allocation of {size} bytes returned NULL")
}

impl Kmem {
    /// `kmem_alloc(size, flags)`: `size` bytes, uninitialised, at least
    /// 8-byte aligned (cache-line aligned from the 64-byte class up, page
    /// aligned from the page class up). `KM_SLEEP` never returns `None`:
    /// it sleeps until memory is available. Free with
    /// [`free`](Kmem::free) and the same size.
    ///
    /// # Panics
    /// Size 0; flags other than exactly one of `KM_SLEEP` and
    /// `KM_NOSLEEP`; interrupt context ("kmem(9) should not be used from
    /// the interrupt context": use [`intr_alloc`](Kmem::intr_alloc)); a
    /// `KM_SLEEP` size no arena can ever hold.
    #[inline]
    #[track_caller]
    pub fn alloc(&self, size: usize, flags: KmFlags) -> Option<NonNull<u8>> {
        if in_interrupt() {
            intr_context();
        }
        self.intr_alloc(size, flags)
    }

    /// `kmem_zalloc`: as [`alloc`](Kmem::alloc), the `size` bytes zeroed.
    #[inline]
    #[track_caller]
    pub fn zalloc(&self, size: usize, flags: KmFlags) -> Option<NonNull<u8>> {
        if in_interrupt() {
            intr_context();
        }
        self.intr_zalloc(size, flags)
    }

    /// `kmem_free(p, size)`.
    ///
    /// # Panics
    /// `p` null; size 0; interrupt context; with `kmem-size`, a size that
    /// is not the allocation's ("kmem_free(PTR, SIZE) != allocated size N;
    /// overwrote?"); large allocations are checked against the page maps
    /// in every build.
    ///
    /// # Safety
    /// `p` came from this instance's `alloc`/`zalloc` (or the `intr`
    /// variants) with exactly `size`, and is not used afterwards. The
    /// allocator keeps no size record outside debug builds: the size
    /// selects the cache, and a wrong one corrupts another cache.
    #[inline]
    #[track_caller]
    pub unsafe fn free(&self, p: *mut u8, size: usize) {
        if in_interrupt() {
            intr_context();
        }
        // SAFETY: the caller's contract.
        unsafe { self.intr_free(p, size) }
    }

    /// `kmem_intr_alloc`: [`alloc`](Kmem::alloc), callable from interrupt
    /// handlers up to `IPL_VM` with `KM_NOSLEEP` (the caches and arenas are
    /// `IPL_VM`).
    ///
    /// # Panics
    /// As [`alloc`](Kmem::alloc), except for interrupt context; `KM_SLEEP`
    /// where sleeping is not allowed (debug builds at once, release builds
    /// when the allocation would have to wait).
    #[inline(always)]
    #[track_caller]
    pub fn intr_alloc(&self, size: usize, flags: KmFlags) -> Option<NonNull<u8>> {
        #[cfg(debug_assertions)]
        if flags == KmFlags::SLEEP {
            bsdalloc_platform::assert_sleepable("kmem_alloc(KM_SLEEP)");
        }
        // The fast path, inlined: a size-class request that this CPU's
        // current group serves. Everything else is out of line.
        if FAST
            && flags.is_valid()
            && let Some(k) = self.try_inner()
            && let Some(slot) = fast_slot(size)
            // SAFETY: `fast_slot` returns at most KMEM_MAXSIZE / 8, the
            // table's last slot.
            && let Some(pc) = unsafe { *k.fast.get_unchecked(slot) }
            && let Some(p) = pc.get_cpu_hit()
        {
            return Some(p);
        }
        self.intr_alloc_slow(size, flags)
    }

    #[inline(never)]
    #[track_caller]
    fn intr_alloc_slow(&self, size: usize, flags: KmFlags) -> Option<NonNull<u8>> {
        if !flags.is_valid() {
            bad_flags("kmem_alloc", flags);
        }
        if size == 0 {
            size_zero("kmem_alloc");
        }
        let k = self.inner();
        #[cfg(feature = "guard")]
        return self.guard_alloc(k, size, flags);
        #[cfg(not(feature = "guard"))]
        match route(k, size) {
            Route::Cache(i, a) => {
                // SAFETY: bootstrap creates a cache for every class.
                let pc = unsafe { k.caches[i].unwrap_unchecked() };
                let Some(p) = pc.get(pr_flags(flags)) else {
                    if flags == KmFlags::SLEEP {
                        sleep_failed(size);
                    }
                    return None;
                };
                let cs = k.classes.classes()[i].size;
                crate::track::handing_out(p, cs);
                // SAFETY: a fresh object of class `i`, at least `a` bytes.
                unsafe { crate::debug::on_alloc(p, size, a, cs) };
                crate::track::allocated(p, size, cs);
                Some(p)
            }
            Route::Pages(bytes) => self.large_alloc(k, size, bytes, flags, false),
            Route::TooBig => never_fits(k, size, flags),
        }
    }

    /// `kmem_intr_zalloc`.
    #[inline]
    #[track_caller]
    pub fn intr_zalloc(&self, size: usize, flags: KmFlags) -> Option<NonNull<u8>> {
        // Whole pages are zeroed by the kernel map, which writes only the
        // reused pages: those fresh from the page source are zero already.
        #[cfg(not(feature = "guard"))]
        if flags.is_valid()
            && size != 0
            && let Some(k) = self.try_inner()
            && let Route::Pages(bytes) = route(k, size)
        {
            #[cfg(debug_assertions)]
            if flags == KmFlags::SLEEP {
                bsdalloc_platform::assert_sleepable("kmem_zalloc(KM_SLEEP)");
            }
            return self.large_alloc(k, size, bytes, flags, true);
        }
        let p = self.intr_alloc(size, flags)?;
        // SAFETY: `size` bytes of ours.
        unsafe { p.as_ptr().write_bytes(0, size) };
        Some(p)
    }

    /// Resize an allocation in place: whether the allocation of `old`
    /// bytes at `p` can hold `new` bytes without moving, because both sizes
    /// are served by the same size class, or by the same number of whole
    /// pages. If so the allocation now has size `new` (free it with
    /// `new`) and `true` is returned; otherwise nothing changes. What a
    /// `realloc` tries before it copies. Not in NetBSD (kmem has no
    /// realloc).
    ///
    /// With `kmem-size`, `redzone` or `guard` the allocation's size is
    /// recorded (a footer, a redzone right after the caller's bytes, the
    /// guard page at the end), so those builds always answer `false`.
    ///
    /// ```
    /// use bsdalloc_kmem::{KM_SLEEP, kmem};
    ///
    /// let k = kmem();
    /// let p = k.alloc(200, KM_SLEEP).unwrap(); // kmem-00256
    /// unsafe {
    ///     let grew = k.resize_in_place(p, 200, 250);
    ///     assert_eq!(grew, cfg!(not(any(feature = "kmem-size", feature = "redzone", feature = "guard"))));
    ///     let size = if grew { 250 } else { 200 };
    ///     assert!(!k.resize_in_place(p, size, 300)); // kmem-00320: another cache
    ///     k.free(p.as_ptr(), size);
    /// }
    /// ```
    ///
    /// # Safety
    /// `p` is a live allocation of this instance of exactly `old` bytes.
    #[inline]
    pub unsafe fn resize_in_place(&self, p: NonNull<u8>, old: usize, new: usize) -> bool {
        if cfg!(any(
            feature = "kmem-size",
            feature = "redzone",
            feature = "guard"
        )) || old == 0
            || new == 0
        {
            return false;
        }
        let k = self.inner();
        match (route(k, old), route(k, new)) {
            (Route::Cache(i, _), Route::Cache(j, _)) if i == j => {
                crate::track::resized(p, old, new, k.classes.classes()[i].size);
                true
            }
            (Route::Pages(a), Route::Pages(b)) if a == b => {
                // Large allocations are tracked for memcheck only.
                #[cfg(bsdalloc_valgrind)]
                crate::track::resized(p, old, new, a);
                true
            }
            _ => false,
        }
    }

    /// `kmem_intr_free`.
    ///
    /// # Panics
    /// As [`free`](Kmem::free), except for interrupt context.
    ///
    /// # Safety
    /// As [`free`](Kmem::free).
    #[inline(always)]
    #[track_caller]
    pub unsafe fn intr_free(&self, p: *mut u8, size: usize) {
        // The fast path, inlined: into this CPU's current group.
        if FAST
            && let Some(nn) = NonNull::new(p)
            && let Some(k) = self.try_inner()
            && let Some(slot) = fast_slot(size)
            // SAFETY: as in `intr_alloc`.
            && let Some(pc) = unsafe { *k.fast.get_unchecked(slot) }
            // SAFETY: the caller's contract: an object of the cache
            // `size` selects, not used any more.
            && unsafe { pc.put_cpu_hit(nn) }
        {
            return;
        }
        // SAFETY: the caller's contract.
        unsafe { self.intr_free_slow(p, size) }
    }

    #[inline(never)]
    #[track_caller]
    unsafe fn intr_free_slow(&self, p: *mut u8, size: usize) {
        let Some(p) = NonNull::new(p) else {
            panic!("kmem_free(NULL, {size}): freeing NULL is illegal");
        };
        if size == 0 {
            size_zero("kmem_free");
        }
        let k = self.inner();
        #[cfg(feature = "guard")]
        {
            // SAFETY: the caller's contract.
            unsafe { self.guard_free(k, p, size) };
        }
        #[cfg(not(feature = "guard"))]
        match route(k, size) {
            Route::Cache(i, a) => {
                // SAFETY: bootstrap creates a cache for every class.
                let pc = unsafe { k.caches[i].unwrap_unchecked() };
                let cs = k.classes.classes()[i].size;
                // The footer and redzone checks read the class tail.
                crate::track::freeing(p, cs);
                // SAFETY: the caller's contract: an object of this class,
                // allocated with `size`.
                unsafe {
                    crate::debug::on_free(p, size, a, cs);
                    crate::track::freed(p, cs);
                    pc.put(p);
                }
            }
            Route::Pages(bytes) => {
                // Memcheck hears of the free first (and reports an invalid
                // one), also when the map's check below then panics.
                crate::track::large_freeing(p, bytes);
                self.large_free(k, p, bytes);
            }
            Route::TooBig => {
                panic!("kmem_free({p:p}, {size}): no allocation of that size can exist")
            }
        }
    }

    #[cfg_attr(feature = "guard", allow(dead_code))]
    #[track_caller]
    fn large_alloc(
        &self,
        k: &Inner,
        size: usize,
        bytes: usize,
        flags: KmFlags,
        zero: bool,
    ) -> Option<NonNull<u8>> {
        let vf = if flags == KmFlags::SLEEP {
            VmFlags::SLEEP
        } else {
            VmFlags::NOSLEEP
        } | VmFlags::INSTANTFIT;
        let r = if zero {
            k.map.uvm_km_kmem_zalloc(k.kva, bytes, vf)
        } else {
            k.map.uvm_km_kmem_alloc(k.kva, bytes, vf)
        };
        match r {
            Ok(va) => {
                if let Some(o) = self.page_owners() {
                    o.set_large(va, bytes / k.ps);
                }
                self.large.allocs.fetch_add(1, Ordering::Relaxed);
                self.large.live.fetch_add(1, Ordering::Relaxed);
                self.large.live_bytes.fetch_add(bytes, Ordering::Relaxed);
                let p = Kmem::ptr(k, va);
                crate::track::large_allocated(p, size, bytes, zero);
                Some(p)
            }
            Err(_) if flags == KmFlags::SLEEP => sleep_failed(size),
            Err(_) => {
                self.large.fails.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    #[cfg_attr(feature = "guard", allow(dead_code))]
    #[track_caller]
    fn large_free(&self, k: &Inner, p: NonNull<u8>, bytes: usize) {
        if let Some(o) = self.page_owners() {
            // Before the pages go back: once they are the map's, another
            // thread may allocate them and tag them, and a clear after
            // that would erase its tag. Only a tag that describes this
            // very allocation is cleared, so a free the map refuses below
            // (a wrong size, a foreign pointer, a second free) leaves the
            // tags as they were.
            o.clear_large(p.as_ptr().addr(), bytes / k.ps);
        }
        // Checked against the page maps: a wrong size or a foreign pointer
        // panics before anything changes.
        k.map.uvm_km_kmem_free(k.kva, p.as_ptr().addr(), bytes);
        self.large.frees.fetch_add(1, Ordering::Relaxed);
        self.large.live.fetch_sub(1, Ordering::Relaxed);
        self.large.live_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// The page tags of [`KmemConfig::size_lookup`](crate::KmemConfig::size_lookup).
    #[inline(always)]
    fn page_owners(&self) -> Option<&PageOwners> {
        // SAFETY: set at bootstrap, before READY; callers run on a set-up
        // instance (they hold its `Inner`).
        unsafe { self.owners.get() }.as_ref()
    }

    /// The size to free the allocation at `p` with, found from the
    /// address alone in constant time: its size class's object size, or
    /// its whole pages. `kmem_free(p, size)` with that size gives the
    /// allocation back (without `kmem-size`, which wants the size asked
    /// for, and `redzone`, which checks right after it). `None` if `p` is
    /// not the address of a live allocation that kmem can tell: memory
    /// that is not kmem's, a page inside a large allocation, or an
    /// instance built without [`KmemConfig::size_lookup`](crate::KmemConfig::size_lookup).
    /// A pointer into the middle of a size-class object, or to a freed
    /// one, still answers with the class size: only the debug features
    /// catch such frees. Not in NetBSD, whose callers always know the size.
    ///
    /// ```
    /// use bsdalloc_kmem::{KM_SLEEP, Kmem, KmemConfig};
    ///
    /// static K: Kmem = Kmem::new();
    /// K.bootstrap(KmemConfig::new().size_lookup(true)).unwrap();
    /// let p = K.alloc(100, KM_SLEEP).unwrap();
    /// let big = K.alloc(3 * 4096 + 5, KM_SLEEP).unwrap();
    /// assert_eq!(K.lookup_size(p.as_ptr()), Some(128)); // kmem-00128
    /// assert_eq!(K.lookup_size(big.as_ptr()), Some(4 * 4096));
    /// assert_eq!(K.lookup_size(&K as *const Kmem as *const u8), None);
    /// unsafe {
    ///     // Without kmem-size and redzone, `K.free(p, 128)` would do too.
    ///     K.free(p.as_ptr(), 100);
    ///     K.free(big.as_ptr(), 3 * 4096 + 5);
    ///     K.destroy();
    /// }
    /// ```
    #[inline]
    pub fn lookup_size(&self, p: *const u8) -> Option<usize> {
        let k = self.inner();
        let o = self.page_owners()?;
        match o.get(p.addr()) {
            Owner::Class(i) => k.classes.classes().get(i).map(|c| c.size),
            Owner::Large(n) if p.addr() & (k.ps - 1) == 0 => Some(n * k.ps),
            _ => None,
        }
    }

    /// The alignment an allocation of `size` bytes is guaranteed: its
    /// class's (8, the cache line, or the page), the page for whole pages;
    /// `None` for sizes that can never be allocated (or 0).
    #[inline]
    pub fn alignment_of(&self, size: usize) -> Option<usize> {
        if size == 0 {
            return None;
        }
        let k = self.inner();
        match route(k, size) {
            Route::Cache(i, _) => Some(k.classes.classes()[i].align),
            Route::Pages(_) => Some(k.ps),
            Route::TooBig => None,
        }
    }

    /// The bytes actually reserved for an allocation of `size` (its
    /// class's object size, or the whole pages); `None` as for
    /// [`alignment_of`](Kmem::alignment_of).
    #[inline]
    pub fn allocated_size(&self, size: usize) -> Option<usize> {
        if size == 0 {
            return None;
        }
        let k = self.inner();
        match route(k, size) {
            Route::Cache(i, _) => Some(k.classes.classes()[i].size),
            Route::Pages(b) => Some(b),
            Route::TooBig => None,
        }
    }
}
