//! P0: the machine's per-operation costs, against the thread-local and lock
//! primitives a user-space allocator would otherwise use.

use std::cell::Cell;
use std::hint::black_box;

use bsdalloc_platform::{Ipl, OS_PAGES, PerCpu, SpinMutex, cpu_local, curcpu, splraise, splx};
use criterion::{Criterion, criterion_group, criterion_main};

cpu_local! { static COUNTER: CpuLocal<u64> = 0; }

thread_local! {
    static TLS_COUNTER: Cell<u64> = const { Cell::new(0) };
}

static SPIN: SpinMutex<u64> = SpinMutex::new(Ipl::Vm, 0);
static STD_MUTEX: std::sync::Mutex<u64> = std::sync::Mutex::new(0);
static PL_MUTEX: parking_lot::Mutex<u64> = parking_lot::const_mutex(0);

fn cpu_local_access(c: &mut Criterion) {
    curcpu();
    let percpu: PerCpu<u64> = PerCpu::new(&OS_PAGES).unwrap();
    let mut g = c.benchmark_group("P0/cpu-local-increment");
    g.bench_function("ours", |b| {
        b.iter(|| percpu.with(|n| *n = black_box(*n + 1)))
    });
    g.bench_function("ours-static-CpuLocal", |b| {
        b.iter(|| COUNTER.with(|n| *n = black_box(*n + 1)))
    });
    g.bench_function("thread_local-cell", |b| {
        b.iter(|| TLS_COUNTER.with(|n| n.set(black_box(n.get() + 1))))
    });
    g.bench_function("sched_getcpu", |b| {
        b.iter(|| {
            // SAFETY: sched_getcpu has no preconditions.
            black_box(unsafe { libc::sched_getcpu() })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("P0/splraise-splx");
    g.bench_function("ours", |b| {
        b.iter(|| {
            let s = splraise(black_box(Ipl::Vm));
            splx(s);
        })
    });
    g.finish();

    let mut g = c.benchmark_group("P0/lock-unlock-uncontended");
    g.bench_function("ours", |b| b.iter(|| *SPIN.lock() += 1));
    g.bench_function("std-mutex", |b| b.iter(|| *STD_MUTEX.lock().unwrap() += 1));
    g.bench_function("parking_lot", |b| b.iter(|| *PL_MUTEX.lock() += 1));
    g.finish();
}

criterion_group!(benches, cpu_local_access);
criterion_main!(benches);
