//! `cpu_local_ops N`: N CPU-local increments, for instruction counting.
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/cpu_local_ops 1000000
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/cpu_local_ops 2000000
//! ```
//! The difference of the two totals divided by 1,000,000 is the cost of one
//! access in instructions.

use std::hint::black_box;

use bsdalloc_platform::{cpu_local, curcpu};

cpu_local! { static COUNTER: CpuLocal<u64> = 0; }

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    curcpu();
    for _ in 0..n {
        COUNTER.with(|c| *c = black_box(*c + 1));
    }
    let total = COUNTER.with(|c| *c);
    assert_eq!(total, n);
    println!("{total}");
}
