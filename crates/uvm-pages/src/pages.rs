//! Page backing, the budget and the pagedaemon: which pages of the map are
//! committed, wired, in use, the start of an allocation or VA-only;
//! claiming and committing them for an allocation; checking a free against
//! them; keeping freed ones as cache or giving them back.

use core::ptr::NonNull;

use bsdalloc_platform::SpinMutexGuard;
use bsdalloc_platform::sync::atomic::{AtomicU64, Ordering};

use crate::flags::{KmType, UvmFlags};
use crate::map::{DrainHook, KernelMap, State, Where};

impl KernelMap {
    // ---- the page bitmaps ----

    pub(crate) fn bitword(&self, which: *const AtomicU64, w: usize) -> &AtomicU64 {
        debug_assert!(w < self.nwords);
        // SAFETY: w < nwords and the bitmap lives as long as the map.
        unsafe { &*which.add(w) }
    }

    pub(crate) fn page_index(&self, va: usize) -> usize {
        (va - self.base) >> self.pshift
    }

    /// Set (or clear) bits [first, first+n) of a bitmap.
    pub(crate) fn set_bits(&self, which: *const AtomicU64, first: usize, n: usize, on: bool) {
        let mut i = first;
        let end = first + n;
        while i < end {
            let w = i / 64;
            let lo = i % 64;
            let hi = (end - w * 64).min(64);
            let mask = if hi - lo == 64 {
                u64::MAX
            } else {
                ((1u64 << (hi - lo)) - 1) << lo
            };
            if on {
                self.bitword(which, w).fetch_or(mask, Ordering::AcqRel);
            } else {
                self.bitword(which, w).fetch_and(!mask, Ordering::AcqRel);
            }
            i = w * 64 + hi;
        }
    }

    pub(crate) fn bit(&self, which: *const AtomicU64, i: usize) -> bool {
        self.bitword(which, i / 64).load(Ordering::Acquire) & (1 << (i % 64)) != 0
    }

    /// Count set bits of [first, first+n).
    pub(crate) fn count_bits(&self, which: *const AtomicU64, first: usize, n: usize) -> usize {
        (first..first + n).filter(|&i| self.bit(which, i)).count()
    }

    /// Call `f(first, len, set)` for each maximal run of equal bits.
    pub(crate) fn runs(
        &self,
        which: *const AtomicU64,
        first: usize,
        n: usize,
        mut f: impl FnMut(usize, usize, bool),
    ) {
        let mut i = first;
        let end = first + n;
        while i < end {
            let v = self.bit(which, i);
            let mut j = i + 1;
            while j < end && self.bit(which, j) == v {
                j += 1;
            }
            f(i, j - i, v);
            i = j;
        }
    }

    pub(crate) fn va_of(&self, page: usize) -> NonNull<u8> {
        let a = self.base + (page << self.pshift);
        // SAFETY: inside our non-null reservation.
        unsafe { NonNull::new_unchecked(a as *mut u8) }
    }

    /// Mark [va, va+size) as one VA-only allocation: its pages VA-only,
    /// its first page a start. Under the state lock, as the checks that
    /// read them.
    pub(crate) fn mark_vaonly(&self, va: usize, size: usize) {
        let first = self.page_index(va);
        let _s = self.state.lock();
        self.set_bits(self.vaonly_bits, first, size >> self.pshift, true);
        self.set_bits(self.start_bits, first, 1, true);
    }

    /// Unmark the VA-only allocation [va, va+size) if it is exactly one
    /// (as `unback_checked` for backed ones; `end`: the region's end page).
    pub(crate) fn unmark_vaonly(&self, va: usize, size: usize, end: usize) -> Result<(), Refused> {
        let first = self.page_index(va);
        let n = size >> self.pshift;
        let s = self.state.lock();
        if !self.bit(self.start_bits, first) {
            return Err(Refused::NotAllocated);
        }
        if !self.is_one_allocation(&s, self.vaonly_bits, first, n, end) {
            return Err(Refused::Extent);
        }
        self.set_bits(self.vaonly_bits, first, n, false);
        self.set_bits(self.start_bits, first, 1, false);
        Ok(())
    }

    /// If [a, a+size) is a non-empty, page-aligned range of pages of one
    /// VA-only allocation (every page VA-only, none after the first
    /// starting another allocation): its page-rounded size and how many of
    /// its pages are entered now.
    pub(crate) fn vaonly_range(&self, a: usize, size: usize) -> Option<(usize, usize)> {
        let size = self.round(size).filter(|&z| z != 0)?;
        if a & (self.ps - 1) != 0 || self.locate(a, size) != Some(Where::Region(KmType::VaOnly)) {
            return None;
        }
        let first = self.page_index(a);
        let end = first + (size >> self.pshift);
        let _s = self.state.lock();
        let inside = (first..end).all(|i| self.bit(self.vaonly_bits, i))
            && (first + 1..end).all(|i| !self.bit(self.start_bits, i));
        inside.then(|| (size, self.count_bits(self.inuse_bits, first, end - first)))
    }

    // ---- budget and the pagedaemon ----

    /// Register a drain hook for the pagedaemon.
    ///
    /// # Panics
    /// If all 16 slots are taken.
    pub fn register_drain_hook(&self, hook: DrainHook, arg: usize) {
        let mut s = self.state.lock();
        let slot = s
            .hooks
            .iter_mut()
            .find(|h| h.is_none())
            .expect("uvm_km: all 16 drain hooks are in use");
        *slot = Some((hook, arg));
    }

    /// `uvm_kick_pdaemon` and one pass of the pagedaemon, in the caller:
    /// give cached free pages back to the OS, call every drain hook, give
    /// back what they freed, and wake sleepers if memory came back. Returns
    /// pages given back.
    pub fn pagedaemon(&self) -> usize {
        let (hooks, gen0) = {
            let mut s = self.state.lock();
            s.pagedaemon_runs += 1;
            (s.hooks, s.free_gen)
        };
        let mut freed = self.trim_cache(0);
        for (hook, arg) in hooks.iter().flatten() {
            hook(*arg, UvmFlags::NOWAIT);
        }
        freed += self.trim_cache(0);
        let hooks_freed = self.state.lock().free_gen != gen0;
        // Only when memory came back: waking sleepers for nothing sends
        // each round its wait loop into another pass, whose broadcast
        // wakes the others — a storm with nothing freed. (Frees, the
        // hooks' included, wake sleepers themselves; this is for the
        // cached pages given back here.)
        if freed != 0 || hooks_freed {
            self.budget_cv.broadcast();
        }
        freed
    }

    /// Give cached free pages back until at most `keep` remain.
    pub(crate) fn trim_cache(&self, keep: usize) -> usize {
        let mut s = self.state.lock();
        if s.cached <= keep {
            return 0;
        }
        let mut freed = 0;
        // Only the wired region and the kmem half cache pages.
        let spans = [
            (
                self.page_index(self.region_base[0]),
                self.region_size >> self.pshift,
            ),
            (
                self.page_index(self.kmem_base),
                (self.size - (self.kmem_base - self.base)) >> self.pshift,
            ),
        ];
        'outer: for (first, n) in spans {
            let (w0, w1) = (first / 64, (first + n).div_ceil(64));
            for w in w0..w1 {
                // Only this span's pages of the word.
                let lo_bit = first.max(w * 64) - w * 64;
                let hi_bit = (first + n).min(w * 64 + 64) - w * 64;
                let span_mask = if hi_bit - lo_bit == 64 {
                    u64::MAX
                } else {
                    ((1u64 << (hi_bit - lo_bit)) - 1) << lo_bit
                };
                let c = self.bitword(self.committed_bits, w).load(Ordering::Acquire);
                let u = self.bitword(self.inuse_bits, w).load(Ordering::Acquire);
                let mut free = c & !u & span_mask;
                while free != 0 {
                    if s.cached <= keep {
                        break 'outer;
                    }
                    let lo = free.trailing_zeros() as usize;
                    let len = (!(free >> lo)).trailing_zeros().min(64 - lo as u32) as usize;
                    let len = len.min(s.cached - keep);
                    let page = w * 64 + lo;
                    // Under the state lock: no allocator can claim these
                    // pages (it marks them in use under the same lock).
                    // SAFETY: committed pages of our reservation, unused.
                    unsafe { self.pages.decommit(self.va_of(page), len << self.pshift) };
                    self.os_calls.fetch_add(1, Ordering::Relaxed);
                    self.set_bits(self.committed_bits, page, len, false);
                    self.set_bits(self.wired_bits, page, len, false);
                    s.cached -= len;
                    s.committed -= len;
                    s.pages_returned += len as u64;
                    freed += len;
                    let mask = if len == 64 {
                        u64::MAX
                    } else {
                        ((1u64 << len) - 1) << lo
                    };
                    free &= !mask;
                }
            }
        }
        freed
    }

    /// Claim pages [first, first+n) for an allocation and reserve budget for
    /// those not committed yet. Sleeps for memory unless `nowait`/`canfail`.
    /// `start`: the pages are a whole allocation (not pages entered into a
    /// VA-only one), whose first page gets its start bit.
    fn claim(
        &self,
        first: usize,
        n: usize,
        cacheable: bool,
        start: bool,
        nowait: bool,
        canfail: bool,
    ) -> Result<usize, ()> {
        let may_fail = nowait || canfail;
        // `free_gen` when this caller last ran the pagedaemon.
        let mut daemon_gen: Option<u64> = None;
        let mut s = self.state.lock();
        loop {
            let have = self.count_bits(self.committed_bits, first, n);
            let need = n - have;
            if self.limit == 0 || s.committed + need <= self.limit {
                s.committed += need;
                if cacheable {
                    s.cached -= have;
                }
                // With the in-use bits, under the same lock: a free
                // validating a neighbour never sees one without the other.
                self.set_bits(self.inuse_bits, first, n, true);
                if start {
                    self.set_bits(self.start_bits, first, 1, true);
                }
                return Ok(need);
            }
            // A pagedaemon pass, once, and then (for a caller that waits)
            // again only after a free since the last one: a free may have
            // left cached pages that a pass gives back, while after a
            // spurious wakeup, or another waiter's pass (which emptied the
            // cache), there is nothing new to find. The generation is read
            // before the pass, so a free during it is not missed.
            let first_pass = daemon_gen.is_none();
            if first_pass || (!may_fail && daemon_gen != Some(s.free_gen)) {
                daemon_gen = Some(s.free_gen);
                drop(s);
                self.pagedaemon();
                s = self.state.lock();
                continue;
            }
            if may_fail {
                return Err(());
            }
            // Sleep until a free: it bumps `free_gen` and broadcasts.
            s.sleeps += 1;
            s = self.budget_cv.wait(s);
        }
    }

    /// Back [va, va+len) with pages as `back` does, for callers that may
    /// sleep: a page-source failure is waited out (a pagedaemon pass, a
    /// short pause, another try), as NetBSD's `uvm_km_alloc` and
    /// `uvm_km_kmem_alloc` wait for the pagedaemon and retry. With
    /// `NOWAIT` or `CANFAIL` the first failure is final (counted), with
    /// nothing left claimed.
    pub(crate) fn back_or_wait(
        &self,
        va: usize,
        len: usize,
        kind: Backing,
        flags: UvmFlags,
    ) -> Result<(), ()> {
        let may_fail = flags.contains(UvmFlags::NOWAIT) || flags.contains(UvmFlags::CANFAIL);
        loop {
            match self.back(va, len, kind, flags) {
                Ok(()) => return Ok(()),
                Err(()) if may_fail => {
                    self.state.lock().failures += 1;
                    return Err(());
                }
                // Only the page source fails a caller that may sleep (the
                // budget sleeps in `claim`).
                Err(()) => {
                    self.pagedaemon();
                    pause();
                }
            }
        }
    }

    /// Back [va, va+len) with pages: commit what is not committed (wiring
    /// if asked), wire what was committed unwired, zero reused pages if asked.
    /// A failure undoes everything (see `back_or_wait` for who retries).
    fn back(&self, va: usize, len: usize, kind: Backing, flags: UvmFlags) -> Result<(), ()> {
        let first = self.page_index(va);
        let n = len >> self.pshift;
        let nowait = flags.contains(UvmFlags::NOWAIT);
        let canfail = flags.contains(UvmFlags::CANFAIL);
        let cacheable = kind != Backing::Pageable;
        let start = kind != Backing::Entered;
        let need = self.claim(first, n, cacheable, start, nowait, canfail)?;
        let wire = kind != Backing::Pageable;
        let zero = flags.contains(UvmFlags::ZERO);
        let mut failed = false;
        let mut committed_new = 0usize;
        // Runs of the pre-existing committed state; we own these pages now.
        let mut todo: [(usize, usize, bool); 16] = [(0, 0, false); 16];
        let mut ntodo = 0;
        let mut overflow = false;
        self.runs(self.committed_bits, first, n, |p, l, set| {
            if ntodo < todo.len() {
                todo[ntodo] = (p, l, set);
                ntodo += 1;
            } else {
                overflow = true;
            }
        });
        if overflow {
            // Too fragmented to list: recommit the whole range (idempotent).
            todo[0] = (first, n, false);
            ntodo = 1;
        }
        for &(p, l, was) in &todo[..ntodo] {
            if !was || overflow {
                // SAFETY: pages of our reservation that this allocation owns.
                let r = unsafe { self.pages.commit(self.va_of(p), l << self.pshift, wire) };
                self.os_calls.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(_) => {
                        self.set_bits(self.committed_bits, p, l, true);
                        if wire {
                            self.set_bits(self.wired_bits, p, l, true);
                        }
                        if !was {
                            committed_new += l;
                        }
                    }
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            } else {
                if wire && self.count_bits(self.wired_bits, p, l) != l {
                    // SAFETY: as above; recommitting committed pages wires them.
                    let _ = unsafe { self.pages.commit(self.va_of(p), l << self.pshift, true) };
                    self.os_calls.fetch_add(1, Ordering::Relaxed);
                    self.set_bits(self.wired_bits, p, l, true);
                }
                if zero {
                    // SAFETY: committed, writable pages this allocation owns.
                    unsafe { self.va_of(p).as_ptr().write_bytes(0, l << self.pshift) };
                }
            }
        }
        if overflow && zero && !failed {
            // The fragmented path recommitted without telling reused pages
            // from fresh ones: clear all of them.
            // SAFETY: committed, writable pages this allocation owns.
            unsafe { self.va_of(first).as_ptr().write_bytes(0, n << self.pshift) };
        }
        if failed {
            {
                let mut s = self.state.lock();
                // The pages never committed were reserved but not used;
                // given back before `unback` wakes the sleepers.
                s.committed -= need - committed_new;
            }
            self.unback(va, len, kind, true);
            return Err(());
        }
        let mut s = self.state.lock();
        match kind {
            Backing::Pageable => s.pageable += n,
            _ => s.wired += n,
        }
        Ok(())
    }

    /// Undo `back`: keep the pages committed as cache if within the free
    /// target, else give them back to the OS.
    pub(crate) fn unback(&self, va: usize, len: usize, kind: Backing, rollback: bool) {
        let s = self.state.lock();
        self.unback_locked(s, self.page_index(va), len >> self.pshift, kind, rollback);
    }

    /// Free the backed allocation [va, va+len) of `kind` (wired or
    /// pageable) if it is exactly one allocation: its
    /// first page has a start bit, the rest are in use without one, and the
    /// allocation does not go on past `len` (the page after is not in use
    /// without a start bit; `end`, the region's end page, stops it).
    /// Checked and undone under one hold of the state lock, so a free of
    /// the same or a neighbouring allocation never sees it half done.
    /// Refused: nothing changed.
    pub(crate) fn unback_checked(
        &self,
        va: usize,
        len: usize,
        kind: Backing,
        end: usize,
    ) -> Result<(), Refused> {
        let first = self.page_index(va);
        let n = len >> self.pshift;
        let s = self.state.lock();
        if !self.bit(self.start_bits, first) {
            return Err(Refused::NotAllocated);
        }
        if !self.is_one_allocation(&s, self.inuse_bits, first, n, end) {
            return Err(Refused::Extent);
        }
        self.unback_locked(s, first, n, kind, false);
        Ok(())
    }

    /// Whether [first, first+n) is exactly one allocation as `member`
    /// records it (see `unback_checked`). Under the state lock, which every
    /// change of the in-use and start bits holds.
    pub(crate) fn is_one_allocation(
        &self,
        _locked: &State,
        member: *const AtomicU64,
        first: usize,
        n: usize,
        end: usize,
    ) -> bool {
        let Some(next) = first.checked_add(n) else {
            return false;
        };
        if n == 0 || next > end || !self.bit(self.start_bits, first) || !self.bit(member, first) {
            return false;
        }
        let interior_ok =
            (first + 1..next).all(|i| self.bit(member, i) && !self.bit(self.start_bits, i));
        interior_ok && (next == end || !self.bit(member, next) || self.bit(self.start_bits, next))
    }

    /// `unback` with the state lock held (and released).
    fn unback_locked(
        &self,
        mut s: SpinMutexGuard<'_, State>,
        first: usize,
        n: usize,
        kind: Backing,
        rollback: bool,
    ) {
        let committed = self.count_bits(self.committed_bits, first, n);
        if !rollback {
            match kind {
                Backing::Pageable => s.pageable -= n,
                _ => s.wired -= n,
            }
        }
        self.set_bits(self.inuse_bits, first, n, false);
        if kind != Backing::Entered {
            self.set_bits(self.start_bits, first, 1, false);
        }
        // Budget waiters go round again (see `claim`), woken below.
        s.free_gen = s.free_gen.wrapping_add(1);
        let keep =
            kind != Backing::Pageable && !rollback && s.cached + committed <= self.free_target;
        if keep {
            s.cached += committed;
            drop(s);
        } else {
            // Give back every committed run, under the lock (see trim_cache).
            let mut returned = 0;
            self.runs(self.committed_bits, first, n, |p, l, set| {
                if set {
                    // SAFETY: committed pages this allocation owned.
                    unsafe { self.pages.decommit(self.va_of(p), l << self.pshift) };
                    self.os_calls.fetch_add(1, Ordering::Relaxed);
                    returned += l;
                }
            });
            self.set_bits(self.committed_bits, first, n, false);
            self.set_bits(self.wired_bits, first, n, false);
            s.committed -= returned;
            s.pages_returned += returned as u64;
            drop(s);
        }
        self.budget_cv.broadcast();
    }
}

/// Why a free was refused (before any change).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Refused {
    /// No allocation starts at the address.
    NotAllocated,
    /// One does, but not with this size.
    Extent,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backing {
    Wired,
    Pageable,
    Entered,
}

/// Pause before retrying after a page-source failure.
fn pause() {
    #[cfg(feature = "std")]
    std::thread::sleep(core::time::Duration::from_millis(1));
    #[cfg(not(feature = "std"))]
    for _ in 0..10_000 {
        core::hint::spin_loop();
    }
}
