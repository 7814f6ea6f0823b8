//! `pool_cache_get`'s own PR_NOWAIT fault-injection point (alone in its
//! binary: the injector is global): armed, a PR_NOWAIT get that misses
//! every group fails before it reaches the pool; hits are not affected;
//! PR_WAITOK gets never fail there.

use bsdalloc_pool::PrFlags;
use bsdalloc_pool_cache::*;

#[test]
fn pool_cache_get_injection_point() {
    static PC: RawPoolCache = RawPoolCache::new(PoolCacheConfig::new("pc-getfault", 32));
    PC.bootstrap();
    let p = PC.get(PrFlags::WAITOK).unwrap();
    // SAFETY: an object of PC.
    unsafe { PC.put(p) };
    POOL_CACHE_GET_FAULTS.fail_nth(1);
    assert_eq!(PC.get(PrFlags::NOWAIT), Some(p), "a hit does not fail");
    assert_eq!(POOL_CACHE_GET_FAULTS.seen(), 0);
    let nget = PC.pool().stats().nget;
    assert!(
        PC.get(PrFlags::NOWAIT).is_none(),
        "a miss fails before the pool"
    );
    assert_eq!(PC.pool().stats().nget, nget, "pool_get was not called");
    let q = PC.get(PrFlags::NOWAIT).unwrap();
    POOL_CACHE_GET_FAULTS.fail_nth(1);
    let r = PC.get(PrFlags::WAITOK).unwrap();
    assert_eq!(
        POOL_CACHE_GET_FAULTS.seen(),
        0,
        "PR_WAITOK does not pass the point"
    );
    POOL_CACHE_GET_FAULTS.off();
    for o in [p, q, r] {
        // SAFETY: objects of PC.
        unsafe { PC.put(o) };
    }
    PC.invalidate();
}
