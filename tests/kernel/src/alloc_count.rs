//! The Rust global allocator of the test kernel process, counted.
//!
//! The harness itself needs it (spawning CPU threads, printing); the stack
//! must not. [`Window`] snapshots the counters before the kernel boots and
//! compares after it has shut down: every call the stack made in between,
//! on any CPU, moves them.

use std::alloc::{GlobalAlloc, Layout, System};

use bsdalloc_platform::sync::atomic::{AtomicU64, Ordering};

pub(crate) struct CountingAlloc;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters are plain atomics and allocate nothing.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        FREES.fetch_add(1, Ordering::SeqCst);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Global allocator calls so far: (allocations and reallocations, frees).
pub(crate) fn calls() -> (u64, u64) {
    (ALLOCS.load(Ordering::SeqCst), FREES.load(Ordering::SeqCst))
}

/// A measured stretch of the run.
pub(crate) struct Window {
    start: (u64, u64),
}

impl Window {
    pub(crate) fn open() -> Window {
        Window { start: calls() }
    }

    /// Calls made since the window opened: (allocations, frees).
    pub(crate) fn close(self) -> (u64, u64) {
        let end = calls();
        (end.0 - self.start.0, end.1 - self.start.1)
    }
}
