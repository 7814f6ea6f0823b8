//! What many threads cost an arena: sleepers that each take the whole arena,
//! and plain alloc/free from many threads.
//!
//! `cargo run --release -p bsdalloc-vmem --example sleepers [SECONDS]`
//!
//! 1. `whole-arena`: N threads loop `alloc(whole arena, VM_SLEEP)`, hold it
//!    for 200 µs, free it. Only one can hold it at a time; the others sleep.
//!    Reports allocations per second (the ideal is about 5,000/s: one
//!    200 µs hold after another).
//! 2. `alloc-free`: N threads loop `alloc(64)`/`free` of small segments from
//!    one `IPL_NONE` arena. Reports operations per second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bsdalloc_vmem::{Arena, VmFlags};

fn whole_arena(threads: usize, secs: f64) -> f64 {
    let arena = Arc::new(Arena::create("whole", 0x1000, 0x10000, 0x1000).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let (arena, stop, ops) = (arena.clone(), stop.clone(), ops.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let a = arena
                        .alloc(0x10000, VmFlags::SLEEP | VmFlags::INSTANTFIT)
                        .unwrap();
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_micros(200) {
                        std::hint::spin_loop();
                    }
                    arena.free(a, 0x10000);
                    ops.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let n = ops.load(Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    n as f64 / secs
}

fn alloc_free(threads: usize, secs: f64) -> f64 {
    let arena = Arc::new(Arena::create("small", 0x10_0000, 1 << 30, 64).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let (arena, stop, ops) = (arena.clone(), stop.clone(), ops.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let a = arena
                        .alloc(64, VmFlags::NOSLEEP | VmFlags::INSTANTFIT)
                        .unwrap();
                    arena.free(a, 64);
                    n += 1;
                }
                ops.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    ops.load(Ordering::Relaxed) as f64 / secs
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    println!("whole-arena sleepers (200 us hold), allocations/s:");
    for n in [4, 16, 64, 200] {
        println!("  {n:4} threads: {:10.0}", whole_arena(n, secs));
    }
    println!("alloc/free of 64 bytes, operations/s:");
    for n in [2, 8, 32, 128] {
        println!("  {n:4} threads: {:10.0}", alloc_free(n, secs));
    }
}
