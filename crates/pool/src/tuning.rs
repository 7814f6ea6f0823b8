//! Tuning (`pool_prime`, `pool_setlowat`, `pool_sethiwat`,
//! `pool_sethardlimit`, `pool_set_drain_hook`, `pool_nget`/`pool_nput`),
//! `pool_reclaim` and `pool_destroy`.

use core::ptr;

use bsdalloc_platform::sync::atomic::Ordering;
use bsdalloc_platform::{assert_not_in_interrupt, assert_sleepable};

use crate::flags::{PrFlags, UNLIMITED};
use crate::pool::{EMPTY, FULL, PART, PoolCacheHook, PoolDrainHook, RawPool};
use crate::raw::PageHeader;
use crate::registry;

fn pages_for(n: u32, ipp: usize) -> u32 {
    (n as usize).div_ceil(ipp).min(UNLIMITED as usize) as u32
}

impl RawPool {
    /// `pool_prime`: keep at least `n` items' worth of pages (`minpages =
    /// ceil(n / itemsperpage)`, `maxpages` at least one more), growing with
    /// `PR_WAITOK` until the pool has them.
    ///
    /// # Panics
    /// Where sleeping is not allowed.
    pub fn prime(&self, n: u32) {
        assert_sleepable("pool_prime");
        let mut g = self.lock.lock();
        g.minpages = pages_for(n, g.ipp());
        if g.maxpages <= g.minpages {
            g.maxpages = g.minpages.saturating_add(1);
        }
        while g.npages < g.minpages {
            let (g2, _) = self.grow(g, PrFlags::WAITOK);
            g = g2;
        }
    }

    /// `pool_setlowat`: keep at least `n` free items, growing now with
    /// `PR_NOWAIT` (failures ignored) and after gets that go below.
    pub fn setlowat(&self, n: u32) {
        let mut g = self.lock.lock();
        g.minitems = n;
        let _g = self.catchup(g);
    }

    /// `pool_sethiwat`: record `maxitems`. As in NetBSD rev 1.284, the
    /// release of empty pages on put looks at `maxpages` only (set by
    /// `sethardlimit` and `prime`): this value is kept and reported.
    pub fn sethiwat(&self, n: u32) {
        self.lock.lock().maxitems = n;
    }

    /// `pool_sethardlimit`: at most `n` items out; at the limit `PR_NOWAIT`
    /// and `PR_LIMITFAIL` gets fail, logging `warning` (if any) at most
    /// once every `ratecap` seconds, and `PR_WAITOK` gets wait for a put.
    /// Also `maxpages = ceil(n / itemsperpage)`.
    pub fn sethardlimit(&self, n: u32, warning: Option<&'static str>, ratecap: u64) {
        let mut g = self.lock.lock();
        g.hardlimit = n;
        g.warning = warning;
        g.ratecap = ratecap;
        g.warning_last = None;
        g.maxpages = pages_for(n, g.ipp());
    }

    /// `pool_set_drain_hook`: called (no lock held) at the hard limit, when
    /// a `PR_NOWAIT` page allocation fails (then the allocation is retried
    /// once), and at the start of every reclaim.
    ///
    /// # Panics
    /// If a hook is set already ("already set").
    pub fn set_drain_hook(&self, hook: &'static dyn PoolDrainHook) {
        let mut g = self.lock.lock();
        if g.drain_hook.is_some() {
            drop(g);
            panic!("pool_set_drain_hook: [{}] already set", self.name());
        }
        g.drain_hook = Some(hook);
    }

    /// Attach a pool cache (`pp->pr_cache`): reclaim invalidates it first,
    /// and destroy refuses while one is attached.
    pub fn set_cache(&self, cache: Option<&'static dyn PoolCacheHook>) {
        self.lock.lock().cache = cache;
    }

    /// `pool_nget`: successful gets so far.
    pub fn nget(&self) -> u64 {
        self.lock.lock().nget
    }

    /// `pool_nput`: puts so far.
    pub fn nput(&self) -> u64 {
        self.lock.lock().nput
    }

    /// `pool_reclaim`: call the drain hook, invalidate an attached cache,
    /// then (if the lock is free: a try-lock) release empty pages idle for
    /// at least [`POOL_INACTIVE_TIME`](crate::POOL_INACTIVE_TIME) seconds,
    /// keeping `minpages` and `minitems`. True iff a page was released.
    ///
    /// # Panics
    /// From interrupt context.
    pub fn reclaim(&self) -> bool {
        assert_not_in_interrupt("pool_reclaim");
        let (hook, cache) = {
            let g = self.lock.lock();
            (g.drain_hook, g.cache)
        };
        if let Some(h) = hook {
            h.drain(PrFlags::NOWAIT);
        }
        if let Some(c) = cache {
            c.invalidate();
        }
        let Some(mut g) = self.lock.try_lock() else {
            return false;
        };
        let now = self.cfg.clock.uptime() as u32;
        let ipp = g.ipp() as u32;
        let mut release: *mut PageHeader = ptr::null_mut();
        let mut ph = g.lists[EMPTY];
        while !ph.is_null() {
            // SAFETY: a header on the empty list, under the lock.
            let (next, time) = unsafe { ((*ph).next, (*ph).time) };
            if g.npages <= g.minpages {
                break;
            }
            if !RawPool::idle_enough(now, time) {
                ph = next;
                continue;
            }
            if g.nitems - ipp < g.minitems || g.npages - 1 < g.minpages {
                break;
            }
            // SAFETY: on the empty list, nothing out.
            unsafe { g.rmpage(EMPTY, ph, &mut release) };
            ph = next;
        }
        self.npages_hint.store(g.npages, Ordering::Relaxed);
        drop(g);
        let any = !release.is_null();
        // SAFETY: pages `rmpage` took off this pool.
        unsafe { self.release_pages(release) };
        any
    }

    /// Free every item in the quarantine (feature `quarantine`).
    pub fn quarantine_flush(&self) {
        #[cfg(feature = "quarantine")]
        {
            let mut release: *mut PageHeader = ptr::null_mut();
            let mut g = self.lock.lock();
            for i in 0..crate::flags::POOL_QUARANTINE_DEPTH {
                let item = core::mem::replace(&mut g.quar[i], ptr::null_mut());
                if !item.is_null() {
                    // SAFETY: a parked item of this pool, checked when parked.
                    if unsafe { self.do_put(&mut g, item, &mut release) }.is_err() {
                        drop(g);
                        panic!("pool_quarantine_flush: [{}] bad item {item:p}", self.name());
                    }
                }
            }
            drop(g);
            // SAFETY: pages `rmpage` took off this pool.
            unsafe { self.release_pages(release) };
        }
    }

    /// `pool_destroy`: flush the quarantine, wait until no drainer or
    /// walker holds the pool, take it off the list of pools and release
    /// its pages. The storage may be `init`ed again afterwards.
    ///
    /// # Panics
    /// Before anything changes: "pool busy: still out: N" with items out,
    /// a cache still attached, an uninitialised pool, interrupt context.
    #[track_caller]
    pub fn destroy(&'static self) {
        assert_not_in_interrupt("pool_destroy");
        if !self.is_initialized() {
            panic!("pool_destroy: [{}] not initialised", self.name());
        }
        self.quarantine_flush();
        {
            let g = self.lock.lock();
            let (nout, cache) = (g.nout, g.cache.is_some());
            drop(g);
            if cache {
                panic!("pool_destroy: [{}] pool_cache still attached", self.name());
            }
            if nout != 0 {
                panic!(
                    "pool_destroy: [{}] pool busy: still out: {nout}",
                    self.name()
                );
            }
        }
        registry::remove(self);
        let mut g = self.lock.lock();
        if g.nout != 0 || !g.lists[FULL].is_null() || !g.lists[PART].is_null() {
            let nout = g.nout;
            drop(g);
            panic!(
                "pool_destroy: [{}] pool busy: still out: {nout}",
                self.name()
            );
        }
        let mut release: *mut PageHeader = ptr::null_mut();
        while !g.lists[EMPTY].is_null() {
            let ph = g.lists[EMPTY];
            // SAFETY: on the empty list, nothing out.
            unsafe { g.rmpage(EMPTY, ph, &mut release) };
        }
        self.npages_hint.store(0, Ordering::Relaxed);
        drop(g);
        // SAFETY: pages `rmpage` took off this pool.
        unsafe { self.release_pages(release) };
        self.mark_destroyed();
    }
}
