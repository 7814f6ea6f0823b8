//! A real Rust program on bsdalloc as its `#[global_allocator]`:
//! collections, strings, formatting, threads, channels, thread churn and
//! 10,000 live threads, with a re-entry detector around the allocator that
//! aborts the process if an allocation path calls the global allocator
//! (the self-hosting rule: no allocation path may use it).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::thread;

use bsdalloc::Global;

/// `Global`, with a flag per thread that is set while the allocator runs:
/// a call that finds it set is a re-entry.
struct Detector;

thread_local! {
    // Const-initialised and without Drop: no destructor is registered and
    // the access itself never allocates.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

static CALLS: AtomicU64 = AtomicU64::new(0);

#[cold]
fn reentered() -> ! {
    let msg = b"re-entry detector: the allocator re-entered the global allocator\n";
    // SAFETY: writing a static buffer to stderr; no allocation.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
    std::process::abort()
}

struct Section;

impl Section {
    #[inline]
    fn enter() -> Section {
        CALLS.fetch_add(1, Ordering::Relaxed);
        if INSIDE.with(|c| c.replace(true)) {
            reentered();
        }
        Section
    }
}

impl Drop for Section {
    #[inline]
    fn drop(&mut self) {
        INSIDE.with(|c| c.set(false));
    }
}

// SAFETY: forwards to `Global`.
unsafe impl GlobalAlloc for Detector {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _s = Section::enter();
        // SAFETY: the caller's contract.
        unsafe { Global.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let _s = Section::enter();
        // SAFETY: the caller's contract.
        unsafe { Global.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let _s = Section::enter();
        // SAFETY: the caller's contract.
        unsafe { Global.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _s = Section::enter();
        // SAFETY: the caller's contract.
        unsafe { Global.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Detector = Detector;

#[test]
fn the_detector_catches_a_reentry() {
    // In a child: allocate while the section is held, as an allocation
    // path calling the global allocator would.
    if std::env::var_os("BSDALLOC_REENTER_CHILD").is_some() {
        let _s = Section::enter();
        black_box(vec![1u8; 100]);
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["the_detector_catches_a_reentry", "--exact", "--nocapture"])
        .env("BSDALLOC_REENTER_CHILD", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("re-entry detector"), "{err}");
}

#[test]
fn collections_strings_and_formatting() {
    let before = CALLS.load(Ordering::Relaxed);
    let mut m: HashMap<String, Vec<u8>> = HashMap::new();
    for i in 0..20_000u32 {
        m.insert(format!("key-{i:06}"), vec![i as u8; (i % 700) as usize]);
    }
    for i in (0..20_000u32).step_by(3) {
        m.remove(&format!("key-{i:06}"));
    }
    for (k, v) in &m {
        let i: u32 = k[4..].parse().unwrap();
        assert_eq!(v.len(), (i % 700) as usize);
        assert!(v.iter().all(|&b| b == i as u8));
    }
    let mut t = BTreeMap::new();
    for i in 0..10_000u64 {
        t.insert(i.wrapping_mul(0x9e37_79b9_7f4a_7c15), i.to_string());
    }
    assert_eq!(t.len(), 10_000);
    let mut q: VecDeque<Box<[u64]>> = VecDeque::new();
    for i in 0..5000usize {
        q.push_back(vec![i as u64; i % 300 + 1].into_boxed_slice());
        if q.len() > 100 {
            let b = q.pop_front().unwrap();
            assert!(b.iter().all(|&x| x == b[0]));
        }
    }
    // Growth by realloc, to whole pages and back.
    let mut s = String::new();
    for i in 0..100_000 {
        s.push(char::from(b'a' + (i % 26) as u8));
    }
    s.truncate(10);
    s.shrink_to_fit();
    assert_eq!(s, "abcdefghij");
    // Alignment above the page, and zeroed vectors.
    #[repr(align(8192))]
    struct Big([u8; 100]);
    let b = Box::new(Big([7; 100]));
    assert_eq!(std::ptr::from_ref(&*b).addr() % 8192, 0);
    assert_eq!(b.0[99], 7);
    let z = vec![0u64; 1 << 20];
    assert!(z.iter().all(|&x| x == 0));
    assert!(
        CALLS.load(Ordering::Relaxed) > before,
        "the program's allocations went through bsdalloc"
    );
}

#[test]
fn threads_and_channels_free_across_cpus() {
    // Four producers allocate, two consumers free: most blocks die on
    // another CPU than the one they were born on.
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let rx = Arc::new(Mutex::new(rx));
    let producers: Vec<_> = (0..4)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                for i in 0..20_000usize {
                    tx.send(vec![t as u8; 1 + (i * 37) % 3000]).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let rx = rx.clone();
            thread::spawn(move || {
                let mut n = 0usize;
                loop {
                    let msg = rx.lock().unwrap().recv();
                    let Ok(v) = msg else { return n };
                    assert!(v.iter().all(|&b| b == v[0]));
                    n += 1;
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let n: usize = consumers.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(n, 80_000);
}

#[test]
fn thread_churn() {
    for round in 0..40 {
        let hs: Vec<_> = (0..16)
            .map(|i| {
                thread::spawn(move || {
                    let v: Vec<String> = (0..200).map(|j| format!("{round}-{i}-{j}")).collect();
                    v.join(",").len()
                })
            })
            .collect();
        for h in hs {
            assert!(h.join().unwrap() > 0);
        }
    }
}

#[test]
fn ten_thousand_live_threads() {
    const N: usize = 10_000;
    let barrier = Arc::new(Barrier::new(N + 1));
    let total = Arc::new(AtomicU64::new(0));
    let mut hs = Vec::with_capacity(N);
    for i in 0..N {
        let barrier = barrier.clone();
        let total = total.clone();
        hs.push(
            thread::Builder::new()
                .stack_size(64 << 10)
                .spawn(move || {
                    // Allocate while all N threads are alive: most of them
                    // are past the exclusive CPU slots.
                    let v = vec![i as u32; 1 + i % 64];
                    let s = format!("thread {i}");
                    barrier.wait();
                    let b: Box<[u8]> = vec![1u8; 1 + i % 5000].into_boxed_slice();
                    total.fetch_add(
                        v.len() as u64 + s.len() as u64 + b.len() as u64,
                        Ordering::Relaxed,
                    );
                })
                .expect("spawn a thread"),
        );
    }
    barrier.wait();
    for h in hs {
        h.join().unwrap();
    }
    let expect: u64 = (0..N)
        .map(|i| (1 + i % 64) as u64 + format!("thread {i}").len() as u64 + (1 + i % 5000) as u64)
        .sum();
    assert_eq!(total.load(Ordering::Relaxed), expect);
}
