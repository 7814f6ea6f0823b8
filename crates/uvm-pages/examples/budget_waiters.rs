//! What callers waiting at the page budget cost while nothing is freed.
//!
//! A map with a 64-page limit is filled; four threads then each ask
//! `uvm_km_alloc(WIRED)` for one more page, which must sleep until memory
//! comes back. For two seconds nothing is freed; the program reports how
//! often the waiters went round their wait loop (`KmStats::sleeps`), how
//! many pagedaemon passes ran, and the process CPU time those two seconds
//! cost. Then it frees four pages and the waiters finish.
//!
//! ```text
//! cargo run --release -p bsdalloc-uvm-pages --example budget_waiters
//! ```

use std::ptr::NonNull;
use std::time::Duration;

use bsdalloc_platform::OS_PAGES;
use bsdalloc_uvm_pages::{KernelMap, KmConfig, UvmFlags};

const LIMIT: usize = 64;
const WAITERS: usize = 4;
const QUIET: Duration = Duration::from_secs(2);

fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let m = KernelMap::bootstrap(KmConfig {
        size: 1 << 30,
        limit_pages: LIMIT,
        free_target_pages: 0,
        pages: &OS_PAGES,
    })
    .expect("bootstrap");
    let ps = m.page_size();
    let mut held = Vec::new();
    while let Some(p) = m.uvm_km_alloc(ps, 0, UvmFlags::WIRED | UvmFlags::NOWAIT) {
        held.push(p.as_ptr() as usize);
    }
    assert_eq!(held.len(), LIMIT, "the budget is full");
    let waiters: Vec<_> = (0..WAITERS)
        .map(|_| {
            std::thread::spawn(move || {
                m.uvm_km_alloc(ps, 0, UvmFlags::WIRED)
                    .expect("a WAITOK allocation does not fail")
                    .as_ptr() as usize
            })
        })
        .collect();
    // Until every waiter has gone to sleep at least once.
    while m.stats().sleeps < WAITERS as u64 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (st0, cpu0) = (m.stats(), process_cpu_time());
    std::thread::sleep(QUIET);
    let (st1, cpu1) = (m.stats(), process_cpu_time());
    assert!(
        waiters.iter().all(|w| !w.is_finished()),
        "nothing was freed: every waiter still waits"
    );
    println!(
        "{WAITERS} waiters at a full {LIMIT}-page budget, nothing freed for {QUIET:?}:\n  \
         {} wait-loop wakeups (KmStats::sleeps), {} pagedaemon runs, {:.3} s of process CPU time",
        st1.sleeps - st0.sleeps,
        st1.pagedaemon_runs - st0.pagedaemon_runs,
        (cpu1 - cpu0).as_secs_f64(),
    );
    // Memory comes back: every waiter gets its page.
    for a in held.drain(..WAITERS) {
        m.uvm_km_free(NonNull::new(a as *mut u8).unwrap(), ps, UvmFlags::WIRED);
    }
    for w in waiters {
        held.push(w.join().expect("waiter"));
    }
    for a in held {
        m.uvm_km_free(NonNull::new(a as *mut u8).unwrap(), ps, UvmFlags::WIRED);
    }
    let st = m.stats();
    assert_eq!((st.wired_pages, st.va_in_use), (0, [0; 4]));
    println!("after {WAITERS} pages were freed, every waiter finished");
}
