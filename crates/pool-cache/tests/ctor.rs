//! Constructors and destructors (C2, C6, C7, C12): objects are constructed
//! only when they leave the pool and destructed only when they go back; a
//! constructor failure returns nothing and gives the raw object back; a put
//! that finds no empty group destructs at once; `destruct_object` bypasses
//! the cache; PR_ZERO with a constructor is refused in debug builds.

use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bsdalloc_pool::PrFlags;
use bsdalloc_pool_cache::*;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts and a fill pattern: a constructed object is 64 bytes of 0xc7
/// whose first byte the destructor checks and clears.
struct Ops {
    ctors: AtomicU64,
    dtors: AtomicU64,
    fail: AtomicBool,
}

impl ObjectCtor for Ops {
    fn construct(&self, obj: NonNull<u8>, _flags: PrFlags) -> Result<(), CtorFailed> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(CtorFailed);
        }
        // SAFETY: a raw object of 64 bytes.
        unsafe {
            assert_ne!(
                obj.as_ptr().read(),
                0xc7,
                "constructed twice without a destructor"
            );
            obj.as_ptr().write_bytes(0xc7, 64);
        }
        self.ctors.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

impl ObjectDtor for Ops {
    fn destruct(&self, obj: NonNull<u8>) {
        // SAFETY: a constructed object of 64 bytes.
        unsafe {
            assert_eq!(
                obj.as_ptr().read(),
                0xc7,
                "destructed an unconstructed object"
            );
            obj.as_ptr().write(0);
        }
        self.dtors.fetch_add(1, Ordering::SeqCst);
    }
}

fn cache(name: &'static str) -> (&'static RawPoolCache, &'static Ops) {
    let ops: &'static Ops = Box::leak(Box::new(Ops {
        ctors: AtomicU64::new(0),
        dtors: AtomicU64::new(0),
        fail: AtomicBool::new(false),
    }));
    let pc = pool_cache_init(PoolCacheConfig::new(name, 64).ctor(ops).dtor(ops));
    (pc, ops)
}

fn counts(ops: &Ops) -> (u64, u64) {
    (
        ops.ctors.load(Ordering::SeqCst),
        ops.dtors.load(Ordering::SeqCst),
    )
}

#[test]
fn constructed_leaving_the_pool_destructed_returning() {
    let _s = serial();
    let (pc, ops) = cache("ctor-c2");
    std::thread::scope(|s| {
        s.spawn(|| {
            let objs: Vec<_> = (0..40).map(|_| pc.get(PrFlags::WAITOK).unwrap()).collect();
            assert_eq!(counts(ops), (40, 0));
            for &o in &objs {
                // SAFETY: constructed objects of pc.
                unsafe { pc.put(o) };
            }
            assert_eq!(counts(ops), (40, 0), "puts into groups construct nothing");
            // 1000 get/put pairs, all hits: no constructor, no destructor.
            for _ in 0..1000 {
                let o = pc.get(PrFlags::NOWAIT).unwrap();
                // SAFETY: constructed, ours.
                assert_eq!(unsafe { o.as_ptr().add(63).read() }, 0xc7);
                // SAFETY: as above.
                unsafe { pc.put(o) };
            }
            assert_eq!(counts(ops), (40, 0));
            // destruct_object bypasses the cache.
            let o = pc.get(PrFlags::NOWAIT).unwrap();
            let out = pc.pool().stats().nout;
            // SAFETY: as above.
            unsafe { pc.destruct_object(o) };
            assert_eq!(counts(ops), (40, 1));
            assert_eq!(pc.pool().stats().nout, out - 1, "C7: straight to the pool");
        });
    });
    // Invalidation destructs what is cached (39 objects) and nothing else.
    pc.invalidate();
    assert_eq!(counts(ops), (40, 40));
    assert_eq!(pc.pool().stats().nout, 0);
    // SAFETY: not used afterwards.
    unsafe { pool_cache_destroy(pc) };
    assert_eq!(counts(ops), (40, 40));
}

#[test]
fn constructor_failure_returns_nothing() {
    let _s = serial();
    let (pc, ops) = cache("ctor-fail");
    ops.fail.store(true, Ordering::SeqCst);
    assert!(pc.get(PrFlags::WAITOK).is_none(), "even with PR_WAITOK");
    assert!(pc.get(PrFlags::NOWAIT).is_none());
    let s = pc.pool().stats();
    assert_eq!(
        (s.nget, s.nput, s.nout),
        (2, 2, 0),
        "the raw object went back"
    );
    assert_eq!(
        counts(ops),
        (0, 0),
        "no destructor for what was never constructed"
    );
    ops.fail.store(false, Ordering::SeqCst);
    let o = pc.get(PrFlags::WAITOK).unwrap();
    // SAFETY: constructed, ours.
    unsafe { pc.put(o) };
    pc.invalidate();
    assert_eq!(counts(ops), (1, 1));
    // SAFETY: not used afterwards.
    unsafe { pool_cache_destroy(pc) };
}

#[test]
fn a_put_without_an_empty_group_destructs_at_once() {
    let _s = serial();
    let (pc, ops) = cache("ctor-c6");
    pc.invalidate(); // no empty groups anywhere
    pool_cache_set_disabled(true);
    std::thread::scope(|s| {
        s.spawn(|| {
            let o = pc.get(PrFlags::WAITOK).unwrap();
            // SAFETY: constructed, ours.
            unsafe { pc.put(o) };
            assert_eq!(counts(ops), (1, 1), "destructed by the put");
            assert_eq!(pc.pool().stats().nout, 0, "and back in the pool");
            let s = pc.local_stats();
            assert_eq!((s.misses, s.pcmisses, s.hits), (2, 2, 0));
        });
    });
    pool_cache_set_disabled(false);
    // SAFETY: not used afterwards.
    unsafe { pool_cache_destroy(pc) };
}

#[test]
fn pserialize_caches_destruct_after_a_barrier() {
    let _s = serial();
    let ops: &'static Ops = Box::leak(Box::new(Ops {
        ctors: AtomicU64::new(0),
        dtors: AtomicU64::new(0),
        fail: AtomicBool::new(false),
    }));
    let pc = pool_cache_init(
        PoolCacheConfig::new("ctor-pser", 64)
            .flags(PrFlags::PSERIALIZE)
            .ctor(ops)
            .dtor(ops),
    );
    let objs: Vec<_> = (0..20).map(|_| pc.get(PrFlags::WAITOK).unwrap()).collect();
    for o in objs {
        // SAFETY: constructed, ours.
        unsafe { pc.put(o) };
    }
    pc.invalidate();
    assert_eq!(counts(ops), (20, 20));
    // SAFETY: not used afterwards.
    unsafe { pool_cache_destroy(pc) };
}

#[cfg(debug_assertions)]
#[test]
fn pr_zero_with_a_constructor_is_refused() {
    let (pc, _ops) = cache("ctor-zero");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pc.get(PrFlags::WAITOK | PrFlags::ZERO)
    }));
    let msg = r.unwrap_err().downcast::<String>().unwrap();
    assert_eq!(
        *msg,
        "pool_cache_get: [ctor-zero] PR_ZERO with a constructor"
    );
}
