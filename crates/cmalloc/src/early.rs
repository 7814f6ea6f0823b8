//! The bootstrap arena: a bump allocator in a static buffer for the
//! allocations made while this thread is already inside the allocator
//! (the kernel booting, a thread becoming a CPU, whose `pthread_setspecific`
//! may `calloc`) — they cannot go to kmem without recursing.
//!
//! Blocks are never given back: `free` recognises the buffer's addresses
//! and ignores them. Each block has a 16-byte header holding its size, for
//! `realloc` and `malloc_usable_size`. The buffer is `.bss`: pages that are
//! never touched cost nothing.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

/// The buffer's size. What the allocator itself needs here is a few
/// hundred bytes at most (glibc's second-level pthread key blocks); the
/// rest covers a program allocating from a signal handler that interrupted
/// `malloc`.
pub(crate) const EARLY_BYTES: usize = 1 << 20;
const HDR: usize = 16;

#[repr(C, align(4096))]
struct Buffer(UnsafeCell<[u8; EARLY_BYTES]>);

// SAFETY: disjoint ranges are handed out by the atomic bump below; each
// block is then its caller's alone.
unsafe impl Sync for Buffer {}

static BUFFER: Buffer = Buffer(UnsafeCell::new([0; EARLY_BYTES]));
static NEXT: AtomicUsize = AtomicUsize::new(0);
static BLOCKS: AtomicUsize = AtomicUsize::new(0);

#[inline(always)]
fn base() -> *mut u8 {
    BUFFER.0.get().cast()
}

/// `n` bytes aligned to `align` (a power of two; at least 16 is given),
/// zeroed (the buffer is never reused), or null when the buffer is full.
pub(crate) fn alloc(n: usize, align: usize) -> *mut u8 {
    let align = align.max(HDR);
    let Some(need) = n.max(1).checked_next_multiple_of(HDR) else {
        return core::ptr::null_mut();
    };
    let mut cur = NEXT.load(Ordering::Relaxed);
    loop {
        let Some(start) = (cur + HDR).checked_next_multiple_of(align) else {
            return core::ptr::null_mut();
        };
        let end = match start.checked_add(need) {
            Some(e) if e <= EARLY_BYTES => e,
            _ => return core::ptr::null_mut(),
        };
        match NEXT.compare_exchange_weak(cur, end, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => {
                let p = base().wrapping_add(start);
                // SAFETY: [start - 16, end) is ours alone (the bump above)
                // and inside the buffer; the header slot is 16-aligned.
                unsafe { p.sub(HDR).cast::<usize>().write(n) };
                BLOCKS.fetch_add(1, Ordering::Relaxed);
                return p;
            }
            Err(now) => cur = now,
        }
    }
}

/// Whether `p` points into the buffer.
#[inline(always)]
pub(crate) fn contains(p: *const u8) -> bool {
    p.addr().wrapping_sub(base().addr()) < EARLY_BYTES
}

/// The size a block of the buffer was asked with.
///
/// # Safety
/// `p` is a block returned by [`alloc`].
pub(crate) unsafe fn size(p: *const u8) -> usize {
    // SAFETY: the caller's contract: a header precedes every block.
    unsafe { p.sub(HDR).cast::<usize>().read() }
}

/// Bytes of the buffer handed out, and blocks.
pub(crate) fn usage() -> (usize, usize) {
    (NEXT.load(Ordering::Relaxed), BLOCKS.load(Ordering::Relaxed))
}
