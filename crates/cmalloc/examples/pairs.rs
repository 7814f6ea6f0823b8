//! The measurement behind the crate docs' "Unsized free" table: the
//! page-tag lookup (default) against a 16-byte size header (`--features
//! header`).
//!
//! ```text
//! pairs N SIZE    N malloc(SIZE) + free pairs (run it under callgrind
//!                 for two N and divide the difference by theirs)
//! rss COUNT       COUNT live small blocks (8 to 64 bytes): the RSS
//! ```

use bsdalloc_cmalloc::{free, malloc};

fn rss_kib() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    match args.first().map(String::as_str) {
        Some("pairs") => {
            let (n, size) = (num(1, 1_000_000), num(2, 32));
            for _ in 0..n {
                // SAFETY: always safe; the block is freed at once.
                unsafe { free(std::hint::black_box(malloc(size))) };
            }
        }
        Some("rss") => {
            let count = num(1, 1_000_000);
            let before = rss_kib();
            let mut v = Vec::with_capacity(count);
            for i in 0..count {
                // SAFETY: always safe; the blocks are written within size.
                let p = unsafe { malloc(8 + i % 57) }.cast::<u8>();
                // SAFETY: at least 8 bytes.
                unsafe { p.write_bytes(1, 8) };
                v.push(p);
            }
            let after = rss_kib();
            println!(
                "{} live blocks of 8..64 bytes: RSS +{} KiB ({:.1} bytes per block)",
                count,
                after - before,
                (after - before) as f64 * 1024.0 / count as f64
            );
            for p in v {
                // SAFETY: from malloc above.
                unsafe { free(p.cast()) };
            }
        }
        _ => eprintln!("usage: pairs (pairs N SIZE | rss COUNT)"),
    }
}
