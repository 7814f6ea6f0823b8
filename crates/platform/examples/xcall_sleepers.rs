//! What cross-calls cost a thread that sleeps: one thread sleeps 500 µs at a
//! time (`std::thread::sleep`, a `nanosleep` system call) while another
//! cross-calls it as fast as it can.
//!
//! `cargo run --release -p bsdalloc-platform --example xcall_sleepers [SLEEPS]`
//!
//! Reports how long the sleeps took in all (ideal: SLEEPS × 500 µs), how
//! many `nanosleep` calls were cut short by a signal (EINTR), and how many
//! cross-calls ran meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bsdalloc_platform::{curcpu, xc_unicast};

fn main() {
    let sleeps: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let (tx, rx) = std::sync::mpsc::channel();
    let done = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicU64::new(0));
    let (d2, i2) = (done.clone(), interrupted.clone());
    let sleeper = std::thread::spawn(move || {
        tx.send(curcpu()).unwrap();
        let t = Instant::now();
        for _ in 0..sleeps {
            // One nanosleep of 500 µs, restarted with the time left after a
            // signal, as std::thread::sleep does.
            let mut req = libc::timespec {
                tv_sec: 0,
                tv_nsec: 500_000,
            };
            loop {
                let mut rem = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: valid timespec pointers.
                if unsafe { libc::nanosleep(&req, &mut rem) } == 0 {
                    break;
                }
                i2.fetch_add(1, Ordering::Relaxed);
                req = rem;
            }
        }
        let e = t.elapsed();
        d2.store(true, Ordering::Relaxed);
        e
    });
    let target = rx.recv().unwrap();
    let xcalls = AtomicU64::new(0);
    while !done.load(Ordering::Relaxed) {
        xc_unicast(target, &|_| {
            xcalls.fetch_add(1, Ordering::Relaxed);
        });
    }
    let elapsed: Duration = sleeper.join().unwrap();
    println!(
        "{sleeps} sleeps of 500 us took {:.3} s (ideal {:.3} s); {} cut short by a signal; {} cross-calls ran meanwhile",
        elapsed.as_secs_f64(),
        f64::from(sleeps) * 0.0005,
        interrupted.load(Ordering::Relaxed),
        xcalls.load(Ordering::Relaxed)
    );
}
