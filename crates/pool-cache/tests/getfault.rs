//! `pool_cache_get`'s own PR_NOWAIT fault-injection point (alone in its
//! binary: the injector is global).

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
    assert!(PC.get(PrFlags::NOWAIT).is_none(), "failed before the cache");
    assert_eq!(PC.get(PrFlags::NOWAIT), Some(p), "and only once");
    POOL_CACHE_GET_FAULTS.off();
    // SAFETY: as above.
    unsafe { PC.put(p) };
    PC.invalidate();
}
