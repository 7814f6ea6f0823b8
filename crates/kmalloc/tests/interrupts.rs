//! An interrupt storm: handlers on every CPU malloc (`M_NOWAIT`, small
//! and page-aligned, some `M_ZERO`), realloc and free, while threads use
//! `M_WAITOK` and `M_NOWAIT` on the same types — one of them limited, so
//! threads sleep at its limit and frees in handlers wake them. Every block
//! carries its owner's tag, claimed with a compare-exchange, so a block
//! handed out twice is caught at once; fills are checked at free; the
//! types' Requests equal the successes counted on both sides; at the end
//! every type is back to zero.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use bsdalloc_kmalloc::*;
use bsdalloc_platform::{CpuId, Ipl, curcpu, intr_establish, intr_runs, intr_trigger};

MALLOC_DEFINE!(M_STORM, "storm", "interrupt storm");
MALLOC_DEFINE_LIMIT!(
    M_STORMLIM,
    "stormlim",
    "interrupt storm at a limit",
    16 * 1024
);

static TYPES: [&MallocType; 3] = [&M_STORM, &M_STORMLIM, &M_TEMP];
/// Successful allocations per type (realloc that moved included).
static CALLS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static NEXT_TAG: AtomicU64 = AtomicU64::new(1);
static HANDLER_OK: AtomicU64 = AtomicU64::new(0);
static STOP: AtomicBool = AtomicBool::new(false);
static CPUS: [AtomicU32; 8] = [const { AtomicU32::new(u32::MAX) }; 8];

/// Sizes used: every one holds the 8-byte tag.
const SIZES: [usize; 8] = [8, 24, 64, 200, 1000, 3000, 5000, 20000];

fn claim(p: NonNull<u8>, size: usize) -> u64 {
    let tag = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
    // SAFETY: at least 8 bytes, 8-aligned: the first word is an atomic
    // slot shared with whoever (wrongly) holds the block too.
    let w = unsafe { &*p.as_ptr().cast::<AtomicU64>() };
    w.store(tag, Ordering::Release);
    // SAFETY: the rest of the block is ours.
    unsafe { p.as_ptr().add(8).write_bytes(tag as u8, size - 8) };
    tag
}

fn check(p: NonNull<u8>, size: usize, tag: u64) {
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
}

fn release(p: NonNull<u8>, t: usize, size: usize, tag: u64) {
    check(p, size, tag);
    // SAFETY: ours, of type `t`.
    unsafe { free(p.as_ptr(), TYPES[t]) };
}

fn storm_handler(_: &'static ()) {
    let cpu = curcpu().index();
    let mut held = [None; 4];
    for (i, h) in held.iter_mut().enumerate() {
        let t = (i + cpu) % TYPES.len();
        let size = SIZES[(i * 3 + cpu) % SIZES.len()];
        let flags = if i % 2 == 0 {
            M_NOWAIT
        } else {
            M_NOWAIT | M_ZERO
        };
        if let Some(p) = malloc(size, TYPES[t], flags) {
            CALLS[t].fetch_add(1, Ordering::Relaxed);
            if flags.contains(M_ZERO) {
                // SAFETY: `size` bytes.
                let b = unsafe { std::slice::from_raw_parts(p.as_ptr(), size) };
                assert!(b.iter().all(|&x| x == 0), "M_ZERO in a handler");
            }
            *h = Some((p, t, size, claim(p, size)));
        }
    }
    // Grow one block in the handler.
    if let Some((p, t, size, tag)) = held[0] {
        check(p, size, tag);
        let n = size * 2;
        // SAFETY: ours, of type `t`.
        if let Some(q) = unsafe { realloc(p.as_ptr(), n, TYPES[t], M_NOWAIT) } {
            CALLS[t].fetch_add(1, Ordering::Relaxed);
            held[0] = Some((q, t, n, claim(q, n)));
        }
    }
    for (p, t, size, tag) in held.into_iter().flatten() {
        release(p, t, size, tag);
        HANDLER_OK.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn interrupt_storm_with_m_nowait() {
    // First use of every type in thread context (kmem boots, types attach).
    for t in TYPES {
        let p = malloc(8, t, M_WAITOK).unwrap();
        // SAFETY: ours.
        unsafe { free(p.as_ptr(), t) };
    }
    let base: Vec<u64> = TYPES.iter().map(|t| t.stats().calls).collect();
    let src = intr_establish(Ipl::Vm, storm_handler, &()).unwrap();
    let workers: Vec<_> = (0..3)
        .map(|w| {
            std::thread::spawn(move || {
                CPUS[w].store(curcpu().0, Ordering::Release);
                let mut live = Vec::new();
                for i in 0..4000usize {
                    let t = (i + w) % TYPES.len();
                    let size = SIZES[(i * 7 + w) % SIZES.len()];
                    let flags = if i % 2 == 0 { M_WAITOK } else { M_NOWAIT };
                    if let Some(p) = malloc(size, TYPES[t], flags) {
                        CALLS[t].fetch_add(1, Ordering::Relaxed);
                        live.push((p, t, size, claim(p, size)));
                    }
                    // Keep little of the limited type, so that sleepers
                    // there are always woken by somebody's free.
                    if (live.len() > 24 || i % 3 == 0 || t == 1)
                        && let Some((p, t, s, tag)) = live.pop()
                    {
                        release(p, t, s, tag);
                    }
                }
                for (p, t, s, tag) in live {
                    release(p, t, s, tag);
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
    for (i, t) in TYPES.iter().enumerate() {
        let s = t.stats();
        assert_eq!(
            s.calls - base[i],
            CALLS[i].load(Ordering::Relaxed),
            "{}",
            s.shortdesc
        );
        // M_TEMP is shared with nobody else in this binary.
        assert_eq!((s.inuse, s.memuse), (0, 0), "{s:?}");
    }
}
