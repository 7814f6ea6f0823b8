//! Systematic fault injection at the page source: for N = 1, 2, … fail the
//! N-th page request of a sequence of `KM_NOSLEEP` allocations and frees
//! (classes and whole pages) until the sequence runs with no fault. Each
//! failure is a clean `None`, no block is handed out twice, and each time
//! the census is zero and destroy gives the instance's map back. One test
//! per binary: the injection point is global.
#![cfg(not(feature = "guard"))]

use std::collections::HashSet;

use bsdalloc_kmem::*;
use bsdalloc_platform::PAGE_FAULTS;

static K: Kmem = Kmem::new();

#[test]
fn fail_the_nth_page_request() {
    let mut n = 1;
    loop {
        K.bootstrap(KmemConfig::new().va_size(256 << 20).free_target_pages(0))
            .unwrap();
        let ps = K.page_size();
        let injected = PAGE_FAULTS.injected();
        PAGE_FAULTS.fail_nth(n);
        let mut live = Vec::new();
        let mut failed = 0;
        for i in 0..400usize {
            let size = match i % 4 {
                0 => 24,
                1 => 700,
                2 => 3000,
                _ => ps + 1 + (i % 5) * ps,
            };
            match K.alloc(size, KM_NOSLEEP) {
                Some(p) => {
                    // SAFETY: ours.
                    unsafe { p.as_ptr().write_bytes(i as u8, size) };
                    live.push((p, size, i as u8));
                }
                None => failed += 1,
            }
            if i % 3 == 2
                && let Some((p, s, _)) = live.pop()
            {
                // SAFETY: ours.
                unsafe { K.free(p.as_ptr(), s) };
            }
        }
        PAGE_FAULTS.off();
        let faulted = PAGE_FAULTS.injected() != injected;
        if failed > 0 {
            assert!(faulted, "N={n}: a failure without a fault");
        }
        let held: HashSet<_> = live.iter().map(|(p, _, _)| p.as_ptr().addr()).collect();
        assert_eq!(held.len(), live.len(), "N={n}: a block handed out twice");
        for (p, s, b) in live {
            // SAFETY: ours.
            let bytes = unsafe { std::slice::from_raw_parts(p.as_ptr(), s) };
            assert!(bytes.iter().all(|&x| x == b), "N={n}: a block overwritten");
            // SAFETY: ours.
            unsafe { K.free(p.as_ptr(), s) };
        }
        let c = K.census();
        assert_eq!(c.outstanding(), 0, "N={n}: {c:?}");
        // SAFETY: nothing is used any more; destroy checks the map is empty.
        unsafe { K.destroy() };
        if !faulted {
            break;
        }
        n += 1;
        assert!(n < 2000, "the sequence never completes");
    }
    assert!(
        n > 5,
        "the sequence made too few page requests to test anything"
    );
}
