//! The kernel map: reservation, regions, page bitmaps, backing, budget,
//! pagedaemon.

use core::fmt;
use core::mem::size_of;
use core::ptr::NonNull;

use bsdalloc_platform::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use bsdalloc_platform::sync::cell::UnsafeCell;
use bsdalloc_platform::{
    Ipl, LockRank, PageSource, Protection, SpinMutex, WaitChannel, assert_sleepable,
};
use bsdalloc_vmem::{Arena, ArenaConfig, SizeType, VmFlags, VmemError, XallocConstraints};

use crate::flags::{BootError, KmType, UvmFlags};
use crate::pages::DrainHook;
use crate::pages::{Backing, Refused};
use crate::raw::{Bitmap, Reservation};

/// How to set up the kernel map.
#[derive(Clone, Copy)]
pub struct KmConfig {
    /// Address space to reserve, in bytes (rounded to pages). Reserved, never
    /// committed up front: it costs address space, not memory. Half is the
    /// `kernel_map` proper (split between wired, pageable and VA-only
    /// allocations), half the `kmem_arena` that `uvm_km_kmem_alloc` stacks
    /// arenas on.
    pub size: usize,
    /// The most pages that may be committed at once (the physical-memory
    /// budget); 0: no limit.
    pub limit_pages: usize,
    /// Freed wired pages kept committed for reuse (NetBSD's free-page
    /// target): allocations that find them make no OS call. Above it, freed
    /// pages go back to the OS at once.
    pub free_target_pages: usize,
    /// Where pages come from.
    pub pages: &'static dyn PageSource,
}

impl fmt::Debug for KmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmConfig")
            .field("size", &self.size)
            .field("limit_pages", &self.limit_pages)
            .field("free_target_pages", &self.free_target_pages)
            .finish_non_exhaustive()
    }
}

impl KmConfig {
    /// 64 GiB of address space, no memory limit, a 16 MiB free-page target,
    /// over the OS page source.
    #[cfg(feature = "std")]
    pub fn new() -> KmConfig {
        KmConfig {
            size: 64 << 30,
            limit_pages: 0,
            free_target_pages: (16 << 20) / bsdalloc_platform::page_size(),
            pages: &bsdalloc_platform::OS_PAGES,
        }
    }
}

#[cfg(feature = "std")]
impl Default for KmConfig {
    fn default() -> Self {
        Self::new()
    }
}

const NHOOKS: usize = 16;

/// Page bitmaps in the meta area (see `KernelMap::committed_bits` on).
const NBITMAPS: usize = 5;

/// Counters of a kernel map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KmStats {
    /// Bytes of address space reserved.
    pub va_reserved: usize,
    /// Bytes of address space allocated, per type (wired, pageable,
    /// VA-only) and in the kmem arena.
    pub va_in_use: [usize; 4],
    /// Pages committed now (in use, cached, pageable, entered).
    pub committed_pages: usize,
    /// Committed pages holding wired allocations (incl. kmem).
    pub wired_pages: usize,
    /// Committed pageable pages.
    pub pageable_pages: usize,
    /// Freed wired pages kept committed for reuse.
    pub cached_pages: usize,
    /// Pages given back to the OS, ever.
    pub pages_returned: u64,
    /// Page-source calls made (commit, decommit, wire), ever.
    pub os_calls: u64,
    /// Pagedaemon passes.
    pub pagedaemon_runs: u64,
    /// Allocations that slept for memory.
    pub sleeps: u64,
    /// Allocations that failed for lack of memory or address space.
    pub failures: u64,
    /// The budget (0: none).
    pub limit_pages: usize,
    /// The free-page target.
    pub free_target_pages: usize,
}

impl fmt::Display for KmStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "uvm_km: {:#x} bytes of kernel VA reserved",
            self.va_reserved
        )?;
        writeln!(
            f,
            "  VA in use: wired {:#x}, pageable {:#x}, vaonly {:#x}, kmem {:#x}",
            self.va_in_use[0], self.va_in_use[1], self.va_in_use[2], self.va_in_use[3]
        )?;
        write!(
            f,
            "  pages: {} committed ({} wired, {} pageable, {} cached free; target {}), ",
            self.committed_pages,
            self.wired_pages,
            self.pageable_pages,
            self.cached_pages,
            self.free_target_pages,
        )?;
        if self.limit_pages == 0 {
            writeln!(f, "no limit")?;
        } else {
            writeln!(f, "limit {}", self.limit_pages)?;
        }
        write!(
            f,
            "  {} pages returned to the OS, {} OS calls, {} pagedaemon runs, {} sleeps, {} failures",
            self.pages_returned, self.os_calls, self.pagedaemon_runs, self.sleeps, self.failures
        )
    }
}

pub(crate) struct State {
    pub(crate) committed: usize,
    pub(crate) wired: usize,
    pub(crate) pageable: usize,
    pub(crate) cached: usize,
    pub(crate) pages_returned: u64,
    pub(crate) pagedaemon_runs: u64,
    pub(crate) sleeps: u64,
    pub(crate) failures: u64,
    /// Bumped by every free that gives pages back or to the cache (and by
    /// every undone claim): what a budget waiter waits for, and whether a
    /// pagedaemon pass can find anything new.
    pub(crate) free_gen: u64,
    pub(crate) hooks: [Option<&'static dyn DrainHook>; NHOOKS],
}

/// NetBSD's `kernel_map` with its `kmem_arena`, in user space.
pub struct KernelMap {
    pub(crate) pages: &'static dyn PageSource,
    pub(crate) ps: usize,
    pub(crate) pshift: u32,
    /// The reservation, whose pointers `va_ptr` hands out.
    pub(crate) va: Reservation,
    pub(crate) base: usize,
    pub(crate) size: usize,
    /// Per type (wired, pageable, VA-only): an arena over its own region, so
    /// that a free can tell what type an address was allocated as.
    pub(crate) regions: [Arena; 3],
    pub(crate) region_base: [usize; 3],
    pub(crate) region_size: usize,
    /// `kmem_arena`: the region `uvm_km_kmem_alloc` arenas stack on.
    pub(crate) kmem: Arena,
    pub(crate) kmem_base: usize,
    /// Page bitmaps over the whole reservation.
    pub(crate) committed_bits: Bitmap,
    pub(crate) wired_bits: Bitmap,
    pub(crate) inuse_bits: Bitmap,
    /// The first page of each backed allocation (wired, pageable, kmem).
    /// With the in-use bits it gives every allocation's exact extent, which
    /// a free must match before it touches anything — also where a
    /// quantum cache hides the allocation from its vmem arena.
    pub(crate) start_bits: Bitmap,
    /// The pages of VA-only allocations (their guard pages excluded); the
    /// first page of each also has its start bit. `enter` and `remove` must
    /// stay inside one.
    pub(crate) vaonly_bits: Bitmap,
    pub(crate) meta: NonNull<u8>,
    pub(crate) meta_len: usize,
    pub(crate) limit: usize,
    pub(crate) free_target: usize,
    pub(crate) state: SpinMutex<State>,
    pub(crate) budget_cv: WaitChannel,
    pub(crate) os_calls: AtomicU64,
    pub(crate) va_in_use: [AtomicUsize; 4],
    /// A `SpanSource` over `kmem`, pointing back at this map; set once the
    /// map has its final address.
    /// Written once by `bootstrap` after the map is in place (the source
    /// points back at the map), hence a cell: a shared reference to the map
    /// already exists when it is written.
    pub(crate) own_source: UnsafeCell<core::mem::MaybeUninit<crate::KmemSource>>,
}

// SAFETY: the bitmaps are atomics in memory the map owns; everything else
// is behind locks or immutable after bootstrap.
unsafe impl Sync for KernelMap {}
// SAFETY: as above.
unsafe impl Send for KernelMap {}

impl fmt::Debug for KernelMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelMap")
            .field("base", &format_args!("{:#x}", self.base))
            .field("size", &format_args!("{:#x}", self.size))
            .finish_non_exhaustive()
    }
}

/// Which part of the map an address is in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Where {
    Region(KmType),
    Kmem,
}

impl KernelMap {
    /// `uvm_km_bootstrap`: reserve the kernel map and build its arenas. The
    /// map's own descriptor and page bitmaps come from the page source.
    pub fn bootstrap(cfg: KmConfig) -> Result<&'static KernelMap, BootError> {
        let ps = cfg.pages.page_size();
        let Some(size) = cfg.size.checked_next_multiple_of(8 * ps) else {
            return Err(BootError::Config(
                "the kernel map's size overflows the address space",
            ));
        };
        if size < 8 * ps {
            return Err(BootError::Config(
                "the kernel map must span at least 8 pages",
            ));
        }
        let npages = size / ps;
        let nwords = npages.div_ceil(64);
        let meta_len = (size_of::<KernelMap>() + NBITMAPS * nwords * 8 + 64).next_multiple_of(ps);
        let meta = cfg.pages.reserve(meta_len, 0).map_err(BootError::Reserve)?;
        // SAFETY: committing our own fresh reservation.
        if let Err(e) = unsafe { cfg.pages.commit(meta, meta_len, false) } {
            // SAFETY: the reservation is unused.
            unsafe { cfg.pages.release(meta, meta_len) };
            return Err(BootError::Reserve(e));
        }
        let va = match cfg.pages.reserve(size, ps) {
            Ok(v) => v,
            Err(e) => {
                // SAFETY: the meta area is unused.
                unsafe {
                    cfg.pages.decommit(meta, meta_len);
                    cfg.pages.release(meta, meta_len);
                }
                return Err(BootError::Reserve(e));
            }
        };
        let base = va.as_ptr().addr();
        let half = size / 2;
        let region_size = (half / 3) & !(ps - 1);
        let region_base = [base, base + region_size, base + 2 * region_size];
        let kmem_base = base + half;
        let arena = |name: &'static str, b: usize, z: usize| {
            Arena::with_config(ArenaConfig::new(name, ps).ipl(Ipl::Vm), b, z)
                .map_err(BootError::Arena)
        };
        let regions = [
            arena("kernel_map-w", region_base[0], region_size)?,
            arena("kernel_map-p", region_base[1], region_size)?,
            arena("kernel_map-va", region_base[2], region_size)?,
        ];
        let kmem = arena("kmem", kmem_base, size - half)?;
        // Bitmaps after the descriptor, 64-byte aligned.
        let bits0 = (size_of::<KernelMap>() + 63) & !63;
        // SAFETY: NBITMAPS * nwords words inside the committed meta area
        // (meta_len counts them), 64-byte aligned; fresh pages read as zero,
        // a valid AtomicU64; the area lives until `destroy`, with the map.
        let [cb, wb, ib, sb, vb] = unsafe { Bitmap::carve::<NBITMAPS>(meta, bits0, nwords) };
        let map = KernelMap {
            pages: cfg.pages,
            ps,
            pshift: ps.trailing_zeros(),
            va: Reservation::new(va, size),
            base,
            size,
            regions,
            region_base,
            region_size,
            kmem,
            kmem_base,
            committed_bits: cb,
            wired_bits: wb,
            inuse_bits: ib,
            start_bits: sb,
            vaonly_bits: vb,
            meta,
            meta_len,
            limit: cfg.limit_pages,
            free_target: cfg.free_target_pages,
            state: SpinMutex::ranked(
                Ipl::Vm,
                LockRank::MapState,
                State {
                    committed: 0,
                    wired: 0,
                    pageable: 0,
                    cached: 0,
                    pages_returned: 0,
                    pagedaemon_runs: 0,
                    sleeps: 0,
                    failures: 0,
                    free_gen: 0,
                    hooks: [None; NHOOKS],
                },
            ),
            budget_cv: WaitChannel::new("uvmwait"),
            os_calls: AtomicU64::new(0),
            va_in_use: [const { AtomicUsize::new(0) }; 4],
            own_source: UnsafeCell::new(core::mem::MaybeUninit::uninit()),
        };
        // SAFETY: the meta area starts with room for the descriptor, which
        // lives there until `destroy`; the source is written before the
        // first shared reference to the map is handed out.
        let map: &'static KernelMap = unsafe {
            let p = meta.as_ptr().cast::<KernelMap>();
            p.write(map);
            &*p
        };
        let src = crate::KmemSource::new(map, &map.kmem);
        // SAFETY: nobody else has the map yet, so nobody reads the cell.
        map.own_source.with_mut(|c| unsafe { (*c).write(src) });
        Ok(map)
    }

    /// A vmem import source over [`KernelMap::kmem_arena`]: backed memory
    /// for arenas stacked directly on the kmem arena (NetBSD's
    /// `uvm_km_kmem_alloc` with `kmem_arena`).
    pub fn kmem_source(&self) -> &crate::KmemSource {
        // SAFETY: written by `bootstrap` before the map was handed out, and
        // never again.
        self.own_source.with(|c| unsafe { (*c).assume_init_ref() })
    }

    /// The page size.
    pub fn page_size(&self) -> usize {
        self.ps
    }

    /// The reserved range `[base, base+size)`.
    pub fn range(&self) -> (usize, usize) {
        (self.base, self.size)
    }

    /// The page source under the map: where its pages, and its own
    /// bookkeeping, come from.
    pub fn page_source(&self) -> &'static dyn PageSource {
        self.pages
    }

    /// The address range of the kmem arena: (start, bytes). Every
    /// `uvm_km_kmem_alloc` address lies in it.
    pub fn kmem_range(&self) -> (usize, usize) {
        (self.kmem_base, self.base + self.size - self.kmem_base)
    }

    /// NetBSD's `kmem_arena`: a static span over the map's kmem half,
    /// quantum one page, `IPL_VM`. Stack arenas on it with vmem imports.
    pub fn kmem_arena(&self) -> &Arena {
        &self.kmem
    }

    pub(crate) fn locate(&self, va: usize, len: usize) -> Option<Where> {
        if va < self.base || va.checked_add(len)? > self.base + self.size {
            return None;
        }
        if va >= self.kmem_base {
            return Some(Where::Kmem);
        }
        let r = (va - self.base) / self.region_size;
        let t = [KmType::Wired, KmType::Pageable, KmType::VaOnly].get(r)?;
        (va + len <= self.region_base[r] + self.region_size).then_some(Where::Region(*t))
    }

    // ---- uvm_km_alloc / uvm_km_free ----

    /// `size` rounded up to whole pages; `None` if that overflows (sizes
    /// come from callers, and in release builds a wrapped size would be a
    /// small one).
    pub(crate) fn round(&self, size: usize) -> Option<usize> {
        size.checked_next_multiple_of(self.ps)
    }

    /// Page-rounded `size` plus `guard` pages, or `None` on overflow.
    fn round_guarded(&self, size: usize, guard: usize) -> Option<(usize, usize)> {
        let size = self.round(size)?;
        let total = guard.checked_mul(self.ps)?.checked_add(size)?;
        Some((size, total))
    }

    fn count_failure(&self) {
        self.state.lock().failures += 1;
    }

    /// `uvm_km_alloc(kernel_map, size, align, flags)`: page-rounded
    /// kernel memory of one type, or `None`.
    ///
    /// - `align`: 0 (page) or a power-of-two multiple of the page size; with
    ///   `COLORMATCH` (VA-only) it carries a cache colour, which user space
    ///   does not have: accepted and ignored.
    /// - No address space: `None`, unless `WAITVA` (then sleep for it).
    /// - WIRED pages short: `NOWAIT`, or `CANFAIL` after a pagedaemon pass,
    ///   return `None`; otherwise sleep until memory comes back. A page
    ///   source that fails (the OS refused) is the same: `NOWAIT` and
    ///   `CANFAIL` fail, the others run the pagedaemon, pause and retry.
    /// - `ZERO`: zero-filled. Fresh pages are zero anyway; reused cached
    ///   pages are cleared.
    /// - `TRYLOCK`: the map's lock is a spin mutex that is never held across
    ///   a sleep, so there is nothing to try: accepted.
    /// - `EXEC`: the range is mapped read-write-execute.
    ///
    /// # Panics
    /// Size 0, not exactly one type, unknown flags, a bad alignment, or a
    /// call that may sleep from interrupt context.
    #[track_caller]
    pub fn uvm_km_alloc(&self, size: usize, align: usize, flags: UvmFlags) -> Option<NonNull<u8>> {
        self.alloc_impl(size, align, flags, 0)
    }

    /// `uvm_km_alloc` followed by `guard` inaccessible pages (the guard
    /// pages of kmem's guard mode): touching past the end faults.
    #[track_caller]
    pub fn uvm_km_alloc_guarded(
        &self,
        size: usize,
        guard: usize,
        flags: UvmFlags,
    ) -> Option<NonNull<u8>> {
        self.alloc_impl(size, 0, flags, guard)
    }

    #[track_caller]
    fn alloc_impl(
        &self,
        size: usize,
        align: usize,
        flags: UvmFlags,
        guard: usize,
    ) -> Option<NonNull<u8>> {
        let t = KmType::of(flags, "uvm_km_alloc");
        if flags.unknown() != 0 {
            panic!("uvm_km_alloc: unknown flags {:#x}", flags.unknown());
        }
        if size == 0 {
            panic!("uvm_km_alloc: size 0");
        }
        if flags.contains(UvmFlags::COLORMATCH) && t != KmType::VaOnly {
            panic!("uvm_km_alloc: UVM_KMF_COLORMATCH is for UVM_KMF_VAONLY only");
        }
        if !flags.contains(UvmFlags::COLORMATCH)
            && align != 0
            && (!align.is_power_of_two() || align & (self.ps - 1) != 0)
        {
            panic!(
                "uvm_km_alloc: alignment {align:#x} is not a power-of-two multiple of the page size"
            );
        }
        if !flags.contains(UvmFlags::NOWAIT) {
            assert_sleepable("uvm_km_alloc (without UVM_KMF_NOWAIT)");
        }
        let Some((size, total)) = self.round_guarded(size, guard) else {
            // No address space can hold it.
            self.count_failure();
            return None;
        };
        let align = if flags.contains(UvmFlags::COLORMATCH) {
            0
        } else {
            align
        };
        let vaflags = if flags.contains(UvmFlags::WAITVA) && !flags.contains(UvmFlags::NOWAIT) {
            VmFlags::SLEEP
        } else {
            VmFlags::NOSLEEP
        };
        let arena = &self.regions[t.index()];
        let c = XallocConstraints::new(total).align(align);
        let va = match arena.xalloc(c, vaflags | VmFlags::INSTANTFIT) {
            Ok(v) => v,
            Err(_) => {
                self.count_failure();
                return None;
            }
        };
        let backing = match t {
            KmType::Wired => Some(Backing::Wired),
            KmType::Pageable => Some(Backing::Pageable),
            KmType::VaOnly => {
                self.mark_vaonly(va, size);
                None
            }
        };
        if total > size {
            // The guard pages are this allocation's address space now, but
            // a page freed there earlier may still be committed as cache:
            // give those back, so that the guard faults.
            self.evict_cached(self.page_index(va + size), (total - size) >> self.pshift);
        }
        if let Some(kind) = backing {
            if self.back_or_wait(va, size, kind, flags).is_err() {
                arena.xfree(va, total);
                return None;
            }
            if flags.contains(UvmFlags::EXEC) {
                // SAFETY: committed pages of this allocation.
                let _ = unsafe {
                    self.pages.protect(
                        self.va_of(self.page_index(va)),
                        size,
                        Protection::ReadWriteExec,
                    )
                };
                self.os_calls.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.va_in_use[t.index()].fetch_add(total, Ordering::Relaxed);
        Some(self.va_of(self.page_index(va)))
    }

    /// `uvm_km_free(kernel_map, va, size, type)`: the only way to free
    /// `uvm_km_alloc` memory; the same size and type as allocated.
    ///
    /// # Panics
    /// If `va` was not allocated, or with another size or type; nothing has
    /// changed then.
    #[track_caller]
    pub fn uvm_km_free(&self, va: NonNull<u8>, size: usize, flags: UvmFlags) {
        self.free_impl(va, size, flags, 0)
    }

    /// Free what [`KernelMap::uvm_km_alloc_guarded`] returned, with the
    /// same size and number of guard pages.
    ///
    /// # Panics
    /// As [`KernelMap::uvm_km_free`]; also if `size` and `guard` are
    /// another split of the same total. Nothing has changed then.
    #[track_caller]
    pub fn uvm_km_free_guarded(&self, va: NonNull<u8>, size: usize, guard: usize, flags: UvmFlags) {
        self.free_impl(va, size, flags, guard)
    }

    #[track_caller]
    fn free_impl(&self, va: NonNull<u8>, size: usize, flags: UvmFlags, guard: usize) {
        let t = KmType::of(flags, "uvm_km_free");
        if size == 0 {
            panic!("uvm_km_free: size 0");
        }
        let a = va.as_ptr().addr();
        if a & (self.ps - 1) != 0 {
            panic!("uvm_km_free: va {a:#x} is not page aligned");
        }
        let Some((size, total)) = self.round_guarded(size, guard) else {
            panic!(
                "uvm_km_free: va {a:#x}: size {size:#x} + {guard} guard pages does not match the allocation"
            );
        };
        // The first page tells the region, hence the type; the busy segment
        // tells the size.
        match self.locate(a, self.ps) {
            Some(Where::Region(actual)) if actual == t => {}
            Some(Where::Region(actual)) => {
                panic!(
                    "uvm_km_free: va {a:#x} was allocated as {}, freed as {}",
                    actual.name(),
                    t.name()
                )
            }
            _ => panic!("uvm_km_free: va {a:#x} is not in the kernel map"),
        }
        let arena = &self.regions[t.index()];
        // The regions' arenas have no quantum cache: every allocation is a
        // busy segment, found in the busy hash in constant time.
        match arena.busy_size(a) {
            Some(sz) if sz == total => {}
            Some(sz) => panic!(
                "uvm_km_free: va {a:#x}: size {total:#x} does not match the allocation's {sz:#x}"
            ),
            None => panic!("uvm_km_free: va {a:#x} is not allocated"),
        }
        // The segment is `size + guard` pages; the allocation proper (backed,
        // or VA-only) must be exactly `size` of them, or another split of
        // the same total would unback a guard page or keep a live one.
        let end = self.page_index(self.region_base[t.index()] + self.region_size);
        let checked = match t {
            KmType::Wired => self.unback_checked(a, size, Backing::Wired, end),
            KmType::Pageable => self.unback_checked(a, size, Backing::Pageable, end),
            // From here on `enter` refuses the range.
            KmType::VaOnly => self.unmark_vaonly(a, size, end),
        };
        match checked {
            Ok(()) => {}
            Err(Refused::NotAllocated) => panic!("uvm_km_free: va {a:#x} is not allocated"),
            Err(Refused::Extent) => panic!(
                "uvm_km_free: va {a:#x}: size {size:#x} + {guard} guard pages does not match the allocation's split of {total:#x}"
            ),
        }
        // Pages the caller entered into a VA-only allocation and did not
        // remove go back too.
        if t == KmType::VaOnly
            && self
                .committed_bits
                .count(self.page_index(a), size >> self.pshift)
                != 0
        {
            self.remove_impl(a, size);
        }
        arena.xfree(a, total);
        self.va_in_use[t.index()].fetch_sub(total, Ordering::Relaxed);
    }

    /// Map pages into a VA-only range (NetBSD: `pmap_kenter_pa` over pages
    /// from `uvm_pagealloc`): wired, zero-filled. With `UVM_KMF_NOWAIT` or
    /// `UVM_KMF_CANFAIL`, `None` on a shortage; otherwise it waits for
    /// memory as `uvm_km_alloc` does.
    ///
    /// # Panics
    /// If the range is not inside one VA-only allocation (its guard pages
    /// are outside), or a page of it is already entered; nothing has
    /// changed then.
    #[track_caller]
    pub fn enter(&self, va: NonNull<u8>, size: usize, flags: UvmFlags) -> Option<()> {
        let a = va.as_ptr().addr();
        let size = match self.vaonly_range(a, size) {
            None => {
                panic!("uvm_km: enter: {a:#x}+{size:#x} is not inside a UVM_KMF_VAONLY allocation")
            }
            Some((size, 0)) => size,
            Some(_) => panic!("uvm_km: enter: a page of {a:#x}+{size:#x} is already mapped"),
        };
        self.back_or_wait(a, size, Backing::Entered, flags).ok()
    }

    /// Unmap pages entered with [`KernelMap::enter`] (`pmap_kremove`).
    ///
    /// # Panics
    /// If the range is not inside one VA-only allocation; nothing has
    /// changed then.
    #[track_caller]
    pub fn remove(&self, va: NonNull<u8>, size: usize) {
        let a = va.as_ptr().addr();
        let Some((size, _)) = self.vaonly_range(a, size) else {
            panic!("uvm_km: remove: {a:#x}+{size:#x} is not inside a UVM_KMF_VAONLY allocation");
        };
        self.remove_impl(a, size);
    }

    fn remove_impl(&self, a: usize, size: usize) {
        let first = self.page_index(a);
        let n = size >> self.pshift;
        let entered = self.inuse_bits.count(first, n);
        {
            let mut s = self.state.lock();
            s.wired -= entered;
        }
        self.unback(a, size, Backing::Entered, true);
    }

    // ---- uvm_km_kmem_alloc / uvm_km_kmem_free ----

    /// `uvm_km_kmem_alloc(vmem, size, flags, &va)`: address space from
    /// `vmem` (an arena whose addresses lie in this map, such as
    /// [`KernelMap::kmem_arena`] or one stacked on it), backed by wired
    /// pages. With `VM_NOSLEEP`, `ENOMEM` on a shortage (the address space is
    /// given back); with `VM_SLEEP`, waits for memory.
    #[track_caller]
    pub fn uvm_km_kmem_alloc(
        &self,
        vmem: &Arena,
        size: usize,
        flags: VmFlags,
    ) -> Result<usize, VmemError> {
        self.kmem_alloc_impl(vmem, size, flags, UvmFlags::empty())
    }

    /// [`uvm_km_kmem_alloc`](KernelMap::uvm_km_kmem_alloc), zero-filled
    /// (`UVM_KMF_ZERO`): pages fresh from the page source are zero
    /// already and are not written; only reused cached pages are cleared.
    /// What `kmem_zalloc` of whole pages and a `GlobalAlloc::alloc_zeroed`
    /// want: no memset of memory the OS just zeroed.
    ///
    /// ```
    /// use bsdalloc_uvm_pages::{KernelMap, KmConfig};
    /// use bsdalloc_vmem::VmFlags;
    ///
    /// let map = KernelMap::bootstrap(KmConfig { size: 64 << 20, ..KmConfig::new() }).unwrap();
    /// let ps = map.page_size();
    /// let va = map.uvm_km_kmem_alloc(map.kmem_arena(), 2 * ps, VmFlags::SLEEP).unwrap();
    /// unsafe { (va as *mut u8).write_bytes(0xa5, 2 * ps) };
    /// map.uvm_km_kmem_free(map.kmem_arena(), va, 2 * ps); // cached for reuse
    /// let va = map.uvm_km_kmem_zalloc(map.kmem_arena(), 2 * ps, VmFlags::SLEEP).unwrap();
    /// assert!(unsafe { std::slice::from_raw_parts(va as *const u8, 2 * ps) }.iter().all(|&b| b == 0));
    /// map.uvm_km_kmem_free(map.kmem_arena(), va, 2 * ps);
    /// ```
    #[track_caller]
    pub fn uvm_km_kmem_zalloc(
        &self,
        vmem: &Arena,
        size: usize,
        flags: VmFlags,
    ) -> Result<usize, VmemError> {
        self.kmem_alloc_impl(vmem, size, flags, UvmFlags::ZERO)
    }

    #[track_caller]
    fn kmem_alloc_impl(
        &self,
        vmem: &Arena,
        size: usize,
        flags: VmFlags,
        zero: UvmFlags,
    ) -> Result<usize, VmemError> {
        let Some(size) = self.round(size) else {
            self.count_failure();
            return Err(VmemError::NoMemory);
        };
        let va = vmem.alloc(size, flags.sleep_part() | VmFlags::INSTANTFIT)?;
        if self.locate(va, size) != Some(Where::Kmem) {
            vmem.free(va, size);
            panic!(
                "uvm_km_kmem_alloc: arena '{}' handed out {va:#x}, outside the kmem arena",
                vmem.name()
            );
        }
        let uflags = if flags.contains(VmFlags::NOSLEEP) {
            UvmFlags::NOWAIT | zero
        } else {
            zero
        };
        if self.back_or_wait(va, size, Backing::Wired, uflags).is_err() {
            vmem.free(va, size);
            return Err(VmemError::NoMemory);
        }
        self.va_in_use[3].fetch_add(size, Ordering::Relaxed);
        Ok(va)
    }

    /// `uvm_km_kmem_free(vmem, va, size)`.
    ///
    /// # Panics
    /// If `va` is not a `uvm_km_kmem_alloc` allocation of this map, or
    /// `size` is not its size; nothing has changed then. (Through a quantum
    /// cache, vmem cannot confirm that `va` came from `vmem` rather than
    /// from another arena over the same addresses: vmem's own free checks
    /// that.)
    #[track_caller]
    pub fn uvm_km_kmem_free(&self, vmem: &Arena, va: usize, size: usize) {
        let Some(size) = self.round(size) else {
            panic!("uvm_km_kmem_free: {va:#x}: size {size:#x} does not match the allocation");
        };
        if self.locate(va, size) != Some(Where::Kmem) || va & (self.ps - 1) != 0 {
            panic!("uvm_km_kmem_free: {va:#x}+{size:#x} is not kmem memory of this map");
        }
        // Without a quantum cache, or above qcache_max, the allocation is a
        // busy segment of `vmem`, so the arena confirms its size. Below, a
        // plugged-in quantum cache hands out pieces of its own larger
        // segments, which the busy hash does not see: the page bitmaps
        // decide alone.
        if size > vmem.qcache_max() || !vmem.has_quantum_cache() {
            match vmem.busy_size(va) {
                Some(sz) if sz == size => {}
                Some(sz) => panic!(
                    "uvm_km_kmem_free: {va:#x}: size {size:#x} does not match the allocation's {sz:#x}"
                ),
                None => panic!(
                    "uvm_km_kmem_free: {va:#x} is not allocated in arena '{}'",
                    vmem.name()
                ),
            }
        }
        match self.unback_checked(va, size, Backing::Wired, self.size >> self.pshift) {
            Ok(()) => {}
            Err(Refused::NotAllocated) => panic!(
                "uvm_km_kmem_free: {va:#x} is not allocated in arena '{}'",
                vmem.name()
            ),
            Err(Refused::Extent) => {
                panic!("uvm_km_kmem_free: {va:#x}: size {size:#x} does not match the allocation")
            }
        }
        vmem.free(va, size);
        self.va_in_use[3].fetch_sub(size, Ordering::Relaxed);
    }

    /// `uvm_km_va_starved_p`: free space in the kmem arena below 10 %.
    pub fn va_starved(&self) -> bool {
        let total = self.kmem.size(SizeType::ALL);
        self.kmem.size(SizeType::FREE) < total / 10
    }

    /// A counters snapshot.
    pub fn stats(&self) -> KmStats {
        let s = self.state.lock();
        KmStats {
            va_reserved: self.size,
            va_in_use: core::array::from_fn(|i| self.va_in_use[i].load(Ordering::Relaxed)),
            committed_pages: s.committed,
            wired_pages: s.wired,
            pageable_pages: s.pageable,
            cached_pages: s.cached,
            pages_returned: s.pages_returned,
            os_calls: self.os_calls.load(Ordering::Relaxed),
            pagedaemon_runs: s.pagedaemon_runs,
            sleeps: s.sleeps,
            failures: s.failures,
            limit_pages: self.limit,
            free_target_pages: self.free_target,
        }
    }

    /// Tear the map down: give every cached page, the address space and the
    /// map's own memory back to the page source.
    ///
    /// Takes a pointer, not a reference: the map lives in the memory this
    /// releases, and a reference argument would have to outlive the call.
    ///
    /// # Panics
    /// If anything is still allocated; nothing has changed then.
    ///
    /// # Safety
    /// `map` came from [`KernelMap::bootstrap`], was not destroyed yet, and
    /// nothing uses the map (or a reference to it) afterwards.
    #[track_caller]
    pub unsafe fn destroy(map: NonNull<KernelMap>) {
        let (pages, reservation, size, meta, meta_len) = {
            // SAFETY: the caller's contract: a live map; this reference
            // ends before its memory is released below.
            let this = unsafe { map.as_ref() };
            let st = this.stats();
            if st.va_in_use.iter().any(|&v| v != 0) || st.wired_pages != 0 || st.pageable_pages != 0
            {
                panic!(
                    "uvm_km: destroy with memory still allocated: {:?}",
                    st.va_in_use
                );
            }
            this.trim_cache(0);
            for a in &this.regions {
                a.destroy();
            }
            this.kmem.destroy();
            (
                this.pages,
                this.va.start(),
                this.size,
                this.meta,
                this.meta_len,
            )
        };
        // SAFETY: the reservation and the meta area are ours and unused now
        // (nothing in the map needs dropping, and no reference to it is
        // live); the caller guarantees no further use of the map.
        unsafe {
            pages.release(reservation, size);
            pages.decommit(meta, meta_len);
            pages.release(meta, meta_len);
        }
    }
}
