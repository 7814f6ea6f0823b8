//! K2, K3 and K4 (BENCHMARKS.md): the multithreaded malloc workloads of
//! the allocator literature, written once over a C-style allocator
//! ([`CAlloc`]: `malloc(size)` and an unsized `free(p)`), compiled into
//! `kmt_bsdalloc` (bsdalloc's C ABI, `bsdalloc_cmalloc`'s exported
//! `malloc`/`free`, which then serve the whole process) and `kmt_peers`
//! (mimalloc, glibc, and with `c-peers` jemalloc, snmalloc and rpmalloc,
//! each through its own prefixed entry points), and run by the `kmt`
//! driver as one child process per allocator and case, so that peak RSS
//! (`getrusage` `ru_maxrss`) is the allocator's own.
//!
//! `kmt_bsdalloc WORKLOAD THREADS [--quick]` and `kmt_peers ALLOC WORKLOAD
//! THREADS [--quick]` run one case and print one line, `kmt alloc=…
//! workload=… threads=… ops=… secs=… cpu_s=… maxrss_kib=… shared_lines=…`.
//!
//! - **K2, larson** (Larson and Krishnan's server simulation, as
//!   mimalloc-bench runs it: `larson 5 8 1000 5000 100 4141 N`): the main
//!   thread fills 5000 slots per thread with blocks of 8–1000 bytes
//!   (xorshift, seed 4141); each worker then replaces a random slot (free
//!   the old block, malloc a new one of a random size, write its first and
//!   last byte) 100 × 5000 times, hands its slots to a new thread it
//!   starts and exits — so blocks are freed by threads other than the one
//!   that allocated them, and threads come and go — until 5 s (1 s with
//!   `--quick`) have passed. ops = replacements (one malloc + one free).
//! - **K3, xmalloc** (Lever and Boreham's xmalloc-test): half the threads
//!   allocate blocks of 1–64 bytes, write a byte, and send them in batches
//!   of 256 over a bounded channel (16 batches deep) to their partner in
//!   the other half, which reads the byte and frees them: every free is a
//!   remote free. 3 s (0.5 s). ops = blocks allocated and freed. The live
//!   set is bounded by the channels, so a peak RSS far above it is memory
//!   the allocator did not reuse.
//! - **K4, cache-scratch** (Hoard's passive false-sharing test): the main
//!   thread allocates one 8-byte object per thread, back to back, and
//!   hands one to each thread, which frees it and then 1000 times
//!   allocates an 8-byte object, writes and reads each of its bytes 50,000
//!   times (5,000 with `--quick`), and frees it. An allocator that gives a
//!   thread the line of the object it freed — which shares a cache line
//!   with its neighbours' — makes the threads fight over that line. ops =
//!   the bytes written; `shared_lines` counts the 64-byte lines that
//!   objects of more than one thread lay on (0: no false sharing).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::thread::Scope;
use std::time::{Duration, Instant};

use crate::Xorshift;

/// The workloads, as the binaries take them on the command line.
pub const WORKLOADS: &[&str] = &["K2", "K3", "K4"];

/// A C-style allocator: `malloc` and `free` without a size, as C programs
/// call it. The workloads are generic over it, so the calls are direct.
pub trait CAlloc: 'static {
    /// The name in the output line.
    const NAME: &'static str;
    /// True when the peer exposes no unsized free and `free` passes the
    /// size on (reported beside the figures).
    const SIZED_FREE: bool = false;

    /// `malloc(size)`: null or a block of at least `size` bytes.
    ///
    /// # Safety
    /// The allocator's own contract (none for a C `malloc`).
    unsafe fn malloc(size: usize) -> *mut u8;

    /// `free(p)`; `size` is what `malloc` was asked for, used only by
    /// allocators marked [`CAlloc::SIZED_FREE`].
    ///
    /// # Safety
    /// `p` came from this allocator's `malloc(size)` and is not used again.
    unsafe fn free(p: *mut u8, size: usize);
}

/// One case's sizes: the issue's, or `--quick`.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// K2's duration.
    pub k2_time: Duration,
    /// K2's slots per thread.
    pub k2_chunks: usize,
    /// K2's rounds per thread generation (each `k2_chunks` replacements).
    pub k2_rounds: usize,
    /// K2's smallest and largest block.
    pub k2_min: usize,
    /// See `k2_min`.
    pub k2_max: usize,
    /// K2's seed (xorshift).
    pub seed: u64,
    /// K3's duration.
    pub k3_time: Duration,
    /// K3's largest block.
    pub k3_max: usize,
    /// K3's channel depth in batches.
    pub k3_depth: usize,
    /// K4's allocations per thread.
    pub k4_iterations: usize,
    /// K4's passes over each object.
    pub k4_repetitions: usize,
    /// K4's object size.
    pub k4_size: usize,
}

impl Params {
    /// The sizes, or the few-second ones.
    pub fn new(quick: bool) -> Params {
        Params {
            k2_time: Duration::from_millis(if quick { 1000 } else { 5000 }),
            k2_chunks: 5000,
            k2_rounds: 100,
            k2_min: 8,
            k2_max: 1000,
            seed: 4141,
            k3_time: Duration::from_millis(if quick { 500 } else { 3000 }),
            k3_max: 64,
            k3_depth: 16,
            k4_iterations: 1000,
            k4_repetitions: if quick { 5_000 } else { 50_000 },
            k4_size: 8,
        }
    }
}

/// What a case measured.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Operations done (see the module docs for each workload's unit).
    pub ops: u64,
    /// Wall seconds of the timed part.
    pub secs: f64,
    /// K4: 64-byte lines shared by objects of different threads.
    pub shared_lines: u64,
}

/// K3's batch: blocks and their sizes, moved by value over the channel
/// (the bounded channel's slots are allocated once, at its creation).
const BATCH: usize = 256;

struct Batch {
    ptrs: [*mut u8; BATCH],
    sizes: [u8; BATCH],
}

// SAFETY: the blocks are plain memory handed from one thread to another;
// the C allocators under test all accept a free from any thread.
unsafe impl Send for Batch {}

/// K2's slots: (block, requested size).
struct Slots(Vec<(*mut u8, usize)>);

// SAFETY: as `Batch`: blocks handed over to the next thread generation.
unsafe impl Send for Slots {}

#[inline]
fn touch(p: *mut u8, size: usize, v: u8) {
    assert!(!p.is_null(), "out of memory");
    // SAFETY: a live block of at least `size` >= 1 bytes.
    unsafe {
        p.write(v);
        p.add(size - 1).write(v);
    }
}

fn larson_generation<'scope, A: CAlloc>(
    sc: &'scope Scope<'scope, '_>,
    mut slots: Slots,
    mut rng: Xorshift,
    p: &'scope Params,
    deadline: Instant,
    stop: &'scope AtomicBool,
    ops: &'scope AtomicU64,
) {
    let range = (p.k2_max - p.k2_min + 1) as u64;
    let n = slots.0.len() as u64;
    let mut done = 0u64;
    for i in 0..p.k2_rounds * p.k2_chunks {
        if i % 1024 == 0 && (stop.load(Ordering::Relaxed) || Instant::now() >= deadline) {
            stop.store(true, Ordering::Relaxed);
            break;
        }
        let size = p.k2_min + rng.below(range) as usize;
        let v = rng.below(n) as usize;
        let (old, old_size) = slots.0[v];
        // SAFETY: a block of this allocator, of that size, freed once.
        unsafe { A::free(old, old_size) };
        // SAFETY: a C malloc.
        let q = unsafe { A::malloc(size) };
        touch(q, size, i as u8);
        slots.0[v] = (q, size);
        done += 1;
    }
    ops.fetch_add(done, Ordering::Relaxed);
    if stop.load(Ordering::Relaxed) {
        for &(q, s) in &slots.0 {
            // SAFETY: the live blocks, each freed once.
            unsafe { A::free(q, s) };
        }
    } else {
        // Larson's server: a new thread carries on with these blocks.
        sc.spawn(move || larson_generation::<A>(sc, slots, rng, p, deadline, stop, ops));
    }
}

/// K2: larson with `threads` slot arrays.
pub fn larson<A: CAlloc>(threads: usize, p: &Params) -> Outcome {
    let mut rng = Xorshift::new(p.seed);
    let range = (p.k2_max - p.k2_min + 1) as u64;
    // The main thread allocates every block first, as larson's warm-up.
    let arrays: Vec<Slots> = (0..threads)
        .map(|_| {
            Slots(
                (0..p.k2_chunks)
                    .map(|i| {
                        let s = p.k2_min + rng.below(range) as usize;
                        // SAFETY: a C malloc.
                        let q = unsafe { A::malloc(s) };
                        touch(q, s, i as u8);
                        (q, s)
                    })
                    .collect(),
            )
        })
        .collect();
    let stop = AtomicBool::new(false);
    let ops = AtomicU64::new(0);
    let start = Instant::now();
    let deadline = start + p.k2_time;
    std::thread::scope(|sc| {
        for (i, slots) in arrays.into_iter().enumerate() {
            let rng = Xorshift::new(
                p.seed
                    .wrapping_add((i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            );
            let (stop, ops) = (&stop, &ops);
            sc.spawn(move || larson_generation::<A>(sc, slots, rng, p, deadline, stop, ops));
        }
    });
    Outcome {
        ops: ops.into_inner(),
        secs: start.elapsed().as_secs_f64(),
        shared_lines: 0,
    }
}

/// K3: xmalloc, `threads / 2` producer–consumer pairs (at least one).
pub fn xmalloc<A: CAlloc>(threads: usize, p: &Params) -> Outcome {
    let pairs = (threads / 2).max(1);
    let ops = AtomicU64::new(0);
    let start = Instant::now();
    let deadline = start + p.k3_time;
    std::thread::scope(|sc| {
        for pair in 0..pairs {
            let (tx, rx) = sync_channel::<Batch>(p.k3_depth);
            let ops = &ops;
            sc.spawn(move || {
                let mut rng = Xorshift::new(p.seed.wrapping_add(pair as u64));
                while Instant::now() < deadline {
                    let mut b = Batch {
                        ptrs: [std::ptr::null_mut(); BATCH],
                        sizes: [0; BATCH],
                    };
                    for i in 0..BATCH {
                        let s = 1 + rng.below(p.k3_max as u64) as usize;
                        // SAFETY: a C malloc.
                        let q = unsafe { A::malloc(s) };
                        touch(q, s, i as u8);
                        b.ptrs[i] = q;
                        b.sizes[i] = s as u8;
                    }
                    if tx.send(b).is_err() {
                        break;
                    }
                }
            });
            sc.spawn(move || {
                let mut n = 0u64;
                let mut sum = 0u64;
                for b in rx {
                    for i in 0..BATCH {
                        // SAFETY: a live block from the partner, freed once.
                        unsafe {
                            sum = sum.wrapping_add(u64::from(b.ptrs[i].read()));
                            A::free(b.ptrs[i], usize::from(b.sizes[i]));
                        }
                    }
                    n += BATCH as u64;
                }
                std::hint::black_box(sum);
                ops.fetch_add(n, Ordering::Relaxed);
            });
        }
    });
    Outcome {
        ops: ops.into_inner(),
        secs: start.elapsed().as_secs_f64(),
        shared_lines: 0,
    }
}

/// K4: cache-scratch with `threads` threads.
pub fn cache_scratch<A: CAlloc>(threads: usize, p: &Params) -> Outcome {
    let size = p.k4_size;
    // One object per thread from the main thread, back to back.
    let objs: Vec<usize> = (0..threads)
        .map(|_| {
            // SAFETY: a C malloc.
            let q = unsafe { A::malloc(size) };
            touch(q, size, 0);
            q as usize
        })
        .collect();
    let start = Instant::now();
    let lines: Vec<Vec<usize>> = std::thread::scope(|sc| {
        let hs: Vec<_> = objs
            .iter()
            .map(|&o| {
                sc.spawn(move || {
                    let mut lines = Vec::with_capacity(16);
                    // SAFETY: the main thread's block, handed to this
                    // thread alone, freed once.
                    unsafe { A::free(o as *mut u8, size) };
                    for _ in 0..p.k4_iterations {
                        // SAFETY: a C malloc.
                        let q = unsafe { A::malloc(size) };
                        assert!(!q.is_null(), "out of memory");
                        let line = q as usize / 64;
                        if lines.len() < 16 && !lines.contains(&line) {
                            lines.push(line);
                        }
                        for r in 0..p.k4_repetitions {
                            for k in 0..size {
                                // SAFETY: within the live block.
                                unsafe {
                                    let b = q.add(k);
                                    b.write_volatile((r + k) as u8);
                                    std::hint::black_box(b.read_volatile());
                                }
                            }
                        }
                        // SAFETY: this thread's block, freed once.
                        unsafe { A::free(q, size) };
                    }
                    lines
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("worker")).collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let mut all: Vec<(usize, usize)> = lines
        .iter()
        .enumerate()
        .flat_map(|(t, ls)| ls.iter().map(move |&l| (l, t)))
        .collect();
    all.sort_unstable();
    all.dedup();
    let mut shared = 0u64;
    let mut i = 0;
    while i < all.len() {
        let j = all[i..].iter().take_while(|x| x.0 == all[i].0).count();
        if j > 1 {
            shared += 1;
        }
        i += j;
    }
    Outcome {
        ops: (threads * p.k4_iterations * p.k4_repetitions * size) as u64,
        secs,
        shared_lines: shared,
    }
}

/// Run one workload by name.
///
/// # Panics
/// On an unknown workload.
pub fn run<A: CAlloc>(workload: &str, threads: usize, p: &Params) -> Outcome {
    match workload {
        "K2" => larson::<A>(threads, p),
        "K3" => xmalloc::<A>(threads, p),
        "K4" => cache_scratch::<A>(threads, p),
        w => panic!("unknown workload {w}; one of {WORKLOADS:?}"),
    }
}

/// The `main` of `kmt_bsdalloc` and of `kmt_peers` once it has picked its
/// allocator: `args` is `WORKLOAD THREADS [--quick]`.
pub fn child_main<A: CAlloc>(args: &[String]) {
    let quick = args.iter().any(|a| a == "--quick");
    let mut pos = args.iter().filter(|a| !a.starts_with("--"));
    let workload = pos.next().expect("usage: WORKLOAD THREADS [--quick]");
    let threads: usize = pos
        .next()
        .and_then(|t| t.parse().ok())
        .expect("usage: WORKLOAD THREADS [--quick]");
    let p = Params::new(quick);
    let o = run::<A>(workload, threads, &p);
    let (rss, user, sys) = crate::k7::rusage();
    println!(
        "kmt alloc={} workload={workload} threads={threads} ops={} secs={:.4} cpu_s={:.4} \
         maxrss_kib={rss} shared_lines={} sized_free={}",
        A::NAME,
        o.ops,
        o.secs,
        user + sys,
        o.shared_lines,
        A::SIZED_FREE,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Glibc;

    impl CAlloc for Glibc {
        const NAME: &'static str = "glibc";

        unsafe fn malloc(size: usize) -> *mut u8 {
            // SAFETY: malloc is always safe to call.
            unsafe { libc::malloc(size) }.cast()
        }

        unsafe fn free(p: *mut u8, _size: usize) {
            // SAFETY: the caller's contract.
            unsafe { libc::free(p.cast()) }
        }
    }

    fn small() -> Params {
        Params {
            k2_time: Duration::from_millis(50),
            k2_chunks: 100,
            k2_rounds: 3,
            k3_time: Duration::from_millis(50),
            k4_iterations: 10,
            k4_repetitions: 10,
            ..Params::new(true)
        }
    }

    #[test]
    fn every_workload_runs_and_counts() {
        let p = small();
        // Larson's generations (300 replacements each) hand over to new
        // threads many times in 50 ms.
        assert!(larson::<Glibc>(2, &p).ops > 300);
        assert!(xmalloc::<Glibc>(2, &p).ops >= BATCH as u64);
        let o = cache_scratch::<Glibc>(1, &p);
        assert_eq!(o.ops, 10 * 10 * 8);
        assert_eq!(o.shared_lines, 0, "one thread shares no line with another");
    }
}
