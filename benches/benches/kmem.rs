//! kmem (BENCHMARKS.md K1 and K5), peers in the same run:
//!
//! - K1: a size mix of 8 B–4 KiB (log-uniform), a live set of 10k blocks,
//!   churn (each op frees a random live block and allocates a new size),
//!   one thread — against mimalloc, glibc and talc. Also RSS per live byte
//!   for the mix (100k live blocks) for us and mimalloc, and our counters
//!   per op.
//! - K6: the same churn through malloc(9) (`malloc(size, M_TEMP,
//!   M_WAITOK)`, its header and per-type statistics) against plain kmem
//!   in the same run (goal: ≤ K1 + 2 ns).
//! - K5 end to end: 16 KiB–4 MiB through `kmem_alloc` (the `kva` arena, its
//!   quantum caches, the kernel map's pages), every page touched — against
//!   mimalloc and glibc; and our OS calls per op in steady state.

use std::alloc::{GlobalAlloc, Layout};
use std::fmt::Write as _;
use std::hint::black_box;
use std::ptr::NonNull;

use bsdalloc_benches::{TalcHeap, Xorshift};
use bsdalloc_kmem::{KM_SLEEP, KmemStats, kmem, kmem_alloc, kmem_free};
use criterion::{Criterion, criterion_group, criterion_main};

const LIVE: usize = 10_000;
const PS: usize = 4096;

/// 8 B to 4 KiB, log-uniform: an octave first, then a size in it.
fn k1_size(rng: &mut Xorshift) -> usize {
    let shift = 3 + rng.below(9) as u32; // 8 .. 2048
    let base = 1usize << shift;
    base + rng.below(base as u64 + 1) as usize // .. 4096
}

/// One K1 churn step over `live`: free a random block, allocate another.
macro_rules! churn {
    ($live:ident, $rng:ident, |$fp:ident, $fs:ident| $free:expr, |$s:ident| $alloc:expr) => {{
        let i = $rng.below(LIVE as u64) as usize;
        let ($fp, $fs) = $live[i];
        $free;
        let $s = k1_size(&mut $rng);
        let p: *mut u8 = $alloc;
        // SAFETY: a fresh block of at least one byte.
        unsafe { p.write(1) };
        $live[i] = (black_box(p), $s);
    }};
}

fn ours_alloc(s: usize) -> *mut u8 {
    kmem_alloc(s, KM_SLEEP).unwrap().as_ptr()
}

fn mi_layout(s: usize) -> Layout {
    Layout::from_size_align(s, 8).unwrap()
}

fn mi_alloc(s: usize) -> *mut u8 {
    // SAFETY: a valid non-zero layout.
    unsafe { mimalloc::MiMalloc.alloc(mi_layout(s)) }
}

fn c_malloc(s: usize) -> *mut u8 {
    // SAFETY: plain malloc.
    unsafe { libc::malloc(s) }.cast()
}

/// glibc's free of a `c_malloc` block (a benchmark's own blocks only).
fn c_free(p: *mut u8) {
    // SAFETY: the callers pass blocks from `c_malloc`, each once.
    unsafe { libc::free(p.cast()) }
}

/// # Safety
/// `p` came from `mi_alloc(s)` and is freed once.
unsafe fn mi_free(p: *mut u8, s: usize) {
    // SAFETY: the caller's contract.
    unsafe { mimalloc::MiMalloc.dealloc(p, mi_layout(s)) }
}

/// Our counters between two snapshots, per op.
fn counters(case: &str, a: &KmemStats, b: &KmemStats, map: (u64, u64), ops: f64) -> String {
    let sum = |s: &KmemStats, f: fn(&bsdalloc_pool_cache::PoolCacheStats) -> u64| -> u64 {
        s.caches().map(f).sum()
    };
    let hits = sum(b, |c| c.nhit_pcpu) - sum(a, |c| c.nhit_pcpu);
    let misses = sum(b, |c| c.nmiss_pcpu) - sum(a, |c| c.nmiss_pcpu);
    let pool = sum(b, |c| c.nmiss_global) - sum(a, |c| c.nmiss_global);
    let pages = sum(b, |c| c.pool.npagealloc) - sum(a, |c| c.pool.npagealloc);
    let large = b.large.allocs - a.large.allocs;
    format!(
        "| {case} | {ops:.0} | {:.4} | {:.5} | {:.5} | {:.6} | {:.5} | {:.6} |\n",
        hits as f64 / ops,
        misses as f64 / ops,
        pool as f64 / ops,
        pages as f64 / ops,
        large as f64 / ops,
        (map.1 - map.0) as f64 / ops,
    )
}

fn k6(c: &mut Criterion) {
    use bsdalloc_kmalloc::{M_TEMP, M_WAITOK, free, malloc};
    let mut g = c.benchmark_group("K6/malloc9-vs-kmem-mix-8B-4K-live10k");
    {
        let mut rng = Xorshift::new(13);
        let mut live: Vec<(*mut u8, usize)> = (0..LIVE)
            .map(|_| {
                let s = k1_size(&mut rng);
                (malloc(s, &M_TEMP, M_WAITOK).unwrap().as_ptr(), s)
            })
            .collect();
        g.bench_function("ours", |b| {
            b.iter(|| {
                // SAFETY: a live M_TEMP block.
                churn!(live, rng, |p, _s| unsafe { free(p, &M_TEMP) }, |s| malloc(
                    s, &M_TEMP, M_WAITOK
                )
                .unwrap()
                .as_ptr())
            })
        });
        for (p, _) in live {
            // SAFETY: as above.
            unsafe { free(p, &M_TEMP) };
        }
    }
    {
        let mut rng = Xorshift::new(13);
        let mut live: Vec<(*mut u8, usize)> = (0..LIVE)
            .map(|_| {
                let s = k1_size(&mut rng);
                (ours_alloc(s), s)
            })
            .collect();
        g.bench_function("kmem-K1", |b| {
            b.iter(|| {
                // SAFETY: a live block of ours with its size.
                churn!(live, rng, |p, s| unsafe { kmem_free(p, s) }, |s| {
                    ours_alloc(s)
                })
            })
        });
        for (p, s) in live {
            // SAFETY: as above.
            unsafe { kmem_free(p, s) };
        }
    }
    g.finish();
}

fn os_calls() -> u64 {
    bsdalloc_pool::kernel_map().stats().os_calls
}

fn k1(c: &mut Criterion, extra: &mut String) {
    let mut g = c.benchmark_group("K1/kmem-mix-8B-4K-live10k");
    {
        let mut rng = Xorshift::new(11);
        let mut live: Vec<(*mut u8, usize)> = (0..LIVE)
            .map(|_| {
                let s = k1_size(&mut rng);
                (ours_alloc(s), s)
            })
            .collect();
        let before = kmem().stats();
        let os0 = os_calls();
        let mut ops = 0u64;
        g.bench_function("ours", |b| {
            b.iter(|| {
                ops += 1;
                // SAFETY: a live block of ours with its size.
                churn!(live, rng, |p, s| unsafe { kmem_free(p, s) }, |s| {
                    ours_alloc(s)
                })
            })
        });
        let after = kmem().stats();
        extra.push_str(&counters(
            "K1 ours",
            &before,
            &after,
            (os0, os_calls()),
            (2 * ops) as f64,
        ));
        for (p, s) in live {
            // SAFETY: as above.
            unsafe { kmem_free(p, s) };
        }
    }
    {
        let mut rng = Xorshift::new(11);
        let mut live: Vec<(*mut u8, usize)> = (0..LIVE)
            .map(|_| {
                let s = k1_size(&mut rng);
                (mi_alloc(s), s)
            })
            .collect();
        g.bench_function("mimalloc", |b| {
            b.iter(|| {
                // SAFETY: a live block of mimalloc with its size.
                churn!(live, rng, |p, s| unsafe { mi_free(p, s) }, |s| mi_alloc(s))
            })
        });
        for (p, s) in live {
            // SAFETY: as above.
            unsafe { mi_free(p, s) };
        }
    }
    {
        let mut rng = Xorshift::new(11);
        let mut live: Vec<(*mut u8, usize)> = (0..LIVE)
            .map(|_| {
                let s = k1_size(&mut rng);
                (c_malloc(s), s)
            })
            .collect();
        g.bench_function("glibc", |b| {
            b.iter(|| churn!(live, rng, |p, _s| c_free(p), |s| c_malloc(s)))
        });
        for (p, _) in live {
            c_free(p);
        }
    }
    {
        let mut heap = TalcHeap::new(1 << 30, 8);
        let mut rng = Xorshift::new(11);
        let mut live: Vec<(*mut u8, usize)> = (0..LIVE)
            .map(|_| {
                let s = k1_size(&mut rng);
                (heap.alloc(s) as *mut u8, s)
            })
            .collect();
        g.bench_function("talc", |b| {
            b.iter(|| {
                churn!(
                    live,
                    rng,
                    |p, s| heap.free(p as usize, s),
                    |s| heap.alloc(s) as *mut u8
                )
            })
        });
    }
    g.finish();
}

/// RSS per live byte for K1's mix with 100k live blocks, ours and
/// mimalloc's, each as the growth of RSS over its own baseline.
fn k1_memory(extra: &mut String) {
    const N: usize = 100_000;
    let rss = || bsdalloc_platform::resident_bytes().unwrap_or(0);
    let mut sizes = Vec::with_capacity(N);
    let mut rng = Xorshift::new(12);
    for _ in 0..N {
        sizes.push(k1_size(&mut rng));
    }
    let live: usize = sizes.iter().sum();
    let mut ptrs: Vec<NonNull<u8>> = Vec::with_capacity(N);
    let base = rss();
    for &s in &sizes {
        let p = kmem_alloc(s, KM_SLEEP).unwrap();
        // SAFETY: s writable bytes.
        unsafe { p.as_ptr().write_bytes(1, s) };
        ptrs.push(p);
    }
    let ours = rss().saturating_sub(base);
    for (p, &s) in ptrs.drain(..).zip(&sizes) {
        // SAFETY: allocated above with this size.
        unsafe { kmem_free(p.as_ptr(), s) };
    }
    let mi = mimalloc::MiMalloc;
    let base = rss();
    let mut raw: Vec<*mut u8> = Vec::with_capacity(N);
    for &s in &sizes {
        // SAFETY: a valid layout; s writable bytes.
        unsafe {
            let p = mi.alloc(mi_layout(s));
            p.write_bytes(1, s);
            raw.push(p);
        }
    }
    let theirs = rss().saturating_sub(base);
    for (p, &s) in raw.into_iter().zip(&sizes) {
        // SAFETY: allocated above with this layout.
        unsafe { mi.dealloc(p, mi_layout(s)) };
    }
    let _ = writeln!(
        extra,
        "\nK1 memory: {N} live blocks of K1's mix, {:.1} MiB requested: RSS growth / live bytes = \
         {:.3} ours, {:.3} mimalloc (goal <= 1.3).\n",
        live as f64 / (1 << 20) as f64,
        ours as f64 / live as f64,
        theirs as f64 / live as f64,
    );
}

/// 4 to 1024 pages (16 KiB to 4 MiB), log-uniform.
fn k5_size(rng: &mut Xorshift) -> usize {
    let shift = 2 + rng.below(9) as u32;
    let base = 1usize << shift;
    (base + rng.below(base as u64) as usize).min(1024) * PS
}

fn touch(p: *mut u8, len: usize) {
    for off in (0..len).step_by(PS) {
        // SAFETY: p..p+len is a live allocation.
        unsafe { p.add(off).write_volatile(1) };
    }
}

fn k5(c: &mut Criterion, extra: &mut String) {
    let mut g = c.benchmark_group("K5/kmem-16K-4M-touch");
    {
        let mut rng = Xorshift::new(5);
        g.bench_function("ours", |b| {
            b.iter(|| {
                let len = k5_size(&mut rng);
                let p = kmem_alloc(len, KM_SLEEP).unwrap();
                touch(p.as_ptr(), len);
                // SAFETY: allocated just above with this size.
                unsafe { kmem_free(black_box(p.as_ptr()), len) };
            })
        });
    }
    {
        let mut rng = Xorshift::new(5);
        let mi = mimalloc::MiMalloc;
        g.bench_function("mimalloc", |b| {
            b.iter(|| {
                let len = k5_size(&mut rng);
                let l = Layout::from_size_align(len, 8).unwrap();
                // SAFETY: a valid layout, freed with the same.
                unsafe {
                    let p = mi.alloc(l);
                    touch(p, len);
                    mi.dealloc(black_box(p), l);
                }
            })
        });
    }
    {
        let mut rng = Xorshift::new(5);
        g.bench_function("glibc", |b| {
            b.iter(|| {
                let len = k5_size(&mut rng);
                // SAFETY: malloc/free pair.
                unsafe {
                    let p = libc::malloc(len).cast::<u8>();
                    touch(p, len);
                    libc::free(black_box(p).cast());
                }
            })
        });
    }
    g.finish();

    // OS calls per op in steady state, after a warm-up.
    let mut rng = Xorshift::new(6);
    for _ in 0..2000 {
        let len = k5_size(&mut rng);
        let p = kmem_alloc(len, KM_SLEEP).unwrap();
        // SAFETY: as above.
        unsafe { kmem_free(p.as_ptr(), len) };
    }
    let before = kmem().stats();
    let os0 = os_calls();
    const N: u64 = 20_000;
    for _ in 0..N {
        let len = k5_size(&mut rng);
        let p = kmem_alloc(len, KM_SLEEP).unwrap();
        touch(p.as_ptr(), len);
        // SAFETY: as above.
        unsafe { kmem_free(p.as_ptr(), len) };
    }
    let after = kmem().stats();
    extra.push_str(&counters(
        "K5 ours (steady state)",
        &before,
        &after,
        (os0, os_calls()),
        (2 * N) as f64,
    ));
}

fn all(c: &mut Criterion) {
    let mut extra = String::from(
        "\n### kmem counters (our statistics, per operation; an op is an alloc or a free)\n\n\
         | case | ops | cache hits | CPU misses | pool requests | pool pages allocated | large allocs | OS calls |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    // First, while both heaps are fresh: RSS growth is then each one's own.
    let mut memory = String::new();
    k1_memory(&mut memory);
    k1(c, &mut extra);
    k6(c);
    k5(c, &mut extra);
    extra.push_str(&memory);
    bsdalloc_benches::append_extra(&extra);
}

criterion_group!(benches, all);
criterion_main!(benches);
