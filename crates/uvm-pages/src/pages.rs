//! Page backing, the budget and the pagedaemon: which pages of the map are
//! committed, wired, in use, the start of an allocation or VA-only;
//! claiming and committing them for an allocation; checking a free against
//! them; keeping freed ones as cache or giving them back.

use core::ptr::NonNull;

use bsdalloc_platform::SpinMutexGuard;
use bsdalloc_platform::sync::atomic::Ordering;

use crate::flags::{KmType, UvmFlags};
use crate::map::{KernelMap, State, Where};
use crate::raw::Bitmap;

/// A drain hook: what the pagedaemon asks to give memory back when memory
/// is short (NetBSD's pagedaemon drains the pools). Pools implement it and
/// register themselves with [`KernelMap::register_drain_hook`]; the hook's
/// state is its own `self`, not an integer smuggling a pointer.
///
/// ```
/// use bsdalloc_uvm_pages::{DrainHook, KernelMap, KmConfig, UvmFlags};
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// struct Pool {
///     drained: AtomicUsize,
/// }
/// impl DrainHook for Pool {
///     fn drain(&self, flags: UvmFlags) {
///         assert!(flags.contains(UvmFlags::NOWAIT));
///         self.drained.fetch_add(1, Ordering::Relaxed); // free idle pages here
///     }
/// }
/// static POOL: Pool = Pool { drained: AtomicUsize::new(0) };
///
/// let map = KernelMap::bootstrap(KmConfig { size: 1 << 30, ..KmConfig::new() }).unwrap();
/// map.register_drain_hook(&POOL);
/// map.pagedaemon();
/// assert_eq!(POOL.drained.load(Ordering::Relaxed), 1);
/// ```
pub trait DrainHook: Sync {
    /// Give back what can be given back, without sleeping: `flags` is
    /// `UVM_KMF_NOWAIT`. Called with no lock of the map held (it may free
    /// memory to the map).
    fn drain(&self, flags: UvmFlags);
}

impl KernelMap {
    // ---- pages and addresses ----

    pub(crate) fn page_index(&self, va: usize) -> usize {
        (va - self.base) >> self.pshift
    }

    /// The first byte of page `page` of the map, as a pointer into the
    /// reservation.
    pub(crate) fn va_of(&self, page: usize) -> NonNull<u8> {
        self.va
            .ptr(self.base + (page << self.pshift))
            .expect("uvm_km: page outside the kernel map")
    }

    /// Address `va` of this map as a pointer (with the reservation's
    /// provenance: vmem hands out integers, and a pointer made from an
    /// integer has none), or `None` if `va` is outside the map. For
    /// memory from [`KernelMap::uvm_km_kmem_alloc`] or an arena stacked on
    /// the map's kmem arena.
    pub fn va_ptr(&self, va: usize) -> Option<NonNull<u8>> {
        self.va.ptr(va)
    }

    /// Mark [va, va+size) as one VA-only allocation: its pages VA-only,
    /// its first page a start. Under the state lock, as the checks that
    /// read them.
    pub(crate) fn mark_vaonly(&self, va: usize, size: usize) {
        let first = self.page_index(va);
        let _s = self.state.lock();
        self.vaonly_bits.set(first, size >> self.pshift, true);
        self.start_bits.set(first, 1, true);
    }

    /// Unmark the VA-only allocation [va, va+size) if it is exactly one
    /// (as `unback_checked` for backed ones; `end`: the region's end page).
    pub(crate) fn unmark_vaonly(&self, va: usize, size: usize, end: usize) -> Result<(), Refused> {
        let first = self.page_index(va);
        let n = size >> self.pshift;
        let s = self.state.lock();
        if !self.start_bits.get(first) {
            return Err(Refused::NotAllocated);
        }
        if !self.is_one_allocation(&s, &self.vaonly_bits, first, n, end) {
            return Err(Refused::Extent);
        }
        self.vaonly_bits.set(first, n, false);
        self.start_bits.set(first, 1, false);
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
        let inside = (first..end).all(|i| self.vaonly_bits.get(i))
            && (first + 1..end).all(|i| !self.start_bits.get(i));
        inside.then(|| (size, self.inuse_bits.count(first, end - first)))
    }

    // ---- budget and the pagedaemon ----

    /// Register a drain hook for the pagedaemon.
    ///
    /// # Panics
    /// If all 16 slots are taken.
    pub fn register_drain_hook(&self, hook: &'static dyn DrainHook) {
        let mut s = self.state.lock();
        let Some(slot) = s.hooks.iter_mut().find(|h| h.is_none()) else {
            // The panic hook is unknown code: not under the spin mutex.
            drop(s);
            panic!("uvm_km: all 16 drain hooks are in use");
        };
        *slot = Some(hook);
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
        for hook in hooks.iter().flatten() {
            hook.drain(UvmFlags::NOWAIT);
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
                let c = self.committed_bits.word(w).load(Ordering::Acquire);
                let u = self.inuse_bits.word(w).load(Ordering::Acquire);
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
                    self.committed_bits.set(page, len, false);
                    self.wired_bits.set(page, len, false);
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

    /// Give back the cached (committed, unused) pages among [first,
    /// first+n), which the caller owns as address space: its guard pages.
    pub(crate) fn evict_cached(&self, first: usize, n: usize) {
        let mut s = self.state.lock();
        let mut returned = 0;
        self.committed_bits.runs(first, n, |p, l, committed| {
            if committed {
                // SAFETY: committed pages of our reservation that no
                // allocation uses (their VA belongs to the caller, who has
                // not backed them); under the state lock, as in trim_cache.
                unsafe { self.pages.decommit(self.va_of(p), l << self.pshift) };
                self.os_calls.fetch_add(1, Ordering::Relaxed);
                returned += l;
            }
        });
        if returned != 0 {
            self.committed_bits.set(first, n, false);
            self.wired_bits.set(first, n, false);
            s.cached -= returned;
            s.committed -= returned;
            s.pages_returned += returned as u64;
        }
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
            let have = self.committed_bits.count(first, n);
            let need = n - have;
            if self.limit == 0 || s.committed + need <= self.limit {
                s.committed += need;
                if cacheable {
                    s.cached -= have;
                }
                // With the in-use bits, under the same lock: a free
                // validating a neighbour never sees one without the other.
                self.inuse_bits.set(first, n, true);
                if start {
                    self.start_bits.set(first, 1, true);
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
                    bsdalloc_platform::kpause();
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
        self.committed_bits.runs(first, n, |p, l, set| {
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
                        self.committed_bits.set(p, l, true);
                        if wire {
                            self.wired_bits.set(p, l, true);
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
                if wire && self.wired_bits.count(p, l) != l {
                    // SAFETY: as above; recommitting committed pages wires them.
                    let _ = unsafe { self.pages.commit(self.va_of(p), l << self.pshift, true) };
                    self.os_calls.fetch_add(1, Ordering::Relaxed);
                    self.wired_bits.set(p, l, true);
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
        if !self.start_bits.get(first) {
            return Err(Refused::NotAllocated);
        }
        if !self.is_one_allocation(&s, &self.inuse_bits, first, n, end) {
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
        member: &Bitmap,
        first: usize,
        n: usize,
        end: usize,
    ) -> bool {
        let Some(next) = first.checked_add(n) else {
            return false;
        };
        if n == 0 || next > end || !self.start_bits.get(first) || !member.get(first) {
            return false;
        }
        let interior_ok = (first + 1..next).all(|i| member.get(i) && !self.start_bits.get(i));
        interior_ok && (next == end || !member.get(next) || self.start_bits.get(next))
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
        let committed = self.committed_bits.count(first, n);
        if !rollback {
            match kind {
                Backing::Pageable => s.pageable -= n,
                _ => s.wired -= n,
            }
        }
        self.inuse_bits.set(first, n, false);
        if kind != Backing::Entered {
            self.start_bits.set(first, 1, false);
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
            self.committed_bits.runs(first, n, |p, l, set| {
                if set {
                    // SAFETY: committed pages this allocation owned.
                    unsafe { self.pages.decommit(self.va_of(p), l << self.pshift) };
                    self.os_calls.fetch_add(1, Ordering::Relaxed);
                    returned += l;
                }
            });
            self.committed_bits.set(first, n, false);
            self.wired_bits.set(first, n, false);
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
