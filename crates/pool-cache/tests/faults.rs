//! Systematic fault injection at the page source: for N = 1, 2, … fail the
//! N-th page request of a sequence of cache operations (objects' pages and
//! group pages alike) until the sequence runs with no fault. Each failure
//! is clean (`None` under PR_NOWAIT, or a put that destructs at once), no
//! object is lost or duplicated, and at teardown the census holds: every
//! object back in the pool, every group freed, every page of the cache's
//! own map given back. One test per binary: the
//! counters are global.

use std::collections::HashSet;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use bsdalloc_platform::{OS_PAGES, PAGE_FAULTS};
use bsdalloc_pool::{KmemAllocator, PrFlags};
use bsdalloc_pool_cache::*;
use bsdalloc_uvm_pages::{KernelMap, KmConfig};

struct Census {
    ctors: AtomicU64,
    dtors: AtomicU64,
}

impl ObjectCtor for Census {
    fn construct(&self, obj: NonNull<u8>, _: PrFlags) -> Result<(), CtorFailed> {
        // SAFETY: a raw object of 96 bytes.
        unsafe { obj.as_ptr().write_bytes(0x5a, 96) };
        self.ctors.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

impl ObjectDtor for Census {
    fn destruct(&self, obj: NonNull<u8>) {
        // SAFETY: a constructed object of 96 bytes.
        let b = unsafe { std::slice::from_raw_parts(obj.as_ptr(), 96) };
        assert!(b.iter().all(|&x| x == 0x5a), "object changed in the cache");
        self.dtors.fetch_add(1, Ordering::SeqCst);
    }
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
        Box::leak(Box::new(KmemAllocator::with_map("pc-faults", map, 0)));
    let census: &'static Census = Box::leak(Box::new(Census {
        ctors: AtomicU64::new(0),
        dtors: AtomicU64::new(0),
    }));
    let mut n = 1;
    loop {
        let pc: &'static RawPoolCache = Box::leak(Box::new(RawPoolCache::new(
            PoolCacheConfig::new("pc-faults", 96)
                .ipl(bsdalloc_platform::Ipl::Vm)
                .allocator(alloc)
                .ctor(census)
                .dtor(census),
        )));
        pc.bootstrap();
        pc.invalidate(); // no empty groups left over
        let injected = PAGE_FAULTS.injected();
        PAGE_FAULTS.fail_nth(n);
        let mut live = Vec::new();
        let mut failed = 0;
        for i in 0..600 {
            match pc.get(PrFlags::NOWAIT) {
                Some(p) => live.push(p),
                None => failed += 1,
            }
            if i % 3 == 2
                && let Some(p) = live.pop()
            {
                // Puts need groups: their pages can fail too.
                // SAFETY: a constructed object of pc.
                unsafe { pc.put(p) };
            }
        }
        let held: HashSet<_> = live.iter().copied().collect();
        assert_eq!(held.len(), live.len(), "N={n}: an object handed out twice");
        PAGE_FAULTS.off();
        let faulted = PAGE_FAULTS.injected() != injected;
        if failed > 0 {
            assert!(faulted, "N={n}: a failure without a fault");
        }
        for p in live {
            // SAFETY: as above.
            unsafe { pc.put(p) };
        }
        pc.invalidate();
        assert_eq!(pc.pool().chk(Some("pc-faults")), Ok(()), "N={n}");
        assert_eq!(pc.pool().stats().nout, 0, "N={n}: objects lost");
        assert_eq!(pool_cache_groups_out(), 0, "N={n}: groups lost");
        assert_eq!(
            census.ctors.load(Ordering::SeqCst),
            census.dtors.load(Ordering::SeqCst),
            "N={n}: constructors and destructors unbalanced"
        );
        // SAFETY: nobody else uses pc.
        unsafe { pc.destroy() };
        let ms = map.stats();
        assert_eq!(ms.va_in_use[3], 0, "N={n}: kmem address space left in use");
        if !faulted {
            break;
        }
        n += 1;
        assert!(n < 1000, "the sequence never completes");
    }
    assert!(
        n > 5,
        "the sequence made too few page requests to test anything"
    );
}
