//! T1, NetBSD's rump `uvmwait` scenario (tests/rump/kernspace/alloc.c):
//! with a 1 MiB memory limit and two pools of 1 KiB items, fill one with
//! 32 items, exhaust the other with PR_NOWAIT gets (they must fail before
//! the limit is exceeded), then a PR_WAITOK get must sleep until another
//! thread frees the 32 items — the pagedaemon then drains the idle pages
//! of the first pool — and then succeed.

use std::ptr::NonNull;

use bsdalloc_platform::OS_PAGES;
use bsdalloc_pool::*;
use bsdalloc_uvm_pages::{KernelMap, KmConfig};

static CLOCK: ManualClock = ManualClock::new();

#[test]
fn uvmwait_with_a_1m_budget() {
    let limit = 1 << 20;
    let map = KernelMap::bootstrap(KmConfig {
        size: 256 << 20,
        limit_pages: limit / OS_PAGES_PS.with(|p| *p),
        free_target_pages: 0,
        pages: &OS_PAGES,
    })
    .unwrap();
    pool_register_pagedaemon(map);
    let alloc: &'static KmemAllocator =
        Box::leak(Box::new(KmemAllocator::with_map("nointr-1m", map, 0)));
    let mk = |name| {
        let p: &'static RawPool = Box::leak(Box::new(RawPool::new(
            PoolConfig::new(name, 1024).allocator(alloc).clock(&CLOCK),
        )));
        p.init();
        p
    };
    let pp1 = mk("vara-allas");
    let pp2 = mk("allas");
    let store: Vec<usize> = (0..32)
        .map(|_| {
            pp1.get(PrFlags::NOWAIT)
                .expect("pool_get store failed")
                .as_ptr() as usize
        })
        .collect();
    let mut got = Vec::new();
    loop {
        assert!(got.len() * 1024 <= limit, "got past limit");
        match pp2.get(PrFlags::NOWAIT) {
            Some(c) => got.push(c),
            None => break,
        }
    }
    assert!(got.len() * 1024 + 32 * 1024 <= limit);
    assert!(pp2.stats().nfail >= 1);
    let sleeps0 = map.stats().sleeps;
    let freer = std::thread::spawn(move || {
        // Wait until the PR_WAITOK get sleeps in uvm_wait.
        while map.stats().sleeps == sleeps0 {
            std::thread::yield_now();
        }
        for p in store {
            // SAFETY: items of pp1, no longer used.
            unsafe { pp1.put(NonNull::new(p as *mut u8).unwrap()) };
        }
        // Time passes; the pagedaemon runs and drains the idle pages.
        CLOCK.advance(POOL_INACTIVE_TIME);
        map.pagedaemon();
    });
    let c = pp2.get(PrFlags::WAITOK).expect("PR_WAITOK returned NULL");
    freer.join().unwrap();
    assert!(
        map.stats().sleeps > sleeps0,
        "the PR_WAITOK get never slept"
    );
    let s1 = pp1.stats();
    assert_eq!((s1.nout, s1.npages), (0, 0), "pp1's pages went back to uvm");
    // SAFETY: items of pp2.
    unsafe {
        pp2.put(c);
        for p in got {
            pp2.put(p);
        }
    }
    pp1.destroy();
    pp2.destroy();
    assert_eq!(map.stats().va_in_use[3], 0);
}

thread_local! {
    static OS_PAGES_PS: usize = bsdalloc_platform::page_size();
}
