//! The list of all pools (`pool_head`, sorted by name) with pinning
//! (`pr_refcnt`), `pool_drain`'s round robin, the pagedaemon's drain hook,
//! the header pools `phpool-N`, the pool-descriptor pool behind
//! `pool_create`, and `pool_totalpages`.

use core::mem::{align_of, size_of};
use core::ptr::{self, NonNull};

use bsdalloc_platform::sync::atomic::{AtomicU32, Ordering};
use bsdalloc_platform::{
    AdaptiveMutex, AdaptiveMutexGuard, Ipl, LockRank, WaitChannel, assert_not_in_interrupt, curipl,
    in_interrupt,
};
use bsdalloc_uvm_pages::{DrainHook, KernelMap, UvmFlags};

use crate::allocator::POOL_ALLOCATOR_META;
use crate::flags::{PHPOOL_MAX, PrFlags};
use crate::layout::phpool_item_size;
use crate::pool::{NOWAIT_INFLIGHT, PoolConfig, RawPool};

/// A pool's links in the global list (`pr_poollist`) and its pin count
/// (`pr_refcnt`), under the pool-list lock.
pub(crate) struct Link {
    next: *const RawPool,
    prev: *const RawPool,
    refcnt: u32,
    listed: bool,
}

impl Link {
    pub(crate) const fn new() -> Link {
        Link {
            next: ptr::null(),
            prev: ptr::null(),
            refcnt: 0,
            listed: false,
        }
    }
}

struct List {
    head: *const RawPool,
    /// `drainpp`: the next pool `pool_drain` looks at.
    drain_next: *const RawPool,
    count: usize,
}

// SAFETY: the pointers are registered pools, used under the list lock.
unsafe impl Send for List {}

/// `pool_head_lock`: adaptive, as in NetBSD (`MUTEX_DEFAULT, IPL_NONE`).
static LIST: AdaptiveMutex<List> = AdaptiveMutex::ranked(
    LockRank::PoolList,
    List {
        head: ptr::null(),
        drain_next: ptr::null(),
        count: 0,
    },
);
/// `pool_busy`: destroyers wait here for pins to go.
static BUSY: WaitChannel = WaitChannel::new("poolbusy");
/// Serialises the first `init` of internal pools.
static INIT: AdaptiveMutex<()> = AdaptiveMutex::new(());
static POOLID: AtomicU32 = AtomicU32::new(0);

/// The link of `pp`, with the list lock held (the guard proves it).
///
/// # Safety
/// The list lock is held for as long as the reference lives.
#[allow(clippy::mut_from_ref)]
unsafe fn link<'a>(_g: &mut AdaptiveMutexGuard<'_, List>, pp: &'a RawPool) -> &'a mut Link {
    // SAFETY: links are only touched under the list lock, which the
    // caller holds; each call's reference ends before the next one.
    pp.link.with_mut(|l| unsafe { &mut *l })
}

pub(crate) fn next_poolid() -> u32 {
    POOLID.fetch_add(1, Ordering::Relaxed) + 1
}

pub(crate) fn init_lock() -> AdaptiveMutexGuard<'static, ()> {
    INIT.lock()
}

/// Enter `pp` into the list, before the first pool whose name sorts after
/// its own.
pub(crate) fn insert(pp: &'static RawPool) {
    let mut g = LIST.lock();
    let mut prev: *const RawPool = ptr::null();
    let mut cur = g.head;
    while !cur.is_null() {
        // SAFETY: listed pools stay valid while listed, under the lock.
        let c = unsafe { &*cur };
        if c.name() > pp.name() {
            break;
        }
        prev = cur;
        // SAFETY: as above.
        cur = unsafe { link(&mut g, c) }.next;
    }
    // SAFETY: the list lock is held.
    unsafe {
        let l = link(&mut g, pp);
        l.next = cur;
        l.prev = prev;
        l.refcnt = 0;
        l.listed = true;
        if !cur.is_null() {
            link(&mut g, &*cur).prev = pp;
        }
        if prev.is_null() {
            g.head = pp;
        } else {
            link(&mut g, &*prev).next = pp;
        }
    }
    g.count += 1;
}

/// Take `pp` off the list once nobody pins it (`pool_destroy`).
pub(crate) fn remove(pp: &'static RawPool) {
    let mut g = LIST.lock();
    // SAFETY: the list lock is held throughout (the wait re-takes it).
    unsafe {
        while link(&mut g, pp).refcnt != 0 {
            g = BUSY.wait(g);
        }
        let l = link(&mut g, pp);
        if !l.listed {
            return;
        }
        let (next, prev) = (l.next, l.prev);
        l.listed = false;
        l.next = ptr::null();
        l.prev = ptr::null();
        if prev.is_null() {
            g.head = next;
        } else {
            link(&mut g, &*prev).next = next;
        }
        if !next.is_null() {
            link(&mut g, &*next).prev = prev;
        }
        if ptr::eq(g.drain_next, pp) {
            g.drain_next = next;
        }
    }
    g.count -= 1;
}

/// Call `f` on every pool, in name order, with no lock held: each pool is
/// pinned while `f` runs, so it cannot be destroyed meanwhile (a destroy
/// waits). Not from interrupt context; `f` must not destroy the pool it is
/// given.
pub fn for_each_pool(mut f: impl FnMut(&'static RawPool)) {
    assert_not_in_interrupt("for_each_pool");
    let mut g = LIST.lock();
    let mut cur = g.head;
    while !cur.is_null() {
        // SAFETY: listed, under the lock; pinned before the lock drops.
        let pp: &'static RawPool = unsafe { &*cur };
        // SAFETY: the list lock is held.
        unsafe { link(&mut g, pp) }.refcnt += 1;
        drop(g);
        f(pp);
        g = LIST.lock();
        // SAFETY: still listed (pinned), under the lock.
        let l = unsafe { link(&mut g, pp) };
        l.refcnt -= 1;
        let unpinned = l.refcnt == 0;
        cur = l.next;
        if unpinned {
            BUSY.broadcast();
        }
    }
}

/// How many pools exist.
pub fn pool_count() -> usize {
    LIST.lock().count
}

/// `pool_drain`: reclaim the next pool with pages, round robin over all
/// pools (a global cursor), and say which pool it was and whether pages
/// were released. `(None, false)` if no pool has pages. Called by the
/// pagedaemon when memory is short.
///
/// # Panics
/// From interrupt context.
pub fn pool_drain() -> (Option<&'static RawPool>, bool) {
    assert_not_in_interrupt("pool_drain");
    let mut g = LIST.lock();
    let n = g.count;
    let mut found = None;
    for _ in 0..n {
        if g.drain_next.is_null() {
            g.drain_next = g.head;
        }
        let cur = g.drain_next;
        if cur.is_null() {
            break;
        }
        // SAFETY: listed, under the lock.
        let pp: &'static RawPool = unsafe { &*cur };
        // SAFETY: the list lock is held.
        g.drain_next = unsafe { link(&mut g, pp) }.next;
        if pp.npages_hint.load(Ordering::Relaxed) != 0 {
            found = Some(pp);
            break;
        }
    }
    let Some(pp) = found else {
        return (None, false);
    };
    // SAFETY: the list lock is held.
    unsafe { link(&mut g, pp) }.refcnt += 1;
    drop(g);
    let reclaimed = pp.reclaim();
    let mut g = LIST.lock();
    // SAFETY: the list lock is held; `pp` is pinned.
    unsafe { link(&mut g, pp) }.refcnt -= 1;
    BUSY.broadcast();
    (Some(pp), reclaimed)
}

/// `pool_totalpages`: pages held by all pools, less the items of
/// `PR_RECURSIVE` pools that are out (they are other pools' pages).
pub fn pool_totalpages() -> usize {
    let mut bytes: usize = 0;
    for_each_pool(|pp| {
        let s = pp.stats();
        let mut b = s.npages as usize * s.pagesize;
        if s.flags.contains(PrFlags::RECURSIVE) {
            b -= s.nout as usize * s.size;
        }
        bytes += b;
    });
    bytes / crate::allocator::page_size()
}

/// The pagedaemon's hook: drain pools, round robin, until one released
/// pages or every pool was tried.
struct Pagedaemon;

impl DrainHook for Pagedaemon {
    fn drain(&self, _flags: UvmFlags) {
        // The map runs its pagedaemon in the allocating thread. Under a
        // pool lock (a PR_NOWAIT grow keeps it), with a spin mutex held,
        // or in an interrupt, draining here could deadlock or run unknown
        // code under a spin mutex: leave it to the next pass.
        if in_interrupt() || curipl() != Ipl::None || NOWAIT_INFLIGHT.load(Ordering::Relaxed) != 0 {
            return;
        }
        for _ in 0..pool_count() {
            if let (_, true) = pool_drain() {
                break;
            }
        }
    }
}

static PAGEDAEMON: Pagedaemon = Pagedaemon;

pub(crate) fn register_pagedaemon(map: &'static KernelMap) {
    map.register_drain_hook(&PAGEDAEMON);
}

/// Have `map`'s pagedaemon drain the pools when memory is short (the
/// standard map's does from [`pool_subsystem_init`](crate::pool_subsystem_init) on;
/// call this for another map a pool allocator takes pages from).
pub fn pool_register_pagedaemon(map: &'static KernelMap) {
    register_pagedaemon(map);
}

// ---- the header pools and the descriptor pool ----

const fn phpool_cfg(idx: usize, name: &'static str) -> PoolConfig {
    PoolConfig::new(name, phpool_item_size(idx))
        .allocator(&POOL_ALLOCATOR_META)
        .ipl(Ipl::Vm)
        .leaf()
}

static PHPOOL: [RawPool; PHPOOL_MAX] = [
    RawPool::new(phpool_cfg(0, "phpool-64")),
    RawPool::new(phpool_cfg(1, "phpool-64")),
    RawPool::new(phpool_cfg(2, "phpool-128")),
    RawPool::new(phpool_cfg(3, "phpool-256")),
    RawPool::new(phpool_cfg(4, "phpool-512")),
    RawPool::new(phpool_cfg(5, "phpool-1024")),
    RawPool::new(phpool_cfg(6, "phpool-2048")),
    RawPool::new(phpool_cfg(7, "phpool-4096")),
];

/// Header pool `idx`, initialised.
pub(crate) fn phpool(idx: usize) -> &'static RawPool {
    let pp = &PHPOOL[idx];
    pp.ensure_init();
    pp
}

/// Descriptors for `pool_create` (NetBSD takes them from kmem; here from
/// a pool of the stack's own meta memory).
static POOL_DESC: RawPool = RawPool::new(
    PoolConfig::new("pooldesc", size_of::<RawPool>())
        .align(align_of::<RawPool>())
        .allocator(&POOL_ALLOCATOR_META),
);

/// `pool_init` on a descriptor from the stack's own memory: a pool that
/// lives until [`pool_destroy`](crate::pool_destroy).
///
/// # Panics
/// As [`RawPool::init`] (the descriptor goes back first).
pub fn pool_create(cfg: PoolConfig) -> &'static RawPool {
    POOL_DESC.ensure_init();
    let d = POOL_DESC
        .get(PrFlags::WAITOK)
        .expect("pool_create: PR_WAITOK returned nothing");
    let p = d.cast::<RawPool>();
    // SAFETY: a fresh descriptor-sized, -aligned item of ours.
    let pp: &'static RawPool = unsafe {
        p.as_ptr().write(RawPool::new(cfg));
        &*p.as_ptr()
    };
    pp.created.store(true, Ordering::Relaxed);
    struct Undo(NonNull<u8>);
    impl Drop for Undo {
        fn drop(&mut self) {
            // SAFETY: the descriptor never got into the pool list.
            unsafe { POOL_DESC.put(self.0) };
        }
    }
    let undo = Undo(d);
    pp.init();
    core::mem::forget(undo);
    pp
}

/// `pool_destroy` of any pool; a `pool_create` descriptor goes back to
/// the descriptor pool.
///
/// # Panics
/// As [`RawPool::destroy`].
///
/// # Safety
/// As in C, a created pool is gone afterwards: no reference to it may be
/// used again.
pub unsafe fn pool_destroy(pp: &'static RawPool) {
    pp.destroy();
    if pp.created.load(Ordering::Relaxed) {
        // SAFETY: a descriptor of POOL_DESC, no longer listed or used.
        unsafe { POOL_DESC.put(NonNull::from(pp).cast()) };
    }
}
