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

use bsdalloc_platform::OS_PAGES;
use bsdalloc_uvm_pages::{KernelMap, KmConfig, KmStats, UvmFlags};
use bsdalloc_vmem::{SizeType, VmFlags};

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

/// Run `f`, which must panic with a message containing `expected`.
#[track_caller]
fn refused(expected: &str, f: impl FnOnce()) {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("the call must be refused");
    let msg = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("");
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
        m.enter(live, usize::MAX, UvmFlags(0));
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
