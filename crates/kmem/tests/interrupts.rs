//! An interrupt storm: handlers on every CPU allocate and free with
//! `kmem_intr_*` (small classes and whole pages) while threads use the
//! plain calls on the same caches. Every block carries its owner's tag,
//! claimed with a compare-exchange, so a block handed out twice is caught
//! at once; fills are checked at free; at the end the census is zero.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use bsdalloc_kmem::*;
use bsdalloc_platform::{CpuId, Ipl, curcpu, intr_establish, intr_runs, intr_trigger};

static NEXT_TAG: AtomicU64 = AtomicU64::new(1);
static HANDLER_OK: AtomicU64 = AtomicU64::new(0);
static STOP: AtomicBool = AtomicBool::new(false);
static CPUS: [AtomicU32; 8] = [const { AtomicU32::new(u32::MAX) }; 8];

/// Sizes used: every one holds the 8-byte tag.
const SIZES: [usize; 8] = [8, 24, 64, 200, 1000, 3000, 5000, 20000];

fn claim(p: NonNull<u8>, size: usize) -> u64 {
    let tag = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
    // SAFETY: at least 8 bytes, 8-aligned: the first word is an atomic
    // slot shared with whoever (wrongly) holds the block too; a second
    // holder's tag makes the first one's `release` fail.
    let w = unsafe { &*p.as_ptr().cast::<AtomicU64>() };
    w.store(tag, Ordering::Release);
    // SAFETY: the rest of the block is ours.
    unsafe { p.as_ptr().add(8).write_bytes(tag as u8, size - 8) };
    tag
}

fn release(p: NonNull<u8>, size: usize, tag: u64, intr: bool) {
    // SAFETY: as in `claim`.
    let b = unsafe { std::slice::from_raw_parts(p.as_ptr().add(8), size - 8) };
    assert!(
        b.iter().all(|&x| x == tag as u8),
        "block {p:p} overwritten while out"
    );
    // SAFETY: as in `claim`.
    let w = unsafe { &*p.as_ptr().cast::<AtomicU64>() };
    assert_eq!(
        w.load(Ordering::Acquire),
        tag,
        "block {p:p} claimed by someone else"
    );
    // SAFETY: ours, with its size.
    unsafe {
        if intr {
            kmem_intr_free(p.as_ptr(), size);
        } else {
            kmem_free(p.as_ptr(), size);
        }
    }
}

fn storm_handler(_: &'static ()) {
    let mut held = [None; 4];
    for (i, h) in held.iter_mut().enumerate() {
        let size = SIZES[(i * 3 + curcpu().index()) % SIZES.len()];
        let p = if i % 2 == 0 {
            kmem_intr_alloc(size, KM_NOSLEEP)
        } else {
            kmem_intr_zalloc(size, KM_NOSLEEP)
        };
        if let Some(p) = p {
            *h = Some((p, size, claim(p, size)));
        }
    }
    for (p, size, t) in held.into_iter().flatten() {
        release(p, size, t, true);
        HANDLER_OK.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn interrupt_storm_with_kmem_intr() {
    // First use in thread context.
    let p = kmem_alloc(8, KM_SLEEP).unwrap();
    // SAFETY: ours.
    unsafe { kmem_free(p.as_ptr(), 8) };
    let src = intr_establish(Ipl::Vm, storm_handler, &()).unwrap();
    let workers: Vec<_> = (0..3)
        .map(|w| {
            std::thread::spawn(move || {
                CPUS[w].store(curcpu().0, Ordering::Release);
                let mut live = Vec::new();
                for i in 0..6000usize {
                    let size = SIZES[(i * 7 + w) % SIZES.len()];
                    let flags = if i % 2 == 0 { KM_SLEEP } else { KM_NOSLEEP };
                    if let Some(p) = kmem_alloc(size, flags) {
                        live.push((p, size, claim(p, size)));
                    }
                    if (live.len() > 30 || i % 3 == 0)
                        && let Some((p, s, t)) = live.pop()
                    {
                        release(p, s, t, false);
                    }
                }
                for (p, s, t) in live {
                    release(p, s, t, false);
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
        "no handler got memory"
    );
    let c = kmem().census();
    assert_eq!(c.outstanding(), 0, "census: {c:?}");
    for pc in (0..MAX_CLASSES).filter_map(|i| kmem().cache(i)) {
        assert_eq!(pc.pool().chk(Some("kmem storm")), Ok(()));
    }
}
