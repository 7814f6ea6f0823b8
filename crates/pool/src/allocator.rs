//! Back-end page allocators (`struct pool_allocator`): the trait, the
//! standard allocators over uvm-pages' kernel map (kmem, nointr, meta, the
//! big ones), a vmem arena as a back end, and the kernel map the standard
//! allocators use.

use core::fmt;
use core::ptr::{self, NonNull};

use bsdalloc_platform::sync::atomic::{AtomicPtr, Ordering};
use bsdalloc_platform::{AdaptiveMutex, LockRank, assert_not_in_interrupt};
use bsdalloc_uvm_pages::KernelMap;
use bsdalloc_vmem::{Arena, ArenaConfig, VmFlags};

use crate::flags::{POOL_ALLOCATOR_BIG_BASE, POOL_ALLOCATOR_BIG_COUNT, PrFlags};

/// NetBSD's `struct pool_allocator`: where a pool's pages come from.
///
/// # Safety
/// `alloc(pagesz, _)` returns `pagesz` bytes that nobody else uses until
/// they are given back with `free`, aligned to `pagesz` (unless every pool
/// using the allocator is `PR_NOALIGN`), readable and writable if
/// [`is_memory`](PoolAllocator::is_memory). `alloc` with `PR_NOWAIT` must
/// not sleep, and may be called with the pool's lock held: it must not
/// take a lock ranked at or before the pool's (vmem arenas and the kernel
/// map rank after it), nor call back into the same pool.
pub unsafe trait PoolAllocator: Sync {
    /// `pa_pagesz`: the page size; 0 means `PAGE_SIZE` (the kernel map's).
    fn pagesz(&self) -> usize;

    /// `pa_alloc`: one page of `pagesz` bytes; `flags` holds `PR_WAITOK`
    /// (may sleep until memory exists) or `PR_NOWAIT`.
    fn alloc(&self, pagesz: usize, flags: PrFlags) -> Option<NonNull<u8>>;

    /// `pa_free`: give back a page `alloc(pagesz, _)` returned.
    ///
    /// # Safety
    /// `page` came from this allocator's `alloc` with the same `pagesz`,
    /// and nothing uses it any more.
    unsafe fn free(&self, page: NonNull<u8>, pagesz: usize);

    /// A name for diagnostics.
    fn name(&self) -> &'static str;

    /// Whether pages are memory. An allocator of other resources (a vmem
    /// arena of IDs) hands out addresses that must never be touched: only
    /// `PR_NOTOUCH` pools may use it.
    fn is_memory(&self) -> bool {
        true
    }
}

impl fmt::Debug for dyn PoolAllocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolAllocator")
            .field("name", &self.name())
            .field("pagesz", &self.pagesz())
            .finish()
    }
}

// ---- the kernel map of the standard allocators ----

static MAP: AtomicPtr<KernelMap> = AtomicPtr::new(ptr::null_mut());
static META: AtomicPtr<Arena> = AtomicPtr::new(ptr::null_mut());
/// Serialises setting up the map and the meta arena (thread context).
static BOOT: AdaptiveMutex<()> = AdaptiveMutex::ranked(LockRank::None, ());

/// `pool_subsystem_init`: the kernel map whose kmem arena the standard
/// allocators take pages from, and whose pagedaemon drains the pools. In
/// user space (feature `std`) a map of 64 GiB of address space is set up
/// at first use if this was not called. Idempotent for the same map.
///
/// # Panics
/// If a different map was set already, or from interrupt context.
pub fn pool_subsystem_init(map: &'static KernelMap) {
    assert_not_in_interrupt("pool_subsystem_init");
    let _g = BOOT.lock();
    init_locked(map);
}

/// [`pool_subsystem_init`] with `BOOT` held.
fn init_locked(map: &'static KernelMap) {
    let cur = MAP.load(Ordering::Acquire);
    if !cur.is_null() {
        if !ptr::eq(cur, map) {
            panic!("pool_subsystem_init: a different kernel map is already in use");
        }
        return;
    }
    crate::registry::register_pagedaemon(map);
    // The meta arena now, in thread context: a header pool may first need
    // it under a spin mutex (a PR_NOWAIT grow of an IPL_VM pool).
    let cfg = ArenaConfig::new("vmem-meta", map.page_size())
        .source(map.kmem_source())
        .flags(VmFlags::SLEEP)
        .ipl(bsdalloc_platform::Ipl::Vm);
    let a = bsdalloc_vmem::vmem_xcreate(cfg, 0, 0)
        .unwrap_or_else(|| panic!("pool: cannot create the meta arena"));
    META.store(ptr::from_ref(a).cast_mut(), Ordering::Release);
    MAP.store(ptr::from_ref(map).cast_mut(), Ordering::Release);
}

/// The kernel map [`pool_subsystem_init`] (or the first use) set, without
/// setting one up: `None` before. What a boot sequence checks before it
/// builds a map of its own.
pub fn pool_subsystem_map() -> Option<&'static KernelMap> {
    let p = MAP.load(Ordering::Acquire);
    // SAFETY: only ever set from a `&'static KernelMap`.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// The standard allocators' kernel map.
///
/// # Panics
/// Without `std`, if [`pool_subsystem_init`] was not called; with `std`,
/// if the map cannot be set up, or must be set up from interrupt context.
pub fn kernel_map() -> &'static KernelMap {
    let p = MAP.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: only ever set from a `&'static KernelMap`.
        return unsafe { &*p };
    }
    default_map()
}

#[cfg(feature = "std")]
#[cold]
fn default_map() -> &'static KernelMap {
    assert_not_in_interrupt("pool: setting up the kernel map");
    let g = BOOT.lock();
    let p = MAP.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: as in `kernel_map`.
        return unsafe { &*p };
    }
    let map = KernelMap::bootstrap(bsdalloc_uvm_pages::KmConfig::new())
        .unwrap_or_else(|e| panic!("pool: cannot set up the kernel map: {e}"));
    // Still under BOOT: a second first user must find this map published,
    // not set up a map of its own and be told it is "a different" one.
    init_locked(map);
    drop(g);
    map
}

#[cfg(not(feature = "std"))]
#[cold]
fn default_map() -> &'static KernelMap {
    panic!("pool: no kernel map; call pool_subsystem_init first")
}

/// `kmem_meta_arena`: backed memory for the pools' own metadata (header
/// pools, pool descriptors), an arena stacked on the map's kmem arena.
fn meta_arena() -> &'static Arena {
    let p = META.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: only ever set from a `&'static Arena`.
        return unsafe { &*p };
    }
    meta_arena_slow()
}

#[cold]
fn meta_arena_slow() -> &'static Arena {
    // Setting up the map creates the meta arena.
    kernel_map();
    let p = META.load(Ordering::Acquire);
    assert!(!p.is_null(), "pool: no meta arena");
    // SAFETY: as in `meta_arena`.
    unsafe { &*p }
}

/// `PAGE_SIZE`: the kernel map's page size.
pub fn page_size() -> usize {
    kernel_map().page_size()
}

fn vm_flags(flags: PrFlags) -> VmFlags {
    if flags.contains(PrFlags::WAITOK) {
        VmFlags::SLEEP | VmFlags::INSTANTFIT
    } else {
        VmFlags::NOSLEEP | VmFlags::INSTANTFIT
    }
}

/// `pool_page_alloc` / `pool_page_free`: wired pages from a kernel map's
/// kmem arena through `uvm_km_kmem_alloc` — `pool_allocator_kmem`,
/// `pool_allocator_nointr` and the big allocators.
pub struct KmemAllocator {
    name: &'static str,
    pagesz: usize,
    map: Option<&'static KernelMap>,
}

impl fmt::Debug for KmemAllocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmemAllocator")
            .field("name", &self.name)
            .field("pagesz", &self.pagesz)
            .finish_non_exhaustive()
    }
}

impl KmemAllocator {
    /// Pages of `pagesz` bytes (0: `PAGE_SIZE`) from the standard map
    /// ([`kernel_map`]).
    pub const fn new(name: &'static str, pagesz: usize) -> KmemAllocator {
        KmemAllocator {
            name,
            pagesz,
            map: None,
        }
    }

    /// Pages from `map` (a map with its own memory budget, say).
    pub const fn with_map(
        name: &'static str,
        map: &'static KernelMap,
        pagesz: usize,
    ) -> KmemAllocator {
        KmemAllocator {
            name,
            pagesz,
            map: Some(map),
        }
    }

    fn map(&self) -> &'static KernelMap {
        match self.map {
            Some(m) => m,
            None => kernel_map(),
        }
    }
}

// SAFETY: uvm_km_kmem_alloc hands out wired, page-aligned memory of the
// map, exclusively, until uvm_km_kmem_free; with VM_NOSLEEP it does not
// sleep, and takes only the kmem arena and map-state locks (ranked after
// the pool). Big pages are page-aligned, not size-aligned: pools over them
// are PR_NOALIGN (pool_cache sets it, as NetBSD does).
unsafe impl PoolAllocator for KmemAllocator {
    fn pagesz(&self) -> usize {
        self.pagesz
    }

    fn alloc(&self, pagesz: usize, flags: PrFlags) -> Option<NonNull<u8>> {
        let map = self.map();
        let va = map
            .uvm_km_kmem_alloc(map.kmem_arena(), pagesz, vm_flags(flags))
            .ok()?;
        Some(
            map.va_ptr(va)
                .expect("pool_page_alloc: kmem address outside the map"),
        )
    }

    unsafe fn free(&self, page: NonNull<u8>, pagesz: usize) {
        let map = self.map();
        map.uvm_km_kmem_free(map.kmem_arena(), page.as_ptr().addr(), pagesz);
    }

    fn name(&self) -> &'static str {
        self.name
    }
}

/// `pool_page_alloc_meta`: pages of `kmem_meta_arena` ("vmem-meta", an
/// arena stacked on the standard map's kmem arena) for the stack's own
/// metadata: the header pools `phpool-N` and pool descriptors.
#[derive(Debug)]
pub struct MetaAllocator(());

// SAFETY: vmem_alloc from an arena importing backed, page-aligned kmem
// memory with a page quantum: page-aligned, exclusive until freed; with
// VM_NOSLEEP no sleep; the arena lock ranks after the pool.
unsafe impl PoolAllocator for MetaAllocator {
    fn pagesz(&self) -> usize {
        0
    }

    fn alloc(&self, pagesz: usize, flags: PrFlags) -> Option<NonNull<u8>> {
        let a = meta_arena();
        let va = a.alloc(pagesz, vm_flags(flags)).ok()?;
        Some(
            kernel_map()
                .va_ptr(va)
                .expect("pool_page_alloc_meta: address outside the map"),
        )
    }

    unsafe fn free(&self, page: NonNull<u8>, pagesz: usize) {
        meta_arena().free(page.as_ptr().addr(), pagesz);
    }

    fn name(&self) -> &'static str {
        "meta"
    }
}

/// `pool_allocator_kmem`: the default (`None` in [`PoolConfig`](crate::PoolConfig)).
pub static POOL_ALLOCATOR_KMEM: KmemAllocator = KmemAllocator::new("kmem", 0);
/// `pool_allocator_nointr`: the same pages today, as in NetBSD.
pub static POOL_ALLOCATOR_NOINTR: KmemAllocator = KmemAllocator::new("nointr", 0);
/// `pool_allocator_meta`.
pub static POOL_ALLOCATOR_META: MetaAllocator = MetaAllocator(());
/// `pool_allocator_big[]`: pages of 8 KiB … 16 MiB.
pub static POOL_ALLOCATOR_BIG: [KmemAllocator; POOL_ALLOCATOR_BIG_COUNT] = {
    let mut a = [const { KmemAllocator::new("big", 0) }; POOL_ALLOCATOR_BIG_COUNT];
    let mut i = 0;
    while i < POOL_ALLOCATOR_BIG_COUNT {
        a[i] = KmemAllocator::new("big", 1 << (POOL_ALLOCATOR_BIG_BASE as usize + i));
        i += 1;
    }
    a
};

/// `pool_bigidx`: the smallest big allocator whose pages hold `size`.
///
/// # Panics
/// Above 16 MiB, with NetBSD's message.
pub fn pool_allocator_big(size: usize) -> &'static KmemAllocator {
    match (0..POOL_ALLOCATOR_BIG_COUNT).find(|i| 1usize << (i + 13) >= size) {
        Some(i) => &POOL_ALLOCATOR_BIG[i],
        None => panic!("pool item size {size} too large, use a custom allocator"),
    }
}

/// A vmem arena as a pool's back end: each page is `vmem_alloc(arena,
/// pagesz)`. With a kernel map the arena's addresses are memory of that
/// map (an arena stacked on its kmem arena); without one they are plain
/// resource numbers, never touched, for `PR_NOTOUCH` pools only.
///
/// Pages are aligned as the arena aligns them (its quantum): pools whose
/// pages are not `pagesz`-aligned must be `PR_NOALIGN` (a misaligned page
/// panics "unaligned page" when it is primed).
pub struct VmemAllocator {
    name: &'static str,
    arena: &'static Arena,
    pagesz: usize,
    map: Option<&'static KernelMap>,
}

impl fmt::Debug for VmemAllocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmemAllocator")
            .field("name", &self.name)
            .field("arena", &self.arena.name())
            .field("pagesz", &self.pagesz)
            .finish_non_exhaustive()
    }
}

impl VmemAllocator {
    /// Pages of memory: `arena` hands out addresses of `map`.
    pub const fn memory(
        name: &'static str,
        arena: &'static Arena,
        map: &'static KernelMap,
        pagesz: usize,
    ) -> VmemAllocator {
        VmemAllocator {
            name,
            arena,
            pagesz,
            map: Some(map),
        }
    }

    /// Pages of a resource that is not memory (IDs, ports, device
    /// windows): for `PR_NOTOUCH` pools.
    pub const fn resource(
        name: &'static str,
        arena: &'static Arena,
        pagesz: usize,
    ) -> VmemAllocator {
        VmemAllocator {
            name,
            arena,
            pagesz,
            map: None,
        }
    }
}

// SAFETY: vmem hands out each range to one caller until it is freed; with
// VM_NOSLEEP it does not sleep; its lock ranks after the pool. Memory
// pages are pointers into the map with its provenance; resource pages are
// never dereferenced (PR_NOTOUCH is enforced at pool_init through
// `is_memory`).
unsafe impl PoolAllocator for VmemAllocator {
    fn pagesz(&self) -> usize {
        if self.pagesz == 0 {
            self.arena.quantum()
        } else {
            self.pagesz
        }
    }

    fn alloc(&self, pagesz: usize, flags: PrFlags) -> Option<NonNull<u8>> {
        let va = self.arena.alloc(pagesz, vm_flags(flags)).ok()?;
        match self.map {
            Some(m) => Some(m.va_ptr(va).expect("pool: vmem page outside the map")),
            // A number standing for a resource: never dereferenced.
            None => NonNull::new(ptr::without_provenance_mut(va)).or_else(|| {
                self.arena.free(va, pagesz);
                None
            }),
        }
    }

    unsafe fn free(&self, page: NonNull<u8>, pagesz: usize) {
        self.arena.free(page.as_ptr().addr(), pagesz);
    }

    fn name(&self) -> &'static str {
        self.name
    }

    fn is_memory(&self) -> bool {
        self.map.is_some()
    }
}
