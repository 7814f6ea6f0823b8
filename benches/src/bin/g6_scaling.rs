//! G6 (BENCHMARKS.md): G1 and G3 scaling over thread counts, ours against
//! the malloc peers, as a table on stdout (and in the report's extra file
//! when `BSDALLOC_BENCH_EXTRA` is set).
//!
//! ```text
//! cargo run --release -p bsdalloc-benches --bin g6_scaling -- --threads 1,2,4,8,16
//! cargo run --release -p bsdalloc-benches --features c-peers --bin g6_scaling -- --threads 1,2,4
//! ```
//! G1: each thread runs 64 B get+put pairs for `--ms` milliseconds
//! (default 300); throughput and efficiency = throughput(T) / (T ×
//! throughput(1)). G3: one producer, T−1 consumers, objects handed over in
//! batches of 256; nanoseconds per object. Thread counts above the core
//! count are oversubscribed runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bsdalloc_benches::driver::arg;
use bsdalloc_pool::PrFlags;
use bsdalloc_pool_cache::{PoolCacheConfig, RawPoolCache};

static PC: RawPoolCache = RawPoolCache::new(PoolCacheConfig::new("g6", 64));
const L64: Layout = match Layout::from_size_align(64, 8) {
    Ok(l) => l,
    Err(_) => panic!(),
};

#[derive(Clone, Copy)]
enum Who {
    Ours,
    Peer(&'static (dyn GlobalAlloc + Sync)),
}

impl Who {
    #[inline]
    fn alloc(self) -> *mut u8 {
        match self {
            Who::Ours => PC.get(PrFlags::NOWAIT).unwrap().as_ptr(),
            // SAFETY: a valid layout.
            Who::Peer(a) => unsafe { a.alloc(L64) },
        }
    }
    #[inline]
    fn free(self, p: *mut u8) {
        match self {
            // SAFETY: an object of PC.
            Who::Ours => unsafe { PC.put(std::ptr::NonNull::new_unchecked(p)) },
            // SAFETY: allocated by the same allocator with this layout.
            Who::Peer(a) => unsafe { a.dealloc(p, L64) },
        }
    }
}

struct SendPtr(Vec<*mut u8>);
// SAFETY: objects handed over whole.
unsafe impl Send for SendPtr {}

/// Million get+put pairs per second with `threads` threads.
fn g1(who: Who, threads: usize, ms: u64) -> f64 {
    let stop = AtomicBool::new(false);
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..1000 {
                            let p = who.alloc();
                            who.free(black_box(p));
                        }
                        n += 1000;
                    }
                    n
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(ms));
        stop.store(true, Ordering::Relaxed);
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64 / (ms as f64 * 1e3)
}

/// Nanoseconds per object, one producer and `consumers` consumers.
fn g3(who: Who, consumers: usize, total: usize) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        let txs: Vec<_> = (0..consumers)
            .map(|_| {
                let (tx, rx) = mpsc::sync_channel::<SendPtr>(64);
                s.spawn(move || {
                    for b in rx {
                        for p in b.0 {
                            who.free(p);
                        }
                    }
                });
                tx
            })
            .collect();
        let mut batch = Vec::with_capacity(256);
        for i in 0..total {
            let p = who.alloc();
            // SAFETY: 64 writable bytes.
            unsafe { p.write(i as u8) };
            batch.push(p);
            if batch.len() == 256 {
                let b = std::mem::replace(&mut batch, Vec::with_capacity(256));
                txs[(i / 256) % consumers].send(SendPtr(b)).unwrap();
            }
        }
        txs[0].send(SendPtr(batch)).unwrap();
    });
    start.elapsed().as_nanos() as f64 / total as f64
}

fn main() {
    let threads: Vec<usize> = arg("--threads")
        .unwrap_or_else(|| "1,2,4".into())
        .split(',')
        .filter_map(|t| t.parse().ok())
        .collect();
    let ms: u64 = arg("--ms").and_then(|s| s.parse().ok()).unwrap_or(300);
    PC.bootstrap();
    #[allow(unused_mut)]
    let mut who: Vec<(&str, Who)> = vec![
        ("ours", Who::Ours),
        ("mimalloc", Who::Peer(&mimalloc::MiMalloc)),
        ("glibc", Who::Peer(&System)),
    ];
    #[cfg(feature = "c-peers")]
    {
        who.push(("jemalloc", Who::Peer(&tikv_jemallocator::Jemalloc)));
        who.push(("snmalloc", Who::Peer(&snmalloc_rs::SnMalloc)));
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### G6 scaling ({}; {cores} cores: counts above are oversubscribed)\n\n\
         G1 get+put 64 B, million pairs per second (efficiency = T-thread throughput / (T x 1-thread)):\n\n\
         | threads | {} |\n|---|{}",
        bsdalloc_benches::machine_description(),
        who.iter().map(|w| w.0).collect::<Vec<_>>().join(" | "),
        "---|".repeat(who.len())
    );
    let base: Vec<f64> = who.iter().map(|&(_, w)| g1(w, 1, ms)).collect();
    // Rows right under the header (a blank line would end the table).
    for &t in &threads {
        let _ = write!(out, "| {t} |");
        for (i, &(_, w)) in who.iter().enumerate() {
            let m = if t == 1 { base[i] } else { g1(w, t, ms) };
            let _ = write!(out, " {:.1} (eff {:.2}) |", m, m / (t as f64 * base[i]));
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "\nG3 one producer -> T-1 consumers, ns per object:\n\n| threads | {} |\n|---|{}",
        who.iter().map(|w| w.0).collect::<Vec<_>>().join(" | "),
        "---|".repeat(who.len())
    );
    for &t in threads.iter().filter(|&&t| t >= 2) {
        let _ = write!(out, "| {t} |");
        for &(_, w) in &who {
            let _ = write!(out, " {:.1} |", g3(w, t - 1, 1 << 20));
        }
        out.push('\n');
    }
    print!("{out}");
    if std::env::var("BSDALLOC_BENCH_EXTRA").is_ok() {
        bsdalloc_benches::append_extra(&out);
    }
}
