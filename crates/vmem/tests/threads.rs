//! A process with 10,000 live threads, as a global allocator meets: threads
//! beyond the CPU slots share slots on the locked path, allocate from an
//! arena and count in CPU-local state; nothing panics, nothing is lost.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use bsdalloc_platform::{MAXCPUS, NSHARED, active_cpus, cpu_local, guest_threads};
use bsdalloc_vmem::{Arena, ArenaConfig, VmFlags};

cpu_local! { static COUNT: CpuLocal<u64> = 0; }

#[test]
fn ten_thousand_live_threads_allocate_and_use_cpu_local_state() {
    const THREADS: usize = 10_000;
    const ROUNDS: usize = 4;
    let arena = Arc::new(
        Arena::with_config(
            ArenaConfig {
                ipl: bsdalloc_platform::Ipl::Vm,
                ..ArenaConfig::new("threads", 16)
            },
            0x1000,
            1 << 30,
        )
        .unwrap(),
    );
    let all_alive = Arc::new(Barrier::new(THREADS + 1));
    let release = Arc::new(Barrier::new(THREADS + 1));
    let max_guests = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..THREADS)
        .map(|i| {
            let (arena, all_alive, release, max_guests) = (
                arena.clone(),
                all_alive.clone(),
                release.clone(),
                max_guests.clone(),
            );
            std::thread::Builder::new()
                .stack_size(64 << 10)
                .spawn(move || {
                    let mut mine = [0usize; ROUNDS];
                    for (r, m) in mine.iter_mut().enumerate() {
                        let size = 16 * (1 + (i + r) % 8);
                        *m = arena
                            .alloc(size, VmFlags::NOSLEEP | VmFlags::INSTANTFIT)
                            .unwrap();
                        COUNT.with(|n| *n += 1);
                    }
                    max_guests.fetch_max(guest_threads(), Ordering::Relaxed);
                    // Everybody alive at once before anybody frees or exits.
                    all_alive.wait();
                    release.wait();
                    for (r, &m) in mine.iter().enumerate() {
                        arena.free(m, 16 * (1 + (i + r) % 8));
                    }
                })
                .expect("spawn")
        })
        .collect();
    all_alive.wait();
    let live = active_cpus();
    release.wait();
    for h in hs {
        h.join().unwrap();
    }
    assert!(
        live >= THREADS,
        "{live} CPUs active with {THREADS} threads alive"
    );
    assert!(
        max_guests.load(Ordering::Relaxed) >= THREADS - (MAXCPUS - NSHARED),
        "threads beyond the exclusive slots share slots"
    );
    assert_eq!(arena.stats().inuse, 0);
    arena.assert_sane();
    let mut total = 0;
    COUNT.for_each_cpu(|_, n| total += *n);
    assert_eq!(total, (THREADS * ROUNDS) as u64, "no CPU-local update lost");
    assert_eq!(guest_threads(), 0, "every guest left its shared slot");
}
