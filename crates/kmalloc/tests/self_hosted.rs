//! Self-hosting (DESIGN §2): once kmem is set up, no malloc path calls
//! the Rust global allocator — malloc, realloc and free of every size and
//! flag, attaching, detaching and limiting types, reading their counters
//! and printing the statistics table. A counting global allocator, armed
//! on this thread only, proves it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use bsdalloc_kmalloc::*;

struct Counting;

static CALLS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if ARMED.with(Cell::get) {
        CALLS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to System.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        note();
        // SAFETY: the caller's contract.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        note();
        // SAFETY: the caller's contract.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

MALLOC_DEFINE!(M_SELF, "selfhost", "self-hosting test");
MALLOC_JUSTDEFINE!(M_SELF2, "selfhost2", "attached and detached while armed");

/// Counts bytes instead of keeping them.
struct Sink(usize);
impl Write for Sink {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

fn round(ps: usize) {
    let mut held = [None; 8];
    let sizes = [0, 8, 100, 1000, 3000, ps - 1, ps, 5 * ps + 3];
    for (i, (h, &size)) in held.iter_mut().zip(&sizes).enumerate() {
        let flags = [M_WAITOK, M_NOWAIT, M_WAITOK | M_ZERO, M_NOWAIT | M_ZERO][i % 4];
        *h = malloc(size, &M_SELF, flags);
    }
    for (h, &size) in held.iter_mut().zip(&sizes) {
        let p = h.take().unwrap();
        // SAFETY: ours.
        let q = unsafe { realloc(p.as_ptr(), size * 2 + 1, &M_SELF, M_NOWAIT) }.unwrap();
        // SAFETY: ours.
        unsafe { free(q.as_ptr(), &M_SELF) };
    }
    assert!(malloc(usize::MAX - 5, &M_SELF, M_NOWAIT).is_none());
}

#[test]
fn no_malloc_path_uses_the_global_allocator() {
    let ps = backend().page_size();
    // Warm up: kmem's instance and caches, this CPU's slot, the type.
    round(ps);
    let table_len = {
        let mut s = Sink(0);
        write!(s, "{}", malloc_stats()).unwrap();
        s.0
    };
    assert!(table_len > 0);

    ARMED.with(|a| a.set(true));
    for _ in 0..50 {
        round(ps);
    }
    malloc_type_attach(&M_SELF2);
    let p = malloc(64, &M_SELF2, M_WAITOK).unwrap();
    malloc_type_setlimit(&M_SELF2, 1 << 20);
    // SAFETY: ours.
    unsafe { free(p.as_ptr(), &M_SELF2) };
    malloc_type_detach(&M_SELF2);
    let s = M_SELF.stats();
    let mut sink = Sink(0);
    write!(sink, "{s}").unwrap();
    write!(sink, "{}", malloc_stats()).unwrap();
    let n = malloc_types().count();
    ARMED.with(|a| a.set(false));

    assert_eq!(CALLS.load(Ordering::Relaxed), 0, "global allocator calls");
    assert!(n >= 1);
    assert_eq!(s.inuse, 0);
    assert_eq!(s.calls, 51 * 16);

    // The detector itself works.
    ARMED.with(|a| a.set(true));
    drop(std::hint::black_box(Box::new(1u64)));
    ARMED.with(|a| a.set(false));
    assert_eq!(CALLS.load(Ordering::Relaxed), 2, "alloc and dealloc seen");
}
