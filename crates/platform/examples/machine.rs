//! Boot the user-space machine, start CPUs (threads) that work under IPL_VM
//! spin mutexes, fire an interrupt storm at them, cross-call each CPU, and
//! print what happened.
//!
//! `cargo run -p bsdalloc-platform --example machine [SECONDS]`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bsdalloc_platform::{
    CpuId, Delivery, Ipl, OS_PAGES, PageSource, SpinMutex, curcpu, in_interrupt, intr_establish,
    intr_runs, intr_trigger, ncpu, page_size, xc_broadcast,
};

static SHARED: SpinMutex<u64> = SpinMutex::new(Ipl::Vm, 0);
static IN_HANDLER_WHILE_LOCKED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static HOLDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A handler's argument is typed: the net interrupt gets the lock it takes.
fn net_interrupt(shared: &'static SpinMutex<u64>) {
    if HOLDING.with(|h| h.get()) {
        IN_HANDLER_WHILE_LOCKED.fetch_add(1, Ordering::Relaxed);
    }
    *shared.lock() += 1000;
}

fn clock_interrupt(_: &'static ()) {
    assert!(in_interrupt());
}

fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    println!(
        "bsdalloc-platform user-space machine: page size {} bytes",
        page_size()
    );
    let net = intr_establish(Ipl::Vm, net_interrupt, &SHARED).expect("intr_establish");
    let clock = intr_establish(Ipl::Sched, clock_interrupt, &()).expect("intr_establish");

    let stop = Arc::new(AtomicBool::new(false));
    let cpus = Arc::new(Mutex::new(Vec::<CpuId>::new()));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, cpus) = (stop.clone(), cpus.clone());
            std::thread::spawn(move || {
                cpus.lock().unwrap().push(curcpu());
                let mut rounds = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut g = SHARED.lock(); // raises to IPL_VM
                    HOLDING.with(|h| h.set(true));
                    *g += 1;
                    HOLDING.with(|h| h.set(false));
                    drop(g); // splx: deferred IPL_VM interrupts run here
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    while cpus.lock().unwrap().len() < 4 {
        std::thread::yield_now();
    }
    let targets = cpus.lock().unwrap().clone();
    println!("started {} CPUs: {:?}", targets.len(), targets);

    let (mut delivered, mut coalesced) = ([0u64; 2], 0u64);
    let t = Instant::now();
    let mut i = 0usize;
    while t.elapsed() < Duration::from_secs(secs) {
        let (src, k) = if i.is_multiple_of(4) {
            (clock, 1)
        } else {
            (net, 0)
        };
        match intr_trigger(targets[i % targets.len()], src) {
            Delivery::Delivered => delivered[k] += 1,
            Delivery::Coalesced => coalesced += 1,
            Delivery::Absent => {}
        }
        i += 1;
    }

    let seen = std::sync::atomic::AtomicUsize::new(0);
    xc_broadcast(&|_cpu| {
        seen.fetch_add(1, Ordering::Relaxed);
    });

    stop.store(true, Ordering::SeqCst);
    let rounds: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let total = *SHARED.lock();
    println!("lock rounds under IPL_VM spin mutex: {rounds}");
    println!(
        "interrupts delivered: {} at IPL_VM, {} at IPL_SCHED; {} coalesced with a pending one",
        delivered[0], delivered[1], coalesced
    );
    println!(
        "handler runs: {} at IPL_VM, {} at IPL_SCHED",
        intr_runs(net),
        intr_runs(clock)
    );
    println!(
        "handlers that ran while their CPU held the lock: {}",
        IN_HANDLER_WHILE_LOCKED.load(Ordering::Relaxed)
    );
    println!(
        "cross-call reached {} of {} CPUs",
        seen.load(Ordering::Relaxed),
        ncpu()
    );
    assert_eq!(
        intr_runs(net),
        delivered[0],
        "every delivered IPL_VM interrupt ran exactly once"
    );
    assert_eq!(
        intr_runs(clock),
        delivered[1],
        "every delivered IPL_SCHED interrupt ran exactly once"
    );
    assert_eq!(total, rounds + 1000 * delivered[0], "no update lost");
    assert_eq!(IN_HANDLER_WHILE_LOCKED.load(Ordering::Relaxed), 0);
    let ps = page_size();
    let va = OS_PAGES.reserve(16 * ps, 0).expect("reserve");
    // SAFETY: our own fresh reservation.
    unsafe {
        OS_PAGES.commit(va, 16 * ps, true).expect("commit");
        OS_PAGES.decommit(va, 16 * ps);
        OS_PAGES.release(va, 16 * ps);
    }
    println!(
        "page source after a reserve/commit/decommit/release round trip:\n{}",
        OS_PAGES.stats()
    );
    println!("ok: no deadlock, every interrupt ran exactly once, no update lost");
}
