//! Valgrind's memcheck sees inside kmem's slabs (the `bsdalloc_valgrind`
//! tracking hooks): a use after free, an overrun into the rest of the
//! size class's object (or of a large allocation's last page), a double
//! free and a leak of a kmem block are reported, though the memory is a
//! pool page that stays mapped; kmem's own work on objects is not: debug
//! footers, redzones and poison (with `debug-all`), objects going back to
//! their pools and coming out again (the constructor poisons them with
//! `debug-all`).
//!
//! Each case runs as a child: this test binary under `valgrind`, with the
//! case's name as the filter and `BSDALLOC_VALGRIND_CHILD` set, and the
//! parent reads memcheck's report. The children set up a 1 GiB kernel
//! map first: Valgrind cannot reserve the default 64 GiB.
//!
//! Runs under `RUSTFLAGS="--cfg bsdalloc_valgrind"` (as `cargo xtask ci
//! --full` does, with and without `debug-all`), with `valgrind` on the
//! `PATH`; without the cfg there is nothing to test. Run as a whole under
//! Valgrind, the clean case runs in place and the bad ones say so and
//! pass. Guard mode has no hooks (its allocations end at unmapped pages).
#![cfg(all(bsdalloc_valgrind, not(feature = "guard")))]

mod common;

use std::process::Command;
use std::ptr::NonNull;
use std::sync::Once;

use bsdalloc_kmem::{
    KM_SLEEP, KmemBox, KmemSlice, kmem, kmem_alloc, kmem_asprintf, kmem_free, kmem_zalloc,
};
use bsdalloc_uvm_pages::{KernelMap, KmConfig};
use crabgrind::RunMode;

const CHILD: &str = "BSDALLOC_VALGRIND_CHILD";

/// The exit status memcheck gives a run with errors.
const ERROR_EXIT: i32 = 99;

fn on_valgrind() -> bool {
    crabgrind::run_mode() != RunMode::Native
}

/// A kernel map Valgrind can reserve, for the default instance.
fn small_map() {
    static MAP: Once = Once::new();
    MAP.call_once(|| {
        let map = KernelMap::bootstrap(KmConfig {
            size: 1 << 30,
            ..KmConfig::new()
        })
        .unwrap();
        bsdalloc_pool::pool_subsystem_init(map);
    });
}

/// Whether this process is the child for `name` (it must be on Valgrind:
/// the bad cases are undefined behaviour a native run would not see).
fn in_child(name: &str) -> bool {
    let child = std::env::var(CHILD).is_ok_and(|v| v == name);
    if child {
        assert!(on_valgrind(), "{CHILD}={name} outside Valgrind");
        small_map();
    }
    child
}

/// The parent of a bad case when the whole binary runs on Valgrind: the
/// errors would be this run's.
fn nested(name: &str) -> bool {
    let on = on_valgrind();
    if on {
        eprintln!("{name}: already on Valgrind; run natively to check the report");
    }
    on
}

/// What memcheck said about one child.
struct Report {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Report {
    /// The number in memcheck's "ERROR SUMMARY: N errors".
    fn errors(&self) -> usize {
        let tail = self
            .stderr
            .split("ERROR SUMMARY: ")
            .nth(1)
            .unwrap_or_else(|| panic!("no ERROR SUMMARY from memcheck:\n{}", self.stderr));
        tail.split(' ').next().unwrap().parse().unwrap()
    }

    fn has(&self, what: &str) -> bool {
        self.stderr.contains(what)
    }
}

/// Run this test binary's test `name` under memcheck, as the child.
fn memcheck(name: &str) -> Report {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("valgrind")
        .arg(format!("--error-exitcode={ERROR_EXIT}"))
        .args([
            "--tool=memcheck",
            "--leak-check=full",
            "--show-leak-kinds=definite",
            "--errors-for-leak-kinds=definite",
            "--num-callers=40",
        ])
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .output()
        .unwrap_or_else(|e| panic!("cannot run valgrind (is it installed?): {e}"));
    Report {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn use_after_free_is_reported() {
    const NAME: &str = "use_after_free_is_reported";
    if in_child(NAME) {
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
    if nested(NAME) {
        return;
    }
    let r = memcheck(NAME);
    assert!(r.has("Invalid read of size 1"), "{}", r.stderr);
    assert!(
        r.has("is 8 bytes inside a block of size 40 free'd"),
        "{}",
        r.stderr
    );
    // The block's history names kmem's entry points.
    assert!(r.has("kmem_free"), "{}", r.stderr);
    assert!(r.has("kmem_alloc"), "{}", r.stderr);
    assert_eq!(r.errors(), 1, "{}", r.stderr);
    assert_eq!(r.code, Some(ERROR_EXIT), "{}", r.stderr);
}

#[test]
fn overrun_into_the_class_tail_is_reported() {
    const NAME: &str = "overrun_into_the_class_tail_is_reported";
    if in_child(NAME) {
        // 40 bytes come from a larger class (48 or 64 bytes): byte 40 is
        // inside the object but not the caller's.
        let p = kmem_alloc(40, KM_SLEEP).unwrap();
        assert!(kmem().allocated_size(40).unwrap() > 40);
        // SAFETY: the write and the read past 40 bytes are the bugs under
        // test; the free is right.
        unsafe {
            p.as_ptr().write_bytes(1, 40);
            std::ptr::write_volatile(p.as_ptr().add(40), 1);
            std::ptr::read_volatile(p.as_ptr().add(41));
            kmem_free(p.as_ptr(), 40);
        }
        return;
    }
    if nested(NAME) {
        return;
    }
    let r = memcheck(NAME);
    assert!(r.has("Invalid write of size 1"), "{}", r.stderr);
    assert!(
        r.has("is 0 bytes after a block of size 40 alloc'd"),
        "{}",
        r.stderr
    );
    assert!(r.has("Invalid read of size 1"), "{}", r.stderr);
    assert!(
        r.has("is 1 bytes after a block of size 40 alloc'd"),
        "{}",
        r.stderr
    );
    assert!(r.has("kmem_alloc"), "{}", r.stderr);
    assert_eq!(r.errors(), 2, "{}", r.stderr);
    assert_eq!(r.code, Some(ERROR_EXIT), "{}", r.stderr);
}

#[test]
fn overrun_into_the_last_page_of_a_large_allocation_is_reported() {
    const NAME: &str = "overrun_into_the_last_page_of_a_large_allocation_is_reported";
    if in_child(NAME) {
        // Whole pages: 5000 bytes take two 4 KiB pages (or one larger).
        let p = kmem_alloc(5000, KM_SLEEP).unwrap();
        assert!(kmem().allocated_size(5000).unwrap() > 5000);
        assert!(kmem().stats().large.live == 1);
        // SAFETY: the write past 5000 bytes is the bug under test; the
        // free is right.
        unsafe {
            p.as_ptr().write_bytes(1, 5000);
            std::ptr::write_volatile(p.as_ptr().add(5000), 1);
            kmem_free(p.as_ptr(), 5000);
        }
        return;
    }
    if nested(NAME) {
        return;
    }
    let r = memcheck(NAME);
    assert!(r.has("Invalid write of size 1"), "{}", r.stderr);
    assert!(
        r.has("is 0 bytes after a block of size 5,000 alloc'd"),
        "{}",
        r.stderr
    );
    assert!(r.has("kmem_alloc"), "{}", r.stderr);
    assert_eq!(r.errors(), 1, "{}", r.stderr);
    assert_eq!(r.code, Some(ERROR_EXIT), "{}", r.stderr);
}

#[test]
fn double_free_is_reported() {
    const NAME: &str = "double_free_is_reported";
    if in_child(NAME) {
        let p = kmem_alloc(40, KM_SLEEP).unwrap();
        // SAFETY: the second free is the bug under test (with `kmem-size`
        // kmem panics on it too, after memcheck's report).
        unsafe {
            kmem_free(p.as_ptr(), 40);
            kmem_free(p.as_ptr(), 40);
        }
        return;
    }
    if nested(NAME) {
        return;
    }
    let r = memcheck(NAME);
    assert!(r.has("Invalid free()"), "{}", r.stderr);
    assert!(
        r.has("is 0 bytes inside a block of size 40 free'd"),
        "{}",
        r.stderr
    );
    assert!(r.has("kmem_free"), "{}", r.stderr);
    assert!(r.errors() >= 1, "{}", r.stderr);
    assert_ne!(r.code, Some(0), "{}", r.stderr);
}

#[test]
fn leaked_block_is_reported() {
    const NAME: &str = "leaked_block_is_reported";
    if in_child(NAME) {
        // The cache slot an object comes from keeps its address (unless
        // pool-cache's `diagnostic` clears it): `q`, freed, goes into
        // `p`'s slot.
        let q = kmem_alloc(777, KM_SLEEP).unwrap();
        let p = kmem_alloc(777, KM_SLEEP).unwrap();
        // SAFETY: ours; the free is right, the missing one the bug.
        unsafe {
            p.as_ptr().write_bytes(7, 777);
            kmem_free(q.as_ptr(), 777);
        }
        return; // `p` is lost.
    }
    if nested(NAME) {
        return;
    }
    let r = memcheck(NAME);
    let record = r
        .stderr
        .split("\n==")
        .position(|l| l.contains("777 bytes in 1 blocks are definitely lost"))
        .unwrap_or_else(|| panic!("no leak record for the kmem block:\n{}", r.stderr));
    // The record's stack (the lines after it) names kmem_alloc.
    let stack: Vec<&str> = r.stderr.split("\n==").skip(record).take(40).collect();
    assert!(
        stack.iter().any(|l| l.contains("kmem_alloc")),
        "{}",
        r.stderr
    );
    assert_eq!(r.errors(), 1, "{}", r.stderr);
    assert_eq!(r.code, Some(ERROR_EXIT), "{}", r.stderr);
}

/// kmem's everyday work: every small size and some large ones, zeroed
/// allocations reused, strings and typed handles, objects drained back to
/// their pools (the destructor's path) and allocated again.
fn workload() {
    let k = kmem();
    // Every class, and whole pages past the largest.
    common::every_size(k, 3 * k.page_size());
    let large = k.stats().large;
    assert!(large.allocs > 0 && large.live == 0, "{large:?}");
    let sizes = [8usize, 24, 40, 100, 200, 300, 500, 1000, 2000, 4000, 10_000];
    let pool_puts = || -> u64 { k.stats().caches().map(|c| c.pool.nput).sum() };
    let before = pool_puts();
    let mut v: Vec<(NonNull<u8>, usize)> = Vec::new();
    for round in 0..3u8 {
        for _ in 0..100 {
            for &s in &sizes {
                let p = if round == 1 {
                    let p = kmem_zalloc(s, KM_SLEEP).unwrap();
                    // SAFETY: s zeroed bytes of ours.
                    let z = unsafe { std::slice::from_raw_parts(p.as_ptr(), s) };
                    assert!(z.iter().all(|&b| b == 0), "zalloc({s}) not zeroed");
                    p
                } else {
                    kmem_alloc(s, KM_SLEEP).unwrap()
                };
                // SAFETY: s bytes of ours.
                unsafe { p.as_ptr().write_bytes(round, s) };
                v.push((p, s));
            }
        }
        for (p, s) in v.drain(..) {
            // SAFETY: s bytes of ours, written above.
            let b = unsafe { std::slice::from_raw_parts(p.as_ptr(), s) };
            assert!(
                b.iter().all(|&x| x == round),
                "allocation of {s} overwritten"
            );
            // SAFETY: allocated above with this size.
            unsafe { kmem_free(p.as_ptr(), s) };
        }
        k.reclaim();
    }
    assert!(pool_puts() > before, "no object went back to its pool");
    let s = kmem_asprintf(format_args!("kmem {} {}", 42, "valgrind"));
    assert_eq!(s.to_str(), Some("kmem 42 valgrind"));
    drop(s);
    let b = KmemBox::new([7u64; 9]);
    assert_eq!(b.iter().sum::<u64>(), 63);
    drop(b);
    let sl = KmemSlice::from_slice(&[1u32, 2, 3, 4, 5]);
    assert_eq!(sl.iter().sum::<u32>(), 15);
    drop(sl);
    let z = KmemSlice::<u8>::zeroed_bytes(3000);
    assert!(z.iter().all(|&b| b == 0));
    drop(z);
    // Resized in place, within a class and within whole pages: the new
    // size is all usable.
    for (old, new) in [(200, 250), (3 * 4096 + 8, 4 * 4096)] {
        let p = kmem_alloc(old, KM_SLEEP).unwrap();
        // SAFETY: a live allocation of `old` bytes.
        let size = if unsafe { k.resize_in_place(p, old, new) } {
            new
        } else {
            old
        };
        // SAFETY: `size` bytes of ours.
        unsafe {
            p.as_ptr().write_bytes(1, size);
            kmem_free(p.as_ptr(), size);
        }
    }
    k.reclaim();
}

#[test]
fn everyday_work_gives_no_errors() {
    const NAME: &str = "everyday_work_gives_no_errors";
    if in_child(NAME) {
        workload();
        return;
    }
    if on_valgrind() {
        // The whole binary is on Valgrind: memcheck's own exit status
        // judges the run.
        small_map();
        workload();
        return;
    }
    let r = memcheck(NAME);
    assert!(r.stdout.contains("1 passed"), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.errors(), 0, "{}", r.stderr);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}
