//! The list of all caches (NetBSD's `pool_cache` list, sorted by name),
//! walked with pins so that no lock is held while a walker runs (thread
//! exit, statistics, `vmstat -C`, `pool_cache_cpu_init`).

use core::ptr;

use bsdalloc_platform::{
    AdaptiveMutex, AdaptiveMutexGuard, LockRank, WaitChannel, assert_not_in_interrupt,
};

use crate::pool_cache::RawPoolCache;

/// A cache's link in the list and its pin count, under the list lock.
pub(crate) struct Link {
    next: *const RawPoolCache,
    pins: u32,
    listed: bool,
}

impl Link {
    pub(crate) const fn new() -> Link {
        Link {
            next: ptr::null(),
            pins: 0,
            listed: false,
        }
    }
}

struct List {
    head: *const RawPoolCache,
    count: usize,
}

// SAFETY: the pointers are listed caches, used under the list lock.
unsafe impl Send for List {}

/// Ranked with the pool list: outside every pool_cache and pool lock, so
/// walkers may enter CPU-local sections and take pool locks.
static LIST: AdaptiveMutex<List> = AdaptiveMutex::ranked(
    LockRank::PoolList,
    List {
        head: ptr::null(),
        count: 0,
    },
);
static UNPINNED: WaitChannel = WaitChannel::new("pcbusy");

/// The link of `pc`, with the list lock held (the guard proves it).
///
/// # Safety
/// The list lock is held for as long as the reference lives, and no other
/// reference to the same link is alive.
#[allow(clippy::mut_from_ref)]
unsafe fn link<'a>(_g: &mut AdaptiveMutexGuard<'_, List>, pc: &'a RawPoolCache) -> &'a mut Link {
    // SAFETY: links are only touched under the list lock.
    pc.link.with_mut(|l| unsafe { &mut *l })
}

/// Enter `pc` before the first cache whose name sorts after its own.
pub(crate) fn insert(pc: &'static RawPoolCache) {
    let mut g = LIST.lock();
    let mut prev: *const RawPoolCache = ptr::null();
    let mut cur = g.head;
    while !cur.is_null() {
        // SAFETY: listed caches stay valid while listed, under the lock.
        let c = unsafe { &*cur };
        if c.name() > pc.name() {
            break;
        }
        prev = cur;
        // SAFETY: the list lock is held.
        cur = unsafe { link(&mut g, c) }.next;
    }
    // SAFETY: the list lock is held; one link at a time.
    unsafe {
        let l = link(&mut g, pc);
        l.next = cur;
        l.pins = 0;
        l.listed = true;
        if prev.is_null() {
            g.head = pc;
        } else {
            link(&mut g, &*prev).next = pc;
        }
    }
    g.count += 1;
}

/// Take `pc` off the list once nobody pins it.
pub(crate) fn remove(pc: &'static RawPoolCache) {
    let mut g = LIST.lock();
    // SAFETY: the list lock is held throughout (the wait re-takes it).
    unsafe {
        while link(&mut g, pc).pins != 0 {
            g = UNPINNED.wait(g);
        }
        if !link(&mut g, pc).listed {
            return;
        }
        let next = link(&mut g, pc).next;
        let me: *const RawPoolCache = pc;
        if ptr::eq(g.head, me) {
            g.head = next;
        } else {
            let mut p = g.head;
            while !p.is_null() {
                let l = link(&mut g, &*p);
                if ptr::eq(l.next, me) {
                    l.next = next;
                    break;
                }
                p = l.next;
            }
        }
        let l = link(&mut g, pc);
        l.listed = false;
        l.next = ptr::null();
    }
    g.count -= 1;
}

/// Call `f` on every cache, in name order, with no lock held: each cache
/// is pinned while `f` runs, so it cannot be destroyed meanwhile (destroy
/// waits). Not from interrupt context.
pub fn for_each_pool_cache(mut f: impl FnMut(&'static RawPoolCache)) {
    assert_not_in_interrupt("for_each_pool_cache");
    let mut g = LIST.lock();
    let mut cur = g.head;
    while !cur.is_null() {
        // SAFETY: listed, under the lock; pinned before the lock drops.
        let pc: &'static RawPoolCache = unsafe { &*cur };
        // SAFETY: the list lock is held.
        unsafe { link(&mut g, pc) }.pins += 1;
        drop(g);
        f(pc);
        g = LIST.lock();
        // SAFETY: still listed (pinned), under the lock.
        let l = unsafe { link(&mut g, pc) };
        l.pins -= 1;
        let unpinned = l.pins == 0;
        cur = l.next;
        if unpinned {
            UNPINNED.broadcast();
        }
    }
}

/// How many caches exist.
pub fn pool_cache_count() -> usize {
    LIST.lock().count
}
