//! Threads that allocate mixed sizes, hand a quarter of their blocks to
//! the next thread to free, and check every block's size-derived fill at
//! free; threads are torn down and recreated each round (their cached
//! groups go back at exit). At the end the census is zero.

use std::sync::mpsc;

use bsdalloc_kmem::*;

const THREADS: usize = 4;

fn pattern(size: usize, i: usize) -> u8 {
    (size.wrapping_mul(31) ^ i) as u8
}

fn check_free(a: usize, size: usize, i: usize) {
    let p: *mut u8 = std::ptr::with_exposed_provenance_mut(a);
    // SAFETY: a live block of `size` bytes handed to this thread.
    let s = unsafe { std::slice::from_raw_parts(p, size) };
    let b = pattern(size, i);
    assert!(
        s.iter().all(|&x| x == b),
        "block {a:#x} of {size} overwritten"
    );
    // SAFETY: ours now, with its size.
    unsafe { kmem_free(p, size) };
}

#[test]
fn cross_thread_frees_over_recreated_threads() {
    let ps = kmem().page_size();
    for round in 0..3 {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel()).unzip();
        let mut rxs: Vec<Option<mpsc::Receiver<(usize, usize, usize)>>> =
            rxs.into_iter().map(Some).collect();
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let tx = txs[(t + 1) % THREADS].clone();
                let rx = rxs[t].take().unwrap();
                std::thread::spawn(move || {
                    let mut live = Vec::new();
                    for i in 0..3000usize {
                        let size = match (i + t + round) % 6 {
                            0 => 1 + i % 32,
                            1 => 33 + i % 500,
                            2 => 600 + i % 1500,
                            3 => 2100 + i % 2000,
                            4 => ps + 1 + i % (3 * ps),
                            _ => 16,
                        };
                        let p = kmem_alloc(size, KM_SLEEP).unwrap();
                        // SAFETY: `size` fresh bytes.
                        unsafe { p.as_ptr().write_bytes(pattern(size, i), size) };
                        let a = p.as_ptr().expose_provenance();
                        if i % 4 == 0 {
                            tx.send((a, size, i)).unwrap();
                        } else {
                            live.push((a, size, i));
                        }
                        if live.len() > 64 {
                            let (a, s, i) = live.swap_remove(i % live.len());
                            check_free(a, s, i);
                        }
                        while let Ok((a, s, i)) = rx.try_recv() {
                            check_free(a, s, i);
                        }
                    }
                    drop(tx);
                    for (a, s, i) in live {
                        check_free(a, s, i);
                    }
                    rx
                })
            })
            .collect();
        drop(txs);
        let rxs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        for rx in rxs {
            for (a, s, i) in rx.try_iter() {
                check_free(a, s, i);
            }
        }
    }
    let c = kmem().census();
    assert_eq!(c.outstanding(), 0, "{c:?}");
}
