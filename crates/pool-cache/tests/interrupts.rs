//! Caches and interrupts: an IPL_NONE cache used from a handler panics
//! with NetBSD's message (debug builds: a DIAGNOSTIC check on the fast
//! path); an IPL_VM cache serves PR_NOWAIT gets and puts from handlers
//! firing on every CPU (an interrupt storm) while threads use it and
//! another thread invalidates it. Every object carries its owner's tag,
//! claimed with a compare-exchange: an object handed out twice is caught
//! at once.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use bsdalloc_platform::{CpuId, Ipl, curcpu, intr_establish, intr_runs, intr_trigger};
use bsdalloc_pool::PrFlags;
use bsdalloc_pool_cache::*;

#[cfg(debug_assertions)]
#[test]
fn ipl_none_cache_from_interrupt_context_panics() {
    use bsdalloc_platform::{splvm, splx};
    static NONE: RawPoolCache = RawPoolCache::new(PoolCacheConfig::new("i-none", 64));
    static MSG: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    fn handler(_: &'static ()) {
        let r = std::panic::catch_unwind(|| {
            NONE.get(PrFlags::NOWAIT);
        });
        *MSG.lock().unwrap() = r
            .err()
            .and_then(|e| e.downcast::<String>().ok())
            .map(|s| *s);
    }
    NONE.bootstrap();
    let src = intr_establish(Ipl::Vm, handler, &()).unwrap();
    let s = splvm();
    intr_trigger(curcpu(), src);
    splx(s);
    assert_eq!(
        MSG.lock().unwrap().as_deref(),
        Some("pool_cache_get: [i-none] is IPL_NONE, but called from interrupt context")
    );
}

/// A constructed object: its first word is 0 while nobody holds it.
fn ctor(obj: NonNull<u8>, _: PrFlags) -> Result<(), CtorFailed> {
    // SAFETY: a raw 64-byte, 8-aligned object.
    unsafe { obj.as_ptr().cast::<u64>().write(0) };
    Ok(())
}

static STORM: RawPoolCache = RawPoolCache::new(
    PoolCacheConfig::new("i-storm", 64)
        .ipl(Ipl::Vm)
        .ctor(&(ctor as fn(NonNull<u8>, PrFlags) -> Result<(), CtorFailed>)),
);
static NEXT_TAG: AtomicU64 = AtomicU64::new(1);
static HANDLER_OK: AtomicU64 = AtomicU64::new(0);
static STOP: AtomicBool = AtomicBool::new(false);
static CPUS: [AtomicU32; 8] = [const { AtomicU32::new(u32::MAX) }; 8];

fn claim(p: NonNull<u8>) -> u64 {
    let tag = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
    // SAFETY: 64-byte, 8-aligned objects: the first word is an atomic slot
    // shared with whoever (wrongly) holds the object too.
    let w = unsafe { &*p.as_ptr().cast::<AtomicU64>() };
    assert_eq!(
        w.compare_exchange(0, tag, Ordering::AcqRel, Ordering::Relaxed),
        Ok(0),
        "object {p:p} handed out twice"
    );
    // SAFETY: the rest of the object is ours.
    unsafe { p.as_ptr().add(8).write_bytes(tag as u8, 56) };
    tag
}

fn release(p: NonNull<u8>, tag: u64) {
    // SAFETY: as in `claim`.
    let b = unsafe { std::slice::from_raw_parts(p.as_ptr().add(8), 56) };
    assert!(
        b.iter().all(|&x| x == tag as u8),
        "object {p:p} overwritten while out"
    );
    // SAFETY: as in `claim`.
    let w = unsafe { &*p.as_ptr().cast::<AtomicU64>() };
    assert_eq!(
        w.swap(0, Ordering::AcqRel),
        tag,
        "object {p:p} claimed by someone else"
    );
    // SAFETY: a constructed object of STORM, no longer used.
    unsafe { STORM.put(p) };
}

fn storm_handler(_: &'static ()) {
    let mut held = [None; 4];
    for h in held.iter_mut() {
        if let Some(p) = STORM.get(PrFlags::NOWAIT) {
            *h = Some((p, claim(p)));
        }
    }
    for (p, t) in held.into_iter().flatten() {
        release(p, t);
        HANDLER_OK.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn interrupt_storm_on_an_ipl_vm_cache() {
    STORM.bootstrap();
    STORM.setlowat(64); // a reserve for the handlers' PR_NOWAIT misses
    let src = intr_establish(Ipl::Vm, storm_handler, &()).unwrap();
    let workers: Vec<_> = (0..3)
        .map(|w| {
            std::thread::spawn(move || {
                CPUS[w].store(curcpu().0, Ordering::Release);
                let mut live = Vec::new();
                for i in 0..30_000u32 {
                    let p = STORM.get(if i % 2 == 0 {
                        PrFlags::WAITOK
                    } else {
                        PrFlags::NOWAIT
                    });
                    if let Some(p) = p {
                        live.push((p, claim(p)));
                    }
                    if (live.len() > 40 || i % 3 == 0)
                        && let Some((p, t)) = live.pop()
                    {
                        release(p, t);
                    }
                }
                for (p, t) in live {
                    release(p, t);
                }
            })
        })
        .collect();
    let stormer = std::thread::spawn(move || {
        while !STOP.load(Ordering::Relaxed) {
            for c in &CPUS {
                let c = c.load(Ordering::Acquire);
                if c != u32::MAX {
                    intr_trigger(CpuId(c), src);
                }
            }
            std::thread::yield_now();
        }
    });
    let invalidator = std::thread::spawn(move || {
        let mut n = 0;
        while !STOP.load(Ordering::Relaxed) {
            STORM.invalidate();
            n += 1;
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        n
    });
    for w in workers {
        w.join().unwrap();
    }
    STOP.store(true, Ordering::Relaxed);
    stormer.join().unwrap();
    let invalidations = invalidator.join().unwrap();
    assert!(intr_runs(src) > 0, "no interrupt ran");
    assert!(
        HANDLER_OK.load(Ordering::Relaxed) > 0,
        "no handler got an object"
    );
    assert!(invalidations > 0);
    STORM.invalidate();
    let s = STORM.stats();
    assert_eq!(s.pool.nout, 0, "every object back in the pool");
    assert_eq!(s.cpu_cached, 0);
    assert_eq!(STORM.pool().chk(Some("storm")), Ok(()));
}
