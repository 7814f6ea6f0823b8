//! The child of a multithreaded parent, seen from inside: linking the
//! rlib makes this program's `malloc` ours, so its `pthread_atfork`
//! handlers run at every `fork`. While threads hold CPU slots (with
//! objects cached in them) and short-lived threads keep exiting, each
//! child must find one CPU (its own), allocate, start a thread, and walk
//! every allocator structure (the whole report) without meeting a lock
//! that a thread of the parent held.

#![cfg(target_os = "linux")]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use bsdalloc_cmalloc::{Stats, free, malloc};

const BAD_ACTIVE: i32 = 10;
const BAD_ALLOC: i32 = 11;
const BAD_THREAD: i32 = 12;
const BAD_REPORT: i32 = 13;

extern "C" fn brief(_: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: allocate, use, free.
    unsafe {
        let p = malloc(4000).cast::<u8>();
        if !p.is_null() {
            p.write_bytes(7, 4000);
            free(p.cast());
        }
    }
    core::ptr::null_mut()
}

/// The child's checks (raw calls and ours only: `std`'s own locks may be
/// held by the parent's other threads).
fn child() -> i32 {
    if bsdalloc::platform::active_cpus() != 1 {
        return BAD_ACTIVE;
    }
    let mut p = [core::ptr::null_mut(); 200];
    for (i, slot) in p.iter_mut().enumerate() {
        // SAFETY: plain allocations, freed below.
        *slot = unsafe { malloc(i * 61 + 1) };
        if slot.is_null() {
            return BAD_ALLOC;
        }
    }
    for q in p {
        // SAFETY: ours, freed once.
        unsafe { free(q) };
    }
    let mut t: libc::pthread_t = 0;
    // SAFETY: a plain thread with a static body, joined at once.
    unsafe {
        if libc::pthread_create(&mut t, core::ptr::null(), brief, core::ptr::null_mut()) != 0
            || libc::pthread_join(t, core::ptr::null_mut()) != 0
        {
            return BAD_THREAD;
        }
    }
    if bsdalloc::platform::active_cpus() != 1 {
        return BAD_ACTIVE;
    }
    // Every pool, cache, arena and the kernel map, each under its lock.
    let report = format!("{Stats}");
    if !report.contains("Memory Totals") {
        return BAD_REPORT;
    }
    0
}

#[test]
fn every_child_has_one_cpu_and_every_lock_free() {
    const HOLDERS: usize = 4;
    let go = Arc::new(Barrier::new(HOLDERS + 1));
    let done = Arc::new(Barrier::new(HOLDERS + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for h in 0..HOLDERS {
        let (go, done, stop) = (go.clone(), done.clone(), stop.clone());
        threads.push(thread::spawn(move || {
            // Objects cached on this CPU, and churn until told to stop.
            let mut keep = vec![0usize; 64];
            let mut n = h;
            go.wait();
            while !stop.load(Ordering::Relaxed) {
                n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let k = (n >> 8) % 64;
                // SAFETY: each slot holds one of our blocks or null.
                unsafe {
                    free(keep[k] as *mut libc::c_void);
                    keep[k] = malloc((n >> 16) % 700 + 1) as usize;
                }
            }
            done.wait();
            for p in keep {
                // SAFETY: as above.
                unsafe { free(p as *mut libc::c_void) };
            }
        }));
    }
    go.wait();
    // Threads that keep becoming CPUs and exiting.
    let births = {
        let stop = stop.clone();
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut t: libc::pthread_t = 0;
                // SAFETY: as in `child`.
                unsafe {
                    assert_eq!(
                        libc::pthread_create(
                            &mut t,
                            core::ptr::null(),
                            brief,
                            core::ptr::null_mut()
                        ),
                        0
                    );
                    assert_eq!(libc::pthread_join(t, core::ptr::null_mut()), 0);
                }
            }
        })
    };
    for round in 0..100 {
        // SAFETY: fork; the child runs `child` and `_exit`s.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: the child's own timer, then its exit.
            unsafe {
                libc::alarm(10);
                libc::_exit(child());
            }
        }
        assert!(pid > 0, "fork failed");
        let mut st = 0;
        // SAFETY: our child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
        assert!(
            libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
            "round {round}: child {}",
            if libc::WIFEXITED(st) {
                format!("exited with {}", libc::WEXITSTATUS(st))
            } else {
                format!("killed by signal {}", libc::WTERMSIG(st))
            }
        );
    }
    stop.store(true, Ordering::Relaxed);
    births.join().unwrap();
    done.wait();
    for t in threads {
        t.join().unwrap();
    }
}
