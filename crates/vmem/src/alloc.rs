//! Allocation and free: `vmem_alloc`, `vmem_xalloc` (with refill, import
//! and sleep), `vmem_xalloc_addr`, `vmem_free`, `vmem_xfree`,
//! `vmem_xfreeall` (spec §1.5, §1.6).

use core::ptr;

use bsdalloc_platform::sync::atomic::Ordering;
use bsdalloc_platform::{KMutexGuard, WaitQueue, assert_sleepable};

use crate::arena::{Arena, SpanSource, check_fit_flags, check_sleep_flags};
use crate::bt::{BT_F_XALLOC, BT_TYPE_CURSOR, BT_TYPE_SPAN};
use crate::constraints::{Request, XallocConstraints};
use crate::flags::{BT_MAXFREE, BT_MINRESERVE, VmFlags, VmemError};
use crate::inner::Inner;
use crate::links::prefetch;

type Bt = crate::bt::BoundaryTag;

impl Arena {
    // ---- allocation ----

    /// `vmem_alloc`: `size` bytes, quantum aligned. Sizes up to
    /// `qcache_max` go to the quantum cache if one is plugged in.
    ///
    /// With `VM_SLEEP` it does not fail: it waits for frees or imports.
    ///
    /// # Panics
    /// If `size` is 0 or the flags lack exactly one sleep flag and one fit.
    #[track_caller]
    pub fn alloc(&self, size: usize, flags: VmFlags) -> Result<usize, VmemError> {
        // First, so that the quantum-cache path, which never takes the
        // arena lock, cannot reach a destroyed arena's cache either.
        self.assert_alive();
        if size == 0 {
            panic!("vmem_alloc: arena '{}': size 0", self.name);
        }
        check_sleep_flags("vmem_alloc", flags);
        check_fit_flags("vmem_alloc", flags);
        // A size that cannot be rounded is larger than any arena: a plain
        // ENOMEM, never a shorter segment than asked.
        let Some(rsize) = self.checked_roundup_size(size) else {
            return Err(self.fail_early());
        };
        if size <= self.qcache_max
            && let Some(qc) = self.quantum_cache()
        {
            return qc.qc_alloc(self, rsize, flags);
        }
        self.xalloc_core(Request::plain(rsize, self.quantum), flags, false)
    }

    /// `vmem_xalloc`: a constrained allocation (spec §1.4), never from the
    /// quantum cache. [`XallocConstraints`] gives the size, alignment,
    /// phase, boundary and (inclusive) address window, and NetBSD's rules
    /// for them; [`crate::vmem_xalloc`] takes them positionally, as C does.
    ///
    /// Restricted requests (align, phase or nocross) do not import, so they
    /// may fail even with `VM_SLEEP`.
    ///
    /// ```
    /// use bsdalloc_vmem::{Arena, VmFlags, XallocConstraints};
    ///
    /// let a = Arena::create("ports", 0, 0x1_0000, 1).unwrap();
    /// let c = XallocConstraints::new(8).align(8).min(0x3f8).max(0x3ff);
    /// assert_eq!(a.xalloc(c, VmFlags::NOSLEEP | VmFlags::BESTFIT), Ok(0x3f8));
    /// a.xfree(0x3f8, 8);
    /// ```
    ///
    /// # Panics
    /// With NetBSD's assertion text when the constraints break these rules,
    /// when the size is 0, or the flags lack exactly one sleep flag and one
    /// fit; before anything changes.
    #[track_caller]
    pub fn xalloc(&self, c: XallocConstraints, flags: VmFlags) -> Result<usize, VmemError> {
        self.assert_alive();
        if c.size == 0 {
            panic!("vmem_xalloc: arena '{}': size 0", self.name);
        }
        check_sleep_flags("vmem_xalloc", flags);
        check_fit_flags("vmem_xalloc", flags);
        // Arguments are valid; a size that cannot be rounded fits nowhere.
        let Some(req) = c.check(self.name, self.quantum) else {
            return Err(self.fail_early());
        };
        self.xalloc_core(req, flags, true)
    }

    /// `vmem_xalloc_addr`: allocate exactly `[addr, addr+size)`, rounded up
    /// to the quantum; free it with [`Arena::xfree`]`(addr, size)`.
    ///
    /// **Extension** (a documented deviation): `size` need not be a
    /// multiple of the quantum; it is rounded up first, as `vmem_xalloc`
    /// does, and the segment is `[addr, addr + roundup(size))`. NetBSD
    /// derives the window `maxaddr = addr + size - 1` from the unrounded
    /// size, which the rounded segment can never fit, so there such a call
    /// always fails (on an importing arena, only after importing until the
    /// source is empty).
    ///
    /// # Errors
    /// [`VmemError::NoMemory`] if the range is not wholly free in the arena,
    /// or if it would extend past the top of the address type.
    ///
    /// # Panics
    /// If `size` is 0, `addr` is not quantum aligned, the flags lack exactly
    /// one sleep flag, or the arena was destroyed.
    #[track_caller]
    pub fn xalloc_addr(&self, addr: usize, size: usize, flags: VmFlags) -> Result<(), VmemError> {
        self.assert_alive();
        if size == 0 {
            panic!("vmem_xalloc_addr: arena '{}': size 0", self.name);
        }
        check_sleep_flags("vmem_xalloc_addr", flags);
        if addr & (self.quantum - 1) != 0 {
            panic!(
                "vmem_xalloc_addr: arena '{}': address {addr:#x} is not quantum aligned",
                self.name
            );
        }
        // The window ends past the top of the address type: nothing there.
        let Some((size, max)) = self
            .checked_roundup_size(size)
            .and_then(|r| Some((r, addr.checked_add(r - 1)?)))
        else {
            return Err(self.fail_early());
        };
        let flags = (flags & VmFlags::SLEEP_MASK) | VmFlags::BESTFIT;
        self.xalloc(XallocConstraints::new(size).min(addr).max(max), flags)
            .inspect(|&a| debug_assert_eq!(a, addr))
            .map(|_| ())
    }

    fn xalloc_core(&self, req: Request, flags: VmFlags, xalloc: bool) -> Result<usize, VmemError> {
        if flags.contains(VmFlags::SLEEP) {
            assert_sleepable("vmem_xalloc(VM_SLEEP)");
        }
        let strat = flags & VmFlags::FIT_MASK;
        let restricted = req.restricted(self.quantum);
        let mut g = self.check_alive(self.lock.lock());
        // Woken from the sleep queue: pass the wakeup on when done.
        let mut woken = false;
        loop {
            // Two tags: a leading fragment and the split (spec §1.5); a
            // first next-fit allocation also places the cursor tag.
            let cursor = usize::from(strat == VmFlags::NEXTFIT && g.cursor.is_null());
            let want = if flags.contains(VmFlags::POPULATING) {
                2 + cursor
            } else {
                BT_MINRESERVE + 1
            };
            g = match self.refill(g, flags, want) {
                // The refill may have dropped the lock: re-check.
                Ok(g) => self.check_alive(g),
                Err(e) => {
                    self.check_alive(self.lock.lock()).stats.failures += 1;
                    return Err(e);
                }
            };
            let found = match strat {
                VmFlags::NEXTFIT => g.find_nextfit(&req),
                VmFlags::INSTANTFIT => match g.find_instantfit(&req, self.qshift) {
                    Some(x) => Some(x),
                    None => {
                        g.stats.instantfit_fallbacks += 1;
                        g.find_bestfit(&req, self.qshift)
                    }
                },
                _ => g.find_bestfit(&req, self.qshift),
            };
            if let Some((bt, a)) = found {
                // Validate before carving: the carve and the cursor must not
                // run out of tags halfway. (The reserve above covers them;
                // this keeps a refill-policy change from corrupting the
                // arena.)
                // SAFETY: the search just returned `bt`, a FREE tag holding
                // [a, a+size), with the lock held since.
                let need = unsafe { g.carve_tags(bt, a, req.size(), self.quantum) } + cursor;
                if g.nspare < need {
                    g = match self.refill(g, flags, need) {
                        // The lock may have been dropped: search again.
                        Ok(g) => self.check_alive(g),
                        Err(e) => {
                            self.check_alive(self.lock.lock()).stats.failures += 1;
                            return Err(e);
                        }
                    };
                    continue;
                }
                // SAFETY: as above (the refill that drops the lock searches
                // again), with the spares counted.
                let busy = unsafe { g.carve(bt, a, req.size(), self.qshift, self.quantum, xalloc) };
                if strat == VmFlags::NEXTFIT {
                    self.ensure_cursor(&mut g);
                    g.cursor_unlink();
                    // SAFETY: `busy` is on the segment list; the cursor was
                    // just taken off it.
                    unsafe { g.cursor_place_after(busy) };
                    g.rotor = a.wrapping_add(req.size());
                }
                g.stats.allocs += 1;
                if woken {
                    // Room may be left for sleepers skipped for our sake.
                    self.wake_sleepers(&mut g);
                }
                let grow = self.hash_should_grow(&g);
                self.trim(&mut g, BT_MAXFREE);
                drop(g);
                if grow {
                    self.rehash_to_max_busy(false);
                }
                return Ok(a);
            }
            if !restricted && let Some(src) = self.source {
                drop(g);
                let imported = self.import_span(src, req.size(), flags);
                g = self.check_alive(self.lock.lock());
                if imported {
                    continue;
                }
            }
            if restricted || flags.contains(VmFlags::NOSLEEP) {
                g.stats.failures += 1;
                return Err(VmemError::NoMemory);
            }
            // VM_SLEEP: wait until a free (or a span) makes room for this
            // size, and search again. Only the sleepers that room can
            // satisfy are woken (`wake_sleepers`); one that was woken and
            // still finds nothing passes the wakeup on before sleeping again.
            g.stats.sleeps += 1;
            if woken {
                self.wake_sleepers(&mut g);
            }
            let tag = g.generation;
            g = WaitQueue::wait_tagged(g, |i| &mut i.sleepers, req.size(), tag, "vmem");
            g = self.check_alive(g);
            woken = true;
        }
    }

    fn ensure_cursor(&self, g: &mut Inner) {
        if g.cursor.is_null() {
            let c = g.spare_pop();
            // SAFETY: a fresh spare tag, on no list.
            unsafe {
                (*c).typ = BT_TYPE_CURSOR;
                g.seg_insert_before(ptr::null_mut(), c);
            }
            g.cursor = c;
        }
    }

    /// Import a span for `size` bytes and add it. Lock not held.
    fn import_span(&self, src: &'static dyn SpanSource, size: usize, flags: VmFlags) -> bool {
        // LARGEIMPORT is a hint: when 16 times the size does not fit, ask
        // for the size itself (a saturated ask would not be a multiple of
        // the quantum, and means nothing to the source).
        let ask = if self.flags.contains(VmFlags::LARGEIMPORT) {
            size.checked_mul(16).unwrap_or(size)
        } else {
            size
        };
        let sflags = flags & (VmFlags::SLEEP_MASK | VmFlags::FIT_MASK);
        let (addr, got) = match src.import(ask, sflags) {
            Ok((a, s)) => (
                a,
                if self.flags.contains(VmFlags::XIMPORT) {
                    s.max(ask)
                } else {
                    ask
                },
            ),
            Err(_) => {
                self.lock.lock().stats.import_failures += 1;
                return false;
            }
        };
        // The source's answer is input too: a span that wraps past the top
        // of the address type, or is not quantum aligned, would break every
        // fit computation. Refuse it before the arena changes.
        if addr.checked_add(got - 1).is_none() || (addr | got) & (self.quantum - 1) != 0 {
            panic!(
                "vmem_import: arena '{}': the source returned span {addr:#x}+{got:#x}, which wraps around or is not quantum ({:#x}) aligned",
                self.name, self.quantum
            );
        }
        let g = self.lock.lock();
        match self.refill(g, flags, 2) {
            Ok(g) if self.destroyed.load(Ordering::Relaxed) => {
                // Destroyed while the lock was dropped (a caller bug): the
                // span must not land in a dead arena.
                drop(g);
                if src.can_release() {
                    src.release(addr, got);
                }
                self.used_after_destroy();
            }
            Ok(mut g) => {
                g.add_span(addr, got, BT_TYPE_SPAN, self.qshift);
                g.stats.imports += 1;
                self.wake_sleepers(&mut g);
                true
            }
            Err(_) => {
                // No tags to describe it: give it straight back.
                let mut g = self.lock.lock();
                g.stats.import_failures += 1;
                drop(g);
                if src.can_release() {
                    src.release(addr, got);
                }
                false
            }
        }
    }

    // ---- free ----

    /// `vmem_free`: free what [`Arena::alloc`] returned, with the same size.
    ///
    /// # Panics
    /// Before anything changes: if `size` is 0, `addr` is not quantum
    /// aligned, not allocated (freed twice, never allocated) or allocated
    /// with another size (compared after rounding to the quantum); if the
    /// segment came from [`Arena::xalloc`] or [`Arena::xalloc_addr`] (the
    /// `vmem_alloc`/`vmem_free`, `vmem_xalloc`/`vmem_xfree` pairing, which
    /// NetBSD leaves undefined: "… was allocated by vmem_xalloc; free it
    /// with vmem_xfree"); or if the arena was destroyed. Sizes up to
    /// `qcache_max` go to the plugged-in quantum cache, which does its own
    /// checking.
    #[track_caller]
    pub fn free(&self, addr: usize, size: usize) {
        // First: the quantum-cache path never takes the arena lock.
        self.assert_alive();
        if size == 0 {
            panic!("vmem_free: arena '{}': size 0", self.name);
        }
        if size <= self.qcache_max
            && let Some(qc) = self.quantum_cache()
        {
            qc.qc_free(self, addr, self.roundup_size(size));
            return;
        }
        self.xfree_impl("vmem_free", addr, size, false);
    }

    /// `vmem_xfree`: free what [`Arena::xalloc`] (or `xalloc_addr`)
    /// returned, with the same size.
    ///
    /// # Panics
    /// Before anything changes: if `size` is 0, `addr` is not quantum
    /// aligned, not allocated (freed twice, never allocated) or allocated
    /// with another size (compared after rounding to the quantum); if the
    /// segment came from [`Arena::alloc`] (the `vmem_alloc`/`vmem_free`,
    /// `vmem_xalloc`/`vmem_xfree` pairing, which NetBSD leaves undefined:
    /// "… was allocated by vmem_alloc; free it with vmem_free"); or if the
    /// arena was destroyed.
    #[track_caller]
    pub fn xfree(&self, addr: usize, size: usize) {
        self.assert_alive();
        if size == 0 {
            panic!("vmem_xfree: arena '{}': size 0", self.name);
        }
        self.xfree_impl("vmem_xfree", addr, size, true);
    }

    #[track_caller]
    fn xfree_impl(&self, what: &str, addr: usize, size: usize, xfree: bool) {
        if addr & (self.quantum - 1) != 0 {
            panic!(
                "{what}: arena '{}': address {addr:#x} is not quantum aligned",
                self.name
            );
        }
        // A size that cannot be rounded was never allocated: the lookup
        // below reports it as not allocated or as a size mismatch.
        let rsize = self.checked_roundup_size(size);
        let mut g = self.check_alive(self.lock.lock());
        let bt = g.hash.lookup(addr);
        if !bt.is_null() {
            // Coalescing reads both segment-list neighbours: start both
            // misses now, to overlap each other and the checks below.
            // SAFETY: a tag on the busy hash is valid.
            unsafe {
                prefetch((*bt).seg_next);
                prefetch((*bt).seg_prev);
            }
        }
        if bt.is_null() {
            drop(g);
            panic!(
                "{what}: arena '{}': address {addr:#x} is not allocated (freed twice, or never allocated)",
                self.name
            );
        }
        // SAFETY: a BUSY tag of this arena.
        let bsize = unsafe { (*bt).size };
        if rsize != Some(bsize) {
            drop(g);
            let shown = rsize.unwrap_or(size);
            panic!(
                "{what}: arena '{}': size mismatch at {addr:#x}: freeing {shown:#x}, allocated {bsize:#x}",
                self.name
            );
        }
        // SAFETY: as above.
        let by_xalloc = unsafe { (*bt).flags } & BT_F_XALLOC != 0;
        if by_xalloc != xfree {
            drop(g);
            let (by, with) = if by_xalloc {
                ("vmem_xalloc", "vmem_xfree")
            } else {
                ("vmem_alloc", "vmem_free")
            };
            panic!(
                "{what}: arena '{}': segment {addr:#x} was allocated by {by}; free it with {with}",
                self.name
            );
        }
        // SAFETY: the hash lookup found `bt` under this very lock.
        unsafe { self.free_busy(g, bt) };
    }

    /// Free BUSY tag `bt` (spec §1.6), consuming the lock.
    ///
    /// # Safety
    /// `bt` is a BUSY tag on this arena's busy hash (`g` is its lock).
    unsafe fn free_busy(&self, mut g: KMutexGuard<'_, Inner>, bt: *mut Bt) {
        g.stats.frees += 1;
        // Frees coalesce across the next-fit cursor: take it off the list if
        // it is next to `bt`, and put it back by the rotor afterwards. One
        // elsewhere stays where it is.
        let c = g.cursor;
        // SAFETY: caller's contract: `bt` is on the segment list.
        let had_cursor = !c.is_null() && unsafe { (*bt).seg_prev == c || (*bt).seg_next == c };
        let mut had_cursor = had_cursor;
        if had_cursor {
            g.cursor_unlink();
        }
        // SAFETY: caller's contract: on the hash, hence on the segment list;
        // taken off the hash here, with the cursor, if next to it, off the
        // list.
        let (seg, whole_span) = unsafe {
            g.hash.remove(bt);
            g.free_coalesce(bt, self.qshift)
        };
        let release = match (whole_span, self.source) {
            (Some(span), Some(src)) if src.can_release() => Some((span, src)),
            _ => None,
        };
        match release {
            Some((span, src)) => {
                // The cursor may still sit between the span tag and `seg`.
                // SAFETY: `seg` is on the segment list.
                if !had_cursor && !g.cursor.is_null() && unsafe { (*seg).seg_prev } == g.cursor {
                    g.cursor_unlink();
                    had_cursor = true;
                }
                // SAFETY: `free_coalesce` found `seg` filling imported span
                // `span`; the cursor is off the list.
                let (start, size) = unsafe { g.remove_span(span, seg) };
                if had_cursor {
                    // SAFETY: the cursor is off the list.
                    unsafe { g.cursor_place_after(ptr::null_mut()) };
                }
                g.stats.releases += 1;
                self.trim(&mut g, BT_MAXFREE);
                self.wake_sleepers(&mut g);
                drop(g);
                src.release(start, size);
            }
            None => {
                // SAFETY: `seg` is the FREE tag `free_coalesce` left on the
                // segment list and on no free list; the cursor is off the
                // list.
                unsafe {
                    g.fl_insert(seg, self.qshift);
                    if had_cursor {
                        // Before the segment if the rotor lies in it (the
                        // search starts there, from the rotor on), else
                        // after it.
                        let rotor = g.rotor;
                        if (*seg).start < rotor && rotor <= (*seg).end() {
                            g.cursor_place_after((*seg).seg_prev);
                        } else {
                            g.cursor_place_after(seg);
                        }
                    }
                }
                self.trim(&mut g, BT_MAXFREE);
                self.wake_sleepers(&mut g);
            }
        }
    }

    /// `vmem_xfreeall`: free every outstanding allocation.
    ///
    /// # Panics
    /// On an arena with a quantum cache (`qcache_max > 0`).
    #[track_caller]
    pub fn xfreeall(&self) {
        self.assert_alive();
        if self.qcache_max > 0 {
            panic!(
                "vmem_xfreeall: arena '{}' has a quantum cache (qcache_max {:#x})",
                self.name, self.qcache_max
            );
        }
        loop {
            let g = self.check_alive(self.lock.lock());
            let bt = g.first_busy();
            if bt.is_null() {
                return;
            }
            // SAFETY: a BUSY tag on the segment list is on the busy hash.
            unsafe { self.free_busy(g, bt) };
        }
    }
}
