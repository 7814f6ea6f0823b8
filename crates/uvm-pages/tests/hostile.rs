//! Calls a hostile user makes: wrong sizes, overflowing sizes, other
//! splits of a guarded allocation, pages entered outside any VA-only
//! allocation, waiters at the budget. Each refused call must change
//! nothing: after the panic is caught, the counters are the same and the
//! memory around is still there with its contents.
//!
//! These run in release builds too (overflow checks off), where a wrapped
//! size would silently be a small one.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use bsdalloc_platform::{Ipl, OS_PAGES};
use bsdalloc_uvm_pages::{KernelMap, KmConfig, KmStats, UvmFlags};
use bsdalloc_vmem::{
    Arena, ArenaConfig, QuantumCache, SizeType, VmFlags, VmemError, XallocConstraints,
};

const W: UvmFlags = UvmFlags::WIRED;
const P: UvmFlags = UvmFlags::PAGEABLE;
const V: UvmFlags = UvmFlags::VAONLY;

fn map(limit_pages: usize, free_target_pages: usize) -> &'static KernelMap {
    KernelMap::bootstrap(KmConfig {
        size: 1 << 30,
        limit_pages,
        free_target_pages,
        pages: &OS_PAGES,
    })
    .unwrap()
}

/// Run `f`, which must panic; its message.
#[track_caller]
fn panic_message(f: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("the call must be refused");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Run `f`, which must panic with a message containing `expected`.
#[track_caller]
fn refused(expected: &str, f: impl FnOnce()) {
    let msg = panic_message(f);
    assert!(
        msg.contains(expected),
        "panic message {msg:?} does not contain {expected:?}"
    );
}

/// The counters a refused call must leave alone (the event counters may
/// move only where a test says so).
fn pages_and_va(st: &KmStats) -> (usize, usize, usize, usize, [usize; 4]) {
    (
        st.committed_pages,
        st.wired_pages,
        st.pageable_pages,
        st.cached_pages,
        st.va_in_use,
    )
}

fn fill(p: NonNull<u8>, len: usize, v: u8) {
    // SAFETY: callers pass backed memory of at least `len` bytes.
    unsafe { p.as_ptr().write_bytes(v, len) };
}

#[track_caller]
fn check(p: NonNull<u8>, len: usize, v: u8) {
    // SAFETY: callers pass backed memory of at least `len` bytes.
    let s = unsafe { std::slice::from_raw_parts(p.as_ptr(), len) };
    assert!(s.iter().all(|&b| b == v), "contents of {p:p} changed");
}

fn nn(a: usize) -> NonNull<u8> {
    NonNull::new(a as *mut u8).unwrap()
}

// ---- item 5: sizes from callers that overflow ----

/// `size + guard pages`, `guard * page size` and the rounding to pages can
/// each overflow; with overflow checks off a wrapped total is a small one
/// (no guard page, or bitmaps walked out of bounds). Allocations fail
/// (counted), frees panic as a mismatch, and nothing changes.
#[test]
fn overflowing_sizes_fail_and_change_nothing() {
    let m = map(0, 0);
    let ps = m.page_size();
    let pshift = ps.trailing_zeros();
    let live = m.uvm_km_alloc(2 * ps, 0, W).unwrap();
    fill(live, 2 * ps, 0x11);
    let before = m.stats();
    let kmem_before = m.kmem_arena().size(SizeType::ALLOC);
    let attempts: [(usize, usize); 5] = [
        // guard * ps wraps to 0: no guard page at all.
        (ps, 1 << (usize::BITS - pshift)),
        // size + guard * ps wraps to one page: two pages backed in one.
        (2 * ps, usize::MAX / ps),
        // size + guard * ps wraps to 0.
        (ps, usize::MAX / ps),
        // Rounding to pages overflows.
        (usize::MAX, 0),
        (usize::MAX - ps + 2, 1),
    ];
    let mut failed = 0;
    for (size, guard) in attempts {
        for t in [W, P, V] {
            assert!(
                m.uvm_km_alloc_guarded(size, guard, t | UvmFlags::NOWAIT)
                    .is_none(),
                "size {size:#x} + {guard} guard pages as {t:?}"
            );
            failed += 1;
        }
    }
    assert!(m.uvm_km_alloc(usize::MAX, 0, W).is_none());
    assert!(m.uvm_km_alloc(usize::MAX - ps + 2, ps, P).is_none());
    failed += 2;
    assert!(
        m.uvm_km_kmem_alloc(m.kmem_arena(), usize::MAX, VmFlags::NOSLEEP)
            .is_err()
    );
    failed += 1;
    let after = m.stats();
    assert_eq!(pages_and_va(&after), pages_and_va(&before));
    assert_eq!(after.failures, before.failures + failed, "each one counted");
    assert_eq!(m.kmem_arena().size(SizeType::ALLOC), kmem_before);

    // Frees with overflowing sizes are mismatches, refused before any change.
    for (size, guard) in attempts {
        refused("does not match", || {
            m.uvm_km_free_guarded(live, size, guard, W)
        });
    }
    refused("does not match", || m.uvm_km_free(live, usize::MAX, W));
    let k = m
        .uvm_km_kmem_alloc(m.kmem_arena(), ps, VmFlags::NOSLEEP)
        .unwrap();
    fill(nn(k), ps, 0x22);
    let before = m.stats();
    refused("does not match", || {
        m.uvm_km_kmem_free(m.kmem_arena(), k, usize::MAX)
    });
    refused("is not inside a UVM_KMF_VAONLY allocation", || {
        m.enter(live, usize::MAX, UvmFlags::empty());
    });
    refused("is not inside a UVM_KMF_VAONLY allocation", || {
        m.remove(live, usize::MAX)
    });
    assert_eq!(pages_and_va(&m.stats()), pages_and_va(&before));
    check(live, 2 * ps, 0x11);
    check(nn(k), ps, 0x22);
    m.uvm_km_kmem_free(m.kmem_arena(), k, ps);
    m.uvm_km_free(live, 2 * ps, W);
    let st = m.stats();
    assert_eq!((st.wired_pages, st.va_in_use), (0, [0; 4]));
}

// ---- item 4: a free with the wrong size changes nothing ----

/// A quantum cache in the shape of pool_cache's: it hands out pieces of
/// one larger segment of its arena, so the arena's busy hash does not see
/// them. Pieces are bump-allocated one after another (neighbours) and
/// never reused.
struct BumpCache {
    slab: AtomicUsize,
    next: AtomicUsize,
}

const SLAB_PAGES: usize = 32;

impl QuantumCache for BumpCache {
    fn qc_alloc(&self, arena: &Arena, size: usize, flags: VmFlags) -> Result<usize, VmemError> {
        let ps = arena.quantum();
        if self.slab.load(Ordering::SeqCst) == 0 {
            let slab = arena.xalloc(XallocConstraints::new(SLAB_PAGES * ps), flags)?;
            self.slab.store(slab, Ordering::SeqCst);
            // Not at the slab's start: no busy segment begins at a piece.
            self.next.store(slab + ps, Ordering::SeqCst);
        }
        let a = self.next.fetch_add(size, Ordering::SeqCst);
        assert!(a + size <= self.slab.load(Ordering::SeqCst) + SLAB_PAGES * ps);
        Ok(a)
    }

    fn qc_free(&self, _arena: &Arena, _addr: usize, _size: usize) {}

    // Pieces are never reused, so no slab is ever idle.
    fn qc_reclaim(&self, _arena: &Arena) {}

    fn qc_destroy(&self, arena: &Arena) {
        let slab = self.slab.swap(0, Ordering::SeqCst);
        if slab != 0 {
            arena.xfree(slab, SLAB_PAGES * arena.quantum());
        }
    }
}

static BUMP: BumpCache = BumpCache {
    slab: AtomicUsize::new(0),
    next: AtomicUsize::new(0),
};

/// Two neighbouring 2-page blocks, `a` and `a + 2 pages`.
fn neighbours(m: &KernelMap, vmem: &Arena) -> (usize, usize) {
    let ps = m.page_size();
    let a = m.uvm_km_kmem_alloc(vmem, 2 * ps, VmFlags::SLEEP).unwrap();
    let b = m.uvm_km_kmem_alloc(vmem, 2 * ps, VmFlags::SLEEP).unwrap();
    assert_eq!(
        b,
        a + 2 * ps,
        "an instant fit in a fresh arena is sequential"
    );
    fill(nn(a), 2 * ps, 0xA1);
    fill(nn(b), 2 * ps, 0xB2);
    (a, b)
}

/// `uvm_km_kmem_free` with a bigger size used to give the neighbour's first
/// page back (PROT_NONE under a live block) and with a smaller one the
/// block's own first page, and only then panic in vmem. Now the page
/// bitmaps pin each allocation's extent (its start page and in-use pages)
/// and the free is refused before any change, also on an arena whose
/// quantum cache hides the allocation from the busy hash.
#[test]
fn kmem_free_with_a_wrong_size_changes_nothing() {
    let m = map(0, 64);
    let ps = m.page_size();
    let qc: &'static Arena = Box::leak(Box::new(
        Arena::with_config(
            ArenaConfig {
                source: Some(m.kmem_arena()),
                qcache_max: 4 * ps,
                ipl: Ipl::Vm,
                ..ArenaConfig::new("kva-qc", ps)
            },
            0,
            0,
        )
        .unwrap(),
    ));
    qc.set_quantum_cache(&BUMP);
    for vmem in [m.kmem_arena(), qc] {
        let (a, b) = neighbours(m, vmem);
        let before = m.stats();
        let vmem_before = vmem.size(SizeType::ALLOC);
        let bad: [(usize, usize, &str); 5] = [
            (a, 3 * ps, "does not match"), // into the neighbour
            (a, 4 * ps, "does not match"), // the neighbour whole
            (a, ps, "does not match"),     // the block's first page only
            (a + ps, ps, "is not allocated"),
            (b + ps, ps, "is not allocated"),
        ];
        for (va, size, expected) in bad {
            let msg = panic_message(|| m.uvm_km_kmem_free(vmem, va, size));
            // The state first: that is what a late panic breaks.
            assert_eq!(
                pages_and_va(&m.stats()),
                pages_and_va(&before),
                "{}: free({va:#x}, {size:#x})",
                vmem.name()
            );
            assert_eq!(vmem.size(SizeType::ALLOC), vmem_before);
            check(nn(a), 2 * ps, 0xA1);
            check(nn(b), 2 * ps, 0xB2);
            assert!(msg.contains(expected), "{msg:?}: {expected:?}");
        }
        m.uvm_km_kmem_free(vmem, a, 2 * ps);
        check(nn(b), 2 * ps, 0xB2);
        m.uvm_km_kmem_free(vmem, b, 2 * ps);
        refused("is not allocated", || m.uvm_km_kmem_free(vmem, b, 2 * ps));
    }
    // The same for uvm_km_free (its regions have no quantum cache).
    let a = m.uvm_km_alloc(2 * ps, 0, W).unwrap();
    let b = m.uvm_km_alloc(2 * ps, 0, W).unwrap();
    fill(a, 2 * ps, 0xA1);
    fill(b, 2 * ps, 0xB2);
    let before = m.stats();
    for size in [ps, 3 * ps, 4 * ps] {
        refused("does not match", || m.uvm_km_free(a, size, W));
    }
    refused("is not allocated", || {
        m.uvm_km_free(nn(a.as_ptr() as usize + ps), ps, W)
    });
    assert_eq!(pages_and_va(&m.stats()), pages_and_va(&before));
    check(a, 2 * ps, 0xA1);
    check(b, 2 * ps, 0xB2);
    m.uvm_km_free(a, 2 * ps, W);
    m.uvm_km_free(b, 2 * ps, W);
    let st = m.stats();
    assert_eq!((st.wired_pages, st.va_in_use), (0, [0; 4]));
}

// ---- item 8: enter and remove stay inside one VA-only allocation ----

/// `enter` used to accept any page of the VA-only region, allocated or
/// not, and ranges across two allocations or into a guard page. Now every
/// page must lie in one VA-only allocation (a bitmap of their pages, with
/// the start bits between neighbours); else it panics with nothing
/// changed, and `remove` likewise.
#[test]
fn enter_and_remove_outside_a_vaonly_allocation_are_refused() {
    let m = map(0, 0);
    let ps = m.page_size();
    let p = m.uvm_km_alloc(4 * ps, 0, V).unwrap().as_ptr() as usize;
    let q = m.uvm_km_alloc(4 * ps, 0, V).unwrap().as_ptr() as usize;
    assert_eq!(q, p + 4 * ps, "sequential in a fresh region");
    let g = m.uvm_km_alloc_guarded(2 * ps, 1, V).unwrap().as_ptr() as usize;
    let gone = m.uvm_km_alloc(ps, 0, V).unwrap();
    m.uvm_km_free(gone, ps, V);
    let gone = gone.as_ptr() as usize;
    // A live entered page to watch.
    m.enter(nn(p + ps), ps, UvmFlags::empty()).unwrap();
    fill(nn(p + ps), ps, 0x5E);
    let before = m.stats();
    let outside: [(usize, usize); 7] = [
        (g + 3 * ps, ps),     // never allocated
        (p + 3 * ps, 2 * ps), // across p and q
        (p, 8 * ps),          // p and q whole
        (g + 2 * ps, ps),     // the guard page
        (g + ps, 2 * ps),     // into the guard page
        (gone, ps),           // freed
        (q, 0),               // empty
    ];
    for (a, size) in outside {
        refused("is not inside a UVM_KMF_VAONLY allocation", || {
            m.enter(nn(a), size, UvmFlags::empty());
        });
        refused("is not inside a UVM_KMF_VAONLY allocation", || {
            m.remove(nn(a), size)
        });
        assert_eq!(
            pages_and_va(&m.stats()),
            pages_and_va(&before),
            "enter/remove({a:#x}, {size:#x})"
        );
    }
    check(nn(p + ps), ps, 0x5E);
    // Inside, they work, up to the allocation's last page.
    m.enter(nn(q + 2 * ps), 2 * ps, UvmFlags::empty()).unwrap();
    fill(nn(q + 2 * ps), 2 * ps, 0x77);
    m.enter(nn(g), 2 * ps, UvmFlags::empty()).unwrap();
    m.remove(nn(g), 2 * ps);
    assert_eq!(m.stats().wired_pages, before.wired_pages + 2);
    m.uvm_km_free(nn(p), 4 * ps, V);
    m.uvm_km_free(nn(q), 4 * ps, V);
    m.uvm_km_free_guarded(nn(g), 2 * ps, 1, V);
    let st = m.stats();
    assert_eq!(
        (st.wired_pages, st.committed_pages, st.va_in_use),
        (0, 0, [0; 4])
    );
}

// ---- item 7: a guarded allocation is freed with its own split ----

/// `uvm_km_free_guarded` used to check only `size + guard` as a total:
/// one page more and one guard page less unbacked the guard page too
/// (the page counter underflowed), one page less left a wired page
/// counted forever. The allocation proper must be exactly `size` (start
/// and in-use or VA-only bits) and the arena segment `size + guard`.
#[test]
fn guarded_free_with_another_split_changes_nothing() {
    let m = map(0, 16);
    let ps = m.page_size();
    for t in [W, P, V] {
        let p = m.uvm_km_alloc_guarded(2 * ps, 2, t).unwrap();
        if t == V {
            m.enter(p, 2 * ps, UvmFlags::empty()).unwrap();
        }
        fill(p, 2 * ps, 0x3C);
        let before = m.stats();
        for (size, guard) in [(3 * ps, 1), (4 * ps, 0), (ps, 3), (2 * ps, 1), (2 * ps, 3)] {
            let msg = panic_message(|| m.uvm_km_free_guarded(p, size, guard, t));
            assert_eq!(
                pages_and_va(&m.stats()),
                pages_and_va(&before),
                "{t:?}: free({size:#x}, {guard})"
            );
            check(p, 2 * ps, 0x3C);
            assert!(msg.contains("does not match"), "{msg}");
        }
        m.uvm_km_free_guarded(p, 2 * ps, 2, t);
        let st = m.stats();
        assert_eq!(
            (st.wired_pages, st.pageable_pages, st.va_in_use),
            (0, 0, [0; 4]),
            "{t:?}"
        );
    }
}

// ---- item 14: waiters at the budget sleep until something is freed ----

/// Four `uvm_km_alloc(WIRED)` callers at a full budget used to wake each
/// other without end: each wait-loop round ran the pagedaemon, whose
/// broadcast woke the others, which ran it again (some 10^4–10^5 rounds a
/// second). Now the pagedaemon wakes sleepers only when it gave memory
/// back, and a waiter runs it once, then again only after a free. With
/// nothing freed for a while the counters barely move (counted, not
/// timed: the 200 ms only give a storm room to show); after a free into
/// the cache (free target above zero) every waiter finishes.
#[test]
fn budget_waiters_sleep_until_something_is_freed() {
    const WAITERS: usize = 4;
    // Per waiter: its first pass and sleep, plus slack for spurious returns.
    const BOUND: u64 = 2 * WAITERS as u64;
    let m = map(32, 16);
    let ps = m.page_size();
    let mut held = Vec::new();
    while let Some(p) = m.uvm_km_alloc(ps, 0, W | UvmFlags::NOWAIT) {
        held.push(p);
    }
    assert_eq!(held.len(), 32);
    let start = m.stats();
    let waiters: Vec<_> = (0..WAITERS)
        .map(|_| std::thread::spawn(move || m.uvm_km_alloc(ps, 0, W).unwrap().as_ptr() as usize))
        .collect();
    while m.stats().sleeps < start.sleeps + WAITERS as u64 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let quiet = m.stats();
    assert!(
        waiters.iter().all(|w| !w.is_finished()),
        "nothing was freed: they all wait"
    );
    let (runs, sleeps) = (
        quiet.pagedaemon_runs - start.pagedaemon_runs,
        quiet.sleeps - start.sleeps,
    );
    assert!(
        runs <= BOUND && sleeps <= BOUND,
        "{WAITERS} waiters, nothing freed: {runs} pagedaemon runs, {sleeps} sleeps"
    );
    // Four pages freed go to the cache (within the free target): the
    // waiters must have the pagedaemon give them back to fit.
    for p in held.drain(..WAITERS) {
        m.uvm_km_free(p, ps, W);
    }
    for w in waiters {
        held.push(nn(w.join().unwrap()));
    }
    for p in held {
        m.uvm_km_free(p, ps, W);
    }
    let st = m.stats();
    assert_eq!((st.wired_pages, st.va_in_use), (0, [0; 4]));
    assert_eq!(st.committed_pages, st.cached_pages);
}
