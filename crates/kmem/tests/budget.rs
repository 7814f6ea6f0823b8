//! The memory budget: on an instance whose map may commit 64 pages,
//! `KM_NOSLEEP` fails before the limit is passed, and `KM_SLEEP` sleeps
//! until another thread frees memory, then succeeds (K1, K2; spec §8b T1's
//! shape). Guard mode allocates differently (address space of its own
//! per allocation) and is left out.
#![cfg(not(feature = "guard"))]

use std::sync::mpsc;
use std::time::Duration;

use bsdalloc_kmem::*;

static K: Kmem = Kmem::new();

#[test]
fn km_sleep_waits_for_memory_under_the_budget() {
    K.bootstrap(
        KmemConfig::new()
            .va_size(64 << 20)
            .limit_pages(64)
            .free_target_pages(0),
    )
    .unwrap();
    let ps = K.page_size();
    let chunk = 4 * ps;
    let mut held = Vec::new();
    while let Some(p) = K.alloc(chunk, KM_NOSLEEP) {
        held.push(p.as_ptr().addr());
        assert!(held.len() <= 16, "the budget was passed");
    }
    assert!(!held.is_empty());
    assert!(K.stats().large.fails >= 1);
    assert!(K.map().stats().committed_pages <= 64);

    let (tx, rx) = mpsc::channel();
    let sleeper = std::thread::spawn(move || {
        let p = K.alloc(chunk, KM_SLEEP).expect("KM_SLEEP never fails");
        tx.send(p.as_ptr().addr()).unwrap();
        // SAFETY: ours.
        unsafe { K.free(p.as_ptr(), chunk) };
    });
    // Nothing was freed: the sleeper cannot have got memory.
    assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    let freed = held.pop().unwrap();
    let p = K.map().va_ptr(freed).unwrap();
    // SAFETY: ours, with its size.
    unsafe { K.free(p.as_ptr(), chunk) };
    rx.recv()
        .expect("the sleeper got memory once some was freed");
    sleeper.join().unwrap();
    assert!(K.map().stats().sleeps >= 1);
    for a in held {
        let p = K.map().va_ptr(a).unwrap();
        // SAFETY: ours.
        unsafe { K.free(p.as_ptr(), chunk) };
    }
    assert_eq!(K.census().outstanding(), 0);
    // SAFETY: nothing is used any more.
    unsafe { K.destroy() };
}
