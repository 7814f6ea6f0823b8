//! The typed layer: `PoolCache<T>` constructs a `T` only when an object
//! leaves the pool, boxes go back constructed, the destructor and `T`'s
//! drop run when objects go back to the pool, a failing constructor gives
//! `None`, and boxes may be dropped on another thread.

use std::sync::atomic::{AtomicU64, Ordering};

use bsdalloc_platform::Ipl;
use bsdalloc_pool::PrFlags;
use bsdalloc_pool_cache::*;

static MADE: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static DTORS: AtomicU64 = AtomicU64::new(0);

struct Conn {
    buf: Vec<u8>,
    uses: u32,
}

impl Drop for Conn {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

fn make(flags: PrFlags) -> Option<Conn> {
    if flags.contains(PrFlags::NOWAIT) && MADE.load(Ordering::SeqCst) >= 100 {
        return None;
    }
    MADE.fetch_add(1, Ordering::SeqCst);
    Some(Conn {
        buf: vec![7; 256],
        uses: 0,
    })
}

fn dtor(c: &mut Conn) {
    assert_eq!(c.buf.len(), 256);
    DTORS.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn typed_cache_lifecycle() {
    let cache: PoolCache<Conn> =
        PoolCache::with_ops(PoolCacheConfig::new("typed-conn", 0), make, Some(dtor));
    std::thread::scope(|s| {
        s.spawn(|| {
            let boxes: Vec<_> = (0..10).map(|_| cache.get()).collect();
            assert_eq!(MADE.load(Ordering::SeqCst), 10);
            drop(boxes);
            for _ in 0..100 {
                let mut c = cache.get();
                c.uses += 1;
                assert_eq!(c.buf[255], 7);
            }
            assert_eq!(MADE.load(Ordering::SeqCst), 10, "hits construct nothing");
            let all: Vec<_> = (0..10).map(|_| cache.get()).collect();
            let total: u32 = all.iter().map(|c| c.uses).sum();
            drop(all);
            assert_eq!(total, 100, "boxes come back as they were left");
            // Handed to another thread and dropped there.
            let b = cache.get();
            std::thread::scope(|t| {
                t.spawn(move || drop(b));
            });
            // destruct: straight to the pool, destructor and drop now.
            let d0 = DTORS.load(Ordering::SeqCst);
            cache.get().destruct();
            assert_eq!(DTORS.load(Ordering::SeqCst), d0 + 1);
        });
    });
    // A constructor that fails gives None.
    MADE.store(100, Ordering::SeqCst);
    let s = cache.raw().stats();
    std::thread::scope(|t| {
        t.spawn(|| {
            // A fresh CPU: nothing cached, so the get reaches the
            // constructor.
            assert!(cache.try_get(PrFlags::NOWAIT).is_none());
        });
    });
    assert_eq!(cache.raw().stats().pool.nout, s.pool.nout);
    drop(cache);
    assert_eq!(DTORS.load(Ordering::SeqCst), 10);
    assert_eq!(
        DROPPED.load(Ordering::SeqCst),
        10,
        "every T dropped exactly once"
    );
}

#[test]
fn plain_constructor() {
    let cache: PoolCache<[u64; 8]> = PoolCache::new("typed-plain", Ipl::Vm, || [3; 8]);
    let mut v = cache.get();
    v[0] = 9;
    drop(v);
    let v = cache.get();
    assert_eq!(v[0], 9, "the same object, as left");
    assert_eq!(v[7], 3);
    assert_eq!(format!("{v:?}"), "[9, 3, 3, 3, 3, 3, 3, 3]");
}
