//! POOL_QUARANTINE (feature `quarantine`, its own test run): a put parks
//! the item in a 128-entry FIFO and really frees the one it displaces, so
//! a freed item is not handed out again for 128 puts; destroy flushes it.
#![cfg(feature = "quarantine")]

use std::collections::HashSet;
use std::ptr::NonNull;

use bsdalloc_pool::*;

fn put(pp: &RawPool, p: NonNull<u8>) {
    // SAFETY: items of `pp` the test no longer uses.
    unsafe { pp.put(p) };
}

#[test]
fn quarantine_delays_reuse_by_128_puts() {
    static P: RawPool = RawPool::new(PoolConfig::new("q-fifo", 64));
    P.init();
    let first = P.get(PrFlags::WAITOK).unwrap();
    put(&P, first);
    // Parked: still counted out, never handed out while parked.
    assert_eq!(P.stats().nout, 1);
    let mut seen = HashSet::new();
    for _ in 0..POOL_QUARANTINE_DEPTH - 1 {
        let p = P.get(PrFlags::WAITOK).unwrap();
        assert_ne!(p, first, "a quarantined item came back");
        seen.insert(p);
        put(&P, p);
    }
    // The 128th put displaces `first`: now it is really free.
    let s = P.stats();
    assert_eq!(s.nout as usize, POOL_QUARANTINE_DEPTH);
    let p = P.get(PrFlags::WAITOK).unwrap();
    put(&P, p);
    assert_eq!(P.stats().nput, 1);
    P.quarantine_flush();
    let s = P.stats();
    assert_eq!((s.nout, s.nput as usize), (0, POOL_QUARANTINE_DEPTH + 1));
    assert_eq!(P.chk(None), Ok(()));
    P.destroy();
}

#[test]
fn notouch_pools_bypass_the_quarantine_and_destroy_flushes() {
    let nt: &'static RawPool = Box::leak(Box::new(RawPool::new(
        PoolConfig::new("q-notouch", 64).flags(PrFlags::NOTOUCH),
    )));
    nt.init();
    let p = nt.get(PrFlags::WAITOK).unwrap();
    put(nt, p);
    assert_eq!(nt.stats().nout, 0);
    nt.destroy();
    let q: &'static RawPool = Box::leak(Box::new(RawPool::new(PoolConfig::new("q-destroy", 64))));
    q.init();
    let p = q.get(PrFlags::WAITOK).unwrap();
    put(q, p);
    assert_eq!(q.stats().nout, 1);
    q.destroy(); // flushes first: not "pool busy"
}
