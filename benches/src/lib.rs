//! bsdalloc's shared benchmark harness.
//!
//! Every case compares our allocator with the peers a user would pick
//! instead, in the same binary and the same run, so results are ratios
//! (the machines are shared and noisy; absolute times drift up to 2x).
//!
//! - [`Xorshift`]: the deterministic generator every workload draws from.
//! - [`GOALS`]: the goals of `shared/BENCHMARKS.md`, reported beside each
//!   measured ratio (never asserted: a timed assertion is wrong on a shared
//!   machine).
//! - The `report` binary reads criterion's estimates and writes
//!   `benches/RESULTS.md`: our figure, each peer's, the ratios, the
//!   machine and the date. `cargo xtask bench` runs both.
//! - [`chart`]: the same rows drawn as `benches/results.svg`, the chart
//!   the README shows.
//!
//! - [`k7`]: K7's real programs, one source in four binaries that differ
//!   only in their `#[global_allocator]`, and the `k7` driver over them.
//! - [`kmt`]: K2 (larson), K3 (xmalloc) and K4 (cache-scratch) over a
//!   C-style `malloc`/`free`, in `kmt_bsdalloc` and `kmt_peers`, and the
//!   `kmt` driver over them.
//!
//! Naming: a criterion group is one case (`V1/instantfit/L=1000`), and the
//! function ids in it are `ours` and the peers' names (`ours-…` and the
//! names in [`chart::REFERENCES`] are our own variants or reference
//! figures, not other allocators).

pub mod chart;

/// One line of a ratio table: a case, our time in it and one peer's. The
/// `report` binary builds these once from criterion's estimates and both
/// `RESULTS.md` and the chart are written from them.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The criterion group: goal id, then the case (`V1/instantfit/L=1000`).
    pub case: String,
    /// Our mean time per iteration (ns), if the case measured ours.
    pub ours_ns: Option<f64>,
    /// The peer's name (the criterion function id); `None` in a case with
    /// no peer.
    pub peer: Option<String>,
    /// The peer's mean time per iteration (ns).
    pub peer_ns: Option<f64>,
}

impl Row {
    /// The goal id the case belongs to (`V1`).
    pub fn goal(&self) -> &str {
        self.case.split('/').next().unwrap_or("")
    }

    /// peer / ours: above 1, bsdalloc is faster.
    pub fn ratio(&self) -> Option<f64> {
        match (self.ours_ns, self.peer_ns) {
            (Some(o), Some(p)) if o > 0.0 => Some(p / o),
            _ => None,
        }
    }
}

pub mod k7;
pub mod kmt;

/// A case's goal, as BENCHMARKS.md states it.
#[derive(Debug, Clone, Copy)]
pub struct Goal {
    /// Case id prefix (`V1`, `P0`, …).
    pub case: &'static str,
    /// What is measured.
    pub what: &'static str,
    /// The goal, in words.
    pub goal: &'static str,
}

/// The goals of the cases present in this suite.
pub const GOALS: &[Goal] = &[
    Goal {
        case: "P0",
        what: "platform: CPU-local access, spl raise/restore, IPL spin mutex, one thread",
        goal: "CPU-local access within a few ns of a plain thread-local (no RMW, no fence)",
    },
    Goal {
        case: "V1",
        what: "vmem churn: free a random live segment, allocate 1-256 quanta",
        goal: "instant fit <= 100 ns per free+alloc up to L=10k, <= 200 ns at 100k, <= 500 ns at 1M; time(1M)/time(100) <= 7",
    },
    Goal {
        case: "V2",
        what: "vmem bulk: allocate L, free all in random order",
        goal: "<= 300 ns per op at 1M",
    },
    Goal {
        case: "V3",
        what: "vmem xalloc with align/phase/nocross/min-max, 4k live",
        goal: "<= 2x plain alloc",
    },
    Goal {
        case: "K1",
        what: "kmem size mix 8 B-4 KiB, live set 10k, churn, one thread",
        goal: "<= 1.0x mimalloc; RSS / live bytes <= 1.3",
    },
    Goal {
        case: "K6",
        what: "malloc(9) with header and type (M_TEMP) vs plain kmem, K1's churn",
        goal: "<= K1 + 2 ns",
    },
    Goal {
        case: "K5",
        what: "large allocations 16 KiB-4 MiB, every page touched: the page layer (uvm_km_alloc WIRED) and end to end through kmem_alloc",
        goal: "no OS call per op in steady state; kmem <= 1.0x the faster of mimalloc and glibc (page layer: <= 1.5x mimalloc)",
    },
    Goal {
        case: "K7",
        what: "#[global_allocator] in real Rust programs: binary-trees depth 21 (1 and N threads), serde_json ~50 MB round trip, HashMap<String, Vec<u8>> 10M-op churn",
        goal: "wall <= 1.0x mimalloc; peak RSS <= 1.2x mimalloc",
    },
    Goal {
        case: "K2",
        what: "larson: 5 s, 8-1000 B, 5000 chunks per thread, 100 rounds, seed 4141 (kmt)",
        goal: "throughput >= 1.0x mimalloc; peak RSS <= 1.2x mimalloc",
    },
    Goal {
        case: "K3",
        what: "xmalloc: half the threads allocate <= 64 B, half free (kmt)",
        goal: ">= 1.0x mimalloc; bounded RSS",
    },
    Goal {
        case: "K4",
        what: "cache-scratch: objects passed to other threads, then written (kmt)",
        goal: "no false sharing; within 1.1x mimalloc",
    },
    Goal {
        case: "P1",
        what: "pool get+put without a cache, 64 B, one thread",
        goal: "<= 15 ns; ratio to slab, lockfree-object-pool and mimalloc malloc+free",
    },
    Goal {
        case: "G1",
        what: "pool_cache get+put, 64 B, hot, one thread",
        goal: "<= 1.0x the faster of mimalloc and jemalloc malloc+free; <= 40 instructions per pair",
    },
    Goal {
        case: "G2",
        what: "pool_cache allocate 1000 then free 1000 (depot exchange)",
        goal: "<= 1.0x mimalloc",
    },
    Goal {
        case: "G3",
        what: "producer -> consumers across threads, 64 B, handed over in batches of 256",
        goal: "<= 1.0x the best peer; memory bounded",
    },
    Goal {
        case: "G4",
        what: "constructed objects (constructor ~75 ns), 90% hits",
        goal: ">= 5x faster than Box::new + init per get+put",
    },
    Goal {
        case: "V4",
        what: "vmem quantum cache: vmem_alloc+vmem_free of 4 quanta",
        goal: "<= 1.5x the G1 pair",
    },
    Goal {
        case: "V5",
        what: "fragmentation after a phase change (fill 90%, free every other, ask large)",
        goal: "report largest allocatable and free-segment count",
    },
];

/// xorshift64*: small, fast, deterministic.
#[derive(Debug, Clone)]
pub struct Xorshift(u64);

impl Xorshift {
    /// A generator; the same seed gives the same sequence.
    pub fn new(seed: u64) -> Self {
        Xorshift(seed | 1)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() >> 32) * n) >> 32
    }
}

/// A one-line description of the machine for the report.
pub fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {}", kernel.trim())
}

/// The shared pieces of the drivers that run one child process per
/// allocator and case (`k7`, `kmt`, `g6_scaling`): their arguments, the
/// children's `key=value` result lines, medians and units.
pub mod driver {
    /// The value after `--name` on the command line.
    pub fn arg(name: &str) -> Option<String> {
        let args: Vec<String> = std::env::args().collect();
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    }

    /// Whether `--name` is on the command line.
    pub fn flag(name: &str) -> bool {
        std::env::args().any(|a| a == name)
    }

    /// `value` of `key=value` in a child's result line.
    pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }

    /// The median (the mean of the middle two for an even count).
    pub fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }

    /// KiB as MiB with one decimal.
    pub fn fmt_mib(kib: f64) -> String {
        format!("{:.1} MiB", kib / 1024.0)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn fields_and_medians() {
            let l = "k7 wall_s=1.5 cpu_s=2 maxrss_kib=1024";
            assert_eq!(super::field(l, "cpu_s"), Some("2"));
            assert_eq!(super::field(l, "cpu"), None);
            assert_eq!(super::median(vec![3.0, 1.0, 2.0]), 2.0);
            assert_eq!(super::median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
            assert_eq!(super::fmt_mib(1536.0), "1.5 MiB");
        }
    }
}

/// Append non-timing figures (counters, fragmentation, OS calls) to the
/// report: `cargo xtask bench` sets `BSDALLOC_BENCH_EXTRA` to the file the
/// `report` binary includes; without it, print them.
pub fn append_extra(text: &str) {
    if let Ok(path) = std::env::var("BSDALLOC_BENCH_EXTRA") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open extra");
        f.write_all(text.as_bytes()).expect("write extra");
    } else {
        eprintln!("{text}");
    }
}

/// talc (a peer in V1, V2 and K1) over a heap of its own: an anonymous
/// mapping claimed whole, every block aligned to `align`.
pub struct TalcHeap {
    talc: talc::base::Talc<talc::source::Manual, talc::base::binning::DefaultBinning>,
    base: *mut u8,
    len: usize,
    align: usize,
}

impl TalcHeap {
    /// A heap of `len` bytes of address space (committed as touched).
    ///
    /// # Panics
    /// If the mapping or the claim fails, or `align` is not a power of two.
    pub fn new(len: usize, align: usize) -> Self {
        assert!(align.is_power_of_two());
        // SAFETY: a fresh anonymous mapping.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let mut talc = talc::base::Talc::new(talc::source::Manual);
        // SAFETY: the heap is ours and outlives the Talc.
        unsafe { talc.claim(base.cast(), len) }.expect("claim");
        TalcHeap {
            talc,
            base: base.cast(),
            len,
            align,
        }
    }

    /// A block of `size` bytes (its address).
    ///
    /// # Panics
    /// If the heap is exhausted.
    pub fn alloc(&mut self, size: usize) -> usize {
        let l = std::alloc::Layout::from_size_align(size, self.align).unwrap();
        // SAFETY: a valid layout; the heap is claimed.
        unsafe { self.talc.allocate(l) }.expect("talc oom").as_ptr() as usize
    }

    /// Free a block from [`TalcHeap::alloc`] with its size.
    pub fn free(&mut self, p: usize, size: usize) {
        let l = std::alloc::Layout::from_size_align(size, self.align).unwrap();
        // SAFETY: allocated by `alloc` with the same layout (the caller's
        // word; this is a benchmark harness).
        unsafe { self.talc.deallocate(p as *mut u8, l) }
    }
}

impl std::fmt::Debug for TalcHeap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TalcHeap")
            .field("base", &self.base)
            .field("len", &self.len)
            .field("align", &self.align)
            .finish_non_exhaustive()
    }
}

impl Drop for TalcHeap {
    fn drop(&mut self) {
        // SAFETY: our own mapping.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}
