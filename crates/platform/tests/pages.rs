//! Raw pages and fault injection. One test function: the fault-injection
//! point is process-wide, so nothing else may request pages meanwhile.
#![cfg(not(bsdalloc_loom))]

use bsdalloc_platform::{
    OS_PAGES, PAGE_FAULTS, PageError, PageSource, Protection, page_size, resident_bytes,
};

#[test]
fn pages_reserve_commit_decommit_protect_and_fault_injection() {
    let ps = page_size();
    assert!(ps.is_power_of_two() && ps >= 4096);

    // Alignment of a reservation, and zero-filled commit.
    let align = 1 << 21;
    let len = 64 << 20;
    let va = OS_PAGES.reserve(len, align).unwrap();
    assert_eq!(va.as_ptr().addr() % align, 0);
    let before = OS_PAGES.stats();
    let rss0 = resident_bytes().unwrap();
    // SAFETY: the range is our reservation.
    let c = unsafe { OS_PAGES.commit(va, len, false) }.unwrap();
    assert!(!c.wired);
    // SAFETY: committed just above.
    let mem = unsafe { core::slice::from_raw_parts_mut(va.as_ptr(), len) };
    assert!(
        mem.iter().step_by(ps).all(|&b| b == 0),
        "fresh pages read as zero"
    );
    for i in (0..len).step_by(ps) {
        mem[i] = 0xA5;
    }
    let rss1 = resident_bytes().unwrap();
    assert!(
        rss1 >= rss0 + len * 9 / 10,
        "touching 64 MiB must raise RSS ({rss0} -> {rss1})"
    );
    assert_eq!(
        OS_PAGES.stats().committed_pages,
        before.committed_pages + len / ps
    );

    // Give the pages back: RSS really drops, contents are gone.
    // SAFETY: nothing uses the contents any more.
    unsafe { OS_PAGES.decommit(va, len) };
    let rss2 = resident_bytes().unwrap();
    assert!(
        rss2 + len * 9 / 10 <= rss1,
        "decommit must drop RSS ({rss1} -> {rss2})"
    );
    // SAFETY: recommitting our own range.
    unsafe { OS_PAGES.commit(va, ps, false) }.unwrap();
    assert_eq!(mem[0], 0, "a decommitted page reads as zero again");

    // Wiring: granted or reported as refused, never silently claimed.
    // SAFETY: our range.
    let w = unsafe { OS_PAGES.commit(va.map_addr(|a| a.saturating_add(ps)), ps, true) }.unwrap();
    let after = OS_PAGES.stats();
    if w.wired {
        assert!(after.wired_pages_total > before.wired_pages_total);
    } else {
        assert!(after.wire_refusals > before.wire_refusals);
    }

    // Protection changes are accepted on committed ranges.
    // SAFETY: our range.
    unsafe { OS_PAGES.protect(va, ps, Protection::None) }.unwrap();
    // SAFETY: our range.
    unsafe { OS_PAGES.protect(va, ps, Protection::ReadWrite) }.unwrap();

    // Bad ranges are refused, not acted upon.
    assert!(matches!(
        OS_PAGES.reserve(0, 0),
        Err(PageError::BadRange { .. })
    ));
    assert!(matches!(
        OS_PAGES.reserve(ps + 1, 0),
        Err(PageError::BadRange { .. })
    ));
    // SAFETY: a refused request touches nothing.
    let bad = unsafe { OS_PAGES.commit(va.map_addr(|a| a.saturating_add(1)), ps, false) };
    assert!(matches!(bad, Err(PageError::BadRange { .. })));

    // Fault injection: exactly the N-th request fails, cleanly.
    for n in 1..=3u64 {
        PAGE_FAULTS.fail_nth(n);
        let mut results = Vec::new();
        for _ in 0..4 {
            // SAFETY: our range.
            results.push(unsafe { OS_PAGES.commit(va, ps, false) }.err());
        }
        PAGE_FAULTS.off();
        for (i, r) in results.iter().enumerate() {
            if i as u64 + 1 == n {
                assert_eq!(*r, Some(PageError::Injected), "request {} of n={n}", i + 1);
            } else {
                assert_eq!(*r, None, "request {} of n={n}", i + 1);
            }
        }
    }
    let injected = PAGE_FAULTS.injected();
    PAGE_FAULTS.fail_with_probability(0.5, 42);
    let fails = (0..1000)
        .filter(|_| {
            OS_PAGES
                .reserve(ps, 0)
                .map(|p| unsafe {
                    // SAFETY: just reserved, unused.
                    OS_PAGES.release(p, ps)
                })
                .is_err()
        })
        .count();
    PAGE_FAULTS.off();
    assert!((350..650).contains(&fails), "p=0.5 failed {fails}/1000");
    assert_eq!(PAGE_FAULTS.injected(), injected + fails as u64);

    // SAFETY: the whole reservation, unused now.
    unsafe { OS_PAGES.release(va, len) };
    assert_eq!(OS_PAGES.stats().reserved_bytes, before.reserved_bytes - len);
}

#[test]
#[should_panic(expected = "fail_nth: requests are counted from 1")]
fn fail_nth_zero_is_refused() {
    bsdalloc_platform::FaultInjector::new().fail_nth(0);
}
