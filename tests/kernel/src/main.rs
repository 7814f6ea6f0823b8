//! # bsdalloc-test-kernel — the stack on a machine of its own
//!
//! A kernel in miniature, run as a Linux process: its own [`Machine`]
//! (four CPUs that are threads, IPIs that are flags the CPUs poll,
//! futex sleep and wakeup), its own RAM (a static, page-aligned array
//! behind its own `PageSource` and vmem `MetaSource`), and the platform on
//! its **kernel backend** (built without `std`). It runs two kernels on
//! that RAM, one after the other:
//!
//! 1. **vmem and uvm-pages by hand** (`kernel`): it boots vmem and the
//!    kernel map, stacks arenas on the map, allocates and checks on every
//!    CPU, counts per CPU, cross-calls, takes an interrupt that allocates,
//!    sleeps for a resource, and tears down to a page census.
//! 2. **The whole stack through the facade** (`facade`):
//!    `bsdalloc::Kernel::boot` with this machine's page source and meta
//!    source builds the kernel map (the pools' map too), kmem and
//!    malloc(9); every CPU uses `kmem_alloc`/`kmem_zalloc` (8 B to three
//!    pages), `malloc` with a `MALLOC_DEFINE!` type and `M_ZERO`, and a
//!    pool cache with a constructor; an `IPL_VM` handler on every CPU uses
//!    `kmem_intr_alloc(KM_NOSLEEP)`, `malloc(M_NOWAIT)` and the pool cache.
//!    Then the counters and a census: malloc(9) types at 0 in use, kmem's
//!    census at 0, constructors matching destructors, the pagedaemon
//!    draining every idle pool page once the kernel's clock
//!    (`bsdalloc::pool::UPTIME`) moves; and `bsdalloc::kernel().report()`,
//!    formatted inside the window and printed after it.
//!
//! Both run inside one measured window, which proves that none of it — the
//! report's formatting included — called the Rust global allocator.
//!
//! Run it alone, so that Cargo does not unify the platform's features with
//! the rest of the workspace (where other members turn `std` on):
//!
//! ```text
//! cargo run -p bsdalloc-test-kernel        (or: cargo xtask test-kernel)
//! ```
//!
//! Built with the workspace, it compiles against the user-space backend and
//! refuses to run. Exit status 0: every check passed.
//!
//! [`Machine`]: bsdalloc_platform::Machine

mod alloc_count;
mod facade;
mod kernel;
mod machine;
mod pages;

use std::process::ExitCode;
use std::thread;

use bsdalloc_platform::sync::atomic::{AtomicU32, Ordering};

use crate::machine::{NCPU, STATS};

#[global_allocator]
static GLOBAL: alloc_count::CountingAlloc = alloc_count::CountingAlloc;

/// The phase all CPUs run now; `EXIT` stops the secondary CPUs.
static PHASE: AtomicU32 = AtomicU32::new(0);
/// CPUs that have finished the current phase.
static DONE: AtomicU32 = AtomicU32::new(0);

const WORK: u32 = 1;
const INTERRUPT: u32 = 2;
const SLEEP: u32 = 3;
const FACADE_WORK: u32 = 4;
const FACADE_INTERRUPT: u32 = 5;
const EXIT: u32 = u32::MAX;

/// What a secondary CPU does in each phase.
fn secondary_phase(cpu: usize, phase: u32) {
    match phase {
        WORK => kernel::work(cpu),
        INTERRUPT => {
            kernel::interrupt(cpu);
        }
        SLEEP => kernel::sleep_wakeup(cpu),
        FACADE_WORK => facade::work(cpu),
        FACADE_INTERRUPT => facade::interrupt(cpu),
        _ => {}
    }
}

/// A secondary CPU: come up, then run phases from the idle loop.
fn cpu_main(cpu: usize) {
    machine::cpu_up(cpu);
    let mut last = 0;
    loop {
        machine::idle_until(|| PHASE.load(Ordering::Acquire) != last);
        last = PHASE.load(Ordering::Acquire);
        if last == EXIT {
            return;
        }
        secondary_phase(cpu, last);
        DONE.fetch_add(1, Ordering::AcqRel);
        machine::ring(0);
    }
}

/// Start `phase` on every CPU, run CPU 0's part, and wait (taking IPIs)
/// until every CPU has finished it.
fn run_phase<R>(phase: u32, cpu0: impl FnOnce() -> R) -> R {
    DONE.store(0, Ordering::Relaxed);
    PHASE.store(phase, Ordering::Release);
    for c in 1..NCPU {
        machine::ring(c);
    }
    let r = cpu0();
    DONE.fetch_add(1, Ordering::AcqRel);
    machine::idle_until(|| DONE.load(Ordering::Acquire) == NCPU as u32);
    r
}

/// Whether the platform runs on its kernel backend, i.e. was built without
/// `std` and calls this machine: the user-space backend has shared CPU
/// slots and never calls `Machine::current_cpu`.
fn on_kernel_backend() -> Result<(), String> {
    if bsdalloc_platform::NSHARED != 0 {
        return Err(format!(
            "bsdalloc-platform has {} shared CPU slots: it was built with `std` \
             (the user-space machine)",
            bsdalloc_platform::NSHARED
        ));
    }
    let calls = STATS.current_cpu_calls.load(Ordering::Relaxed);
    let me = bsdalloc_platform::curcpu();
    if STATS.current_cpu_calls.load(Ordering::Relaxed) == calls {
        return Err("curcpu() did not call the test kernel's Machine::current_cpu".into());
    }
    if me.index() != 0 {
        return Err(format!("the boot CPU is {me}, not cpu0"));
    }
    Ok(())
}

fn main() -> ExitCode {
    // CPU 0 is the boot thread.
    machine::cpu_up(0);
    if let Err(why) = on_kernel_backend() {
        eprintln!(
            "bsdalloc-test-kernel: not on the platform's kernel backend: {why}.\n\
             Cargo unified features with other workspace members; build this \
             package alone: `cargo run -p bsdalloc-test-kernel` (or `cargo xtask test-kernel`)."
        );
        return ExitCode::FAILURE;
    }
    // A failed check panics: report it and fail the run, whichever CPU it
    // was on (the other CPUs would wait for it for ever).
    std::panic::set_hook(Box::new(|info| {
        let cpu = machine::try_this_cpu().map_or(-1, |c| c as i64);
        eprintln!("bsdalloc-test-kernel: FAILED on cpu{cpu}: {info}");
        std::process::exit(1);
    }));
    let mut cpus = Vec::new();
    for cpu in 1..NCPU {
        let t = thread::Builder::new()
            .name(format!("cpu{cpu}"))
            .spawn(move || cpu_main(cpu))
            .expect("spawn a CPU thread");
        cpus.push(t);
        while machine::online() <= cpu {
            thread::yield_now();
        }
    }

    // The measured window: the kernel's whole life, on every CPU. The
    // harness allocated what it needs (threads, the panic hook) above and
    // prints below.
    let mut text = facade::Text::new();
    let window = alloc_count::Window::open();
    let mut report = kernel::boot();
    run_phase(WORK, || kernel::work(0));
    kernel::count(&mut report);
    report.intr_runs = run_phase(INTERRUPT, || kernel::interrupt(0));
    run_phase(SLEEP, || kernel::sleep_wakeup(0));
    kernel::teardown(&mut report);
    let mut facade = facade::boot();
    run_phase(FACADE_WORK, || facade::work(0));
    run_phase(FACADE_INTERRUPT, || facade::interrupt(0));
    facade::finish(&mut facade, &mut text);
    let (allocs, frees) = window.close();

    PHASE.store(EXIT, Ordering::Release);
    for c in 1..NCPU {
        machine::ring(c);
    }
    for t in cpus {
        t.join().expect("a CPU thread failed");
    }

    print_report(&report, allocs, frees);
    print_facade(&facade, &text);
    if allocs != 0 || frees != 0 {
        eprintln!(
            "bsdalloc-test-kernel: FAILED: the stack called the Rust global allocator \
             ({allocs} allocations, {frees} frees)"
        );
        return ExitCode::FAILURE;
    }
    println!("bsdalloc-test-kernel: ok");
    ExitCode::SUCCESS
}

fn print_report(r: &kernel::Report, allocs: u64, frees: u64) {
    println!(
        "bsdalloc-test-kernel: {NCPU} CPUs on the platform's kernel backend, {} MiB of static RAM",
        pages::MEM_BYTES >> 20
    );
    if let Some(m) = &r.map {
        println!("{m}");
    }
    if let Some(b) = &r.backed {
        println!("{b}");
    }
    println!(
        "operations per CPU (CpuLocal, read by cross-call): {:?}",
        r.ops_per_cpu
    );
    println!("cross-call for cpuN ran on: {:?}", r.xcall_ran_on);
    println!(
        "IPL_VM interrupt runs: {}; first PIDs (next fit): {:?}",
        r.intr_runs, r.first_pids
    );
    println!(
        "machine: {} current_cpu calls, {} IPIs sent, {} taken, sleeps per CPU {:?}, {} wakeups",
        STATS.current_cpu_calls.load(Ordering::Relaxed),
        STATS.ipis_sent.load(Ordering::Relaxed),
        STATS.ipis_taken.load(Ordering::Relaxed),
        STATS.sleeps.each_ref().map(|s| s.load(Ordering::Relaxed)),
        STATS.wakeups.load(Ordering::Relaxed),
    );
    println!("page source at the peak:\n{}", r.pages_peak);
    println!(
        "page source after teardown: {} bytes reserved, {} pages committed = vmem meta \
         memory ({} bytes, {} boundary tags carved from it)",
        r.pages_end.reserved_bytes, r.pages_end.committed_pages, r.meta_end, r.tags_from_pages
    );
    println!(
        "Rust global allocator calls while the kernel ran: {allocs} allocations, {frees} frees"
    );
}

fn print_facade(r: &facade::Report, text: &facade::Text) {
    println!(
        "bsdalloc::Kernel::boot on this machine's pages and meta source: PAGE_SIZE {}, \
         {} MiB of kernel VA, a budget of {} pages; page source after boot: {} bytes reserved, \
         {} pages committed",
        r.page_size,
        facade::VA_BYTES >> 20,
        r.limit_pages,
        r.pages_booted.reserved_bytes,
        r.pages_booted.committed_pages,
    );
    println!(
        "kmem on every CPU: {} allocations (8 B to 3 pages, kmem_zalloc among them), \
         size-class caches {} hits in {} requests, large {} allocs / {} frees; \
         census after: {} objects, {} large allocations out",
        r.kmem_ops,
        r.cache_hits,
        r.cache_requests,
        r.large.allocs,
        r.large.frees,
        r.census.objects_out,
        r.census.large_out,
    );
    if let (Some(w), Some(i)) = (&r.work_type, &r.intr_type) {
        println!(
            "malloc(9): {} {} calls (M_WAITOK | M_ZERO), {} in use, high {} bytes; \
             {} {} calls from the handler (M_NOWAIT | M_ZERO), {} in use",
            w.shortdesc, w.calls, w.inuse, w.maxused, i.shortdesc, i.calls, i.inuse,
        );
    }
    if let Some(o) = &r.objs {
        println!(
            "pool cache {}: {} gets, {} constructed and {} destructed (all from and to the pool), \
             {} out; per-CPU hits {}, misses {}",
            o.name, r.obj_gets, r.ctors, r.dtors, o.pool.nout, o.nhit_pcpu, o.nmiss_pcpu,
        );
    }
    println!(
        "IPL_VM handler runs per CPU (kmem_intr_alloc KM_NOSLEEP, malloc M_NOWAIT, \
         pool_cache_get PR_NOWAIT, a block freed by the thread): {:?}, {} in all",
        r.intr_runs, r.handler_runs,
    );
    println!(
        "kernel map committed pages: {} before the pagedaemon, {} after a pass at uptime 0 \
         (cached pages back; pool pages idle < POOL_INACTIVE_TIME stay), {} after {} passes \
         over {} ten-second hardclock steps (UPTIME.set): the pages of pools with live items",
        r.committed[0], r.committed[1], r.committed[2], r.pagedaemon_passes, r.hardclocks,
    );
    if let Some(m) = &r.map {
        println!("{m}");
    }
    println!(
        "page source with the facade's kernel up: {} bytes reserved, {} pages committed \
         (vmem meta {} bytes)",
        r.pages_end.reserved_bytes, r.pages_end.committed_pages, r.meta_end,
    );
    println!("bsdalloc::kernel().report(), formatted inside the window:");
    for line in text.as_str().lines() {
        println!("  {line}");
    }
}
