//! V1's churn outside criterion, for `perf stat`, callgrind's cache
//! simulation and quick scaling tables: build an arena with L live
//! segments (1-256 quanta of 16 B in a 64 GiB span), then time N
//! free+alloc pairs (free a random live segment, allocate a new one).
//!
//! ```text
//! vmem_scale [--live 100,10000,100000,1000000] [--ops N] [--fit instant|best]
//!            [--hash large] [--reps R]
//! vmem_scale --floor BYTES     # ns per dependent load over BYTES of memory
//! ```
//!
//! One line per L: `vmem_scale L=… fit=… ns_per_op=… (median of R runs)`,
//! with the busy hash (buckets, mean probes per successful lookup, longest
//! chain), the free-segment count, and the metadata bytes (boundary tags
//! carved plus the hash table) per live segment.
//!
//! The timed loop is `churn`, a function of its own, so that
//! `valgrind --tool=callgrind --cache-sim=yes --collect-atstart=no
//! --toggle-collect='*churn*'` counts its instructions and misses only.

use std::hint::black_box;
use std::time::Instant;

use bsdalloc_benches::Xorshift;
use bsdalloc_benches::driver::{arg, median};
use bsdalloc_vmem::{Arena, ArenaConfig, VmFlags};

const Q: usize = 16;
const BASE: usize = 1 << 40;
const SPAN: usize = 64 << 30;

fn size_of_op(rng: &mut Xorshift) -> usize {
    (rng.below(256) as usize + 1) * Q
}

#[inline(never)]
fn churn(arena: &Arena, live: &mut [(usize, usize)], rng: &mut Xorshift, ops: usize, fit: VmFlags) {
    let n = live.len() as u64;
    for _ in 0..ops {
        let i = rng.below(n) as usize;
        let (a, s) = live[i];
        arena.free(a, s);
        let s = size_of_op(rng);
        live[i] = (
            arena.alloc(s, VmFlags::NOSLEEP | fit).expect("64 GiB span"),
            s,
        );
    }
    black_box(live);
}

/// The memory floor on this machine: nanoseconds per dependent load over
/// `bytes` of memory (a random cyclic pointer chase, 64 B apart), in huge
/// pages where the kernel gives them (as vmem's metadata) and in small
/// ones. A free+alloc pair at a million live segments cannot beat a few of
/// these: the busy-hash bucket, the tag, its neighbours.
fn floor(bytes: usize) {
    for huge in [true, false] {
        let n = bytes / 64;
        // SAFETY: a fresh anonymous mapping of our own.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes + (2 << 20),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let aligned = (base as usize).next_multiple_of(2 << 20) as *mut usize;
        // SAFETY: advising our own mapping.
        unsafe {
            libc::madvise(
                aligned.cast(),
                bytes,
                if huge {
                    libc::MADV_HUGEPAGE
                } else {
                    libc::MADV_NOHUGEPAGE
                },
            )
        };
        // A random cycle through every line (Sattolo's shuffle).
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = Xorshift::new(7);
        for i in (1..n).rev() {
            order.swap(i, rng.below(i as u64) as usize);
        }
        for i in 0..n {
            // SAFETY: line `order[i]` is inside the mapping.
            unsafe { *aligned.add(order[i] * 8) = order[(i + 1) % n] * 8 };
        }
        let steps = 2_000_000;
        let mut p = 0usize;
        let t = Instant::now();
        for _ in 0..steps {
            // SAFETY: every stored index is a line inside the mapping.
            p = unsafe { *aligned.add(p) };
        }
        let ns = t.elapsed().as_nanos() as f64 / steps as f64;
        black_box(p);
        println!(
            "vmem_scale floor bytes={bytes} pages={} ns_per_dependent_load={ns:.1}",
            if huge { "huge" } else { "4k" }
        );
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(base, bytes + (2 << 20)) };
    }
}

fn main() {
    if let Some(b) = arg("--floor") {
        floor(b.parse().expect("--floor BYTES"));
        return;
    }
    let lives: Vec<usize> = arg("--live")
        .unwrap_or_else(|| "100,10000,100000,1000000".into())
        .split(',')
        .map(|s| s.parse().expect("--live L,L,…"))
        .collect();
    let ops: usize = arg("--ops").map_or(1_000_000, |s| s.parse().expect("--ops N"));
    let reps: usize = arg("--reps").map_or(3, |s| s.parse().expect("--reps R"));
    let (fit, fit_name) = match arg("--fit").as_deref() {
        None | Some("instant") => (VmFlags::INSTANTFIT, "instant"),
        Some("best") => (VmFlags::BESTFIT, "best"),
        Some(f) => panic!("--fit instant|best, not {f}"),
    };
    let hash = arg("--hash").unwrap_or_else(|| "default".into());
    let hash_flag = match hash.as_str() {
        "default" => VmFlags::NONE,
        "large" => VmFlags::LARGEHASH,
        h => panic!("--hash default|large, not {h}"),
    };
    for &l in &lives {
        let flags = VmFlags::NOSLEEP | hash_flag;
        let cfg = ArenaConfig::new("scale", Q).flags(flags);
        let arena = Arena::with_config(cfg, BASE, SPAN).unwrap();
        let tags_before = bsdalloc_vmem::tag_supply_stats();
        let mut rng = Xorshift::new(1);
        let mut live: Vec<(usize, usize)> = (0..l)
            .map(|_| {
                let s = size_of_op(&mut rng);
                (arena.alloc(s, VmFlags::NOSLEEP | fit).unwrap(), s)
            })
            .collect();
        // Warm up into the steady state (free-list lengths, hash size).
        churn(&arena, &mut live, &mut rng, ops.min(l.max(10_000)), fit);
        let mut times = vec![];
        for _ in 0..reps {
            let t = Instant::now();
            churn(&arena, &mut live, &mut rng, ops, fit);
            times.push(t.elapsed().as_nanos() as f64 / ops as f64);
        }
        let st = arena.stats();
        let tags = bsdalloc_vmem::tag_supply_stats();
        let chains = arena.hash_chains();
        let tag_bytes = (tags.from_pages - tags_before.from_pages)
            * core::mem::size_of::<bsdalloc_vmem::BoundaryTag>();
        let hash_bytes = st.hash_size * core::mem::size_of::<usize>();
        println!(
            "vmem_scale L={l} fit={fit_name} hash={} ns_per_op={:.1} min={:.1} max={:.1} \
             buckets={} load={:.2} probes={:.2} longest_chain={} free_segs={} \
             tag_bytes_per_live={:.1} hash_bytes_per_live={:.1} anon_huge_kib={}",
            hash,
            median(times.clone()),
            times.iter().copied().fold(f64::MAX, f64::min),
            times.iter().copied().fold(0.0, f64::max),
            st.hash_size,
            st.nbusy as f64 / st.hash_size as f64,
            chains.mean_probes,
            chains.longest,
            st.nfree,
            tag_bytes as f64 / l as f64,
            hash_bytes as f64 / l as f64,
            smaps_field("AnonHugePages:"),
        );
        arena.xfreeall();
    }
}

/// A field of `/proc/self/smaps_rollup` in KiB (0 where unavailable).
fn smaps_field(name: &str) -> u64 {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix(name)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}
