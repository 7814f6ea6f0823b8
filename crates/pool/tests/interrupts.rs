//! Pools and interrupts: an IPL_NONE pool touched from a handler panics
//! with NetBSD's message; an IPL_VM pool serves PR_NOWAIT gets and puts
//! from handlers firing on every CPU (an interrupt storm) while threads use
//! it too. Every item carries its owner's tag, claimed with a
//! compare-exchange: an item handed out twice is caught at once.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use bsdalloc_platform::{CpuId, Ipl, curcpu, intr_establish, intr_runs, intr_trigger, splvm, splx};
use bsdalloc_pool::*;

static NONE_POOL: RawPool = RawPool::new(PoolConfig::new("i-none", 64));
static NONE_MSG: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn none_handler(_: &'static ()) {
    let r = std::panic::catch_unwind(|| {
        NONE_POOL.get(PrFlags::NOWAIT);
    });
    let msg = r
        .err()
        .and_then(|e| e.downcast::<String>().ok())
        .map(|s| *s);
    *NONE_MSG.lock().unwrap() = msg;
}

#[test]
fn ipl_none_pool_from_interrupt_context_panics() {
    NONE_POOL.init();
    let src = intr_establish(Ipl::Vm, none_handler, &()).unwrap();
    let s = splvm();
    intr_trigger(curcpu(), src);
    splx(s); // runs the handler here, in interrupt context
    assert_eq!(
        NONE_MSG.lock().unwrap().as_deref(),
        Some("pool_get: [i-none] is IPL_NONE, but called from interrupt context")
    );
}

static STORM: RawPool = RawPool::new(PoolConfig::new("i-storm", 64).ipl(Ipl::Vm));
static NEXT_TAG: AtomicU64 = AtomicU64::new(1);
static HANDLER_OK: AtomicU64 = AtomicU64::new(0);
static STOP: AtomicBool = AtomicBool::new(false);
static CPUS: [AtomicU32; 8] = [const { AtomicU32::new(u32::MAX) }; 8];

/// Claim an item: its first word goes from 0 (free) to a fresh tag, and
/// the rest of the item is filled from the tag.
fn claim(p: NonNull<u8>) -> u64 {
    let tag = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
    // SAFETY: 64-byte items, 8-aligned: the first word is an atomic slot
    // shared by whoever (wrongly) holds the item too.
    let w = unsafe { &*p.as_ptr().cast::<AtomicU64>() };
    assert_eq!(
        w.compare_exchange(0, tag, Ordering::AcqRel, Ordering::Relaxed),
        Ok(0),
        "item {p:p} handed out twice"
    );
    // SAFETY: the rest of the item is ours.
    unsafe { p.as_ptr().add(8).write_bytes(tag as u8, 56) };
    tag
}

fn release(p: NonNull<u8>, tag: u64) {
    // SAFETY: as in `claim`.
    let b = unsafe { std::slice::from_raw_parts(p.as_ptr().add(8), 56) };
    assert!(
        b.iter().all(|&x| x == tag as u8),
        "item {p:p} overwritten while out"
    );
    // SAFETY: as in `claim`.
    let w = unsafe { &*p.as_ptr().cast::<AtomicU64>() };
    assert_eq!(
        w.swap(0, Ordering::AcqRel),
        tag,
        "item {p:p} claimed by someone else"
    );
    // SAFETY: an item of STORM, no longer used.
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
fn interrupt_storm_on_an_ipl_vm_pool() {
    STORM.init();
    assert!(
        STORM.layout().usebmap(),
        "the tag word must not be the pool's"
    );
    STORM.setlowat(64); // a reserve for the handlers' PR_NOWAIT gets
    let src = intr_establish(Ipl::Vm, storm_handler, &()).unwrap();
    let workers: Vec<_> = (0..3)
        .map(|w| {
            std::thread::spawn(move || {
                CPUS[w].store(curcpu().0, Ordering::Release);
                let mut live = Vec::new();
                // 20,000 rounds, and on until interrupts have hit both
                // handler outcomes: in release on a loaded machine the
                // rounds can end before the stormer's first signal lands.
                let mut i = 0u32;
                while i < 20_000
                    || ((intr_runs(src) == 0 || HANDLER_OK.load(Ordering::Relaxed) == 0)
                        && i < 20_000_000)
                {
                    i += 1;
                    let p = STORM.get(if i.is_multiple_of(2) {
                        PrFlags::WAITOK
                    } else {
                        PrFlags::NOWAIT
                    });
                    if let Some(p) = p {
                        live.push((p, claim(p)));
                    }
                    if (live.len() > 50 || i.is_multiple_of(7))
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
    for w in workers {
        w.join().unwrap();
    }
    STOP.store(true, Ordering::Relaxed);
    stormer.join().unwrap();
    assert!(intr_runs(src) > 0, "no interrupt ran");
    assert!(
        HANDLER_OK.load(Ordering::Relaxed) > 0,
        "no handler got an item"
    );
    let s = STORM.stats();
    assert_eq!(s.nout, 0);
    assert_eq!(s.nget, s.nput);
    assert_eq!(STORM.chk(Some("storm")), Ok(()));
}
