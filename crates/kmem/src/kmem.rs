//! The kmem instance (`kmem_init` and the arenas of `uvm_km_bootstrap`):
//! configuration, the arena stack, the caches, destroy and census.

use core::cell::UnsafeCell;
use core::fmt;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use bsdalloc_platform::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use bsdalloc_platform::{AdaptiveMutex, Ipl, LockRank, PageSource, assert_not_in_interrupt};
use bsdalloc_pool::{KmemAllocator, PrFlags, pool_register_pagedaemon};
use bsdalloc_pool_cache::{
    PoolCacheConfig, QuantumCaches, RawPoolCache, pool_cache_destroy, pool_cache_init,
    vmem_qcache_init,
};
use bsdalloc_uvm_pages::{BootError, KernelMap, KmConfig, KmemSource};
use bsdalloc_vmem::{
    Arena, ArenaConfig, SizeType, VmFlags, vmem_create, vmem_destroy, vmem_xcreate,
};

use crate::classes::{MAX_CLASSES, SizeClasses};
use crate::owners::{ClassAllocator, PageOwners};
use crate::pages::LargePages;

/// `COHERENCY_UNIT` of the machines this runs on by default (x86-64,
/// aarch64): 64 bytes.
pub const COHERENCY_UNIT: usize = 64;

/// Below this kmem arena size the `kva` quantum caches cover 4 pages
/// instead of 16 (NetBSD's `kmem_arena_small`).
pub const KMEM_ARENA_SMALL: usize = 64 << 20;

/// How to set up a kmem instance (`uvm_km_bootstrap` + `kmem_init`).
///
/// Either over an existing kernel map ([`KmemConfig::map`]: the process's
/// default instance uses pool's standard map) or over a map of its own,
/// built from `va_size`, `limit_pages`, `free_target_pages`, the page
/// source and the page size.
#[derive(Clone, Copy)]
pub struct KmemConfig {
    /// `PAGE_SIZE`: 0 for the page source's (or the given map's). A
    /// power-of-two multiple of the page source's page size builds the map
    /// over [`LargePages`].
    pub page_size: usize,
    /// `COHERENCY_UNIT`: the cache-line size the size classes are computed
    /// for.
    pub coherency_unit: usize,
    /// Address space of a map of its own, in bytes (half of it is the kmem
    /// arena).
    pub va_size: usize,
    /// A map of its own: the most pages committed at once (0: no limit).
    /// `KM_SLEEP` allocations sleep at the limit until memory is freed.
    pub limit_pages: usize,
    /// A map of its own: freed pages kept committed for reuse.
    pub free_target_pages: usize,
    /// A map of its own: where pages come from (`None`: the OS, with
    /// `std`).
    pub pages: Option<&'static dyn PageSource>,
    /// Use this map instead of building one.
    pub map: Option<&'static KernelMap>,
    /// Feature `guard`: how many freed allocations stay unmapped in the
    /// quarantine FIFO before their address space is reused (NetBSD's
    /// `kmem_guard_depth`); 0 frees address space at once.
    pub guard_depth: usize,
    /// A map of its own becomes the pool subsystem's map
    /// (`pool_subsystem_init`) before the caches are created, so that the
    /// pools' own metadata and every other pool and pool cache use it too:
    /// one kernel map for the whole stack, as NetBSD boots. Refused
    /// ([`KmemError::Config`]) if the pool subsystem has a map already.
    pub pool_map: bool,
    /// Keep a tag per page of the kmem arena so that
    /// [`Kmem::lookup_size`] finds an allocation's size from its address
    /// in constant time (what a C `free(p)` needs). Costs 4 bytes per
    /// page of the arena, taken from the map's page source outside its
    /// budget (demand-zero with the OS's pages), and a store when a page
    /// changes hands; nothing on the object paths. Not with the `guard`
    /// feature.
    pub size_lookup: bool,
    /// **An extension, not in NetBSD:** the caches of size classes up to
    /// this many bytes are created with `PR_LARGECACHE` (63 objects per
    /// group instead of 15), so a CPU goes to the depot a quarter as
    /// often. For small objects passed between threads (a producer and a
    /// consumer) the depot is the whole cost: 0 (NetBSD's kmem: every
    /// cache has normal groups) by default; cmalloc uses 64. Each CPU may
    /// then hold up to 126 objects of each such class.
    pub large_groups: usize,
}

impl fmt::Debug for KmemConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmemConfig")
            .field("page_size", &self.page_size)
            .field("coherency_unit", &self.coherency_unit)
            .field("va_size", &self.va_size)
            .field("limit_pages", &self.limit_pages)
            .field("free_target_pages", &self.free_target_pages)
            .field("own_pages", &self.pages.is_some())
            .field("map", &self.map.map(|m| m.range()))
            .field("guard_depth", &self.guard_depth)
            .field("pool_map", &self.pool_map)
            .field("size_lookup", &self.size_lookup)
            .field("large_groups", &self.large_groups)
            .finish()
    }
}

impl KmemConfig {
    /// A map of its own: 1 GiB of address space, no memory limit, 256
    /// cached free pages, the OS's pages at the OS's page size, 64-byte
    /// cache lines, a guard quarantine of 64 allocations.
    pub const fn new() -> KmemConfig {
        KmemConfig {
            page_size: 0,
            coherency_unit: COHERENCY_UNIT,
            va_size: 1 << 30,
            limit_pages: 0,
            free_target_pages: 256,
            pages: None,
            map: None,
            guard_depth: 64,
            pool_map: false,
            size_lookup: false,
            large_groups: 0,
        }
    }

    /// `PAGE_SIZE` (0: the page source's).
    #[must_use]
    pub const fn page_size(mut self, ps: usize) -> Self {
        self.page_size = ps;
        self
    }

    /// `COHERENCY_UNIT`.
    #[must_use]
    pub const fn coherency_unit(mut self, cu: usize) -> Self {
        self.coherency_unit = cu;
        self
    }

    /// Address space of the map, in bytes.
    #[must_use]
    pub const fn va_size(mut self, bytes: usize) -> Self {
        self.va_size = bytes;
        self
    }

    /// The memory budget in pages (0: none).
    #[must_use]
    pub const fn limit_pages(mut self, pages: usize) -> Self {
        self.limit_pages = pages;
        self
    }

    /// Freed pages kept committed.
    #[must_use]
    pub const fn free_target_pages(mut self, pages: usize) -> Self {
        self.free_target_pages = pages;
        self
    }

    /// The page source of the map.
    #[must_use]
    pub const fn pages(mut self, pages: &'static dyn PageSource) -> Self {
        self.pages = Some(pages);
        self
    }

    /// An existing kernel map (page size, budget and page source are the
    /// map's).
    #[must_use]
    pub const fn map(mut self, map: &'static KernelMap) -> Self {
        self.map = Some(map);
        self
    }

    /// The guard quarantine depth.
    #[must_use]
    pub const fn guard_depth(mut self, depth: usize) -> Self {
        self.guard_depth = depth;
        self
    }

    /// Make the map built here the pool subsystem's
    /// ([`pool_map`](KmemConfig::pool_map)).
    #[must_use]
    pub const fn pool_map(mut self, yes: bool) -> Self {
        self.pool_map = yes;
        self
    }

    /// Keep page tags for [`Kmem::lookup_size`]
    /// ([`size_lookup`](KmemConfig::size_lookup)).
    #[must_use]
    pub const fn size_lookup(mut self, yes: bool) -> Self {
        self.size_lookup = yes;
        self
    }

    /// `PR_LARGECACHE` for the caches of classes up to `max_size` bytes
    /// ([`large_groups`](KmemConfig::large_groups); 0: none, as NetBSD).
    ///
    /// ```
    /// use bsdalloc_kmem::{Kmem, KmemConfig};
    ///
    /// static K: Kmem = Kmem::new();
    /// K.bootstrap(KmemConfig::new().large_groups(64)).unwrap();
    /// for (i, c) in K.size_classes().classes().iter().enumerate() {
    ///     let per_group = K.cache(i).unwrap().group_size();
    ///     assert_eq!(per_group, if c.size <= 64 { 63 } else { 15 }, "{}", c.name);
    /// }
    /// // SAFETY: nothing is allocated.
    /// unsafe { K.destroy() };
    /// ```
    #[must_use]
    pub const fn large_groups(mut self, max_size: usize) -> Self {
        self.large_groups = max_size;
        self
    }
}

impl Default for KmemConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a kmem instance could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KmemError {
    /// The configuration is inconsistent.
    #[error("kmem_init: {0}")]
    Config(&'static str),
    /// The kernel map could not be built.
    #[error("kmem_init: {0}")]
    Map(BootError),
    /// An arena of the stack could not be created.
    #[error("kmem_init: cannot create arena '{0}'")]
    Arena(&'static str),
    /// The instance is set up already.
    #[error("kmem_init: already initialised")]
    AlreadyInitialised,
}

/// A value written once, under the instance's boot lock, before the state
/// that publishes it (`READY`, a release store) — so every reader that saw
/// `READY` (an acquire load) sees it. A plain cell, not the loom shim's:
/// references to it are handed out for `'static`, which loom's tracked
/// cells cannot model; kmem has no loom model.
pub(crate) struct Slot<T>(UnsafeCell<MaybeUninit<T>>);

// SAFETY: written only under the boot lock while nobody reads (state not
// READY), read only after the READY publication (see `Kmem`).
unsafe impl<T: Sync> Sync for Slot<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Slot<T> {}

impl<T> Slot<T> {
    pub(crate) const fn new() -> Slot<T> {
        Slot(UnsafeCell::new(MaybeUninit::uninit()))
    }

    /// # Safety
    /// The boot lock is held and nobody reads the slot (the instance is
    /// not `READY`).
    pub(crate) unsafe fn set(&self, v: T) -> &T {
        // SAFETY: the caller's contract: exclusive access.
        unsafe { (*self.0.get()).write(v) }
    }

    /// # Safety
    /// The slot was set, and the setter's writes are visible (the caller
    /// saw `READY` with an acquire load, or is the setter).
    #[inline(always)]
    pub(crate) unsafe fn get(&self) -> &T {
        // SAFETY: the caller's contract.
        unsafe { (*self.0.get()).assume_init_ref() }
    }
}

pub(crate) const UNINIT: u8 = 0;
pub(crate) const BOOTING: u8 = 1;
pub(crate) const READY: u8 = 2;

/// What bootstrap built: immutable until destroy.
pub(crate) struct Inner {
    pub(crate) map: &'static KernelMap,
    pub(crate) own_map: bool,
    pub(crate) ps: usize,
    pub(crate) classes: SizeClasses,
    pub(crate) caches: [Option<&'static RawPoolCache>; MAX_CLASSES],
    /// The fast path's table: slot `(size + 7) / 8` is the cache of a
    /// request of `size` bytes up to `KMEM_MAXSIZE` (slot 0, size 0, has
    /// none). Built only where the fast path exists (no debug feature or
    /// checker cfg): the request is then its own `allocsz`.
    pub(crate) fast: [Option<&'static RawPoolCache>; crate::alloc::FAST_SLOTS],
    /// `kmem_va_arena`: address space of large allocations, with quantum
    /// caches up to `qcache_max`.
    pub(crate) kva: &'static Arena,
    pub(crate) kva_qc: &'static QuantumCaches,
    /// `kmem_va_meta_arena`.
    pub(crate) va_meta: &'static Arena,
    /// `kmem_meta_arena`: backed memory for kmem's own metadata.
    pub(crate) meta: &'static Arena,
    /// Bytes of the kmem arena: no allocation can be larger.
    pub(crate) arena_size: usize,
    #[cfg_attr(not(feature = "guard"), allow(dead_code))]
    pub(crate) guard_depth: usize,
}

/// Large-path counters.
pub(crate) struct LargeCounters {
    pub(crate) allocs: AtomicU64,
    pub(crate) frees: AtomicU64,
    pub(crate) fails: AtomicU64,
    pub(crate) live: AtomicUsize,
    pub(crate) live_bytes: AtomicUsize,
}

/// NetBSD's kmem subsystem: the size-class caches, the `kva` arena for
/// large sizes, the `vmem-va` and `vmem-meta` arenas, over a kernel map.
///
/// Construct it in place (`const`, so it can be a `static`) and
/// [`bootstrap`](Kmem::bootstrap) it; the process-wide default behind
/// [`kmem_alloc`](crate::kmem_alloc) is one such static, set up at first
/// use (feature `std`) or by [`kmem_init`](crate::kmem_init).
///
/// ```
/// use bsdalloc_kmem::{KM_NOSLEEP, KM_SLEEP, Kmem, KmemConfig};
///
/// // A machine with 16 KiB pages, 128-byte cache lines and a 4 MiB budget.
/// static K: Kmem = Kmem::new();
/// K.bootstrap(KmemConfig::new().page_size(16384).coherency_unit(128).limit_pages(256))
///     .unwrap();
/// let p = K.alloc(100, KM_SLEEP).unwrap();          // kmem-00128
/// assert_eq!(p.as_ptr().addr() % 128, 0);
/// let big = K.alloc(40_000, KM_NOSLEEP).unwrap();   // 3 pages from kva
/// assert_eq!(big.as_ptr().addr() % 16384, 0);
/// unsafe {
///     K.free(p.as_ptr(), 100);
///     K.free(big.as_ptr(), 40_000);
///     K.destroy();                                  // everything back
/// }
/// ```
pub struct Kmem {
    pub(crate) state: AtomicU8,
    /// Serialises bootstrap and destroy; set-up and publication happen
    /// under it, so two first users never both build an instance.
    boot: AdaptiveMutex<()>,
    /// The process-wide default: set up at first use (with `std`).
    pub(crate) auto: bool,
    large_pages: Slot<LargePages>,
    meta_src: Slot<KmemSource>,
    pallocs: [Slot<ClassAllocator>; MAX_CLASSES],
    pub(crate) owners: Slot<Option<PageOwners>>,
    pub(crate) inner: Slot<Inner>,
    pub(crate) large: LargeCounters,
    #[cfg(feature = "poison")]
    pub(crate) ctors: [crate::debug::PoisonCtor; MAX_CLASSES],
    #[cfg(any(bsdalloc_asan, bsdalloc_valgrind))]
    dtors: [crate::track::TrackDtor; MAX_CLASSES],
    #[cfg(feature = "guard")]
    pub(crate) guard: crate::guard::Guard,
}

// SAFETY: the slots are written once under the boot lock before READY is
// published and only read after; everything else is atomics and locks.
unsafe impl Sync for Kmem {}
// SAFETY: as above.
unsafe impl Send for Kmem {}

impl fmt::Debug for Kmem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Kmem");
        d.field("ready", &self.is_ready());
        if let Some(k) = self.try_inner() {
            d.field("page_size", &k.ps)
                .field("coherency_unit", &k.classes.coherency_unit())
                .field("own_map", &k.own_map);
        }
        d.finish_non_exhaustive()
    }
}

impl Default for Kmem {
    fn default() -> Self {
        Self::new()
    }
}

impl Kmem {
    /// An instance, not yet set up.
    pub const fn new() -> Kmem {
        Kmem {
            state: AtomicU8::new(UNINIT),
            boot: AdaptiveMutex::ranked(LockRank::None, ()),
            auto: false,
            large_pages: Slot::new(),
            meta_src: Slot::new(),
            pallocs: [const { Slot::new() }; MAX_CLASSES],
            owners: Slot::new(),
            inner: Slot::new(),
            large: LargeCounters {
                allocs: AtomicU64::new(0),
                frees: AtomicU64::new(0),
                fails: AtomicU64::new(0),
                live: AtomicUsize::new(0),
                live_bytes: AtomicUsize::new(0),
            },
            #[cfg(feature = "poison")]
            ctors: crate::debug::PoisonCtor::all(),
            #[cfg(any(bsdalloc_asan, bsdalloc_valgrind))]
            dtors: crate::track::TrackDtor::all(),
            #[cfg(feature = "guard")]
            guard: crate::guard::Guard::new(),
        }
    }

    /// The process-wide default instance's storage.
    pub(crate) const fn new_default() -> Kmem {
        let mut k = Kmem::new();
        k.auto = true;
        k
    }

    /// Whether [`bootstrap`](Kmem::bootstrap) has run (and destroy has not).
    #[inline(always)]
    pub fn is_ready(&self) -> bool {
        self.state.load(Ordering::Acquire) == READY
    }

    #[inline(always)]
    pub(crate) fn try_inner(&self) -> Option<&Inner> {
        // SAFETY: READY was seen with an acquire load.
        self.is_ready().then(|| unsafe { self.inner.get() })
    }

    /// The built state; the default instance is set up here at first use.
    #[inline(always)]
    #[track_caller]
    pub(crate) fn inner(&self) -> &Inner {
        if self.state.load(Ordering::Acquire) == READY {
            // SAFETY: READY was seen with an acquire load.
            return unsafe { self.inner.get() };
        }
        self.not_ready()
    }

    #[cold]
    #[inline(never)]
    #[track_caller]
    fn not_ready(&self) -> &Inner {
        if self.auto {
            crate::api::default_boot();
            if let Some(k) = self.try_inner() {
                return k;
            }
        }
        panic!("kmem: used before kmem_init (Kmem::bootstrap)")
    }

    /// `uvm_km_bootstrap`'s arenas and `kmem_init`: build (or take) the
    /// kernel map, then the arena stack of spec §4.4 over its kmem arena —
    /// `kva` (importing from `kmem`, quantum caches of 4 pages if the kmem
    /// arena is under 64 MiB, else 16), `vmem-va` (importing ×16 from
    /// `kmem`) and `vmem-meta` (backed memory imported from `vmem-va`) —
    /// and one pool cache per size class, `IPL_VM`, whose pages come from
    /// the map's kmem arena. Everything is set up and published under the
    /// instance's lock: a second caller waits and gets
    /// [`KmemError::AlreadyInitialised`].
    ///
    /// # Panics
    /// From interrupt context.
    pub fn bootstrap(&'static self, cfg: KmemConfig) -> Result<(), KmemError> {
        assert_not_in_interrupt("kmem_init");
        let _g = self.boot.lock();
        if self.state.load(Ordering::Acquire) != UNINIT {
            return Err(KmemError::AlreadyInitialised);
        }
        self.state.store(BOOTING, Ordering::Relaxed);
        // SAFETY: the boot lock is held and the instance is not READY.
        let r = unsafe { self.build(cfg) };
        match r {
            Ok(()) => {
                self.state.store(READY, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                self.state.store(UNINIT, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// # Safety
    /// The boot lock is held and the instance is not READY.
    unsafe fn build(&'static self, cfg: KmemConfig) -> Result<(), KmemError> {
        if cfg.size_lookup && cfg!(feature = "guard") {
            return Err(KmemError::Config("size lookup is not available with guard"));
        }
        let cu = cfg.coherency_unit;
        if !cu.is_power_of_two() || cu < crate::KMEM_ALIGN {
            return Err(KmemError::Config(
                "COHERENCY_UNIT must be a power of two of at least 8",
            ));
        }
        if cfg.page_size != 0 && (!cfg.page_size.is_power_of_two() || cfg.page_size < 4096) {
            return Err(KmemError::Config(
                "PAGE_SIZE must be a power of two of at least 4096",
            ));
        }
        let (map, own_map) = match cfg.map {
            Some(m) => {
                if cfg.page_size != 0 && cfg.page_size != m.page_size() {
                    return Err(KmemError::Config(
                        "PAGE_SIZE differs from the given kernel map's",
                    ));
                }
                (m, false)
            }
            None => {
                if cfg.pool_map && bsdalloc_pool::pool_subsystem_map().is_some() {
                    return Err(KmemError::Config(
                        "the pool subsystem has a kernel map already",
                    ));
                }
                let pages: &'static dyn PageSource = match cfg.pages {
                    Some(p) => p,
                    #[cfg(feature = "std")]
                    None => &bsdalloc_platform::OS_PAGES,
                    #[cfg(not(feature = "std"))]
                    None => return Err(KmemError::Config("no page source (and no std)")),
                };
                let pages: &'static dyn PageSource =
                    if cfg.page_size == 0 || cfg.page_size == pages.page_size() {
                        pages
                    } else {
                        if cfg.page_size < pages.page_size() {
                            return Err(KmemError::Config(
                                "PAGE_SIZE is smaller than the page source's",
                            ));
                        }
                        // SAFETY: the caller's contract (boot lock, not READY).
                        unsafe { self.large_pages.set(LargePages::new(pages, cfg.page_size)) }
                    };
                let m = KernelMap::bootstrap(KmConfig {
                    size: cfg.va_size,
                    limit_pages: cfg.limit_pages,
                    free_target_pages: cfg.free_target_pages,
                    pages,
                })
                .map_err(KmemError::Map)?;
                if cfg.pool_map {
                    // Every pool's pages and metadata on this map; its
                    // pagedaemon drains them.
                    bsdalloc_pool::pool_subsystem_init(m);
                } else {
                    // The pools' pagedaemon drains the caches when this
                    // map's budget runs short.
                    pool_register_pagedaemon(m);
                }
                // The pool subsystem's map outlives this instance: not
                // destroyed with it (nor when a later step fails).
                (m, !cfg.pool_map)
            }
        };
        let ps = map.page_size();
        if cu > ps {
            // SAFETY: nothing was allocated from the fresh map.
            unsafe { undo_map(map, own_map) };
            return Err(KmemError::Config("COHERENCY_UNIT is larger than PAGE_SIZE"));
        }
        let classes = SizeClasses::compute(ps, cu);
        let arena_size = map.kmem_arena().size(SizeType::ALL);
        let qmax = if arena_size < KMEM_ARENA_SMALL { 4 } else { 16 } * ps;
        let kmem_arena: &'static Arena = map.kmem_arena();
        let Some(kva) = vmem_create(
            ArenaConfig::new("kva", ps)
                .source(kmem_arena)
                .qcache_max(qmax)
                .flags(VmFlags::NOSLEEP)
                .ipl(Ipl::Vm),
            0,
            0,
        ) else {
            // SAFETY: nothing was allocated from the map.
            unsafe { undo_map(map, own_map) };
            return Err(KmemError::Arena("kva"));
        };
        let kva_qc = vmem_qcache_init(kva);
        let Some(va_meta) = vmem_create(
            ArenaConfig::new("vmem-va", ps)
                .source(kmem_arena)
                .flags(VmFlags::NOSLEEP | VmFlags::LARGEIMPORT)
                .ipl(Ipl::Vm),
            0,
            0,
        ) else {
            // SAFETY: fresh and unused.
            unsafe {
                vmem_destroy(kva);
                undo_map(map, own_map);
            }
            return Err(KmemError::Arena("vmem-va"));
        };
        // SAFETY: the caller's contract.
        let src: &'static KmemSource = unsafe { self.meta_src.set(KmemSource::new(map, va_meta)) };
        let Some(meta) = vmem_xcreate(
            ArenaConfig::new("vmem-meta", ps)
                .source(src)
                .flags(VmFlags::NOSLEEP)
                .ipl(Ipl::Vm),
            0,
            0,
        ) else {
            // SAFETY: fresh and unused.
            unsafe {
                vmem_destroy(va_meta);
                vmem_destroy(kva);
                undo_map(map, own_map);
            }
            return Err(KmemError::Arena("vmem-meta"));
        };
        // Pool pages come straight from the map's kmem arena, NetBSD's
        // single-page `uvm_km_kmem_alloc` on a direct-mapped port: a
        // PR_NOWAIT grow holds the pool lock, and going through kva's
        // quantum caches would take another pool's lock inside it.
        let owners = if cfg.size_lookup {
            let Some(o) = PageOwners::new(map) else {
                // SAFETY: fresh and unused.
                unsafe {
                    vmem_destroy(meta);
                    vmem_destroy(va_meta);
                    vmem_destroy(kva);
                    undo_map(map, own_map);
                }
                return Err(KmemError::Arena("page tags"));
            };
            Some(o)
        } else {
            None
        };
        // SAFETY: the caller's contract.
        let owners: Option<&'static PageOwners> = unsafe { self.owners.set(owners) }.as_ref();
        let mut caches = [None; MAX_CLASSES];
        for (i, c) in classes.classes().iter().enumerate() {
            // SAFETY: the caller's contract.
            let palloc: &'static ClassAllocator = unsafe {
                self.pallocs[i].set(ClassAllocator {
                    inner: KmemAllocator::with_map("kmem", map, ps),
                    class: i,
                    owners,
                })
            };
            let mut flags = if c.notouch {
                PrFlags::NOTOUCH
            } else {
                PrFlags::empty()
            };
            if c.size <= cfg.large_groups {
                flags |= PrFlags::LARGECACHE;
            }
            // Address-only groups: kmem never records physical addresses.
            let pcc = PoolCacheConfig::new(c.name, c.size)
                .align(c.align)
                .flags(flags)
                .ipl(Ipl::Vm)
                .allocator(palloc)
                .no_paddr();
            #[cfg(feature = "poison")]
            let pcc = pcc.ctor(&self.ctors[c.candidate as usize]);
            #[cfg(any(bsdalloc_asan, bsdalloc_valgrind))]
            let pcc = pcc.dtor(&self.dtors[c.candidate as usize]);
            caches[i] = Some(pool_cache_init(pcc));
        }
        // SAFETY: the caller's contract.
        let k = unsafe {
            self.inner.set(Inner {
                map,
                own_map,
                ps,
                fast: crate::alloc::fast_table(&classes, &caches),
                classes,
                caches,
                kva,
                kva_qc,
                va_meta,
                meta,
                arena_size,
                guard_depth: cfg.guard_depth,
            })
        };
        #[cfg(feature = "guard")]
        self.guard.init(k);
        let _ = k;
        Ok(())
    }

    /// Tear the instance down: every cache is invalidated and destroyed,
    /// the guard quarantine emptied, the arenas destroyed, and a map of its
    /// own destroyed (every page back to the page source). The storage may
    /// be bootstrapped again.
    ///
    /// # Panics
    /// If anything is still allocated ("kmem: destroy with N allocations
    /// outstanding"; nothing has changed then, but the caches were
    /// invalidated); if not set up; from interrupt context.
    ///
    /// # Safety
    /// Nobody uses the instance during or after the call (until a new
    /// bootstrap), and no pointer it handed out is used again.
    #[track_caller]
    pub unsafe fn destroy(&'static self) {
        assert_not_in_interrupt("kmem_destroy");
        let _g = self.boot.lock();
        let Some(k) = self.try_inner() else {
            panic!("kmem: destroy of an instance that is not set up");
        };
        #[cfg(feature = "guard")]
        self.guard.flush(k);
        let census = self.census();
        if census.outstanding() != 0 {
            panic!(
                "kmem: destroy with {} allocations outstanding ({} cached objects, {} large, {} guarded)",
                census.outstanding(),
                census.objects_out,
                census.large_out,
                census.guarded_out
            );
        }
        self.state.store(BOOTING, Ordering::Relaxed);
        for pc in k.caches.iter().flatten() {
            // SAFETY: the caller's contract: nobody uses the caches.
            unsafe { pool_cache_destroy(pc) };
        }
        #[cfg(feature = "guard")]
        self.guard.fini(k);
        // SAFETY: the caller's contract; the arenas are idle (the census
        // found nothing out, and the guard storage went back).
        unsafe {
            vmem_destroy(k.meta);
            vmem_destroy(k.va_meta);
            vmem_destroy(k.kva);
            if let Some(o) = self.owners.get() {
                o.free(k.map);
            }
            undo_map(k.map, k.own_map);
        }
        for c in [&self.large.allocs, &self.large.frees, &self.large.fails] {
            c.store(0, Ordering::Relaxed);
        }
        self.state.store(UNINIT, Ordering::Release);
    }

    /// What is outstanding: objects out of the caches' pools (after
    /// invalidating every cache, so cached free objects do not count),
    /// large allocations, and address space of the `kva` arena in use.
    /// All zero once everything allocated was freed.
    ///
    /// # Panics
    /// If not set up; from interrupt context (invalidation cross-calls).
    pub fn census(&self) -> KmemCensus {
        let k = self.inner();
        let mut objects_out = 0u64;
        for pc in k.caches.iter().flatten() {
            pc.invalidate();
            objects_out += u64::from(pc.pool().stats().nout);
        }
        #[cfg(feature = "guard")]
        let guarded = self.guard.live();
        #[cfg(not(feature = "guard"))]
        let guarded = 0;
        KmemCensus {
            objects_out,
            large_out: self.large.live.load(Ordering::Relaxed),
            large_bytes: self.large.live_bytes.load(Ordering::Relaxed),
            guarded_out: guarded,
        }
    }

    /// The page size this instance works with (`PAGE_SIZE`).
    #[inline]
    pub fn page_size(&self) -> usize {
        self.inner().ps
    }

    /// The size classes of this instance.
    #[inline]
    pub fn size_classes(&self) -> &SizeClasses {
        &self.inner().classes
    }

    /// The kernel map under this instance.
    #[inline]
    pub fn map(&self) -> &'static KernelMap {
        self.inner().map
    }

    /// `kmem_va_arena` ("kva").
    pub fn kva_arena(&self) -> &'static Arena {
        self.inner().kva
    }

    /// The `kva` arena's quantum caches.
    pub fn kva_quantum_caches(&self) -> &'static QuantumCaches {
        self.inner().kva_qc
    }

    /// `kmem_va_meta_arena` ("vmem-va").
    pub fn va_meta_arena(&self) -> &'static Arena {
        self.inner().va_meta
    }

    /// `kmem_meta_arena` ("vmem-meta"): backed memory.
    pub fn meta_arena(&self) -> &'static Arena {
        self.inner().meta
    }

    /// The cache of size class `i` (an index into
    /// [`SizeClasses::classes`]).
    pub fn cache(&self, i: usize) -> Option<&'static RawPoolCache> {
        self.inner().caches.get(i).copied().flatten()
    }

    /// Invalidate every cache (their free objects go back to the pools)
    /// and reclaim the pools' idle pages.
    ///
    /// # Panics
    /// From interrupt context.
    pub fn reclaim(&self) {
        let k = self.inner();
        for pc in k.caches.iter().flatten() {
            pc.reclaim();
        }
        k.kva.reclaim();
    }

    /// A pointer into the map for address `va` (pointers keep the map's
    /// provenance).
    pub(crate) fn ptr(k: &Inner, va: usize) -> NonNull<u8> {
        k.map
            .va_ptr(va)
            .unwrap_or_else(|| panic!("kmem: address {va:#x} outside the kernel map"))
    }
}

/// Destroy a map of the instance's own.
///
/// # Safety
/// Nothing uses the map any more.
unsafe fn undo_map(map: &'static KernelMap, own: bool) {
    if own {
        // SAFETY: the caller's contract; a map from `KernelMap::bootstrap`.
        unsafe { KernelMap::destroy(NonNull::from(map)) };
    }
}

/// What a kmem instance has outstanding ([`Kmem::census`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KmemCensus {
    /// Objects out of the size-class caches' pools.
    pub objects_out: u64,
    /// Large (whole-page) allocations live.
    pub large_out: usize,
    /// Bytes of live large allocations (page-rounded).
    pub large_bytes: usize,
    /// Guard-mode allocations live (feature `guard`).
    pub guarded_out: usize,
}

impl KmemCensus {
    /// Everything outstanding.
    pub fn outstanding(&self) -> u64 {
        self.objects_out + self.large_out as u64 + self.guarded_out as u64
    }
}
