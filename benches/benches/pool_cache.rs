//! pool_cache (BENCHMARKS.md G1–G5, V4), peers in the same run:
//!
//! - G1: get+put 64 B, hot, one thread — mimalloc, glibc, and with the
//!   `c-peers` feature jemalloc, rpmalloc, snmalloc; lockfree-object-pool.
//! - G2: allocate 1000, free 1000 (depot exchange) — the same peers.
//! - G3: producer → consumer across threads, 64 B objects handed over in
//!   batches (1 producer → N−1 consumers; N = 2 here).
//! - G4: constructed objects (a constructor of ≈ 75 ns), 90% hits, against
//!   `Box::new` + the same construction.
//! - G5 (not timed): fill 1 GiB of 64 B objects, free all, drain; resident
//!   memory against the baseline, for us and mimalloc.
//! - V4: `vmem_alloc`+`vmem_free` of 4 quanta through a quantum cache,
//!   against the G1 pair.
//!
//! Counters per case (our own statistics: per-CPU hits and misses, depot
//! exchanges, pool requests, contended spins per op) go to the report.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bsdalloc_platform::Ipl;
use bsdalloc_pool::{ManualClock, PrFlags};
use bsdalloc_pool_cache::{
    PoolCache, PoolCacheConfig, PoolCacheStats, RawPoolCache, vmem_qcache_init,
};
use bsdalloc_vmem::{ArenaConfig, VmFlags, vmem_xcreate};
use criterion::{Criterion, criterion_group, criterion_main};

static G1: RawPoolCache = RawPoolCache::new(PoolCacheConfig::new("bench-g1", 64));
static G2: RawPoolCache = RawPoolCache::new(PoolCacheConfig::new("bench-g2", 64));
static G3: RawPoolCache = RawPoolCache::new(PoolCacheConfig::new("bench-g3", 64));
static G5_CLOCK: ManualClock = ManualClock::new();
static G5: RawPoolCache = RawPoolCache::new(PoolCacheConfig::new("bench-g5", 64).clock(&G5_CLOCK));

const L64: Layout = match Layout::from_size_align(64, 8) {
    Ok(l) => l,
    Err(_) => panic!(),
};

/// The allocators compared with ours as malloc+free.
fn peers() -> Vec<(&'static str, &'static (dyn GlobalAlloc + Sync))> {
    #[allow(unused_mut)]
    let mut v: Vec<(&'static str, &'static (dyn GlobalAlloc + Sync))> =
        vec![("mimalloc", &mimalloc::MiMalloc), ("glibc", &System)];
    #[cfg(feature = "c-peers")]
    {
        v.push(("jemalloc", &tikv_jemallocator::Jemalloc));
        v.push(("rpmalloc", &rpmalloc::RpMalloc));
        v.push(("snmalloc", &snmalloc_rs::SnMalloc));
    }
    v
}

fn counters(case: &str, before: &PoolCacheStats, after: &PoolCacheStats, ops: f64) -> String {
    let hits = after.nhit_pcpu - before.nhit_pcpu;
    let misses = after.nmiss_pcpu - before.nmiss_pcpu;
    let pool = after.nmiss_global - before.nmiss_global;
    let depot = misses - pool;
    let spins = after.ncontended - before.ncontended;
    format!(
        "| {case} | {:.0} | {:.4} | {:.4} | {:.5} | {:.5} | {:.6} |\n",
        ops,
        hits as f64 / ops,
        misses as f64 / ops,
        depot as f64 / ops,
        pool as f64 / ops,
        spins as f64 / ops
    )
}

fn g1(c: &mut Criterion, extra: &mut String) {
    G1.bootstrap();
    let warm = G1.get(PrFlags::WAITOK).unwrap();
    // SAFETY: an object of G1.
    unsafe { G1.put(warm) };
    let mut g = c.benchmark_group("G1/get-put-64B");
    let before = G1.stats();
    let mut n = 0u64;
    g.bench_function("ours", |b| {
        b.iter(|| {
            let p = G1.get(PrFlags::NOWAIT).unwrap();
            // SAFETY: an object of G1, given back at once.
            unsafe { G1.put(black_box(p)) };
            n += 1;
        })
    });
    let after = G1.stats();
    extra.push_str(&counters("G1 ours", &before, &after, 2.0 * n as f64));
    let typed: PoolCache<[u8; 64]> = PoolCache::new("bench-g1-typed", Ipl::None, || [0; 64]);
    g.bench_function("ours-typed", |b| b.iter(|| black_box(&*typed.get())[0]));
    for (name, a) in peers() {
        g.bench_function(name, |b| {
            b.iter(|| {
                // SAFETY: a valid layout, freed once with it.
                unsafe {
                    let p = a.alloc(black_box(L64));
                    a.dealloc(black_box(p), L64);
                }
            })
        });
    }
    let lf = lockfree_object_pool::LinearObjectPool::<[u8; 64]>::new(|| [0; 64], |_| {});
    g.bench_function("lockfree-object-pool", |b| {
        b.iter(|| black_box(&*lf.pull())[0])
    });
    g.finish();
}

fn g2(c: &mut Criterion, extra: &mut String) {
    G2.bootstrap();
    const N: usize = 1000;
    let mut v: Vec<NonNull<u8>> = Vec::with_capacity(N);
    let mut g = c.benchmark_group("G2/alloc1000-free1000");
    let before = G2.stats();
    let mut rounds = 0u64;
    g.bench_function("ours", |b| {
        b.iter(|| {
            for _ in 0..N {
                v.push(G2.get(PrFlags::NOWAIT).unwrap());
            }
            for p in v.drain(..) {
                // SAFETY: objects of G2.
                unsafe { G2.put(p) };
            }
            rounds += 1;
        })
    });
    let after = G2.stats();
    extra.push_str(&counters(
        "G2 ours",
        &before,
        &after,
        (2 * N) as f64 * rounds as f64,
    ));
    let mut raw: Vec<*mut u8> = Vec::with_capacity(N);
    for (name, a) in peers() {
        g.bench_function(name, |b| {
            b.iter(|| {
                for _ in 0..N {
                    // SAFETY: a valid layout.
                    raw.push(unsafe { a.alloc(L64) });
                }
                for p in raw.drain(..) {
                    // SAFETY: allocated above with this layout.
                    unsafe { a.dealloc(p, L64) };
                }
            })
        });
    }
    g.finish();
}

/// Ptrs sent between threads.
struct Batch(Vec<*mut u8>);
// SAFETY: objects handed over whole, owned by one thread at a time.
unsafe impl Send for Batch {}

/// G3 with one producer and `consumers` consumers: `total` objects made by
/// the producer, handed over in batches of 256, freed by the consumers.
/// Returns the time per object.
fn producer_consumer(
    alloc: &'static (dyn Fn() -> *mut u8 + Sync),
    free: &'static (dyn Fn(*mut u8) + Sync),
    consumers: usize,
    total: usize,
) -> Duration {
    let (txs, handles): (Vec<_>, Vec<_>) = (0..consumers)
        .map(|_| {
            let (tx, rx) = mpsc::sync_channel::<Batch>(64);
            let h = std::thread::spawn(move || {
                for b in rx {
                    for p in b.0 {
                        free(p);
                    }
                }
            });
            (tx, h)
        })
        .unzip();
    let start = Instant::now();
    let mut batch = Vec::with_capacity(256);
    for i in 0..total {
        let p = alloc();
        // SAFETY: 64 writable bytes.
        unsafe { p.write(i as u8) };
        batch.push(p);
        if batch.len() == 256 {
            let b = std::mem::replace(&mut batch, Vec::with_capacity(256));
            txs[(i / 256) % consumers].send(Batch(b)).unwrap();
        }
    }
    if !batch.is_empty() {
        txs[0].send(Batch(batch)).unwrap();
    }
    drop(txs);
    for h in handles {
        h.join().unwrap();
    }
    start.elapsed() / total as u32
}

fn g3(c: &mut Criterion, extra: &mut String) {
    G3.bootstrap();
    let consumers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .saturating_sub(1)
        .max(1);
    let mut g = c.benchmark_group(format!("G3/producer-1-consumers-{consumers}"));
    g.sample_size(10);
    let total = 1 << 18;
    let ours_alloc: &'static (dyn Fn() -> *mut u8 + Sync) =
        &|| G3.get(PrFlags::WAITOK).unwrap().as_ptr();
    let ours_free: &'static (dyn Fn(*mut u8) + Sync) =
        // SAFETY: objects of G3.
        &|p| unsafe { G3.put(NonNull::new_unchecked(p)) };
    let before = G3.stats();
    let mut objs = 0u64;
    g.bench_function("ours", |b| {
        b.iter_custom(|iters| {
            objs += iters * total as u64;
            (0..iters)
                .map(|_| producer_consumer(ours_alloc, ours_free, consumers, total) * total as u32)
                .sum()
        })
    });
    let after = G3.stats();
    extra.push_str(&counters("G3 ours", &before, &after, 2.0 * objs as f64));
    for (name, a) in peers() {
        let al: &'static (dyn Fn() -> *mut u8 + Sync) = Box::leak(Box::new(move || {
            // SAFETY: a valid layout.
            unsafe { a.alloc(L64) }
        }));
        let fr: &'static (dyn Fn(*mut u8) + Sync) = Box::leak(Box::new(move |p| {
            // SAFETY: allocated with this layout by the same allocator.
            unsafe { a.dealloc(p, L64) }
        }));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| producer_consumer(al, fr, consumers, total) * total as u32)
                    .sum()
            })
        });
    }
    g.finish();
    let s = G3.stats();
    let _ = writeln!(
        extra,
        "\nG3 memory: our pool holds {} pages of {} bytes ({:.1} MiB) after the run; process peak RSS {:.1} MiB.\n",
        s.pool.npages,
        s.pool.pagesize,
        (s.pool.npages as usize * s.pool.pagesize) as f64 / (1 << 20) as f64,
        peak_rss() as f64 / (1 << 20) as f64
    );
}

fn peak_rss() -> usize {
    // SAFETY: getrusage fills the struct.
    unsafe {
        let mut r: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut r);
        r.ru_maxrss as usize * 1024
    }
}

/// A connection-like object whose construction costs about 75 ns.
struct Costly {
    key: [u64; 8],
}

/// About 75 ns of work the optimiser cannot skip.
#[inline(never)]
fn construct() -> Costly {
    let mut key = [0u64; 8];
    let mut x = black_box(0x9e37_79b9_7f4a_7c15u64);
    for _ in 0..6 {
        for k in key.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *k = black_box(k.wrapping_add(x));
        }
    }
    Costly { key }
}

fn g4(c: &mut Criterion, extra: &mut String) {
    let cache: PoolCache<Costly> = PoolCache::new("bench-g4", Ipl::None, construct);
    let mut g = c.benchmark_group("G4/constructed-90pct-hits");
    let mut i = 0u64;
    let before = cache.raw().stats();
    g.bench_function("ours", |b| {
        b.iter(|| {
            let o = cache.get();
            black_box(o.key[3]);
            i += 1;
            if i.is_multiple_of(10) {
                // One in ten goes back to the pool: the next get constructs.
                o.destruct();
            }
        })
    });
    let after = cache.raw().stats();
    let misses = after.nmiss_global - before.nmiss_global;
    let _ = writeln!(
        extra,
        "\nG4: {} get+put pairs, {} constructor calls = {} pool misses ({:.1}% hits).\n",
        i,
        misses,
        misses,
        100.0 * (1.0 - misses as f64 / i as f64)
    );
    g.bench_function("construct-alone", |b| {
        b.iter(|| black_box(construct().key[3]))
    });
    g.bench_function("box-new-init", |b| {
        b.iter(|| {
            let o = Box::new(construct());
            black_box(o.key[3]);
        })
    });
    g.finish();
}

fn v4(c: &mut Criterion) {
    let a = vmem_xcreate(
        ArenaConfig::new("bench-v4", 4096).qcache_max(16 * 4096),
        1 << 20,
        1 << 40,
    )
    .unwrap();
    vmem_qcache_init(a);
    let f = VmFlags::NOSLEEP | VmFlags::INSTANTFIT;
    let x = a.alloc(4 * 4096, f).unwrap();
    a.free(x, 4 * 4096);
    let mut g = c.benchmark_group("V4/qcache-alloc-free-4-quanta");
    g.bench_function("ours", |b| {
        b.iter(|| {
            let x = a.alloc(black_box(4 * 4096), f).unwrap();
            a.free(black_box(x), 4 * 4096);
        })
    });
    g.bench_function("pool_cache-G1", |b| {
        b.iter(|| {
            let p = G1.get(PrFlags::NOWAIT).unwrap();
            // SAFETY: an object of G1.
            unsafe { G1.put(black_box(p)) };
        })
    });
    g.finish();
}

/// G5: fill `bytes` of 64 B objects, free all, drain; resident memory.
fn g5(extra: &mut String) {
    let bytes: usize = std::env::var("BSDALLOC_G5_BYTES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1 << 30);
    let n = bytes / 64;
    let rss = || bsdalloc_platform::resident_bytes().unwrap_or(0);
    let (mi_base, mi_full, mi_drained) = {
        let mut raw: Vec<*mut u8> = Vec::with_capacity(n);
        let base = rss();
        for i in 0..n {
            // SAFETY: a valid layout; 64 writable bytes.
            unsafe {
                let p = mimalloc::MiMalloc.alloc(L64);
                p.write_bytes(i as u8, 64);
                raw.push(p);
            }
        }
        let full = rss();
        for p in raw.drain(..) {
            // SAFETY: allocated above.
            unsafe { mimalloc::MiMalloc.dealloc(p, L64) };
        }
        drop(raw);
        // SAFETY: mimalloc's collect, on this thread's heap.
        unsafe { libmimalloc_sys::mi_collect(true) };
        (base, full, rss())
    };
    G5.bootstrap();
    let mut v: Vec<NonNull<u8>> = Vec::with_capacity(n);
    let base = rss();
    for i in 0..n {
        let p = G5.get(PrFlags::WAITOK).unwrap();
        // SAFETY: 64 writable bytes.
        unsafe { p.as_ptr().write_bytes(i as u8, 64) };
        v.push(p);
    }
    let full = rss();
    for p in v.drain(..) {
        // SAFETY: objects of G5.
        unsafe { G5.put(p) };
    }
    drop(v);
    let freed = rss();
    // The pagedaemon's view: the cache is invalidated (its pool's pages go
    // idle), and pages idle for 10 s are released by reclaim.
    G5.invalidate();
    G5_CLOCK.advance(11);
    G5.reclaim();
    let drained = rss();
    // The group pools' pages (16 bytes per cached object) idle on the real
    // clock: after 10 s the pagedaemon's pool_drain gives them back.
    std::thread::sleep(Duration::from_secs(11));
    for _ in 0..bsdalloc_pool::pool_count() {
        bsdalloc_pool::pool_drain();
    }
    // A pagedaemon pass also gives the map's cached free pages back.
    bsdalloc_pool::kernel_map().pagedaemon();
    let groups_drained = rss();
    let ms = bsdalloc_pool::kernel_map().stats();
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    let _ = writeln!(
        extra,
        "\n### G5 reclaim: {} MiB of 64 B objects\n\n\
         | | baseline | filled | freed | drained | drained / baseline |\n|---|---|---|---|---|---|\n\
         | mimalloc (mi_collect) | {:.1} MiB | {:.1} MiB | — | {:.1} MiB | {:.3} |\n\
         | ours (invalidate, reclaim of pages idle 10 s) | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.3} |\n\
         | ours, and 11 s later pool_drain (group pools too) and a pagedaemon pass | | | | {:.1} MiB | {:.3} |\n\n\
         Left committed in the kernel map after the drain: {} pages, {} of them freed pages kept for reuse \
         (the map's free-page target is {} pages).\n",
        bytes >> 20,
        mib(mi_base),
        mib(mi_full),
        mib(mi_drained),
        mi_drained as f64 / mi_base as f64,
        mib(base),
        mib(full),
        mib(freed),
        mib(drained),
        drained as f64 / base as f64,
        mib(groups_drained),
        groups_drained as f64 / base as f64,
        ms.committed_pages,
        ms.cached_pages,
        ms.free_target_pages,
    );
}

fn all(c: &mut Criterion) {
    let mut extra = String::from(
        "\n### pool_cache counters (our statistics, per operation; an op is a get or a put)\n\n\
         | case | ops | CPU-layer hits | CPU misses | depot exchanges | pool requests | contended spins |\n\
         |---|---|---|---|---|---|---|\n",
    );
    g1(c, &mut extra);
    g2(c, &mut extra);
    g3(c, &mut extra);
    g4(c, &mut extra);
    v4(c);
    g5(&mut extra);
    bsdalloc_benches::append_extra(&extra);
}

criterion_group!(benches, all);
criterion_main!(benches);
