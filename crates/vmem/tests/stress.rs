//! Stress (TESTING.md check 9, vmem's share): threads allocate and free from
//! one IPL_VM arena, handing a quarter of their segments to other threads
//! to free, while an interrupt storm makes handlers on those same threads
//! allocate and free (VM_NOSLEEP) from the same arena. An ownership map
//! over every quantum catches any overlap; at the end everything drains and
//! the span is one free segment again.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bsdalloc_platform::{CpuId, Delivery, Ipl, curcpu, intr_establish, intr_trigger};
use bsdalloc_vmem::{Arena, ArenaConfig, SizeType, VmFlags};

const UNITS: usize = 1 << 16;
const Q: usize = 16;
const BASE: usize = 0x10_0000;

static ARENA: Arena = Arena::new(ArenaConfig {
    ipl: Ipl::Vm,
    ..ArenaConfig::new("stress", Q)
});
static OWNER: [AtomicU8; UNITS] = [const { AtomicU8::new(0) }; UNITS];
static HANDLER_OPS: AtomicU64 = AtomicU64::new(0);
static HANDLER_ENOMEM: AtomicU64 = AtomicU64::new(0);

fn units(addr: usize, size: usize) -> &'static [AtomicU8] {
    &OWNER[(addr - BASE) / Q..(addr - BASE + size) / Q]
}

fn claim(addr: usize, size: usize, who: u8) {
    for (i, o) in units(addr, size).iter().enumerate() {
        let prev = o.swap(who, Ordering::SeqCst);
        let u = (addr - BASE) / Q + i;
        assert_eq!(
            prev, 0,
            "quantum {u} handed out twice (to {prev} and {who})"
        );
    }
}

fn release(addr: usize, size: usize) {
    for o in units(addr, size) {
        assert_ne!(
            o.swap(0, Ordering::SeqCst),
            0,
            "freeing a quantum nobody owned"
        );
    }
}

fn handler(seed: &'static usize) {
    // In interrupt context, at IPL_VM: only VM_NOSLEEP.
    let size = (seed % 8 + 1) * Q;
    match ARENA.alloc(size, VmFlags::NOSLEEP | VmFlags::INSTANTFIT) {
        Ok(a) => {
            claim(a, size, 255);
            release(a, size);
            ARENA.free(a, size);
            HANDLER_OPS.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            HANDLER_ENOMEM.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn threads_and_interrupts_share_an_ipl_vm_arena() {
    ARENA.add(BASE, UNITS * Q, VmFlags::NOSLEEP).unwrap();
    let src = intr_establish(Ipl::Vm, handler, &3).unwrap();
    const THREADS: usize = 4;
    let stop = Arc::new(AtomicBool::new(false));
    let handoff: Arc<Mutex<Vec<(usize, usize)>>> = Arc::default();
    let cpus: Arc<Mutex<Vec<CpuId>>> = Arc::default();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (stop, handoff, cpus) = (stop.clone(), handoff.clone(), cpus.clone());
            std::thread::spawn(move || {
                cpus.lock().unwrap().push(curcpu());
                let who = t as u8 + 1;
                let mut rng = 0x9E37_79B9u64 ^ (t as u64) << 32;
                let mut mine: Vec<(usize, usize)> = vec![];
                let mut ops = 0u64;
                while !stop.load(Ordering::Relaxed) || !mine.is_empty() {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let stopping = stop.load(Ordering::Relaxed);
                    if !stopping && (mine.len() < 200 && !rng.is_multiple_of(3)) {
                        let size = ((rng >> 8) as usize % 64 + 1) * Q;
                        let fit = if rng.is_multiple_of(5) {
                            VmFlags::BESTFIT
                        } else {
                            VmFlags::INSTANTFIT
                        };
                        if let Ok(a) = ARENA.alloc(size, VmFlags::NOSLEEP | fit) {
                            claim(a, size, who);
                            mine.push((a, size));
                        }
                    } else if let Some((a, size)) = mine.pop() {
                        if rng.is_multiple_of(4) && !stopping {
                            // Another thread frees it.
                            handoff.lock().unwrap().push((a, size));
                        } else {
                            release(a, size);
                            ARENA.free(a, size);
                        }
                    }
                    if let Some((a, size)) = handoff.lock().unwrap().pop() {
                        release(a, size);
                        ARENA.free(a, size);
                    }
                    ops += 1;
                }
                ops
            })
        })
        .collect();
    while cpus.lock().unwrap().len() < THREADS {
        std::thread::yield_now();
    }
    let targets = cpus.lock().unwrap().clone();
    let start = Instant::now();
    let mut delivered = 0u64;
    let mut i = 0;
    while start.elapsed() < Duration::from_secs(2) {
        if intr_trigger(targets[i % THREADS], src) == Delivery::Delivered {
            delivered += 1;
        }
        i += 1;
        if i % 64 == 0 {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    stop.store(true, Ordering::SeqCst);
    let ops: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    for (a, size) in handoff.lock().unwrap().drain(..) {
        release(a, size);
        ARENA.free(a, size);
    }
    eprintln!(
        "stress: {ops} thread ops, {delivered} interrupts delivered, {} handler alloc/free pairs, {} handler ENOMEM",
        HANDLER_OPS.load(Ordering::Relaxed),
        HANDLER_ENOMEM.load(Ordering::Relaxed)
    );
    assert!(
        ops > 10_000 && delivered > 100,
        "the stress must do real work"
    );
    assert_eq!(
        HANDLER_OPS.load(Ordering::Relaxed) + HANDLER_ENOMEM.load(Ordering::Relaxed),
        delivered
    );
    ARENA.assert_sane();
    assert_eq!(ARENA.size(SizeType::ALLOC), 0);
    assert_eq!(
        ARENA.stats().nfree,
        1,
        "everything coalesced back into one segment"
    );
    assert!(OWNER.iter().all(|o| o.load(Ordering::SeqCst) == 0));
}
