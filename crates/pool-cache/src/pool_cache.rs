//! `pool_cache_t`: the cache descriptor over its embedded pool, its
//! configuration (`pool_cache_init`'s arguments), bootstrap and destroy,
//! the argument checks of get and put, the forwarded pool setters, and the
//! pool's reclaim hook.

use core::fmt;
use core::ptr::NonNull;

#[cfg(any(debug_assertions, feature = "diagnostic"))]
use bsdalloc_platform::in_interrupt;
use bsdalloc_platform::sync::atomic::AtomicBool;
use bsdalloc_platform::{CpuId, FaultInjector, Ipl, PageSource, assert_not_in_interrupt};
use bsdalloc_pool::{
    Clock, PoolAllocator, PoolCacheHook, PoolConfig, PoolDrainHook, PrFlags, RawPool,
};

use crate::cache::{Backend, Core, CpuCacheStats, CpuCacheStorage, ObjectCtor, ObjectDtor};
use crate::group::{PCG_NOBJECTS_LARGE, PCG_NOBJECTS_NORMAL, POOL_PADDR_INVALID, Stack};
use crate::registry::{self, Link};
use crate::subsys::{self, AUTO_ALLOCATORS, MIN_PAGE_SIZE};

/// The fault-injection point of `pool_cache_get(PR_NOWAIT)`: armed, a
/// `PR_NOWAIT` get that misses every group fails before it calls
/// `pool_get` (hits cannot fail; checking here keeps the armed test, a
/// call, off the fast path).
pub static POOL_CACHE_GET_FAULTS: FaultInjector = FaultInjector::new();

/// `pool_cache_init`'s arguments. `const`, so a cache can be a `static`.
#[derive(Clone, Copy)]
pub struct PoolCacheConfig {
    pub(crate) name: &'static str,
    pub(crate) size: usize,
    pub(crate) align: usize,
    pub(crate) align_offset: usize,
    pub(crate) flags: PrFlags,
    pub(crate) ipl: Ipl,
    pub(crate) allocator: Option<&'static dyn PoolAllocator>,
    pub(crate) ctor: Option<&'static dyn ObjectCtor>,
    pub(crate) dtor: Option<&'static dyn ObjectDtor>,
    pub(crate) clock: Option<&'static dyn Clock>,
    pub(crate) pages: Option<&'static dyn PageSource>,
    pub(crate) paddr: bool,
}

impl fmt::Debug for PoolCacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolCacheConfig")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("align", &self.align)
            .field("flags", &self.flags)
            .field("ipl", &self.ipl)
            .field("ctor", &self.ctor.is_some())
            .field("dtor", &self.dtor.is_some())
            .finish_non_exhaustive()
    }
}

impl PoolCacheConfig {
    /// Objects of `size` bytes named `name`: natural alignment, no flags,
    /// `IPL_NONE`, the automatic back end (spec §3.2), no constructor or
    /// destructor.
    pub const fn new(name: &'static str, size: usize) -> PoolCacheConfig {
        PoolCacheConfig {
            name,
            size,
            align: 0,
            align_offset: 0,
            flags: PrFlags::empty(),
            ipl: Ipl::None,
            allocator: None,
            ctor: None,
            dtor: None,
            clock: None,
            pages: None,
            paddr: true,
        }
    }

    /// `align` (a power of two; 0: natural).
    pub const fn align(mut self, align: usize) -> Self {
        self.align = align;
        self
    }

    /// `align_offset`: must be 0, as for pools.
    pub const fn align_offset(mut self, ioff: usize) -> Self {
        self.align_offset = ioff;
        self
    }

    /// `PR_*` init flags (`PR_LARGECACHE` for 63-object groups).
    pub const fn flags(mut self, flags: PrFlags) -> Self {
        self.flags = flags;
        self
    }

    /// **An extension, not in NetBSD:** the cache keeps no physical
    /// addresses. Its groups hold 8-byte addresses instead of NetBSD's
    /// 16-byte (address, physical address) pairs — as many objects (15,
    /// or 63 with `PR_LARGECACHE`) on half the cache lines, which is what
    /// a CPU's hits write and read. K1 (kmem's size mix): 28.9 → 25.3 ns a
    /// pair. (Twice the objects in the same memory was tried too: no
    /// faster, and K2's peak RSS grew by half.) `pool_cache_get_paddr`
    /// then returns [`POOL_PADDR_INVALID`], and `pool_cache_put_paddr`
    /// with a physical address panics. kmem's caches are address-only.
    ///
    /// ```
    /// use bsdalloc_pool::PrFlags;
    /// use bsdalloc_pool_cache::{POOL_PADDR_INVALID, PoolCacheConfig, RawPoolCache};
    ///
    /// static C: RawPoolCache = RawPoolCache::new(PoolCacheConfig::new("va-only", 64).no_paddr());
    /// C.bootstrap();
    /// let p = C.get(PrFlags::WAITOK).unwrap();
    /// unsafe { C.put(p) };
    /// assert_eq!(C.get_paddr(PrFlags::NOWAIT), Some((p, POOL_PADDR_INVALID)));
    /// unsafe { C.put(p) };
    /// ```
    pub const fn no_paddr(mut self) -> Self {
        self.paddr = false;
        self
    }

    /// The highest interrupt level that uses the cache.
    pub const fn ipl(mut self, ipl: Ipl) -> Self {
        self.ipl = ipl;
        self
    }

    /// The pool's back-end allocator (`palloc`); without one, spec §3.2's
    /// choice.
    pub const fn allocator(mut self, a: &'static dyn PoolAllocator) -> Self {
        self.allocator = Some(a);
        self
    }

    /// The constructor (`ctor` with its `arg`: `self`).
    pub const fn ctor(mut self, c: &'static dyn ObjectCtor) -> Self {
        self.ctor = Some(c);
        self
    }

    /// The destructor (`dtor` with its `arg`).
    pub const fn dtor(mut self, d: &'static dyn ObjectDtor) -> Self {
        self.dtor = Some(d);
        self
    }

    /// The embedded pool's clock (idle-page reclaim).
    pub const fn clock(mut self, c: &'static dyn Clock) -> Self {
        self.clock = Some(c);
        self
    }

    /// Where the per-CPU structures come from (default: the source set
    /// with [`pool_cache_subsystem_init`](crate::pool_cache_subsystem_init),
    /// with `std` the OS).
    pub const fn percpu_pages(mut self, p: &'static dyn PageSource) -> Self {
        self.pages = Some(p);
        self
    }

    /// The embedded pool's configuration (spec §3.2): a destructor strips
    /// `PR_PSERIALIZE` from the pool (the cache runs the barrier); with no
    /// allocator at `IPL_NONE`, `pool_allocator_nointr`, or a big
    /// allocator with `PR_NOALIGN` for items above a page.
    const fn pool_config(&self) -> PoolConfig {
        let mut flags = self.flags;
        if self.dtor.is_some() {
            flags = flags.difference(PrFlags::PSERIALIZE);
        }
        let mut allocator = self.allocator;
        if allocator.is_none() && matches!(self.ipl, Ipl::None) {
            // PAGE_SIZE is known at run time only: the auto allocator picks
            // nointr or a big allocator then; PR_NOALIGN is decided here,
            // against the smallest page size there is.
            let a = &AUTO_ALLOCATORS[subsys::auto_index(self.size)];
            allocator = Some(a);
            if self.size > MIN_PAGE_SIZE {
                flags = flags.union(PrFlags::NOALIGN);
            }
        }
        let mut c = PoolConfig::new(self.name, self.size)
            .align(self.align)
            .align_offset(self.align_offset)
            .flags(flags)
            .ipl(self.ipl);
        if let Some(a) = allocator {
            c = c.allocator(a);
        }
        if let Some(k) = self.clock {
            c = c.clock(k);
        }
        c
    }
}

/// Objects and groups of a real cache: its embedded pool, the group pools.
pub(crate) struct PoolBackend {
    pub(crate) pool: RawPool,
    large: bool,
}

// SAFETY: pool_get/pool_put hand out and take back each item once; the
// group pools' items are `Group::bytes` of their group size, 8-aligned
// (Group::ALIGN); group allocation is PR_NOWAIT; the empty stack is the
// static one of the group size.
unsafe impl Backend for PoolBackend {
    #[inline]
    fn obj_get(&self, flags: PrFlags) -> Option<NonNull<u8>> {
        if flags.contains(PrFlags::NOWAIT)
            && POOL_CACHE_GET_FAULTS.is_armed()
            && POOL_CACHE_GET_FAULTS.should_fail()
        {
            return None;
        }
        self.pool.get(flags)
    }

    #[inline]
    unsafe fn obj_put(&self, obj: NonNull<u8>) {
        // SAFETY: the trait's contract.
        unsafe { self.pool.put(obj) }
    }

    fn group_alloc(&self) -> Option<NonNull<u8>> {
        subsys::group_pool(self.large).get(PrFlags::NOWAIT)
    }

    unsafe fn group_free(&self, g: NonNull<u8>) {
        // SAFETY: the trait's contract: an item of this group pool.
        unsafe { subsys::group_pool(self.large).put(g) }
    }

    #[inline]
    fn empty_groups(&self) -> &Stack {
        subsys::empty_groups(self.large)
    }

    fn caching_enabled(&self) -> bool {
        !subsys::pool_cache_disabled()
    }
}

/// NetBSD's `pool_cache_t`: a pool with per-CPU caches of constructed
/// objects in front of it.
///
/// Construct it in place (`const`, so it can be a `static`) and
/// [`bootstrap`](RawPoolCache::bootstrap) it, or let
/// [`pool_cache_init`](crate::pool_cache_init) carve one from the stack's
/// own memory. Objects are raw memory in constructed state:
/// [`get`](RawPoolCache::get) hands one out, [`put`](RawPoolCache::put)
/// (unsafe: the caller vouches for the pointer) takes it back. The typed,
/// safe layer is [`PoolCache<T>`](crate::PoolCache).
///
/// ```
/// use bsdalloc_pool::PrFlags;
/// use bsdalloc_pool_cache::{PoolCacheConfig, RawPoolCache};
///
/// static BUFS: RawPoolCache = RawPoolCache::new(PoolCacheConfig::new("bufs", 200));
/// BUFS.bootstrap();
/// let p = BUFS.get(PrFlags::WAITOK).unwrap();   // a miss, to the pool
/// unsafe { BUFS.put(p) };                        // a miss (a new group), then a hit
/// let q = BUFS.get(PrFlags::NOWAIT).unwrap();   // a hit: the same object
/// assert_eq!(p, q);
/// unsafe { BUFS.put(q) };                        // a hit
/// let s = BUFS.stats();
/// assert_eq!((s.nhit_pcpu, s.nmiss_pcpu, s.nmiss_global), (3, 2, 1));
/// ```
pub struct RawPoolCache {
    pub(crate) core: Core<PoolBackend>,
    pub(crate) cfg: PoolCacheConfig,
    pub(crate) link: bsdalloc_platform::sync::cell::UnsafeCell<Link>,
    pub(crate) created: AtomicBool,
}

// SAFETY: the engine is Sync; the list link is behind the cache-list lock;
// the configuration is immutable.
unsafe impl Sync for RawPoolCache {}
// SAFETY: as above.
unsafe impl Send for RawPoolCache {}

impl fmt::Debug for RawPoolCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawPoolCache")
            .field("name", &self.cfg.name)
            .field("ready", &self.core.is_ready())
            .finish_non_exhaustive()
    }
}

impl RawPoolCache {
    /// A cache described by `cfg`, not yet bootstrapped.
    pub const fn new(cfg: PoolCacheConfig) -> RawPoolCache {
        let large = cfg.flags.contains(PrFlags::LARGECACHE);
        let group_size = if large {
            PCG_NOBJECTS_LARGE
        } else {
            PCG_NOBJECTS_NORMAL
        } as u32;
        let pserialize = cfg.flags.contains(PrFlags::PSERIALIZE);
        RawPoolCache {
            core: Core::with_layout(
                cfg.name,
                PoolBackend {
                    pool: RawPool::new(cfg.pool_config()),
                    large,
                },
                group_size,
                cfg.paddr,
                cfg.ctor,
                cfg.dtor,
                pserialize,
            ),
            cfg,
            link: bsdalloc_platform::sync::cell::UnsafeCell::new(Link::new()),
            created: AtomicBool::new(false),
        }
    }

    /// The name.
    pub fn name(&self) -> &'static str {
        self.cfg.name
    }

    /// The embedded pool (`pc->pc_pool`): statistics, `vmstat -m`.
    pub fn pool(&self) -> &RawPool {
        &self.core.backend().pool
    }

    /// Objects per group: 15, or 63 with `PR_LARGECACHE`.
    pub fn group_size(&self) -> usize {
        self.core.group_size() as usize
    }

    /// Whether [`bootstrap`](RawPoolCache::bootstrap) has run (and destroy
    /// has not).
    pub fn is_ready(&self) -> bool {
        self.core.is_ready()
    }

    /// `pool_cache_bootstrap`: `pool_init` of the embedded pool, per-CPU
    /// structures for every CPU (each starting with the dummy groups),
    /// `pp->pr_cache = pc` (the pool's reclaim invalidates the cache), and
    /// the cache enters the list of all caches.
    ///
    /// # Panics
    /// As `pool_init` for a bad configuration; if already bootstrapped; if
    /// the per-CPU structures cannot be allocated; from interrupt context.
    #[track_caller]
    pub fn bootstrap(&'static self) {
        assert_not_in_interrupt("pool_cache_bootstrap");
        if self.core.is_ready() {
            panic!(
                "pool_cache_bootstrap: [{}] already initialised",
                self.name()
            );
        }
        subsys::init();
        self.pool().init();
        let pages = match self.cfg.pages {
            Some(p) => p,
            None => subsys::percpu_pages(),
        };
        let cpus = match CpuCacheStorage::new(pages) {
            Ok(c) => c,
            Err(e) => {
                self.pool().destroy();
                panic!(
                    "pool_cache_bootstrap: [{}] no memory for per-CPU structures: {e}",
                    self.name()
                );
            }
        };
        self.core.init(cpus);
        self.pool().set_cache(Some(self));
        registry::insert(self);
    }

    /// `pool_cache_bootstrap_destroy`: leave the list of caches (waiting
    /// for walkers), invalidate, detach from the pool, free the per-CPU
    /// structures, `pool_destroy`. The storage may be bootstrapped again.
    ///
    /// # Panics
    /// "pool busy: still out: N" if objects are out (before anything but
    /// the invalidation has happened); a cache not bootstrapped; interrupt
    /// context.
    ///
    /// # Safety
    /// No other thread uses the cache during or after the call (until a new
    /// bootstrap): the per-CPU structures are freed.
    #[track_caller]
    pub unsafe fn destroy(&'static self) {
        assert_not_in_interrupt("pool_cache_destroy");
        self.core.invalidate();
        let nout = self.pool().stats().nout;
        if nout != 0 {
            panic!(
                "pool_cache_destroy: [{}] pool busy: still out: {nout}",
                self.name()
            );
        }
        registry::remove(self);
        self.pool().set_cache(None);
        // SAFETY: the caller's contract.
        unsafe { self.core.fini() };
        self.pool().destroy();
    }

    /// `pool_cache_get`: a constructed object, or `None` (`PR_NOWAIT`
    /// without memory, or a constructor that failed — even with
    /// `PR_WAITOK`). `PR_ZERO` (spec §3.6, a deliberate deviation):
    /// without a constructor every object is zeroed, hits included; with
    /// one it is refused (debug builds and `diagnostic`).
    ///
    /// # Panics
    /// Not exactly one of `PR_WAITOK` and `PR_NOWAIT`; an IPL_NONE cache
    /// from interrupt context (debug builds and `diagnostic`; the pool
    /// checks again on a miss); a cache not bootstrapped.
    #[inline(always)]
    #[track_caller]
    pub fn get(&self, flags: PrFlags) -> Option<NonNull<u8>> {
        self.get_paddr(flags).map(|(p, _)| p)
    }

    /// `pool_cache_get_paddr`: also the object's recorded physical address
    /// ([`POOL_PADDR_INVALID`] if none: objects fresh from the pool).
    ///
    /// # Panics
    /// As [`RawPoolCache::get`].
    #[inline(always)]
    #[track_caller]
    pub fn get_paddr(&self, flags: PrFlags) -> Option<(NonNull<u8>, usize)> {
        let wait = flags.intersection(PrFlags::WAITOK.union(PrFlags::NOWAIT));
        if wait != PrFlags::WAITOK && wait != PrFlags::NOWAIT {
            bad_wait_flags(self.name(), flags);
        }
        #[cfg(any(debug_assertions, feature = "diagnostic"))]
        self.check_ipl("pool_cache_get");
        if !flags.contains(PrFlags::ZERO) {
            return self.core.get(flags);
        }
        self.get_zeroed(flags)
    }

    #[cold]
    #[inline(never)]
    #[track_caller]
    fn get_zeroed(&self, flags: PrFlags) -> Option<(NonNull<u8>, usize)> {
        if self.core.has_ctor() {
            #[cfg(any(debug_assertions, feature = "diagnostic"))]
            panic!(
                "pool_cache_get: [{}] PR_ZERO with a constructor",
                self.name()
            );
            // Upstream's behaviour: the pool zeroes fresh objects before
            // the constructor runs; hits are not zeroed.
            #[cfg(not(any(debug_assertions, feature = "diagnostic")))]
            return self.core.get(flags);
        }
        let r = self.core.get(flags.difference(PrFlags::ZERO));
        if let Some((p, _)) = r {
            // SAFETY: the object is ours, `size` bytes.
            unsafe { p.as_ptr().write_bytes(0, self.cfg.size) };
        }
        r
    }

    #[cfg(any(debug_assertions, feature = "diagnostic"))]
    #[inline]
    #[track_caller]
    fn check_ipl(&self, what: &str) {
        if matches!(self.cfg.ipl, Ipl::None) && in_interrupt() {
            ipl_none_panic(what, self.name());
        }
    }

    /// `pool_cache_put`: give a constructed object back (it stays
    /// constructed in the cache).
    ///
    /// # Safety
    /// `obj` came from this cache's get and is not used any more. Under
    /// the `diagnostic` feature a put of an object already in this CPU's
    /// groups panics (double put); objects in the depot or other CPUs'
    /// groups are not searched.
    #[inline(always)]
    #[track_caller]
    pub unsafe fn put(&self, obj: NonNull<u8>) {
        // SAFETY: the caller's contract.
        unsafe { self.put_paddr(obj, POOL_PADDR_INVALID) }
    }

    /// `pool_cache_put_paddr`: give back an object with its physical
    /// address, handed out again with it.
    ///
    /// # Safety
    /// As [`RawPoolCache::put`].
    #[inline(always)]
    #[track_caller]
    pub unsafe fn put_paddr(&self, obj: NonNull<u8>, pa: usize) {
        #[cfg(any(debug_assertions, feature = "diagnostic"))]
        self.check_ipl("pool_cache_put");
        if pa != POOL_PADDR_INVALID && !self.cfg.paddr {
            paddr_refused(self.name());
        }
        // SAFETY: the caller's contract.
        unsafe { self.core.put(obj, pa) }
    }

    /// The CPU-local hit of [`get`](RawPoolCache::get) alone: a
    /// constructed object from this CPU's current group, or `None` with
    /// nothing else done (no previous group, depot or pool). For an
    /// allocator layered on the cache that wants its own fast path inlined
    /// and everything else out of line; callers fall back to `get`.
    /// Usable wherever `get` is.
    ///
    /// ```
    /// use bsdalloc_pool::PrFlags;
    /// use bsdalloc_pool_cache::{PoolCacheConfig, RawPoolCache};
    ///
    /// static C: RawPoolCache = RawPoolCache::new(PoolCacheConfig::new("hitdoc", 64));
    /// C.bootstrap();
    /// let x = C.get_cpu_hit().or_else(|| C.get(PrFlags::NOWAIT)).unwrap();
    /// unsafe {
    ///     if !C.put_cpu_hit(x) {
    ///         C.put(x);
    ///     }
    /// }
    /// assert_eq!(C.get_cpu_hit(), Some(x)); // the CPU's group had it
    /// unsafe { C.put(x) };
    /// ```
    ///
    /// # Panics
    /// A cache not bootstrapped.
    #[inline(always)]
    #[track_caller]
    pub fn get_cpu_hit(&self) -> Option<NonNull<u8>> {
        self.core.get_hit().map(|(p, _)| p)
    }

    /// The CPU-local hit of [`put`](RawPoolCache::put) alone: `true` if
    /// `obj` went into this CPU's current group, `false` with nothing done
    /// (the group is full; with `diagnostic`, also an object already
    /// cached here) — then call `put`.
    ///
    /// # Safety
    /// As [`RawPoolCache::put`].
    #[inline(always)]
    #[track_caller]
    pub unsafe fn put_cpu_hit(&self, obj: NonNull<u8>) -> bool {
        // SAFETY: the caller's contract.
        unsafe { self.core.put_hit(obj, POOL_PADDR_INVALID) }
    }

    /// `pool_cache_destruct_object`: bypass the cache: (the pserialize
    /// barrier for `PR_PSERIALIZE`,) the destructor, `pool_put`.
    ///
    /// # Safety
    /// As [`RawPoolCache::put`].
    pub unsafe fn destruct_object(&self, obj: NonNull<u8>) {
        // SAFETY: the caller's contract.
        unsafe { self.core.destruct(obj) }
    }

    /// `pool_cache_invalidate`: every CPU's groups go to the depot (by
    /// cross-call, so idle and sleeping threads' groups too), then every
    /// cached object is destructed and returned to the pool, and the empty
    /// groups (of all caches) are freed. Pool pages stay.
    ///
    /// # Panics
    /// From interrupt context or with a spin mutex held.
    #[track_caller]
    pub fn invalidate(&self) {
        assert_not_in_interrupt("pool_cache_invalidate");
        self.core.invalidate();
    }

    /// `pool_cache_reclaim`: `pool_reclaim` of the embedded pool, which
    /// invalidates the cache first. True iff pages were released.
    pub fn reclaim(&self) -> bool {
        self.pool().reclaim()
    }

    /// `pool_cache_set_drain_hook`.
    pub fn set_drain_hook(&self, hook: &'static dyn PoolDrainHook) {
        self.pool().set_drain_hook(hook)
    }

    /// `pool_cache_setlowat`.
    pub fn setlowat(&self, n: u32) {
        self.pool().setlowat(n)
    }

    /// `pool_cache_sethiwat`.
    pub fn sethiwat(&self, n: u32) {
        self.pool().sethiwat(n)
    }

    /// `pool_cache_sethardlimit`.
    pub fn sethardlimit(&self, n: u32, warning: Option<&'static str>, ratecap: u64) {
        self.pool().sethardlimit(n, warning, ratecap)
    }

    /// `pool_cache_prime`.
    pub fn prime(&self, n: u32) {
        self.pool().prime(n)
    }

    /// `pool_cache_nget`: the pool's gets.
    pub fn nget(&self) -> u64 {
        self.pool().nget()
    }

    /// `pool_cache_nput`: the pool's puts.
    pub fn nput(&self) -> u64 {
        self.pool().nput()
    }

    /// Each CPU's counters (cross-calls: thread context).
    pub fn cpu_stats(&self, f: impl FnMut(CpuId, CpuCacheStats) + Send) {
        self.core.cpu_stats(f)
    }

    /// The calling CPU's counters (any context).
    pub fn local_stats(&self) -> CpuCacheStats {
        self.core.local_stats()
    }

    /// A thread that stops being a CPU gives its groups back (the exit
    /// hook calls this for every cache).
    pub(crate) fn cpu_exit(&self) {
        if self.core.is_ready() {
            self.core.transfer_local();
        }
    }
}

impl PoolCacheHook for RawPoolCache {
    fn invalidate(&self) {
        self.core.invalidate();
    }
}

/// `pool_cache_cpu_init`: a CPU attaches. Per-CPU structures exist for
/// every possible CPU from bootstrap on (zeroed: the dummy groups), so
/// this only makes sure that a reused CPU slot holds nothing of a former
/// CPU (its groups go to the depot).
///
/// # Panics
/// Where a cross-call may not be made.
pub fn pool_cache_cpu_init(cpu: CpuId) {
    registry::for_each_pool_cache(|pc| pc.core.transfer_cpu(cpu));
}

#[cold]
#[inline(never)]
#[track_caller]
fn paddr_refused(name: &str) -> ! {
    panic!("pool_cache_put_paddr: [{name}] keeps no physical addresses (no_paddr)")
}

#[cold]
#[inline(never)]
#[track_caller]
fn bad_wait_flags(name: &str, flags: PrFlags) -> ! {
    panic!(
        "pool_cache_get: [{name}] exactly one of PR_WAITOK and PR_NOWAIT is required, not {flags:?}"
    )
}

#[cfg(any(debug_assertions, feature = "diagnostic"))]
#[cold]
#[inline(never)]
#[track_caller]
fn ipl_none_panic(what: &str, name: &str) -> ! {
    panic!("{what}: [{name}] is IPL_NONE, but called from interrupt context")
}
