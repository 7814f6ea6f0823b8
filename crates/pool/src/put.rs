//! `pool_put`: the checks NetBSD makes (redzone, page header, pool id,
//! bitmap double free), the page-list moves and the release decision, the
//! quarantine, and giving released pages back.

use core::ptr::{self, NonNull};

use bsdalloc_platform::sync::atomic::Ordering;

use crate::flags::PrFlags;
use crate::pool::{EMPTY, FULL, Inner, PART, RawPool};
use crate::raw::{self, PageHeader};

/// A NetBSD panic of the put path, raised once the lock is dropped.
pub(crate) enum PutError {
    Redzone(u8, u8),
    NoneOut,
    HeaderMissing,
    NotPartOfPool,
    BelowItemSpace,
    PoolId(u32, u32),
    BadIndex(usize, usize),
    NotItemStart,
    AlreadyFreed,
}

impl RawPool {
    /// `pool_put`: give an item back.
    ///
    /// # Safety
    /// `item` came from this pool's [`get`](RawPool::get) and is not used
    /// any more. What can be checked is (foreign and interior pointers on
    /// on-page pools, double frees on bitmap pools, redzones), and panics
    /// with NetBSD's message before anything changes; the rest is the
    /// caller's promise.
    ///
    /// # Panics
    /// See above; also an uninitialised pool, an `IPL_NONE` pool from
    /// interrupt context, a put with nothing out.
    #[track_caller]
    pub unsafe fn put(&self, item: NonNull<u8>) {
        self.check_ready("pool_put");
        self.check_ipl("pool_put");
        let mut g = self.lock.lock();
        let mut release: *mut PageHeader = ptr::null_mut();
        let item = item.as_ptr();
        #[cfg(feature = "quarantine")]
        let item = match self.quarantine(&mut g, item) {
            Ok(None) => return,
            Ok(Some(old)) => old,
            Err(e) => {
                drop(g);
                self.put_panic(e, item);
            }
        };
        // SAFETY: the caller's contract; `do_put` checks what it can first.
        if let Err(e) = unsafe { self.do_put(&mut g, item, &mut release) } {
            drop(g);
            self.put_panic(e, item);
        }
        drop(g);
        if !release.is_null() {
            // SAFETY: pages taken off this pool's lists, nothing out.
            unsafe { self.release_pages(release) };
        }
    }

    /// The quarantine (feature `quarantine`, not `PR_NOTOUCH`): park the
    /// item, really free the one it displaces.
    #[cfg(feature = "quarantine")]
    fn quarantine(&self, g: &mut Inner, item: *mut u8) -> Result<Option<*mut u8>, PutError> {
        if g.lay.roflags.contains(PrFlags::NOTOUCH) {
            return Ok(Some(item));
        }
        if g.lay.redzone {
            // SAFETY: the caller's promise: an item of this pool.
            unsafe { raw::redzone_check(item, g.lay.reqsize) }
                .map_err(|(a, b)| PutError::Redzone(a, b))?;
        }
        let r = g.rotor;
        let old = core::mem::replace(&mut g.quar[r], item);
        g.rotor = (r + 1) % crate::flags::POOL_QUARANTINE_DEPTH;
        Ok((!old.is_null()).then_some(old))
    }

    #[cold]
    #[track_caller]
    fn put_panic(&self, e: PutError, item: *mut u8) -> ! {
        let n = self.cfg.name;
        match e {
            PutError::Redzone(a, b) => panic!("pool_redzone_check: [{n}] 0x{a:02x} != 0x{b:02x}"),
            PutError::NoneOut => panic!("pool_do_put: [{n}] putting with none out"),
            PutError::HeaderMissing => panic!("pool_do_put: [{n}] page header missing"),
            PutError::NotPartOfPool => {
                panic!("pr_phinpage_check: [{n}] item {item:p} not part of pool")
            }
            PutError::BelowItemSpace => {
                panic!("pr_phinpage_check: [{n}] item {item:p} below item space")
            }
            PutError::PoolId(a, b) => {
                panic!("pr_phinpage_check: [{n}] item {item:p} poolid {a} != {b}")
            }
            PutError::BadIndex(i, ipp) => panic!("pr_item_bitmap_index: [{n}] {i} >= {ipp}"),
            PutError::NotItemStart => {
                panic!("pool_do_put: [{n}] item {item:p} is not the start of an item")
            }
            PutError::AlreadyFreed => panic!("pr_item_bitmap_put: [{n}] {item:p} already freed"),
        }
    }

    /// `pr_find_pagehead` with its checks.
    ///
    /// # Safety
    /// On-page pools read the header at `item`'s page: `item` must point
    /// into memory whose page start is readable.
    unsafe fn find_pagehead(
        &self,
        g: &mut Inner,
        item: *mut u8,
    ) -> Result<*mut PageHeader, PutError> {
        let lay = &g.lay;
        if lay.roflags.contains(PrFlags::NOALIGN) {
            // SAFETY: the tree holds this pool's off-page headers.
            let ph = unsafe { raw::tree_find_le(&mut g.tree, item.addr()) };
            // SAFETY: a header of the tree.
            if ph.is_null() || item.addr() - unsafe { (*ph).page.addr() } >= lay.pagesz {
                return Err(PutError::HeaderMissing);
            }
            return Ok(ph);
        }
        let page = raw::page_of(item, g.pagemask);
        if lay.phinpage() {
            let ph = page.cast::<PageHeader>();
            // SAFETY: the caller's contract: the page start is readable;
            // these reads are NetBSD's pr_phinpage_check.
            unsafe {
                if (*ph).page != page {
                    return Err(PutError::NotPartOfPool);
                }
                if item.addr() < page.addr() + (*ph).off as usize {
                    return Err(PutError::BelowItemSpace);
                }
                if (*ph).u1.poolid != g.poolid {
                    return Err(PutError::PoolId((*ph).u1.poolid, g.poolid));
                }
            }
            return Ok(ph);
        }
        // SAFETY: the tree holds this pool's off-page headers.
        let ph = unsafe { raw::tree_find(&mut g.tree, page.addr()) };
        if ph.is_null() {
            return Err(PutError::HeaderMissing);
        }
        Ok(ph)
    }

    /// `pool_do_put`, under the lock: every check first, then the change.
    ///
    /// # Safety
    /// As [`put`](RawPool::put).
    pub(crate) unsafe fn do_put(
        &self,
        g: &mut Inner,
        item: *mut u8,
        release: &mut *mut PageHeader,
    ) -> Result<(), PutError> {
        if g.lay.redzone {
            // SAFETY: the caller's promise: an item of this pool.
            unsafe { raw::redzone_check(item, g.lay.reqsize) }
                .map_err(|(a, b)| PutError::Redzone(a, b))?;
        }
        if g.nout == 0 {
            return Err(PutError::NoneOut);
        }
        // SAFETY: the caller's contract.
        let ph = unsafe { self.find_pagehead(g, item)? };
        let ipp = g.ipp();
        // SAFETY: `ph` is a header of this pool's, found and checked above.
        unsafe {
            if g.lay.usebmap() {
                let base = (*ph).page.addr() + (*ph).off as usize;
                let delta = item.addr().wrapping_sub(base);
                let idx = match g.size_shift {
                    Some(s) => delta >> s,
                    None => delta / g.lay.size,
                };
                if idx >= ipp {
                    return Err(PutError::BadIndex(idx, ipp));
                }
                if delta - idx * g.lay.size != 0 {
                    return Err(PutError::NotItemStart);
                }
                if !raw::bitmap_put(ph, idx) {
                    return Err(PutError::AlreadyFreed);
                }
            } else {
                raw::freelist_push(ph, item);
            }
            (*ph).nmissing -= 1;
        }
        g.nput += 1;
        g.nitems += 1;
        g.nout -= 1;
        if g.curpage.is_null() {
            g.curpage = ph;
        }
        if g.flags.contains(PrFlags::WANTED) {
            g.flags.remove(PrFlags::WANTED);
            self.cv.broadcast();
        }
        // SAFETY: the page was full (on the full list) iff nmissing was
        // ipp before this put, else partial.
        unsafe {
            let was = if (*ph).nmissing as usize + 1 == ipp {
                FULL
            } else {
                PART
            };
            if (*ph).nmissing == 0 {
                g.nidle += 1;
                if g.nitems - ipp as u32 >= g.minitems
                    && g.npages > g.minpages
                    && g.npages > g.maxpages
                {
                    g.rmpage(was, ph, release);
                    self.npages_hint.store(g.npages, Ordering::Relaxed);
                } else {
                    let l = g.lists();
                    raw::list_move(l.add(was), l.add(EMPTY), ph);
                    (*ph).time = self.cfg.clock.uptime() as u32;
                }
                g.update_curpage();
            } else if was == FULL {
                let l = g.lists();
                raw::list_move(l.add(FULL), l.add(PART), ph);
                g.curpage = ph;
            }
        }
        Ok(())
    }

    /// `pr_pagelist_free`: give pages taken off the lists back to the
    /// allocator (after a pserialize barrier for `PR_PSERIALIZE` pools),
    /// and off-page headers to their header pool. No lock held.
    ///
    /// # Safety
    /// `list` links headers `rmpage` took off this pool.
    #[cold]
    pub(crate) unsafe fn release_pages(&self, mut list: *mut PageHeader) {
        if list.is_null() {
            return;
        }
        let (alloc, pagesz, phpool, pser) = {
            let g = self.lock.lock();
            (
                g.alloc.expect("pool: no allocator"),
                g.lay.pagesz,
                g.phpool,
                g.lay.roflags.contains(PrFlags::PSERIALIZE),
            )
        };
        if pser {
            // xc_barrier(0): every CPU has passed a point where it held no
            // reference obtained before the items were freed.
            bsdalloc_platform::xc_broadcast(&|_| {});
        }
        while !list.is_null() {
            // SAFETY: the caller's contract; the next link and the page are
            // read before the page (which may hold the header) is freed.
            unsafe {
                let ph = list;
                list = (*ph).next;
                let page = NonNull::new_unchecked((*ph).page);
                alloc.free(page, pagesz);
                if let Some(hp) = phpool {
                    hp.put(NonNull::new_unchecked(ph.cast::<u8>()));
                }
            }
        }
    }
}
