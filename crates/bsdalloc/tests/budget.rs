//! Allocation failure under a memory budget, with bsdalloc as the global
//! allocator from the program's first allocation: `Global` returns null
//! (nothing corrupted, the memory usable again after frees), `try_reserve`
//! reports the error, an infallible allocation takes Rust's
//! `handle_alloc_error` path, and a kernel `KM_SLEEP` allocation at the
//! budget sleeps until a free. `BootGlobal` boots the kernel with the
//! budget at the first allocation, which `std` makes before `main`.

use std::alloc::{GlobalAlloc, Layout};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use bsdalloc::kmem::{KM_SLEEP, kmem_alloc, kmem_free};
use bsdalloc::{BootGlobal, Global, Kernel, KernelConfig};

const MIB: usize = 1 << 20;
const LIMIT: usize = 32 * MIB;

#[global_allocator]
static A: BootGlobal = BootGlobal::new(KernelConfig::new().memory_limit(LIMIT));

fn fill_until_refused() -> Vec<*mut u8> {
    let l = Layout::from_size_align(MIB, 8).unwrap();
    let mut held = Vec::with_capacity(64);
    loop {
        // SAFETY: a nonzero size.
        let p = unsafe { Global.alloc(l) };
        if p.is_null() {
            return held;
        }
        // SAFETY: MIB bytes of ours.
        unsafe { p.write_bytes(held.len() as u8, MIB) };
        held.push(p);
        assert!(held.len() <= LIMIT / MIB, "the budget was not enforced");
    }
}

fn free_all(held: Vec<*mut u8>) {
    let l = Layout::from_size_align(MIB, 8).unwrap();
    for (i, p) in held.into_iter().enumerate() {
        // SAFETY: allocated by `fill_until_refused` with `l`.
        unsafe {
            assert!(
                std::slice::from_raw_parts(p, MIB)
                    .iter()
                    .all(|&b| b == i as u8),
                "block {i} was corrupted"
            );
            Global.dealloc(p, l);
        }
    }
}

fn null_then_usable_again() {
    let held = fill_until_refused();
    let n = held.len();
    assert!(n >= LIMIT / MIB / 2, "only {n} MiB before the budget of 32");
    // std's fallible path sees the refusal.
    let mut v: Vec<u8> = Vec::new();
    assert!(v.try_reserve_exact(8 * MIB).is_err());
    free_all(held);
    // Everything came back: the same amount fits again.
    let again = fill_until_refused();
    assert!(
        again.len() >= n,
        "{} MiB after freeing, {n} before",
        again.len()
    );
    free_all(again);
    println!(
        "budget: {n} MiB blocks before null under a {} MiB budget; usable again after frees",
        LIMIT / MIB
    );
}

fn km_sleep_waits_for_a_free() {
    let held = fill_until_refused();
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let sleeper = s.spawn(|| {
            let p = kmem_alloc(2 * MIB, KM_SLEEP).expect("KM_SLEEP never fails");
            done.store(true, Ordering::SeqCst);
            // SAFETY: allocated just above.
            unsafe { kmem_free(p.as_ptr(), 2 * MIB) };
        });
        thread::sleep(Duration::from_millis(200));
        assert!(
            !done.load(Ordering::SeqCst),
            "KM_SLEEP did not wait at the budget"
        );
        free_all(held);
        sleeper.join().unwrap();
    });
    assert!(done.load(Ordering::SeqCst));
    println!("budget: a KM_SLEEP allocation slept at the budget and woke on the frees");
}

fn handle_alloc_error_in_a_child() {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("child-oom")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("memory allocation of 67108864 bytes failed"),
        "{err}"
    );
    println!("budget: an infallible 64 MiB Vec aborts through handle_alloc_error");
}

fn main() {
    // std's first allocation, before main, booted it.
    assert!(matches!(
        Kernel::boot(KernelConfig::new()),
        Err(bsdalloc::BootError::AlreadyBooted)
    ));
    let k = bsdalloc::kernel();
    if std::env::args().nth(1).as_deref() == Some("child-oom") {
        let v = vec![1u8; 64 * MIB];
        println!("not reached: {}", v.len());
        return;
    }
    assert_eq!(k.map().stats().limit_pages * k.page_size(), LIMIT);
    null_then_usable_again();
    km_sleep_waits_for_a_free();
    handle_alloc_error_in_a_child();
    println!("budget: ok");
}
