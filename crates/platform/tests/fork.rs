//! `fork` from a multithreaded process: `fork_prepare`, `fork_parent`,
//! `fork_child`. The child has one thread; every CPU slot the parent's
//! other threads owned must be free there, handed to `reclaim`, and
//! usable again, while threads keep exiting in the parent during the
//! forks (the exit lock keeps a half-exited thread out of the child).

#![cfg(all(target_os = "linux", not(bsdalloc_loom)))]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use bsdalloc_platform::{
    CpuId, ExitHook, active_cpus, cpu_exit_hook_register, curcpu, fork_child, fork_parent,
    fork_prepare, ncpu, xc_broadcast,
};

static EXITS: AtomicUsize = AtomicUsize::new(0);
fn on_exit(_cpu: CpuId) {
    EXITS.fetch_add(1, Ordering::Relaxed);
}
static HOOK: ExitHook = ExitHook::new(&(on_exit as fn(CpuId)));

/// Child exit codes: what went wrong, for the parent's message.
const BAD_ACTIVE: i32 = 10;
const BAD_RECLAIM: i32 = 11;
const BAD_ACTIVE_AFTER: i32 = 12;
const BAD_XCALL: i32 = 13;
const BAD_THREAD: i32 = 14;

/// The child's checks; returns its exit code. Only raw calls and what the
/// platform does (no `std` locks another thread may have held).
/// A raw thread's body (std's `thread::spawn` takes std's own locks,
/// which the parent's spawning threads may have held at the fork).
extern "C" fn become_cpu(_: *mut libc::c_void) -> *mut libc::c_void {
    curcpu();
    core::ptr::null_mut()
}
fn child(parked: &BTreeSet<u32>) -> i32 {
    let mut reclaimed = [false; 512];
    let mut n = 0;
    fork_child(&mut |cpu: CpuId| {
        reclaimed[cpu.index()] = true;
        n += 1;
    });
    if active_cpus() != 1 {
        return BAD_ACTIVE;
    }
    // Every parked thread's slot is reclaimed; ours is not.
    if parked.iter().any(|&i| !reclaimed[i as usize]) || reclaimed[curcpu().index()] {
        return BAD_RECLAIM;
    }
    let _ = n;
    // A cross-call to every CPU completes: no slot is left EXITING or
    // owned by a thread that does not exist here.
    let ran = AtomicUsize::new(0);
    xc_broadcast(&|_| {
        ran.fetch_add(1, Ordering::Relaxed);
    });
    if ran.load(Ordering::Relaxed) < ncpu() {
        return BAD_XCALL;
    }
    // A new thread becomes a CPU (slot locks are free) and leaves again.
    let mut t: libc::pthread_t = 0;
    // SAFETY: a plain thread with a static body, joined at once.
    unsafe {
        if libc::pthread_create(&mut t, core::ptr::null(), become_cpu, core::ptr::null_mut()) != 0
            || libc::pthread_join(t, core::ptr::null_mut()) != 0
        {
            return BAD_THREAD;
        }
    }
    if active_cpus() != 1 {
        return BAD_ACTIVE_AFTER;
    }
    0
}

#[test]
fn the_child_has_one_cpu_while_threads_exit_in_the_parent() {
    cpu_exit_hook_register(&HOOK);
    let me = curcpu();
    // Threads that own slots across every fork.
    const PARKED: usize = 6;
    let go = Arc::new(Barrier::new(PARKED + 1));
    let done = Arc::new(Barrier::new(PARKED + 1));
    let mut parked = BTreeSet::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let hold: Vec<_> = (0..PARKED)
        .map(|_| {
            let (go, done, tx) = (go.clone(), done.clone(), tx.clone());
            thread::spawn(move || {
                tx.send(curcpu().index() as u32).unwrap();
                go.wait();
                done.wait();
            })
        })
        .collect();
    for _ in 0..PARKED {
        parked.insert(rx.recv().unwrap());
    }
    go.wait();
    // Threads that keep becoming CPUs and exiting meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let churn: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    thread::spawn(curcpu).join().unwrap();
                }
            })
        })
        .collect();

    for round in 0..60 {
        fork_prepare();
        // SAFETY: fork; the child runs `child` and `_exit`s.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: the child's own timer, then its exit.
            unsafe {
                libc::alarm(10);
                libc::_exit(child(&parked));
            }
        }
        fork_parent();
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
    for t in churn {
        t.join().unwrap();
    }
    done.wait();
    for t in hold {
        t.join().unwrap();
    }
    // The parent is untouched: its CPU, its threads' exits, its counters.
    assert_eq!(curcpu(), me);
    assert!(EXITS.load(Ordering::Relaxed) >= PARKED);
    assert!(active_cpus() >= 1);
}
