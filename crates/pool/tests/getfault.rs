//! `fault_inject()` in `pool_get(PR_NOWAIT)`: the armed injection point
//! fails the get before it looks at the pool. Alone in its binary: the
//! point is process-wide.

use bsdalloc_pool::*;

#[test]
fn nowait_gets_fail_by_fault_injection() {
    static P: RawPool = RawPool::new(PoolConfig::new("g-fault", 64));
    P.init();
    let keep = P.get(PrFlags::WAITOK).unwrap();
    POOL_GET_FAULTS.fail_nth(2);
    let a = P.get(PrFlags::NOWAIT);
    let b = P.get(PrFlags::NOWAIT);
    // PR_WAITOK gets do not consult the point.
    let c = P.get(PrFlags::WAITOK);
    POOL_GET_FAULTS.off();
    assert!(a.is_some() && b.is_none() && c.is_some());
    let s = P.stats();
    assert_eq!(
        (s.nget, s.nfail),
        (3, 0),
        "the failure came before the pool"
    );
    for p in [keep, a.unwrap(), c.unwrap()] {
        // SAFETY: items of P.
        unsafe { P.put(p) };
    }
    P.destroy();
}
