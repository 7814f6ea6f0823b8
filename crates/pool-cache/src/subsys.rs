//! What all caches share: the group pools `pcgnormal`/`pcglarge` and the
//! global empty-group stacks, the descriptor pool `pcache` behind
//! `pool_cache_init`, `pool_cache_disable`, the thread-exit hook, the
//! per-CPU page source, and the automatic back end of spec §3.2.

use core::ptr::NonNull;

use bsdalloc_platform::sync::atomic::{AtomicBool, Ordering};
use bsdalloc_platform::{
    AdaptiveMutex, CpuExitHook, CpuId, ExitHook, Ipl, LockRank, PageSource, cpu_exit_hook_register,
};
use bsdalloc_pool::{
    POOL_ALLOCATOR_META, POOL_ALLOCATOR_NOINTR, PoolAllocator, PoolConfig, PrFlags, RawPool,
    page_size, pool_allocator_big,
};

use crate::group::{Group, PCG_NOBJECTS_LARGE, PCG_NOBJECTS_NORMAL, Stack};
use crate::pool_cache::{PoolCacheConfig, RawPoolCache};
use crate::registry;

/// `pcg_normal_pool`, `pcg_large_pool`: groups, from the meta allocator,
/// usable up to `IPL_VM`.
static GROUP_POOLS: [RawPool; 2] = [
    RawPool::new(
        PoolConfig::new("pcgnormal", Group::bytes(PCG_NOBJECTS_NORMAL))
            .align(Group::ALIGN)
            .allocator(&POOL_ALLOCATOR_META)
            .ipl(Ipl::Vm),
    ),
    RawPool::new(
        PoolConfig::new("pcglarge", Group::bytes(PCG_NOBJECTS_LARGE))
            .align(Group::ALIGN)
            .allocator(&POOL_ALLOCATOR_META)
            .ipl(Ipl::Vm),
    ),
];

/// `pcg_normal_cache`, `pcg_large_cache`: empty groups, shared by every
/// cache of the group size.
static EMPTY_GROUPS: [Stack; 2] = [Stack::new(), Stack::new()];

/// `pool_cache_disable`: puts that find no empty group do not allocate one.
static DISABLE: AtomicBool = AtomicBool::new(false);

/// Descriptors of [`pool_cache_init`](crate::pool_cache_init) (NetBSD's
/// `pcache` pool).
pub(crate) static PCACHE: RawPool = RawPool::new(
    PoolConfig::new("pcache", core::mem::size_of::<RawPoolCache>())
        .align(core::mem::align_of::<RawPoolCache>())
        .allocator(&POOL_ALLOCATOR_META),
);

static INIT: AdaptiveMutex<bool> = AdaptiveMutex::ranked(LockRank::None, false);

/// The source of per-CPU structures when a cache names none.
static PERCPU_PAGES: AdaptiveMutex<Option<&'static dyn PageSource>> =
    AdaptiveMutex::ranked(LockRank::None, None);

pub(crate) fn group_pool(large: bool) -> &'static RawPool {
    &GROUP_POOLS[usize::from(large)]
}

#[inline(always)]
pub(crate) fn empty_groups(large: bool) -> &'static Stack {
    &EMPTY_GROUPS[usize::from(large)]
}

/// Set up the shared pools and the exit hook once (thread context).
pub(crate) fn init() {
    let mut done = INIT.lock();
    if *done {
        return;
    }
    for p in &GROUP_POOLS {
        if !p.is_initialized() {
            p.init();
        }
    }
    if !PCACHE.is_initialized() {
        PCACHE.init();
    }
    cpu_exit_hook_register(&EXIT_HOOK);
    *done = true;
}

/// `pool_cache_subsystem_init`-like: the page source for per-CPU
/// structures of caches that name none. Needed without `std` (with it, the
/// OS's pages are the default).
pub fn pool_cache_subsystem_init(pages: &'static dyn PageSource) {
    *PERCPU_PAGES.lock() = Some(pages);
}

pub(crate) fn percpu_pages() -> &'static dyn PageSource {
    if let Some(p) = *PERCPU_PAGES.lock() {
        return p;
    }
    #[cfg(feature = "std")]
    return &bsdalloc_platform::OS_PAGES;
    #[cfg(not(feature = "std"))]
    panic!("pool_cache: no page source for per-CPU structures; call pool_cache_subsystem_init")
}

/// NetBSD's `pool_cache_disable` (a debugging switch): while set, a put
/// that finds no empty group destructs the object instead of allocating a
/// group.
pub fn pool_cache_set_disabled(disabled: bool) {
    DISABLE.store(disabled, Ordering::Relaxed);
}

#[inline]
pub(crate) fn pool_cache_disabled() -> bool {
    DISABLE.load(Ordering::Relaxed)
}

/// Groups of both sizes now allocated (in CPUs, the depots and the empty
/// stacks): a census figure.
pub fn pool_cache_groups_out() -> u64 {
    GROUP_POOLS
        .iter()
        .filter(|p| p.is_initialized())
        .map(|p| u64::from(p.stats().nout))
        .sum()
}

// ---- the thread-exit hook ----

struct ExitAll;

impl CpuExitHook for ExitAll {
    fn cpu_exit(&self, _cpu: CpuId) {
        registry::for_each_pool_cache(|pc| pc.cpu_exit());
    }
}

static EXIT_ALL: ExitAll = ExitAll;
static EXIT_HOOK: ExitHook = ExitHook::new(&EXIT_ALL);

// ---- spec §3.2's automatic back end ----

/// The smallest page size there is: items above it get `PR_NOALIGN` when
/// the automatic back end is chosen (a big allocator's pages are only page
/// aligned).
pub(crate) const MIN_PAGE_SIZE: usize = 4096;

/// Automatic back ends for items up to 2^24 bytes, by `ceil(log2(size))`.
pub(crate) static AUTO_ALLOCATORS: [AutoAllocator; 25] = {
    let mut a = [AutoAllocator { log2: 0 }; 25];
    let mut i = 0;
    while i < 25 {
        a[i] = AutoAllocator { log2: i as u32 };
        i += 1;
    }
    a
};

pub(crate) const fn auto_index(size: usize) -> usize {
    let l = if size <= 1 {
        0
    } else {
        (usize::BITS - (size - 1).leading_zeros()) as usize
    };
    if l > 24 { 24 } else { l }
}

/// `pool_cache_bootstrap`'s choice for `palloc == NULL` at `IPL_NONE`: an
/// item above `PAGE_SIZE` gets the smallest big allocator that holds it,
/// otherwise `pool_allocator_nointr`. `PAGE_SIZE` is read at run time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AutoAllocator {
    log2: u32,
}

impl AutoAllocator {
    fn choice(&self) -> &'static dyn PoolAllocator {
        let size = 1usize << self.log2;
        if size > page_size() {
            pool_allocator_big(size)
        } else {
            &POOL_ALLOCATOR_NOINTR
        }
    }
}

// SAFETY: delegates to a standard allocator whose contract holds; the
// page size is fixed for the allocator's life (the map's page size).
unsafe impl PoolAllocator for AutoAllocator {
    fn pagesz(&self) -> usize {
        self.choice().pagesz()
    }

    fn alloc(&self, pagesz: usize, flags: PrFlags) -> Option<NonNull<u8>> {
        self.choice().alloc(pagesz, flags)
    }

    unsafe fn free(&self, page: NonNull<u8>, pagesz: usize) {
        // SAFETY: the caller's contract, for the same allocator.
        unsafe { self.choice().free(page, pagesz) }
    }

    fn name(&self) -> &'static str {
        self.choice().name()
    }
}

/// `pool_cache_init`: a cache on a descriptor from the stack's own memory
/// (`pcache`), bootstrapped; it lives until [`pool_cache_destroy`].
///
/// # Panics
/// As [`RawPoolCache::bootstrap`] (the descriptor goes back first).
pub fn pool_cache_init(cfg: PoolCacheConfig) -> &'static RawPoolCache {
    init();
    let d = PCACHE
        .get(PrFlags::WAITOK)
        .expect("pool_cache_init: PR_WAITOK returned nothing");
    let p = d.cast::<RawPoolCache>();
    // SAFETY: a fresh descriptor-sized, -aligned item of ours.
    let pc: &'static RawPoolCache = unsafe {
        p.as_ptr().write(RawPoolCache::new(cfg));
        &*p.as_ptr()
    };
    pc.created.store(true, Ordering::Relaxed);
    struct Undo(NonNull<u8>);
    impl Drop for Undo {
        fn drop(&mut self) {
            // SAFETY: the descriptor never got into the cache list.
            unsafe { PCACHE.put(self.0) };
        }
    }
    let undo = Undo(d);
    pc.bootstrap();
    core::mem::forget(undo);
    pc
}

/// `pool_cache_destroy`: [`RawPoolCache::destroy`], and a
/// [`pool_cache_init`] descriptor goes back to `pcache`.
///
/// # Panics
/// As [`RawPoolCache::destroy`].
///
/// # Safety
/// As [`RawPoolCache::destroy`]; a created cache is gone afterwards: no
/// reference to it may be used again.
pub unsafe fn pool_cache_destroy(pc: &'static RawPoolCache) {
    // SAFETY: the caller's contract.
    unsafe { pc.destroy() };
    if pc.created.load(Ordering::Relaxed) {
        // SAFETY: a descriptor of PCACHE, no longer listed or used.
        unsafe { PCACHE.put(NonNull::from(pc).cast()) };
    }
}
