//! `VM_SLEEP` allocations wake only when a free can satisfy them, and a
//! sleeper woken in vain passes the wakeup on (issue: many sleepers on one
//! arena collapsed throughput, every free waking every sleeper).

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use bsdalloc_vmem::{Arena, VmFlags};

const SLEEP: VmFlags = VmFlags::SLEEP.union(VmFlags::INSTANTFIT);

fn wait_for_sleeps(a: &Arena, n: u64) {
    while a.stats().counters.sleeps < n {
        std::thread::yield_now();
    }
}

#[test]
fn each_free_of_the_whole_arena_wakes_one_sleeper_not_all() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 25;
    let a = Arc::new(Arena::create("whole", 0x1000, 0x8000, 0x1000).unwrap());
    let hs: Vec<_> = (0..THREADS)
        .map(|_| {
            let a = a.clone();
            std::thread::spawn(move || {
                for _ in 0..ROUNDS {
                    let x = a.alloc(0x8000, SLEEP).unwrap();
                    std::thread::yield_now();
                    a.free(x, 0x8000);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let c = a.stats().counters;
    assert_eq!(c.allocs, (THREADS * ROUNDS) as u64);
    // Each allocation sleeps at most about once: a free wakes the one
    // sleeper the arena can satisfy. A broadcast would make every free put
    // all other sleepers back to sleep: THREADS - 1 sleeps per allocation.
    assert!(
        c.sleeps <= 2 * c.allocs,
        "{} sleeps for {} allocations: frees wake sleepers they cannot satisfy",
        c.sleeps,
        c.allocs
    );
}

#[test]
fn a_sleeper_woken_in_vain_passes_the_wakeup_on() {
    // Quantum 1, span [0, 12): a=[0,3) m1=[3,4) z=[4,8) m2=[8,12).
    let arena = Arc::new(Arena::create("frag", 0, 12, 1).unwrap());
    let a = arena.alloc(3, SLEEP).unwrap();
    let m1 = arena.alloc(1, SLEEP).unwrap();
    let z = arena.alloc(4, SLEEP).unwrap();
    let m2 = arena.alloc(4, SLEEP).unwrap();
    assert_eq!((a, m1, z, m2), (0, 3, 4, 8));
    arena.free(a, 3); // a 3-quantum hole nobody below wants
    let (tx, rx) = mpsc::channel();
    let spawn = |want: usize| {
        let (arena, tx) = (arena.clone(), tx.clone());
        std::thread::spawn(move || {
            let x = arena.alloc(want, SLEEP).unwrap();
            tx.send((want, x)).unwrap();
            x
        })
    };
    let ha = spawn(5);
    wait_for_sleeps(&arena, 1);
    let hb = spawn(4);
    wait_for_sleeps(&arena, 2);
    // Holes of 3 and 4 quanta: 7 free, the largest class reaches 7, so the
    // 5-quantum sleeper (first in line) is woken and fails; it must hand
    // the wakeup to the 4-quantum one, which fits.
    arena.free(z, 4);
    let got = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the 4-quantum sleeper was never woken: the wakeup was lost");
    assert_eq!(got, (4, 4));
    let xb = hb.join().unwrap();
    // Now make room for the 5-quantum one: [0, 8) becomes one hole.
    arena.free(xb, 4);
    arena.free(m1, 1);
    assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), (5, 0));
    let xa = ha.join().unwrap();
    arena.free(xa, 5);
    arena.free(m2, 4);
    arena.assert_sane();
    assert_eq!(arena.stats().inuse, 0);
}

#[test]
fn an_ipl_none_arena_sleeps_on_an_adaptive_lock() {
    let a = Arena::create("adaptive", 0x1000, 0x1000, 0x1000).unwrap();
    // IPL_NONE: NetBSD's MUTEX_DEFAULT is adaptive there, so taking the
    // arena with a spin mutex held is the adaptive mutex's error.
    let spin = bsdalloc_platform::SpinMutex::new(bsdalloc_platform::Ipl::Vm, ());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _g = spin.lock();
        let _ = a.alloc(0x1000, VmFlags::NOSLEEP | VmFlags::INSTANTFIT);
    }));
    let msg = r.unwrap_err();
    let msg = msg
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| msg.downcast_ref::<&str>().copied())
        .unwrap_or("");
    assert!(
        msg.contains("adaptive mutex acquired with a spin mutex held"),
        "{msg}"
    );
}
