//! Stress: threads allocate wired memory under a tight budget (sleeping
//! and NOWAIT requests mixed), fill each block with a pattern derived from
//! its address and size, check it at free, and hand a quarter of their
//! blocks to other threads to free. Sleepers must always be woken; at the
//! end every page is accounted for and given back.

use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bsdalloc_platform::OS_PAGES;
use bsdalloc_uvm_pages::{KernelMap, KmConfig, UvmFlags};

fn pattern(addr: usize, len: usize) -> u8 {
    ((addr >> 12) ^ len ^ 0x5A) as u8
}

fn fill(p: NonNull<u8>, len: usize) {
    let v = pattern(p.as_ptr() as usize, len);
    // SAFETY: a live wired block of `len` bytes.
    unsafe { p.as_ptr().write_bytes(v, len) };
}

fn check(p: NonNull<u8>, len: usize) {
    let v = pattern(p.as_ptr() as usize, len);
    // SAFETY: a live wired block of `len` bytes.
    let s = unsafe { std::slice::from_raw_parts(p.as_ptr(), len) };
    assert!(
        s.iter().step_by(512).all(|&b| b == v),
        "block {:p}+{len:#x} was overwritten",
        p
    );
}

#[test]
fn threads_under_a_tight_budget() {
    const LIMIT: usize = 512; // 2 MiB
    let m = KernelMap::bootstrap(KmConfig {
        size: 1 << 30,
        limit_pages: LIMIT,
        free_target_pages: 64,
        pages: &OS_PAGES,
    })
    .unwrap();
    let ps = m.page_size();
    let handoff: Arc<Mutex<Vec<(usize, usize)>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(2);
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            let handoff = handoff.clone();
            std::thread::spawn(move || {
                let mut rng = 0x2545_F491u64 ^ (t << 40);
                let mut mine: Vec<(NonNull<u8>, usize)> = vec![];
                let (mut ops, mut nowait_fail) = (0u64, 0u64);
                while Instant::now() < deadline {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    // Together the threads may want more than the budget: NOWAIT
                    // requests then fail and sleeping ones wait. A thread
                    // sleeps only while it holds nothing (as kernel code must
                    // not sleep on memory while sitting on memory others
                    // need), so some holder always makes progress and frees.
                    let held: usize = mine.iter().map(|&(_, l)| l / ps).sum();
                    if held < LIMIT / 3 && !rng.is_multiple_of(3) {
                        let len = ((rng >> 8) as usize % 16 + 1) * ps;
                        let flags = if mine.is_empty() {
                            UvmFlags::WIRED
                        } else {
                            UvmFlags::WIRED | UvmFlags::NOWAIT
                        };
                        match m.uvm_km_alloc(len, 0, flags) {
                            Some(p) => {
                                fill(p, len);
                                mine.push((p, len));
                            }
                            None => {
                                assert!(
                                    flags.contains(UvmFlags::NOWAIT),
                                    "a sleeping request failed"
                                );
                                nowait_fail += 1;
                            }
                        }
                    } else if let Some((p, len)) = mine.pop() {
                        check(p, len);
                        if rng.is_multiple_of(4) {
                            handoff.lock().unwrap().push((p.as_ptr() as usize, len));
                        } else {
                            m.uvm_km_free(p, len, UvmFlags::WIRED);
                        }
                    }
                    let other = handoff.lock().unwrap().pop();
                    if let Some((a, len)) = other {
                        let p = NonNull::new(a as *mut u8).unwrap();
                        check(p, len);
                        m.uvm_km_free(p, len, UvmFlags::WIRED);
                    }
                    assert!(m.stats().committed_pages <= LIMIT, "over budget");
                    ops += 1;
                }
                for (p, len) in mine {
                    check(p, len);
                    m.uvm_km_free(p, len, UvmFlags::WIRED);
                }
                (ops, nowait_fail)
            })
        })
        .collect();
    let (mut ops, mut fails) = (0, 0);
    for w in workers {
        let (o, f) = w.join().unwrap();
        ops += o;
        fails += f;
    }
    for (a, len) in handoff.lock().unwrap().drain(..) {
        m.uvm_km_free(NonNull::new(a as *mut u8).unwrap(), len, UvmFlags::WIRED);
    }
    let st = m.stats();
    eprintln!("uvm stress: {ops} ops, {fails} NOWAIT failures\n{st}");
    assert!(ops > 1000);
    assert!(fails > 0, "the budget must have been tight");
    assert!(st.pagedaemon_runs > 0);
    assert_eq!((st.wired_pages, st.va_in_use), (0, [0; 4]));
    assert_eq!(st.committed_pages, st.cached_pages);
    assert!(st.cached_pages <= 64);
    // SAFETY: nothing is allocated and the map is not used again.
    unsafe { KernelMap::destroy(core::ptr::NonNull::from(m)) };
}
