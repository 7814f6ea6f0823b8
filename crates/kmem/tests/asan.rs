//! AddressSanitizer sees inside kmem's slabs (the `bsdalloc_asan` tracking
//! hooks): a use after free and an overrun into the rest of the size
//! class's object are reported, though the memory is a pool page that
//! stays mapped. Each bad access runs in a child process (ASan aborts it).
//!
//! Runs under `RUSTFLAGS="-Zsanitizer=address --cfg bsdalloc_asan"`, as
//! `cargo xtask ci --full` does; without the cfg there is nothing to test.
#![cfg(bsdalloc_asan)]

use std::process::Command;

use bsdalloc_kmem::{KM_SLEEP, kmem_alloc, kmem_free};

const CHILD: &str = "BSDALLOC_ASAN_CHILD";

/// Run this test binary's test `name` as a child with `CHILD` set; its
/// status and stderr.
fn child(name: &str) -> (bool, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn in_child(name: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|v| v == name)
}

#[test]
fn use_after_free_is_reported() {
    if in_child("use_after_free_is_reported") {
        let p = kmem_alloc(40, KM_SLEEP).unwrap();
        // SAFETY: 40 bytes of ours, freed once; the read after is the bug
        // under test, of memory that stays mapped (a pool page).
        unsafe {
            p.as_ptr().write_bytes(1, 40);
            kmem_free(p.as_ptr(), 40);
            std::ptr::read_volatile(p.as_ptr().add(8));
        }
        return;
    }
    let (ok, err) = child("use_after_free_is_reported");
    assert!(!ok, "the child survived: {err}");
    assert!(err.contains("use-after-poison"), "{err}");
}

#[test]
fn overrun_into_the_class_tail_is_reported() {
    if in_child("overrun_into_the_class_tail_is_reported") {
        // 40 bytes come from a larger class (48 or 64 bytes): byte 40 is
        // inside the object but not the caller's.
        let p = kmem_alloc(40, KM_SLEEP).unwrap();
        // SAFETY: the write past 40 bytes is the bug under test.
        unsafe { std::ptr::write_volatile(p.as_ptr().add(40), 1) };
        return;
    }
    let (ok, err) = child("overrun_into_the_class_tail_is_reported");
    assert!(!ok, "the child survived: {err}");
    assert!(err.contains("use-after-poison"), "{err}");
}

#[test]
fn objects_going_back_to_their_pool_are_not_reported() {
    // Many objects of every small class freed, the caches drained back to
    // their pools (which write into free items), and allocated again.
    let sizes = [8usize, 24, 40, 100, 200, 300, 500, 1000, 2000, 4000];
    let pool_puts = || -> u64 {
        bsdalloc_kmem::kmem()
            .stats()
            .caches()
            .map(|c| c.pool.nput)
            .sum()
    };
    let before = pool_puts();
    let mut v = Vec::new();
    for round in 0..3 {
        for _ in 0..200 {
            for &s in &sizes {
                let p = kmem_alloc(s, KM_SLEEP).unwrap();
                // SAFETY: s bytes of ours.
                unsafe { p.as_ptr().write_bytes(round as u8, s) };
                v.push((p, s));
            }
        }
        for (p, s) in v.drain(..) {
            // SAFETY: allocated above with this size.
            unsafe { kmem_free(p.as_ptr(), s) };
        }
        bsdalloc_kmem::kmem().reclaim();
    }
    // The destructor ran on objects that went back (unpoisoned, or the
    // pool's own writes would have been reported above).
    assert!(pool_puts() > before, "no object went back to its pool");
}
