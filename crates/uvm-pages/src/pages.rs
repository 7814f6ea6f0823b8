//! Page backing, the budget and the pagedaemon: which pages of the map are
//! committed, wired and in use; claiming and committing them for an
//! allocation; keeping freed ones as cache or giving them back.

use bsdalloc_platform::sync::atomic::Ordering;

use crate::flags::UvmFlags;
use crate::map::{DrainHook, KernelMap};

impl KernelMap {
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
    /// back what they freed, and wake sleepers. Returns pages given back.
    pub fn pagedaemon(&self) -> usize {
        let hooks = {
            let mut s = self.state.lock();
            s.pagedaemon_runs += 1;
            s.hooks
        };
        let mut freed = self.trim_cache(0);
        for (hook, arg) in hooks.iter().flatten() {
            hook(*arg, UvmFlags::NOWAIT);
        }
        freed += self.trim_cache(0);
        self.budget_cv.broadcast();
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
    fn claim(
        &self,
        first: usize,
        n: usize,
        cacheable: bool,
        nowait: bool,
        canfail: bool,
    ) -> Result<usize, ()> {
        let mut tried_daemon = false;
        let mut s = self.state.lock();
        loop {
            let have = self.count_bits(self.committed_bits, first, n);
            let need = n - have;
            if self.limit == 0 || s.committed + need <= self.limit {
                s.committed += need;
                if cacheable {
                    s.cached -= have;
                }
                self.set_bits(self.inuse_bits, first, n, true);
                return Ok(need);
            }
            if !tried_daemon || !(nowait || canfail) {
                drop(s);
                self.pagedaemon();
                tried_daemon = true;
                s = self.state.lock();
                let have = self.count_bits(self.committed_bits, first, n);
                if self.limit == 0 || s.committed + (n - have) <= self.limit {
                    continue;
                }
            }
            if nowait || canfail {
                s.failures += 1;
                return Err(());
            }
            s.sleeps += 1;
            s = self.budget_cv.wait(s);
        }
    }

    /// Back [va, va+len) with pages: commit what is not committed (wiring
    /// if asked), wire what was committed unwired, zero reused pages if asked.
    pub(crate) fn back(
        &self,
        va: usize,
        len: usize,
        kind: Backing,
        flags: UvmFlags,
    ) -> Result<(), ()> {
        let first = self.page_index(va);
        let n = len >> self.pshift;
        let nowait = flags.contains(UvmFlags::NOWAIT);
        let canfail = flags.contains(UvmFlags::CANFAIL);
        let cacheable = kind != Backing::Pageable;
        let need = self.claim(first, n, cacheable, nowait, canfail)?;
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
            self.unback(va, len, kind, true);
            let mut s = self.state.lock();
            // The pages never committed were reserved but not used.
            s.committed -= need - committed_new;
            s.failures += 1;
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
        let first = self.page_index(va);
        let n = len >> self.pshift;
        let committed = self.count_bits(self.committed_bits, first, n);
        let mut s = self.state.lock();
        if !rollback {
            match kind {
                Backing::Pageable => s.pageable -= n,
                _ => s.wired -= n,
            }
        }
        self.set_bits(self.inuse_bits, first, n, false);
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

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backing {
    Wired,
    Pageable,
    Entered,
}
