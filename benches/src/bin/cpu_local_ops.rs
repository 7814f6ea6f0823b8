//! `cpu_local_ops MODE N`: N operations of one kind, for instruction
//! counting under callgrind. MODE is `percpu` (a `PerCpu` element
//! increment), `cpu_local` (a static `CpuLocal` increment), `tls` (a plain
//! `thread_local!` `Cell` increment), `spin` (IPL spin mutex lock+unlock) or
//! `parking_lot` (its mutex lock+unlock).
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/cpu_local_ops percpu 1000000
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/cpu_local_ops percpu 2000000
//! ```
//! The difference of the two totals divided by 1,000,000 is the cost of one
//! operation in instructions.

use std::cell::Cell;
use std::hint::black_box;

use bsdalloc_platform::{Ipl, OS_PAGES, PerCpu, SpinMutex, cpu_local, curcpu};

cpu_local! { static COUNTER: CpuLocal<u64> = 0; }

thread_local! {
    static TLS: Cell<u64> = const { Cell::new(0) };
}

static SPIN: SpinMutex<u64> = SpinMutex::new(Ipl::Vm, 0);
static PL: parking_lot::Mutex<u64> = parking_lot::const_mutex(0);

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "percpu".into());
    let n: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    curcpu();
    let total = match mode.as_str() {
        "percpu" => {
            let p: PerCpu<u64> = PerCpu::new(&OS_PAGES).unwrap();
            for _ in 0..n {
                p.with(|c| *c = black_box(*c + 1));
            }
            p.with(|c| *c)
        }
        "cpu_local" => {
            for _ in 0..n {
                COUNTER.with(|c| *c = black_box(*c + 1));
            }
            COUNTER.with(|c| *c)
        }
        "tls" => {
            for _ in 0..n {
                TLS.with(|c| c.set(black_box(c.get() + 1)));
            }
            TLS.with(Cell::get)
        }
        "spin" => {
            for _ in 0..n {
                *SPIN.lock() += black_box(1);
            }
            *SPIN.lock()
        }
        "parking_lot" => {
            for _ in 0..n {
                *PL.lock() += black_box(1);
            }
            *PL.lock()
        }
        other => panic!("unknown mode {other}"),
    };
    assert_eq!(total, n);
    println!("{total}");
}
