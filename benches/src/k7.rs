//! K7 (BENCHMARKS.md): real Rust programs with the global allocator as the
//! only difference. The same three programs are compiled into
//! `k7_bsdalloc`, `k7_system`, `k7_mimalloc` and `k7_jemalloc` (with
//! `c-peers`), which differ only in their `#[global_allocator]`; the `k7`
//! driver runs each as a child process, so peak RSS is per process.
//!
//! `k7_<alloc> PROGRAM THREADS [--quick]` runs one program and prints one
//! line, `k7 alloc=… program=… threads=… wall_s=… cpu_s=… sys_s=…
//! maxrss_kib=… check=…`. The check is a function of the program's result
//! only: every allocator must print the same one.
//!
//! - `binary-trees`: the benchmarks game program with `Box` nodes, depth
//!   21 (16 with `--quick`): the stretch tree, a long-lived tree, and for
//!   each depth 4, 6, … 21 that many bottom-up trees built, checked and
//!   freed; with THREADS > 1 each depth's trees are shared out among
//!   scoped threads.
//! - `serde-json`: ≈50 MB (5 MB) of records (strings, numbers, nested
//!   objects and arrays) serialized to a `String`, parsed back into the
//!   structs and compared, then parsed into a `serde_json::Value` and
//!   serialized again (the same length: only the key order differs).
//! - `hashmap`: 10M (500k) operations on a `HashMap<String, Vec<u8>>`: 50%
//!   insert of a key from a bounded key space with a value of 0..256
//!   bytes, 30% lookup, 20% remove, from a seeded xorshift.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, DefaultHasher};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::Xorshift;

/// The programs, as the binaries take them on the command line.
pub const PROGRAMS: &[&str] = &["binary-trees", "serde-json", "hashmap"];

/// One program's sizes: full (the issue's) or `--quick`.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// binary-trees' maximum depth.
    pub tree_depth: u32,
    /// serde-json's target document size in bytes.
    pub json_bytes: usize,
    /// hashmap's operation count.
    pub map_ops: u64,
    /// hashmap's key space.
    pub map_keys: u64,
}

impl Sizes {
    /// The sizes, or the CI-speed ones.
    pub fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                tree_depth: 16,
                json_bytes: 5_000_000,
                map_ops: 500_000,
                map_keys: 1 << 16,
            }
        } else {
            Sizes {
                tree_depth: 21,
                json_bytes: 50_000_000,
                map_ops: 10_000_000,
                map_keys: 1 << 20,
            }
        }
    }
}

// ---- binary-trees -------------------------------------------------------

struct Node {
    kids: Option<(Box<Node>, Box<Node>)>,
}

fn bottom_up(depth: u32) -> Box<Node> {
    Box::new(Node {
        kids: (depth > 0).then(|| (bottom_up(depth - 1), bottom_up(depth - 1))),
    })
}

impl Node {
    fn check(&self) -> u64 {
        1 + self.kids.as_ref().map_or(0, |(l, r)| l.check() + r.check())
    }
}

/// The sum of the checks of `n` trees of `depth`, built and freed one at
/// a time.
fn trees(n: u64, depth: u32) -> u64 {
    (0..n).map(|_| bottom_up(depth).check()).sum()
}

/// binary-trees with `threads` threads; returns the sum of every check
/// the benchmarks game prints.
pub fn binary_trees(max_depth: u32, threads: usize) -> u64 {
    const MIN_DEPTH: u32 = 4;
    let max_depth = max_depth.max(MIN_DEPTH + 2);
    let mut sum = bottom_up(max_depth + 1).check();
    let long_lived = bottom_up(max_depth);
    for d in (MIN_DEPTH..=max_depth).step_by(2) {
        let iterations = 1u64 << (max_depth - d + MIN_DEPTH);
        sum += if threads <= 1 {
            trees(iterations, d)
        } else {
            let t = threads as u64;
            std::thread::scope(|s| {
                let hs: Vec<_> = (0..t)
                    .map(|i| {
                        let n = iterations / t + u64::from(i < iterations % t);
                        s.spawn(move || trees(n, d))
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
            })
        };
    }
    sum + long_lived.check()
}

// ---- serde-json ---------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Address {
    street: String,
    city: String,
    zip: String,
    geo: [f64; 2],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Event {
    t: u64,
    kind: String,
    amount: i64,
    note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    id: u64,
    name: String,
    email: String,
    score: f64,
    active: bool,
    tags: Vec<String>,
    address: Address,
    history: Vec<Event>,
}

const WORDS: &[&str] = &[
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
];

fn word(rng: &mut Xorshift) -> &'static str {
    WORDS[rng.below(WORDS.len() as u64) as usize]
}

/// Numbers that print and parse back exactly (serde_json's default float
/// parser is exact for these).
fn exact_f64(rng: &mut Xorshift) -> f64 {
    rng.below(1 << 20) as f64 / 64.0 - 8192.0
}

fn record(id: u64, rng: &mut Xorshift) -> Record {
    let mut name = String::new();
    let _ = write!(name, "{} {}-{}", word(rng), word(rng), rng.below(10_000));
    let email = format!("{}.{id}@{}.example", word(rng), word(rng));
    let tags = (0..rng.below(6)).map(|_| word(rng).to_string()).collect();
    let address = Address {
        street: format!("{} {} street", rng.below(1000), word(rng)),
        city: word(rng).to_uppercase(),
        zip: format!("{:05}", rng.below(100_000)),
        geo: [exact_f64(rng), exact_f64(rng)],
    };
    let history = (0..rng.below(5))
        .map(|_| Event {
            t: rng.next_u64() >> 20,
            kind: word(rng).to_string(),
            amount: rng.below(2_000_000) as i64 - 1_000_000,
            note: (rng.below(3) == 0).then(|| format!("{} {}", word(rng), word(rng))),
        })
        .collect();
    Record {
        id,
        name,
        email,
        score: exact_f64(rng),
        active: rng.below(2) == 0,
        tags,
        address,
        history,
    }
}

/// Serialized bytes per record, about (measured: ≈383).
const RECORD_BYTES: usize = 383;

/// The serde_json round trip of about `bytes` bytes; returns the
/// document's length (the same whatever the allocator).
pub fn serde_json_round_trip(bytes: usize) -> u64 {
    let mut rng = Xorshift::new(7);
    let records: Vec<Record> = (0..(bytes / RECORD_BYTES) as u64)
        .map(|i| record(i, &mut rng))
        .collect();
    let text = serde_json::to_string(&records).expect("serialize");
    let back: Vec<Record> = serde_json::from_str(&text).expect("parse records");
    assert!(
        back == records,
        "serde-json: the round trip changed the records"
    );
    drop(back);
    drop(records);
    let value: serde_json::Value = serde_json::from_str(&text).expect("parse value");
    let again = serde_json::to_string(&value).expect("serialize value");
    assert_eq!(
        again.len(),
        text.len(),
        "serde-json: Value round trip length"
    );
    text.len() as u64
}

// ---- hashmap ------------------------------------------------------------

/// `ops` operations on a `HashMap<String, Vec<u8>>` over `keys` keys;
/// returns a checksum of what the lookups found and the final size.
pub fn hashmap_churn(ops: u64, keys: u64) -> u64 {
    // SipHash with fixed keys: the same table layout in every run.
    let mut m: HashMap<String, Vec<u8>, BuildHasherDefault<DefaultHasher>> = HashMap::default();
    let mut rng = Xorshift::new(42);
    let mut probe = String::with_capacity(24);
    let mut sum = 0u64;
    for _ in 0..ops {
        let op = rng.below(10);
        let k = rng.below(keys);
        if op < 5 {
            let len = rng.below(256) as usize;
            let v = vec![k as u8; len];
            let mut key = String::new();
            let _ = write!(key, "key-{k:x}");
            m.insert(key, v);
        } else {
            probe.clear();
            let _ = write!(probe, "key-{k:x}");
            if op < 8 {
                if let Some(v) = m.get(probe.as_str()) {
                    sum += v.len() as u64 + u64::from(v.first().copied().unwrap_or(0));
                }
            } else if let Some(v) = m.remove(probe.as_str()) {
                sum += v.len() as u64;
            }
        }
    }
    sum.wrapping_mul(31) + m.len() as u64
}

// ---- the per-allocator binaries -----------------------------------------

/// Peak RSS in KiB, user and system CPU seconds, from `getrusage`.
pub fn rusage() -> (u64, f64, f64) {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF and a valid out pointer.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0, "getrusage");
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    (ru.ru_maxrss as u64, secs(ru.ru_utime), secs(ru.ru_stime))
}

/// The `main` of `k7_<alloc>`: `PROGRAM THREADS [--quick]`. `alloc` names
/// the binary's global allocator in the output line; `report`, if given,
/// is printed to stderr at the end when `BSDALLOC_K7_REPORT` is set (the
/// allocator's own statistics).
pub fn program_main(alloc: &str, report: Option<fn() -> String>) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut pos = args.iter().filter(|a| !a.starts_with("--"));
    let program = pos.next().map(String::as_str).unwrap_or("binary-trees");
    let threads: usize = pos.next().and_then(|t| t.parse().ok()).unwrap_or(1);
    let sizes = Sizes::new(quick);
    let start = Instant::now();
    let check = match program {
        "binary-trees" => binary_trees(sizes.tree_depth, threads),
        "serde-json" => serde_json_round_trip(sizes.json_bytes),
        "hashmap" => hashmap_churn(sizes.map_ops, sizes.map_keys),
        other => {
            eprintln!("k7_{alloc}: unknown program {other} (one of {PROGRAMS:?})");
            std::process::exit(2);
        }
    };
    let wall = start.elapsed().as_secs_f64();
    let (rss, user, sys) = rusage();
    println!(
        "k7 alloc={alloc} program={program} threads={threads} wall_s={wall:.4} cpu_s={:.4} \
         sys_s={sys:.4} maxrss_kib={rss} check={check}",
        user + sys
    );
    if let Some(r) = report
        && std::env::var_os("BSDALLOC_K7_REPORT").is_some()
    {
        eprintln!("{}", r());
    }
}
