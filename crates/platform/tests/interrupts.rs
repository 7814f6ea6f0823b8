//! Asynchronous interrupts (signals) against threads, cross-calls, CPU-local
//! storage and thread exit.
#![cfg(not(bsdalloc_loom))]

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bsdalloc_platform::{
    CpuId, Delivery, ExitHook, Ipl, SpinMutex, cpu_exit_hook_register, cpu_local, curcpu, curipl,
    in_interrupt, intr_establish, intr_pending, intr_runs, intr_trigger, ncpu, xc_broadcast,
    xc_unicast,
};

/// Abort the whole process if a test hangs: a deadlock must fail, not stall CI.
fn watchdog(what: &'static str, limit: Duration) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        let start = Instant::now();
        while !d.load(Ordering::SeqCst) {
            if start.elapsed() > limit {
                eprintln!("watchdog: {what} did not finish in {limit:?}: deadlock");
                std::process::abort();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    done
}

thread_local! {
    static HOLDING_VM: Cell<bool> = const { Cell::new(false) };
    static HOLDING_SCHED: Cell<bool> = const { Cell::new(false) };
}

static VM_LOCK: SpinMutex<u64> = SpinMutex::new(Ipl::Vm, 0);
static SCHED_LOCK: SpinMutex<u64> = SpinMutex::new(Ipl::Sched, 0);
static VIOLATIONS: AtomicU64 = AtomicU64::new(0);
static VM_RUNS: AtomicU64 = AtomicU64::new(0);
static SCHED_RUNS: AtomicU64 = AtomicU64::new(0);

fn vm_handler(_: &'static ()) {
    if !in_interrupt() || curipl() != Ipl::Vm || HOLDING_VM.with(Cell::get) {
        VIOLATIONS.fetch_add(1, Ordering::SeqCst);
    }
    *VM_LOCK.lock() += 1;
    VM_RUNS.fetch_add(1, Ordering::SeqCst);
}

fn sched_handler(_: &'static ()) {
    if !in_interrupt() || curipl() != Ipl::Sched || HOLDING_SCHED.with(Cell::get) {
        VIOLATIONS.fetch_add(1, Ordering::SeqCst);
    }
    *SCHED_LOCK.lock() += 1;
    SCHED_RUNS.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn interrupt_storm_against_threads_holding_ipl_vm_mutexes() {
    let done = watchdog("interrupt storm", Duration::from_secs(120));
    let vm = intr_establish(Ipl::Vm, vm_handler, &()).unwrap();
    let sched = intr_establish(Ipl::Sched, sched_handler, &()).unwrap();
    const THREADS: usize = 4;
    let stop = Arc::new(AtomicBool::new(false));
    let cpus: Arc<std::sync::Mutex<Vec<CpuId>>> = Arc::default();
    let workers: Vec<_> = (0..THREADS)
        .map(|i| {
            let stop = stop.clone();
            let cpus = cpus.clone();
            std::thread::spawn(move || {
                cpus.lock().unwrap().push(curcpu());
                let mut ops = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    {
                        let mut g = VM_LOCK.lock();
                        HOLDING_VM.with(|h| h.set(true));
                        *g += 1;
                        for _ in 0..(i * 10) {
                            std::hint::spin_loop();
                        }
                        HOLDING_VM.with(|h| h.set(false));
                    }
                    if ops.is_multiple_of(7) {
                        let mut g = SCHED_LOCK.lock();
                        HOLDING_SCHED.with(|h| h.set(true));
                        *g += 1;
                        HOLDING_SCHED.with(|h| h.set(false));
                    }
                    ops += 1;
                }
                ops
            })
        })
        .collect();
    while cpus.lock().unwrap().len() < THREADS {
        std::thread::yield_now();
    }
    let targets = cpus.lock().unwrap().clone();
    let (mut delivered_vm, mut delivered_sched, mut coalesced) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < Duration::from_secs(2) {
        let cpu = targets[n % THREADS];
        let src = if n.is_multiple_of(3) { sched } else { vm };
        match intr_trigger(cpu, src) {
            Delivery::Delivered if src == vm => delivered_vm += 1,
            Delivery::Delivered => delivered_sched += 1,
            Delivery::Coalesced => coalesced += 1,
            Delivery::Absent => panic!("worker {cpu} vanished"),
        }
        n += 1;
    }
    stop.store(true, Ordering::SeqCst);
    let ops: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    done.store(true, Ordering::SeqCst);
    eprintln!(
        "storm: {ops} lock rounds, {delivered_vm} IPL_VM + {delivered_sched} IPL_SCHED \
         interrupts delivered, {coalesced} coalesced"
    );
    assert!(
        delivered_vm > 100 && delivered_sched > 100,
        "the storm was too small to mean anything"
    );
    assert_eq!(
        VIOLATIONS.load(Ordering::SeqCst),
        0,
        "a handler ran while its level was blocked"
    );
    // Every delivered interrupt ran exactly once (pending ones ran at the
    // workers' splx, or at their exit).
    assert_eq!(VM_RUNS.load(Ordering::SeqCst), delivered_vm);
    assert_eq!(SCHED_RUNS.load(Ordering::SeqCst), delivered_sched);
    assert_eq!(intr_runs(vm), delivered_vm);
    assert_eq!(intr_runs(sched), delivered_sched);
    assert_eq!(curipl(), Ipl::None);
}

thread_local! {
    static THREAD_TAG: Cell<usize> = const { Cell::new(0) };
}

#[test]
fn xcall_leaves_a_sleeping_cpu_alone_and_runs_on_its_behalf() {
    let done = watchdog("xcall to a sleeper", Duration::from_secs(60));
    let (tx, rx) = std::sync::mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicUsize::new(0));
    let (s2, i2) = (stop.clone(), interrupted.clone());
    let t = std::thread::spawn(move || {
        THREAD_TAG.with(|c| c.set(77));
        tx.send(curcpu()).unwrap();
        while !s2.load(Ordering::SeqCst) {
            // Asleep in a system call at IPL_NONE: a signal would cut it
            // short with EINTR.
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 500_000,
            };
            // SAFETY: valid timespec pointers.
            if unsafe { libc::nanosleep(&ts, &mut ts) } != 0 {
                i2.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let target = rx.recv().unwrap();
    THREAD_TAG.with(|c| c.set(1));
    for _ in 0..200 {
        let seen = AtomicUsize::new(0);
        xc_unicast(target, &|cpu| {
            assert_eq!(cpu, target);
            assert!(in_interrupt());
            assert_eq!(curipl(), Ipl::Vm);
            seen.store(THREAD_TAG.with(Cell::get), Ordering::SeqCst);
        });
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "the function runs here, on the sleeping CPU's behalf"
        );
    }
    stop.store(true, Ordering::SeqCst);
    t.join().unwrap();
    assert_eq!(
        interrupted.load(Ordering::SeqCst),
        0,
        "no signal may interrupt a thread outside CPU-local sections"
    );

    // The target is gone: the cross-call runs here, on its behalf.
    let ran = AtomicUsize::new(0);
    xc_unicast(target, &|cpu| {
        assert_eq!(cpu, target);
        ran.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(ran.load(Ordering::SeqCst), 1);

    // Broadcast reaches every CPU once.
    let count = AtomicUsize::new(0);
    xc_broadcast(&|_| {
        count.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(count.load(Ordering::SeqCst), ncpu());
    done.store(true, Ordering::SeqCst);
}

cpu_local! { static SECTION_DATA: CpuLocal<u64> = 0; }

#[test]
fn xcall_to_a_cpu_inside_a_section_runs_on_it_when_it_leaves() {
    let done = watchdog("xcall into a section", Duration::from_secs(60));
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        THREAD_TAG.with(|c| c.set(78));
        let me = curcpu();
        SECTION_DATA.with(|n| {
            tx.send(me).unwrap();
            // Stay in the section until the cross-call has been posted here.
            while intr_pending() & 1 == 0 {
                std::hint::spin_loop();
            }
            *n += 1;
        });
        // Leaving the section ran the cross-call: on this thread.
        SECTION_DATA.with(|n| *n)
    });
    let target = rx.recv().unwrap();
    let seen = AtomicUsize::new(0);
    xc_unicast(target, &|cpu| {
        assert_eq!(cpu, target);
        assert!(in_interrupt());
        seen.store(THREAD_TAG.with(Cell::get), Ordering::SeqCst);
    });
    assert_eq!(
        seen.load(Ordering::SeqCst),
        78,
        "a CPU inside a section runs the cross-call itself"
    );
    assert_eq!(t.join().unwrap(), 1);
    done.store(true, Ordering::SeqCst);
}

#[test]
#[should_panic(expected = "xc_unicast: sleeping with 1 spin mutex(es) held")]
fn xcall_with_spin_mutex_held_panics() {
    let m = SpinMutex::<()>::new(Ipl::Vm, ());
    let _g = m.lock();
    xc_unicast(CpuId(0), &|_| {});
}

cpu_local! { static COUNTERS: CpuLocal<u64> = 0; }

#[test]
fn cross_cpu_drain_racing_cpu_local_increments_loses_nothing() {
    let done = watchdog("cpu-local drain", Duration::from_secs(120));
    const THREADS: usize = 3;
    const PER_THREAD: u64 = 200_000;
    let drained = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let rounds_done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (finished, rounds_done) = (finished.clone(), rounds_done.clone());
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    if i == PER_THREAD / 2 {
                        // Make sure drains really overlap the increments.
                        while rounds_done.load(Ordering::SeqCst) < 2 {
                            std::thread::yield_now();
                        }
                    }
                    COUNTERS.with(|n| *n += 1);
                }
                finished.fetch_add(1, Ordering::SeqCst);
                // Stay a CPU until the drainer has taken our count.
                while finished.load(Ordering::SeqCst) != usize::MAX {
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        })
        .collect();
    let mut rounds = 0;
    loop {
        let all_done = finished.load(Ordering::SeqCst) == THREADS;
        let d = drained.clone();
        COUNTERS.for_each_cpu(move |_, n| {
            d.fetch_add(*n, Ordering::SeqCst);
            *n = 0;
        });
        rounds += 1;
        rounds_done.store(rounds, Ordering::SeqCst);
        if all_done {
            break;
        }
    }
    finished.store(usize::MAX, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    assert!(rounds > 1);
    assert_eq!(drained.load(Ordering::SeqCst), THREADS as u64 * PER_THREAD);
}

static EXITED: AtomicU64 = AtomicU64::new(u64::MAX);

static ON_EXIT: ExitHook = ExitHook::new(&(on_exit as fn(CpuId)));

fn on_exit(cpu: CpuId) {
    // Runs on the exiting thread, which is still that CPU.
    if curcpu() == cpu && THREAD_TAG.with(Cell::get) == 5 {
        EXITED.store(cpu.0 as u64, Ordering::SeqCst);
    }
}

#[test]
fn thread_exit_runs_the_exit_hooks_on_the_exiting_cpu() {
    cpu_exit_hook_register(&ON_EXIT);
    let cpu = std::thread::spawn(|| {
        THREAD_TAG.with(|c| c.set(5));
        curcpu()
    })
    .join()
    .unwrap();
    assert_eq!(EXITED.load(Ordering::SeqCst), cpu.0 as u64);
}
