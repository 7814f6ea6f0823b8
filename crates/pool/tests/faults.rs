//! Systematic fault injection at the page source: for N = 1, 2, … fail the
//! N-th page request of a sequence of pool operations until the sequence
//! runs with no fault. Each failure is clean (`None` under PR_NOWAIT),
//! `pool_chk` passes, and after destroy no page, header or address space
//! is left behind.

use bsdalloc_platform::{OS_PAGES, PAGE_FAULTS};
use bsdalloc_pool::*;
use bsdalloc_uvm_pages::{KernelMap, KmConfig};

fn phpool_out() -> u64 {
    let mut n = 0;
    for_each_pool(|pp| {
        if pp.name().starts_with("phpool-") {
            n += pp.stats().nout as u64;
        }
    });
    n
}

#[test]
fn fail_the_nth_page_request() {
    let map = KernelMap::bootstrap(KmConfig {
        size: 1 << 30,
        limit_pages: 0,
        free_target_pages: 0,
        pages: &OS_PAGES,
    })
    .unwrap();
    let alloc: &'static KmemAllocator =
        Box::leak(Box::new(KmemAllocator::with_map("faults", map, 0)));
    // Set up the standard map and the header pools before arming.
    let warm = pool_create(PoolConfig::new("f-warm", 3000));
    let x = warm.get(PrFlags::WAITOK).unwrap();
    let headers0 = phpool_out();
    let mut n = 1;
    loop {
        let on: &'static RawPool = Box::leak(Box::new(RawPool::new(
            PoolConfig::new("f-onpage", 200).allocator(alloc),
        )));
        let off: &'static RawPool = Box::leak(Box::new(RawPool::new(
            PoolConfig::new("f-offpage", 1500).allocator(alloc),
        )));
        on.init();
        off.init();
        let injected = PAGE_FAULTS.injected();
        PAGE_FAULTS.fail_nth(n);
        let mut items = Vec::new();
        let mut failed = 0;
        for i in 0..60 {
            let pp = if i % 2 == 0 { on } else { off };
            match pp.get(PrFlags::NOWAIT) {
                Some(p) => {
                    // SAFETY: a fresh item of at least 200 bytes.
                    unsafe { p.as_ptr().write_bytes(i as u8, 200) };
                    items.push((pp, p, i as u8));
                }
                None => failed += 1,
            }
        }
        PAGE_FAULTS.off();
        let faulted = PAGE_FAULTS.injected() != injected;
        assert_eq!(
            failed > 0,
            faulted,
            "N={n}: a failure without a fault, or the reverse"
        );
        for pp in [on, off] {
            assert_eq!(pp.chk(Some("faults")), Ok(()), "N={n}");
        }
        assert_eq!(on.stats().nfail + off.stats().nfail, failed);
        for (pp, p, v) in items {
            // SAFETY: the item's 200 bytes, filled above.
            let b = unsafe { std::slice::from_raw_parts(p.as_ptr(), 200) };
            assert!(b.iter().all(|&x| x == v), "N={n}: item contents changed");
            // SAFETY: an item of pp.
            unsafe { pp.put(p) };
        }
        for pp in [on, off] {
            let s = pp.stats();
            assert_eq!(s.nout, 0);
            pp.destroy();
            let s2 = pp.stats();
            assert_eq!(s2.npagealloc, s2.npagefree, "N={n}: pages leaked");
            let _ = s;
        }
        assert_eq!(map.stats().va_in_use[3], 0, "N={n}: address space leaked");
        assert_eq!(phpool_out(), headers0, "N={n}: headers leaked");
        if !faulted {
            break;
        }
        n += 1;
    }
    assert!(n > 3, "the sequence made only {n} page requests");
    // SAFETY: an item of warm; neither is used again.
    unsafe {
        warm.put(x);
        pool_destroy(warm);
    }
}
