//! The pool: NetBSD's `struct pool`, its configuration, `pool_init`, and
//! the item paths `pool_get`, `pool_put` and `pool_grow` with the page
//! lists. Tuning, reclaim and destroy are in `tuning.rs`.

use core::fmt;
use core::ptr::{self, NonNull};

use bsdalloc_platform::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicUsize, Ordering};
use bsdalloc_platform::sync::cell::UnsafeCell;
use bsdalloc_platform::{
    FaultInjector, Ipl, KMutex, KMutexGuard, LockRank, WaitChannel, assert_not_in_interrupt,
    in_interrupt,
};

use crate::allocator::{POOL_ALLOCATOR_KMEM, PoolAllocator};
use crate::clock::{Clock, UPTIME};
use crate::flags::{PI_MAGIC, POOL_INACTIVE_TIME, PrFlags, UNLIMITED};
use crate::layout::{self, DebugOptions, PoolLayout};
use crate::raw::{self, PageHeader};
use crate::registry::{self, Link};

/// The fault-injection point of `pool_get(PR_NOWAIT)` (NetBSD's
/// `fault_inject()`): armed, a `PR_NOWAIT` get fails before it looks at the
/// pool. The page source has its own ([`bsdalloc_platform::PAGE_FAULTS`]).
pub static POOL_GET_FAULTS: FaultInjector = FaultInjector::new();

/// Threads now inside a `PR_NOWAIT` back-end call with a pool lock held:
/// the pagedaemon hook does not drain pools under them.
pub(crate) static NOWAIT_INFLIGHT: AtomicUsize = AtomicUsize::new(0);

/// What a pool's drain hook is (`pool_set_drain_hook(pp, fn, arg)`): the
/// hook's state is its `self`.
pub trait PoolDrainHook: Sync {
    /// Give items back to the pool if possible. Called with no pool lock
    /// held, with `PR_NOWAIT` from reclaim and after a failed `PR_NOWAIT`
    /// page allocation, with the getter's flags at the hard limit.
    fn drain(&self, flags: PrFlags);
}

/// What the pool layer asks of a pool cache on top of it
/// (`pool_cache_invalidate` from `pool_reclaim`).
pub trait PoolCacheHook: Sync {
    /// Give every cached object back to the pool.
    fn invalidate(&self);
}

pub(crate) const EMPTY: usize = 0;
pub(crate) const FULL: usize = 1;
pub(crate) const PART: usize = 2;

const UNINIT: u8 = 0;
const INITIALIZING: u8 = 1;
const READY: u8 = 2;

const MAGIC: bool = cfg!(feature = "magic");

/// How a pool is set up: `pool_init`'s arguments. `const`, so a pool can be
/// a `static`.
#[derive(Clone, Copy)]
pub struct PoolConfig {
    pub(crate) name: &'static str,
    pub(crate) size: usize,
    pub(crate) align: usize,
    pub(crate) align_offset: usize,
    pub(crate) flags: PrFlags,
    pub(crate) ipl: Ipl,
    pub(crate) allocator: Option<&'static dyn PoolAllocator>,
    pub(crate) clock: &'static dyn Clock,
    pub(crate) rank: LockRank,
}

impl fmt::Debug for PoolConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolConfig")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("align", &self.align)
            .field("flags", &self.flags)
            .field("ipl", &self.ipl)
            .finish_non_exhaustive()
    }
}

impl PoolConfig {
    /// Items of `size` bytes named `name` (the wait channel, the name in
    /// statistics): natural alignment, no flags, `IPL_NONE`, the default
    /// allocator (`pool_allocator_kmem`), the uptime clock.
    pub const fn new(name: &'static str, size: usize) -> PoolConfig {
        PoolConfig {
            name,
            size,
            align: 0,
            align_offset: 0,
            flags: PrFlags::empty(),
            ipl: Ipl::None,
            allocator: None,
            clock: &UPTIME,
            rank: LockRank::Pool,
        }
    }

    /// `align`: a power of two; 0 is natural alignment (`ALIGN(1)`).
    pub const fn align(mut self, align: usize) -> Self {
        self.align = align;
        self
    }

    /// `align_offset` (`ioff`): must be 0, as in current NetBSD.
    pub const fn align_offset(mut self, ioff: usize) -> Self {
        self.align_offset = ioff;
        self
    }

    /// `PR_*` init flags.
    pub const fn flags(mut self, flags: PrFlags) -> Self {
        self.flags = flags;
        self
    }

    /// The highest interrupt level that uses the pool; the pool lock is
    /// created at it (adaptive at `IPL_NONE`, a spin mutex above).
    pub const fn ipl(mut self, ipl: Ipl) -> Self {
        self.ipl = ipl;
        self
    }

    /// The back-end page allocator (`palloc`; default
    /// [`POOL_ALLOCATOR_KMEM`]).
    pub const fn allocator(mut self, a: &'static dyn PoolAllocator) -> Self {
        self.allocator = Some(a);
        self
    }

    /// The clock for idle times and the warning rate cap. It is read with
    /// the pool lock held: it must not block, allocate or take locks.
    pub const fn clock(mut self, c: &'static dyn Clock) -> Self {
        self.clock = c;
        self
    }

    /// A header pool: its lock is a leaf below every other pool's (taken
    /// inside a pool's lock when a `PR_NOWAIT` grow needs a header).
    pub(crate) const fn leaf(mut self) -> Self {
        self.rank = LockRank::None;
        self
    }
}

/// The state behind the pool lock (most of `struct pool`).
pub(crate) struct Inner {
    pub(crate) lay: PoolLayout,
    pub(crate) pagemask: usize,
    /// `log2(size)` when the item size is a power of two (index by shift).
    pub(crate) size_shift: Option<u32>,
    pub(crate) poolid: u32,
    pub(crate) alloc: Option<&'static dyn PoolAllocator>,
    pub(crate) phpool: Option<&'static RawPool>,
    /// `pr_emptypages`, `pr_fullpages`, `pr_partpages`.
    pub(crate) lists: [*mut PageHeader; 3],
    pub(crate) curpage: *mut PageHeader,
    /// Off-page headers by page address (`pr_phtree`).
    pub(crate) tree: *mut PageHeader,
    pub(crate) flags: PrFlags,
    pub(crate) npages: u32,
    pub(crate) nitems: u32,
    pub(crate) nout: u32,
    pub(crate) minitems: u32,
    pub(crate) maxitems: u32,
    pub(crate) minpages: u32,
    pub(crate) maxpages: u32,
    pub(crate) hardlimit: u32,
    pub(crate) hiwat: u32,
    pub(crate) nidle: u32,
    pub(crate) nget: u64,
    pub(crate) nfail: u64,
    pub(crate) nput: u64,
    pub(crate) npagealloc: u64,
    pub(crate) npagefree: u64,
    pub(crate) curcolor: usize,
    pub(crate) warning: Option<&'static str>,
    pub(crate) ratecap: u64,
    pub(crate) warning_last: Option<u64>,
    pub(crate) nwarned: u64,
    pub(crate) drain_hook: Option<&'static dyn PoolDrainHook>,
    pub(crate) cache: Option<&'static dyn PoolCacheHook>,
    #[cfg(feature = "quarantine")]
    pub(crate) quar: [*mut u8; crate::flags::POOL_QUARANTINE_DEPTH],
    #[cfg(feature = "quarantine")]
    pub(crate) rotor: usize,
}

// SAFETY: the raw pointers are the pool's own pages and headers, used only
// under the pool lock.
unsafe impl Send for Inner {}

impl Inner {
    const fn new() -> Inner {
        Inner {
            lay: PoolLayout {
                size: 0,
                reqsize: 0,
                align: 0,
                itemoffset: 0,
                itemsperpage: 0,
                maxcolor: 0,
                pagesz: 0,
                roflags: PrFlags::empty(),
                phpool: None,
                redzone: false,
            },
            pagemask: 0,
            size_shift: None,
            poolid: 0,
            alloc: None,
            phpool: None,
            lists: [ptr::null_mut(); 3],
            curpage: ptr::null_mut(),
            tree: ptr::null_mut(),
            flags: PrFlags::empty(),
            npages: 0,
            nitems: 0,
            nout: 0,
            minitems: 0,
            maxitems: UNLIMITED,
            minpages: 0,
            maxpages: UNLIMITED,
            hardlimit: UNLIMITED,
            hiwat: 0,
            nidle: 0,
            nget: 0,
            nfail: 0,
            nput: 0,
            npagealloc: 0,
            npagefree: 0,
            curcolor: 0,
            warning: None,
            ratecap: 0,
            warning_last: None,
            nwarned: 0,
            drain_hook: None,
            cache: None,
            #[cfg(feature = "quarantine")]
            quar: [ptr::null_mut(); crate::flags::POOL_QUARANTINE_DEPTH],
            #[cfg(feature = "quarantine")]
            rotor: 0,
        }
    }

    pub(crate) fn ipp(&self) -> usize {
        self.lay.itemsperpage
    }

    /// `pool_update_curpage`: the first partial page, else the first empty
    /// one, else none.
    pub(crate) fn update_curpage(&mut self) {
        self.curpage = if self.lists[PART].is_null() {
            self.lists[EMPTY]
        } else {
            self.lists[PART]
        };
    }

    /// `POOL_NEEDS_CATCHUP`.
    fn needs_catchup(&self) -> bool {
        self.nitems < self.minitems || self.npages < self.minpages
    }

    /// The three list heads, as one base pointer (valid until `self` is
    /// borrowed again).
    pub(crate) fn lists(&mut self) -> *mut *mut PageHeader {
        self.lists.as_mut_ptr()
    }

    /// `pr_rmpage`: take the page off list `from` and push it on `out`,
    /// the caller's list of pages to release.
    ///
    /// # Safety
    /// `ph` is on list `from` and has no item out.
    pub(crate) unsafe fn rmpage(
        &mut self,
        from: usize,
        ph: *mut PageHeader,
        out: &mut *mut PageHeader,
    ) {
        // SAFETY: caller's contract; the header is ours, under the lock.
        unsafe {
            debug_assert_eq!((*ph).nmissing, 0);
            self.nidle -= 1;
            self.nitems -= self.ipp() as u32;
            raw::list_remove(self.lists().add(from), ph);
            if !self.lay.phinpage() {
                raw::tree_remove(&mut self.tree, ph);
            }
            raw::list_push(out, ph);
        }
        self.npages -= 1;
        self.npagefree += 1;
        self.update_curpage();
    }
}

/// NetBSD's `struct pool`: fixed-size items carved from pages.
///
/// Construct it in place (`const`, so it can be a `static`) and
/// [`init`](RawPool::init) it, or let [`pool_create`](crate::pool_create)
/// carve one from the stack's own memory. Items are raw memory:
/// [`get`](RawPool::get) hands one out, [`put`](RawPool::put) (unsafe: the
/// caller vouches for the pointer) takes it back. The typed, safe layer is
/// [`Pool<T>`](crate::Pool).
///
/// ```
/// use bsdalloc_pool::{PoolConfig, PrFlags, RawPool};
///
/// static BUFS: RawPool = RawPool::new(PoolConfig::new("bufs", 200));
/// BUFS.init();
/// let p = BUFS.get(PrFlags::WAITOK | PrFlags::ZERO).unwrap();
/// assert_eq!(unsafe { p.as_ptr().add(199).read() }, 0);
/// unsafe { BUFS.put(p) };
/// assert_eq!(BUFS.stats().nout, 0);
/// ```
pub struct RawPool {
    pub(crate) cfg: PoolConfig,
    state: AtomicU8,
    pub(crate) lock: KMutex<Inner>,
    pub(crate) cv: WaitChannel,
    /// The global pool list's links, under the pool-list lock.
    pub(crate) link: UnsafeCell<Link>,
    /// `npages`, readable without the lock (`pool_drain` skips idle pools).
    pub(crate) npages_hint: AtomicU32,
    /// The descriptor came from `pool_create`.
    pub(crate) created: AtomicBool,
}

// SAFETY: the pool's state is behind its lock; the list links behind the
// pool-list lock; the rest is immutable or atomic.
unsafe impl Sync for RawPool {}
// SAFETY: as above.
unsafe impl Send for RawPool {}

impl fmt::Debug for RawPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawPool")
            .field("name", &self.cfg.name)
            .field("ready", &self.is_initialized())
            .finish_non_exhaustive()
    }
}

pub(crate) enum Grow {
    Ok,
    Restart,
    Failed,
}

impl RawPool {
    /// A pool described by `cfg`, not yet initialised.
    pub const fn new(cfg: PoolConfig) -> RawPool {
        RawPool {
            cfg,
            state: AtomicU8::new(UNINIT),
            lock: KMutex::ranked(cfg.ipl, cfg.rank, Inner::new()),
            cv: WaitChannel::new(cfg.name),
            link: UnsafeCell::new(Link::new()),
            npages_hint: AtomicU32::new(0),
            created: AtomicBool::new(false),
        }
    }

    /// The name (`pr_wchan`).
    pub fn name(&self) -> &'static str {
        self.cfg.name
    }

    /// The pool's level.
    pub fn ipl(&self) -> Ipl {
        self.cfg.ipl
    }

    /// Whether `init` has run (and `destroy` has not).
    pub fn is_initialized(&self) -> bool {
        self.state.load(Ordering::Acquire) == READY
    }

    /// `pool_init`: compute the layout (spec §2.1), take a pool id, and
    /// enter the pool in the list of all pools (sorted by name).
    ///
    /// # Panics
    /// With NetBSD's messages, before anything changes: size 0, `align`
    /// not a power of two, `align_offset` not 0, an item larger than the
    /// allocator's page, too many items per page for a bitmap, an
    /// allocator of non-memory resources without `PR_NOTOUCH`; "already
    /// initialised"; from interrupt context.
    #[track_caller]
    pub fn init(&'static self) {
        assert_not_in_interrupt("pool_init");
        let alloc: &'static dyn PoolAllocator = match self.cfg.allocator {
            Some(a) => a,
            None => &POOL_ALLOCATOR_KMEM,
        };
        let pagesz = match alloc.pagesz() {
            0 => crate::allocator::page_size(),
            p => p,
        };
        let c = &self.cfg;
        let lay = match layout::compute(
            c.size,
            c.align,
            c.align_offset,
            c.flags,
            pagesz,
            DebugOptions::BUILD,
        ) {
            Ok(l) => l,
            Err(e) => panic!("{}", e.message(c.name)),
        };
        if !alloc.is_memory() && !lay.roflags.contains(PrFlags::NOTOUCH) {
            panic!(
                "pool_init: [{}] allocator '{}' hands out no memory: the pool needs PR_NOTOUCH",
                c.name,
                alloc.name()
            );
        }
        let phpool = lay.phpool.map(registry::phpool);
        if self
            .state
            .compare_exchange(UNINIT, INITIALIZING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            panic!("pool_init: [{}] already initialised", c.name);
        }
        {
            let mut g = self.lock.lock();
            *g = Inner::new();
            g.lay = lay;
            g.pagemask = !(pagesz - 1);
            g.size_shift = lay
                .size
                .is_power_of_two()
                .then(|| lay.size.trailing_zeros());
            g.poolid = registry::next_poolid();
            g.alloc = Some(alloc);
            g.phpool = phpool;
        }
        self.npages_hint.store(0, Ordering::Relaxed);
        registry::insert(self);
        self.state.store(READY, Ordering::Release);
    }

    /// Initialise an internal pool once, however many threads race to it.
    pub(crate) fn ensure_init(&'static self) {
        match self.state.load(Ordering::Acquire) {
            READY => {}
            UNINIT => {
                // Losing the race to another initialiser panics in init:
                // serialise on the pool-list lock instead.
                let _g = registry::init_lock();
                if self.state.load(Ordering::Acquire) != READY {
                    self.init();
                }
            }
            _ => {
                let _g = registry::init_lock();
            }
        }
    }

    #[inline]
    #[track_caller]
    pub(crate) fn check_ready(&self, what: &str) {
        if self.state.load(Ordering::Acquire) != READY {
            not_ready(what, self.cfg.name);
        }
    }

    #[inline]
    #[track_caller]
    pub(crate) fn check_ipl(&self, what: &str) {
        if self.cfg.ipl == Ipl::None && in_interrupt() {
            ipl_none_panic(what, self.cfg.name);
        }
    }

    pub(crate) fn mark_destroyed(&self) {
        self.state.store(UNINIT, Ordering::Release);
    }

    /// `pool_get`: an item, or `None` (`PR_NOWAIT`, or `PR_LIMITFAIL` at
    /// the hard limit). `PR_WAITOK` waits for memory, and at the hard limit
    /// for a put; `PR_ZERO` zeroes the requested size.
    ///
    /// # Panics
    /// Not exactly one of `PR_WAITOK` and `PR_NOWAIT`; an uninitialised
    /// pool; an `IPL_NONE` pool from interrupt context; `PR_WAITOK` where
    /// sleeping is not allowed; a free item whose magic was overwritten
    /// (feature `magic`: "free list modified").
    #[track_caller]
    pub fn get(&self, flags: PrFlags) -> Option<NonNull<u8>> {
        let wait = flags.intersection(PrFlags::WAIT_MASK);
        if wait != PrFlags::WAITOK && wait != PrFlags::NOWAIT {
            bad_wait_flags(self.cfg.name, flags);
        }
        self.check_ready("pool_get");
        self.check_ipl("pool_get");
        if wait == PrFlags::WAITOK {
            // ASSERT_SLEEPABLE is a DIAGNOSTIC check in NetBSD: debug
            // builds make it here; a sleep where none is allowed panics
            // anyway, in the wait channel, in every build.
            #[cfg(debug_assertions)]
            bsdalloc_platform::assert_sleepable("pool_get");
        } else if POOL_GET_FAULTS.is_armed() && POOL_GET_FAULTS.should_fail() {
            return None;
        }
        let mut g = self.lock.lock();
        let mut warn = None;
        loop {
            if g.nout >= g.hardlimit {
                if let Some(hook) = g.drain_hook {
                    drop(g);
                    hook.drain(flags);
                    g = self.lock.lock();
                    if g.nout < g.hardlimit {
                        continue;
                    }
                }
                if wait == PrFlags::WAITOK && !flags.contains(PrFlags::LIMITFAIL) {
                    g.flags |= PrFlags::WANTED;
                    while g.flags.contains(PrFlags::WANTED) {
                        g = self.cv.wait(g);
                    }
                    continue;
                }
                if let Some(msg) = g.warning {
                    let now = self.cfg.clock.uptime();
                    let due = match g.warning_last {
                        None => true,
                        Some(last) => now.saturating_sub(last) >= g.ratecap,
                    };
                    if due {
                        g.warning_last = Some(now);
                        g.nwarned += 1;
                        warn = Some(msg);
                    }
                }
                g.nfail += 1;
                drop(g);
                if let Some(msg) = warn {
                    crate::clock::log_err(self.cfg.name, msg);
                }
                return None;
            }
            if g.curpage.is_null() {
                debug_assert_eq!(g.nitems, 0, "pool_get: curpage NULL, inconsistent nitems");
                let (g2, r) = self.grow(g, flags);
                g = g2;
                match r {
                    Grow::Ok | Grow::Restart => continue,
                    Grow::Failed => {
                        if !g.curpage.is_null() {
                            continue;
                        }
                        g.nfail += 1;
                        return None;
                    }
                }
            }
            break;
        }
        let ph = g.curpage;
        let ipp = g.ipp();
        // SAFETY: the current page is a primed page of this pool with a
        // free item (the current-page invariant), under the lock.
        let item = unsafe {
            if g.lay.usebmap() {
                let idx = raw::bitmap_get(ph, ipp);
                raw::item_at(ph, g.lay.size, idx)
            } else {
                let (item, magic) = raw::freelist_pop(ph);
                if MAGIC && magic != PI_MAGIC {
                    // Put it back untouched, then report.
                    let page = (*ph).page;
                    let name = self.cfg.name;
                    (*ph).u2.list = item;
                    drop(g);
                    panic!(
                        "pr_item_linkedlist_get: [{name}] free list modified: magic={magic:x}; page {page:p}; item addr {item:p}"
                    );
                }
                item
            }
        };
        g.nitems -= 1;
        g.nout += 1;
        // SAFETY: `ph` is on the empty list if nothing was out, else on the
        // partial list (it is the current page, so not full).
        unsafe {
            if (*ph).nmissing == 0 {
                g.nidle -= 1;
                let l = g.lists();
                raw::list_move(l.add(EMPTY), l.add(PART), ph);
            }
            (*ph).nmissing += 1;
            if (*ph).nmissing as usize == ipp {
                let l = g.lists();
                raw::list_move(l.add(PART), l.add(FULL), ph);
                g.update_curpage();
            }
        }
        g.nget += 1;
        if g.needs_catchup() {
            g = self.catchup(g);
        }
        let (reqsize, redzone) = (g.lay.reqsize, g.lay.redzone);
        drop(g);
        if redzone {
            // SAFETY: the item is ours now and has room for the redzone.
            unsafe { raw::redzone_fill(item, reqsize) };
        }
        if flags.contains(PrFlags::ZERO) {
            // SAFETY: the item is ours now, at least `reqsize` bytes.
            unsafe { raw::zero(item, reqsize) };
        }
        NonNull::new(item)
    }

    /// `pool_catchup`: grow with `PR_NOWAIT` until the low-water marks
    /// hold or growing fails.
    pub(crate) fn catchup<'a>(&'a self, mut g: KMutexGuard<'a, Inner>) -> KMutexGuard<'a, Inner> {
        while g.needs_catchup() {
            let (g2, r) = self.grow(g, PrFlags::NOWAIT);
            g = g2;
            if let Grow::Failed = r {
                break;
            }
        }
        g
    }

    /// `pool_grow`: add a page. One grower at a time: a `PR_WAITOK` caller
    /// waits for another grower and restarts; a `PR_NOWAIT` one restarts
    /// after an unlock/relock if the other is `PR_NOWAIT` (it will finish
    /// soon, holding the lock), else fails (`EWOULDBLOCK`). `PR_WAITOK`
    /// drops the lock around the back-end call, `PR_NOWAIT` keeps it.
    pub(crate) fn grow<'a>(
        &'a self,
        mut g: KMutexGuard<'a, Inner>,
        flags: PrFlags,
    ) -> (KMutexGuard<'a, Inner>, Grow) {
        let waitok = flags.contains(PrFlags::WAITOK);
        if g.flags.contains(PrFlags::GROWING) {
            if waitok {
                while g.flags.contains(PrFlags::GROWING) {
                    g = self.cv.wait(g);
                }
                return (g, Grow::Restart);
            }
            if g.flags.contains(PrFlags::GROWINGNOWAIT) {
                drop(g);
                return (self.lock.lock(), Grow::Restart);
            }
            return (g, Grow::Failed);
        }
        g.flags |= PrFlags::GROWING;
        let alloc = g.alloc.expect("pool_grow: no allocator");
        let pagesz = g.lay.pagesz;
        let phpool = g.phpool;
        let hook = g.drain_hook;
        let noalign = g.lay.roflags.contains(PrFlags::NOALIGN);
        let wflags = flags.intersection(PrFlags::WAIT_MASK);
        let mut guard = if waitok {
            drop(g);
            None
        } else {
            g.flags |= PrFlags::GROWINGNOWAIT;
            Some(g)
        };
        // pool_allocator_alloc: one retry after the drain hook for a
        // caller that may not wait. The hook is unknown code: the lock is
        // dropped around it (GROWING keeps other growers out).
        let mut page = self.backend_alloc(alloc, pagesz, wflags, waitok);
        if let (None, false, Some(h)) = (page, waitok, hook) {
            drop(guard.take());
            h.drain(wflags);
            guard = Some(self.lock.lock());
            page = self.backend_alloc(alloc, pagesz, wflags, false);
        }
        let misaligned = page.filter(|p| !noalign && p.as_ptr().addr() & (pagesz - 1) != 0);
        let ph = match (page, phpool) {
            (Some(_), _) if misaligned.is_some() => None,
            (Some(p), None) => Some(p.cast::<PageHeader>()),
            (Some(_), Some(hp)) => hp.get(wflags).map(|h| h.cast::<PageHeader>()),
            (None, _) => None,
        };
        let mut g = match guard {
            Some(g) => g,
            None => self.lock.lock(),
        };
        let (Some(page), Some(ph)) = (page, ph) else {
            if let Some(p) = page {
                // SAFETY: fresh from `alloc`, never primed or used.
                unsafe { alloc.free(p, pagesz) };
            }
            g.flags.remove(PrFlags::GROWING | PrFlags::GROWINGNOWAIT);
            self.cv.broadcast();
            if let Some(p) = misaligned {
                drop(g);
                panic!(
                    "pool_prime_page: [{}] unaligned page: {:p}",
                    self.cfg.name, p
                );
            }
            return (g, Grow::Failed);
        };
        let now = self.cfg.clock.uptime() as u32;
        // SAFETY: a fresh page of this pool's allocator and a header for
        // it (the page itself, or a header-pool item), under the lock.
        unsafe { self.prime_page(&mut g, page.as_ptr(), ph.as_ptr(), now) };
        g.npagealloc += 1;
        g.flags.remove(PrFlags::GROWING | PrFlags::GROWINGNOWAIT);
        self.npages_hint.store(g.npages, Ordering::Relaxed);
        self.cv.broadcast();
        (g, Grow::Ok)
    }

    fn backend_alloc(
        &self,
        alloc: &'static dyn PoolAllocator,
        pagesz: usize,
        flags: PrFlags,
        waitok: bool,
    ) -> Option<NonNull<u8>> {
        if waitok {
            return alloc.alloc(pagesz, flags);
        }
        NOWAIT_INFLIGHT.fetch_add(1, Ordering::Relaxed);
        let p = alloc.alloc(pagesz, flags);
        NOWAIT_INFLIGHT.fetch_sub(1, Ordering::Relaxed);
        p
    }

    /// `pool_prime_page`: put a new page on the empty list with every item
    /// free.
    ///
    /// # Safety
    /// `page` is a fresh page of the pool's allocator, `ph` its header
    /// (the page itself on-page).
    unsafe fn prime_page(&self, g: &mut Inner, page: *mut u8, ph: *mut PageHeader, now: u32) {
        let lay = g.lay;
        // SAFETY: caller's contract: `ph` is header memory of ours.
        unsafe {
            ph.write(PageHeader::EMPTY);
            raw::list_push(g.lists().add(EMPTY), ph);
            (*ph).page = page;
            (*ph).time = now;
            if lay.phinpage() {
                (*ph).u1.poolid = g.poolid;
            } else if !raw::tree_insert(&mut g.tree, ph) {
                panic!(
                    "pool_prime_page: [{}] page {page:p} already in the pool",
                    self.cfg.name
                );
            }
            g.nidle += 1;
            (*ph).off = (lay.itemoffset + g.curcolor) as u16;
            g.curcolor += lay.align;
            if g.curcolor > lay.maxcolor {
                g.curcolor = 0;
            }
            g.nitems += lay.itemsperpage as u32;
            if lay.usebmap() {
                raw::bitmap_init(ph, lay.itemsperpage);
            } else {
                for i in (0..lay.itemsperpage).rev() {
                    raw::freelist_push(ph, raw::item_at(ph, lay.size, i));
                }
            }
        }
        if g.curpage.is_null() {
            g.curpage = ph;
        }
        g.npages += 1;
        g.hiwat = g.hiwat.max(g.npages);
    }

    /// Whether an empty page stamped at `time` has been idle long enough
    /// for reclaim at `now`.
    pub(crate) fn idle_enough(now: u32, time: u32) -> bool {
        now.wrapping_sub(time) as u64 >= POOL_INACTIVE_TIME
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn bad_wait_flags(name: &str, flags: PrFlags) -> ! {
    panic!("pool_get: [{name}] exactly one of PR_WAITOK and PR_NOWAIT is required, not {flags:?}")
}

#[cold]
#[inline(never)]
#[track_caller]
fn not_ready(what: &str, name: &str) -> ! {
    panic!("{what}: [{name}] pr_itemsperpage is zero, pool not initialized?")
}

#[cold]
#[inline(never)]
#[track_caller]
fn ipl_none_panic(what: &str, name: &str) -> ! {
    panic!("{what}: [{name}] is IPL_NONE, but called from interrupt context")
}
