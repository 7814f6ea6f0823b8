//! Detection of a double put into a magazine: with the `diagnostic`
//! feature, putting an object that is already in the CPU's groups panics
//! before anything changes; without it the check is compiled out, and the
//! object would be handed out twice (shown here, so the feature is seen to
//! matter).

use bsdalloc_pool::PrFlags;
use bsdalloc_pool_cache::*;

#[cfg(feature = "diagnostic")]
#[test]
fn double_put_into_a_group_panics() {
    static PC: RawPoolCache = RawPoolCache::new(PoolCacheConfig::new("detect-dp", 32));
    PC.bootstrap();
    let p = PC.get(PrFlags::WAITOK).unwrap();
    // SAFETY: an object of PC.
    unsafe { PC.put(p) };
    let before = PC.local_stats();
    // SAFETY: deliberately wrong: the bug under test.
    let r = std::panic::catch_unwind(|| unsafe { PC.put(p) });
    let msg = r.unwrap_err().downcast::<String>().unwrap();
    assert_eq!(
        *msg,
        format!(
            "pool_cache_put_paddr: [detect-dp] object {p:p} is already in the cache (double put)"
        )
    );
    assert_eq!(PC.local_stats(), before, "nothing changed");
    assert_eq!(PC.get(PrFlags::NOWAIT), Some(p));
    // SAFETY: the one legitimate put.
    unsafe { PC.put(p) };
    PC.invalidate();
}

#[cfg(not(feature = "diagnostic"))]
#[test]
fn double_put_goes_unseen_without_the_feature() {
    static PC: RawPoolCache = RawPoolCache::new(PoolCacheConfig::new("detect-dp-off", 32));
    PC.bootstrap();
    let p = PC.get(PrFlags::WAITOK).unwrap();
    // SAFETY: deliberately wrong (twice): the bug the feature catches.
    unsafe {
        PC.put(p);
        PC.put(p);
    }
    let a = PC.get(PrFlags::NOWAIT).unwrap();
    let b = PC.get(PrFlags::NOWAIT).unwrap();
    assert_eq!((a, b), (p, p), "handed out twice");
    // SAFETY: one of the two copies; the other is forgotten (the pool
    // would refuse a second free).
    unsafe { PC.put(a) };
}
