//! Stress (mimalloc test-stress shape, small for CI): more threads than
//! cores over three caches (normal and large groups), each object filled
//! with a pattern derived from its owner tag and checked when it is given
//! back, a quarter of the objects handed to other threads, threads torn
//! down and recreated each round, an invalidator running throughout. At
//! the end: every object back in its pool, every group freed, constructors
//! and destructors balanced (the census). Alone in its binary: the group
//! count is global.

use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bsdalloc_pool::PrFlags;
use bsdalloc_pool_cache::*;

struct Ops {
    size: usize,
    ctors: AtomicU64,
    dtors: AtomicU64,
}

impl ObjectCtor for Ops {
    fn construct(&self, obj: NonNull<u8>, _: PrFlags) -> Result<(), CtorFailed> {
        // SAFETY: a raw object of `size` bytes.
        unsafe { obj.as_ptr().write_bytes(0xee, self.size) };
        self.ctors.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl ObjectDtor for Ops {
    fn destruct(&self, obj: NonNull<u8>) {
        // SAFETY: a constructed object of `size` bytes.
        let b = unsafe { std::slice::from_raw_parts(obj.as_ptr(), self.size) };
        assert!(b.iter().all(|&x| x == 0xee), "a cached object was written");
        self.dtors.fetch_add(1, Ordering::Relaxed);
    }
}

struct Obj {
    cache: usize,
    p: NonNull<u8>,
    tag: u8,
}
// SAFETY: an object handed between threads, owned by one at a time.
unsafe impl Send for Obj {}

fn fill(o: &Obj, size: usize) {
    // SAFETY: the object's bytes, ours.
    unsafe { o.p.as_ptr().write_bytes(o.tag, size) };
}

fn check_and_put(o: Obj, caches: &[(&'static RawPoolCache, &'static Ops)]) {
    let (pc, ops) = caches[o.cache];
    // SAFETY: as above.
    let b = unsafe { std::slice::from_raw_parts(o.p.as_ptr(), ops.size) };
    assert!(
        b.iter().all(|&x| x == o.tag),
        "object {:p} overwritten",
        o.p
    );
    // Back to the constructed state before the put.
    // SAFETY: as above.
    unsafe { o.p.as_ptr().write_bytes(0xee, ops.size) };
    // SAFETY: a constructed object of pc, given back once.
    unsafe { pc.put(o.p) };
}

#[test]
fn threads_rounds_handoffs_and_census() {
    let caches: Vec<(&'static RawPoolCache, &'static Ops)> = [
        (32usize, PrFlags::empty()),
        (200, PrFlags::empty()),
        (1024, PrFlags::LARGECACHE),
    ]
    .into_iter()
    .map(|(size, flags)| {
        let ops: &'static Ops = Box::leak(Box::new(Ops {
            size,
            ctors: AtomicU64::new(0),
            dtors: AtomicU64::new(0),
        }));
        let name: &'static str = Box::leak(format!("stress-{size}").into_boxed_str());
        let pc = pool_cache_init(
            PoolCacheConfig::new(name, size)
                .flags(flags)
                .ctor(ops)
                .dtor(ops),
        );
        (pc, ops)
    })
    .collect();
    let caches: &'static [(&'static RawPoolCache, &'static Ops)] =
        Box::leak(caches.into_boxed_slice());
    let handoff: &'static Mutex<Vec<Obj>> = Box::leak(Box::new(Mutex::new(Vec::new())));
    let stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let invalidator = std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            for (pc, _) in caches {
                pc.invalidate();
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    });
    let threads = 6;
    let ops = if cfg!(debug_assertions) {
        4_000
    } else {
        40_000
    };
    for round in 0..3u64 {
        let ts: Vec<_> = (0..threads)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (round * 31 + t);
                    let mut live: Vec<Obj> = Vec::new();
                    for i in 0..ops {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let c = (rng % 3) as usize;
                        if rng % 5 < 3 || live.is_empty() {
                            let flags = if i % 2 == 0 {
                                PrFlags::WAITOK
                            } else {
                                PrFlags::NOWAIT
                            };
                            if let Some(p) = caches[c].0.get(flags) {
                                let o = Obj {
                                    cache: c,
                                    p,
                                    tag: (rng >> 40) as u8 | 1,
                                };
                                fill(&o, caches[c].1.size);
                                live.push(o);
                            }
                        } else {
                            let k = (rng >> 20) as usize % live.len();
                            let o = live.swap_remove(k);
                            if rng.is_multiple_of(4) {
                                handoff.lock().unwrap().push(o);
                            } else {
                                check_and_put(o, caches);
                            }
                        }
                        if live.len() > 300 {
                            let o = live.swap_remove(0);
                            check_and_put(o, caches);
                        }
                        if i % 64 == 0 {
                            let taken: Vec<Obj> = std::mem::take(&mut *handoff.lock().unwrap());
                            for o in taken {
                                check_and_put(o, caches);
                            }
                        }
                    }
                    for o in live {
                        check_and_put(o, caches);
                    }
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    invalidator.join().unwrap();
    for o in std::mem::take(&mut *handoff.lock().unwrap()) {
        check_and_put(o, caches);
    }
    for &(pc, ops) in caches {
        pc.invalidate();
        let s = pc.stats();
        assert_eq!(s.pool.nout, 0, "{}: objects lost", s.name);
        assert_eq!(s.cpu_cached, 0);
        assert_eq!((s.nfull, s.npartial), (0, 0));
        assert_eq!(
            ops.ctors.load(Ordering::Relaxed),
            ops.dtors.load(Ordering::Relaxed),
            "{}: constructors and destructors unbalanced",
            s.name
        );
        assert!(
            s.nhit_pcpu > 0 && s.nhit_global > 0,
            "{}: the layers were used: {s:?}",
            s.name
        );
    }
    assert_eq!(pool_cache_groups_out(), 0, "groups lost");
    for &(pc, _) in caches {
        // SAFETY: nobody uses the caches any more.
        unsafe { pool_cache_destroy(pc) };
    }
}
