//! Type limits (M5, spec §5.3): at or above its limit a type refuses
//! `M_NOWAIT`, and `M_WAITOK` sleeps — counted in `ks_limblocks` — until
//! a free of that type (by another thread, or an interrupt handler)
//! brings it below, or the limit is raised. Racing allocations overshoot
//! the limit by at most one block. Attaching gives NetBSD's default
//! limit, 60 % of the kmem arena when there is no memory budget
//! (`nkmempages.rs` has the budget case).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bsdalloc_kmalloc::*;
use bsdalloc_vmem::SizeType;

MALLOC_DEFINE_LIMIT!(M_LIM, "limited", "sleeps at its limit", 8192);
MALLOC_DEFINE_LIMIT!(M_RAISE, "raised", "limit raised while asleep", 4096);
MALLOC_DEFINE_LIMIT!(M_RACE, "race", "racing to the limit", 64 * 1024);
MALLOC_DEFINE!(M_DEFLIM, "deflimit", "default limit");
MALLOC_DEFINE!(M_FREE_OF_LIMITS, "nolimit", "other types are not held up");

/// Wait until `t` has `n` sleeps at its limit.
fn await_limblocks(t: &MallocType, n: u64) {
    while t.stats().limblocks < n {
        std::thread::yield_now();
    }
}

#[test]
fn m_waitok_sleeps_at_the_limit_until_another_thread_frees() {
    // Two 4 KiB blocks (4000 + header: kmem's 4096 class) fill the limit.
    let a = malloc(4000, &M_LIM, M_WAITOK).unwrap();
    let b = malloc(4000, &M_LIM, M_WAITOK).unwrap();
    assert_eq!(M_LIM.stats().memuse, 8192);
    assert!(malloc(1, &M_LIM, M_NOWAIT).is_none(), "M_NOWAIT fails");
    assert_eq!(M_LIM.stats().limblocks, 0, "M_NOWAIT does not count");
    // Other types are not held up.
    let o = malloc(4000, &M_FREE_OF_LIMITS, M_WAITOK).unwrap();
    // SAFETY: ours.
    unsafe { free(o.as_ptr(), &M_FREE_OF_LIMITS) };

    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let sleeper = s.spawn(|| {
            let p = malloc(100, &M_LIM, M_WAITOK | M_ZERO).unwrap();
            done.store(true, Ordering::Release);
            p.as_ptr().addr()
        });
        await_limblocks(&M_LIM, 1);
        assert!(!done.load(Ordering::Acquire), "it must be asleep");
        // A free of this type wakes it.
        // SAFETY: ours.
        unsafe { free(a.as_ptr(), &M_LIM) };
        let addr = sleeper.join().unwrap();
        assert!(done.load(Ordering::Acquire));
        let p = std::ptr::NonNull::new(addr as *mut u8).unwrap();
        // SAFETY: the sleeper's block, handed over.
        unsafe { free(p.as_ptr(), &M_LIM) };
    });
    // SAFETY: ours.
    unsafe { free(b.as_ptr(), &M_LIM) };
    let s = M_LIM.stats();
    assert_eq!((s.inuse, s.memuse, s.calls), (0, 0, 3));
    assert!(s.limblocks >= 1);
    assert_eq!(s.maxused, 8192);
    assert!(malloc_stats().to_string().contains("      limited"));
}

#[test]
fn raising_the_limit_wakes_sleepers() {
    let a = malloc(4000, &M_RAISE, M_WAITOK).unwrap();
    std::thread::scope(|s| {
        let sleepers: Vec<_> = (0..2)
            .map(|_| s.spawn(|| malloc(1000, &M_RAISE, M_WAITOK).unwrap().as_ptr().addr()))
            .collect();
        await_limblocks(&M_RAISE, 2);
        malloc_type_setlimit(&M_RAISE, 1 << 20);
        assert_eq!(M_RAISE.limit(), 1 << 20);
        for t in sleepers {
            let p = t.join().unwrap() as *mut u8;
            // SAFETY: a sleeper's block, handed over.
            unsafe { free(p, &M_RAISE) };
        }
    });
    // SAFETY: ours.
    unsafe { free(a.as_ptr(), &M_RAISE) };
    assert_eq!(M_RAISE.stats().memuse, 0);
}

#[test]
fn racing_allocations_overshoot_by_at_most_one_block() {
    const BLOCK: usize = 1000; // kmem's 1024 class with the header
    let limit = M_RACE_LIMIT;
    let reserved = backend()
        .allocated_size(BLOCK + MALLOC_HEADER_SIZE)
        .unwrap();
    let peak = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut mine = Vec::new();
                for round in 0..300 {
                    while let Some(p) = malloc(BLOCK, &M_RACE, M_NOWAIT) {
                        mine.push(p.as_ptr().addr());
                        peak.fetch_max(M_RACE.stats().memuse, Ordering::Relaxed);
                    }
                    // At the limit: every reservation saw the type below
                    // it, so the overshoot is under one block.
                    let m = M_RACE.stats().memuse;
                    assert!(m < limit + reserved, "memuse {m}");
                    let keep = round % 3;
                    while mine.len() > keep {
                        let p = mine.pop().unwrap() as *mut u8;
                        // SAFETY: ours.
                        unsafe { free(p, &M_RACE) };
                    }
                }
                for p in mine {
                    // SAFETY: ours.
                    unsafe { free(p as *mut u8, &M_RACE) };
                }
            });
        }
    });
    let s = M_RACE.stats();
    assert_eq!((s.inuse, s.memuse), (0, 0));
    assert!(s.maxused >= limit, "the limit was reached");
    assert!(s.maxused < limit + reserved, "HighUse {}", s.maxused);
    assert!(peak.load(Ordering::Relaxed) <= s.maxused);
}

const M_RACE_LIMIT: usize = 64 * 1024;

#[test]
fn attach_sets_netbsds_default_limit() {
    assert!(!M_DEFLIM.is_attached());
    assert_eq!(M_DEFLIM.limit(), usize::MAX);
    let p = malloc(8, &M_DEFLIM, M_WAITOK).unwrap();
    let kmemsize = backend().map().kmem_arena().size(SizeType::ALL);
    assert_eq!(M_DEFLIM.limit(), kmemsize / 10 * 6);
    // SAFETY: ours.
    unsafe { free(p.as_ptr(), &M_DEFLIM) };
}
