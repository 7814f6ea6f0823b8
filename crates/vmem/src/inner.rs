//! The arena state behind its lock (`Inner`) and its event counters.
//!
//! Everything that works on it runs with the arena lock held and never
//! sleeps or calls out; the code that must drop the lock (refill, import,
//! release, sleep, hash resize) is in `arena.rs` and `alloc.rs`. By
//! concern: the tag links (segment list, free lists, spare tags) in
//! `links.rs`, the busy-tag hash in `hash.rs`, the search and the carving
//! and coalescing of segments in `fit.rs`.

use core::ptr;

use bsdalloc_platform::WaitQueue;

use crate::bt::{BT_TYPE_SPAN, BT_TYPE_SPAN_STATIC, BoundaryTag};
use crate::flags::VMEM_MAXORDER;
use crate::hash::BusyHash;

type Bt = BoundaryTag;

/// The arena state protected by its lock.
pub(crate) struct Inner {
    pub(crate) seg_head: *mut Bt,
    pub(crate) seg_tail: *mut Bt,
    pub(crate) freelist: [*mut Bt; VMEM_MAXORDER],
    pub(crate) hash: BusyHash,
    pub(crate) spare: *mut Bt,
    pub(crate) nspare: usize,
    /// `vm_size`: bytes of all spans.
    pub(crate) size: usize,
    /// `vm_inuse`: bytes of busy segments.
    pub(crate) inuse: usize,
    pub(crate) cursor: *mut Bt,
    /// Next fit's rotor: the address just past the last next-fit
    /// allocation. The cursor tag sits right before the segment holding it
    /// (or between two segments when it is a boundary).
    pub(crate) rotor: usize,
    pub(crate) nspans: usize,
    pub(crate) nimported: usize,
    pub(crate) nfree_segs: usize,
    pub(crate) stats: Counters,
    /// Bumped by every change to the segment list or a free list (carve,
    /// coalesce, span add/remove, cursor moves, destroy), so that a walk
    /// that dropped the lock (`dump`) knows whether its place is still
    /// valid.
    pub(crate) generation: u64,
    /// `VM_SLEEP` allocations (and private-tag refills) waiting for room.
    pub(crate) sleepers: WaitQueue,
}

/// Event counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Successful allocations.
    pub allocs: u64,
    /// Frees.
    pub frees: u64,
    /// Allocations that failed with ENOMEM.
    pub failures: u64,
    /// Spans imported from the source.
    pub imports: u64,
    /// Imports the source refused.
    pub import_failures: u64,
    /// Spans released to the source.
    pub releases: u64,
    /// Times a VM_SLEEP caller slept.
    pub sleeps: u64,
    /// Busy-hash resizes.
    pub rehashes: u64,
    /// Times INSTANTFIT found nothing and fell back to BESTFIT.
    pub instantfit_fallbacks: u64,
}

// SAFETY: the raw pointers are tags owned by this arena, used only under
// its lock.
unsafe impl Send for Inner {}

impl Inner {
    pub(crate) const fn new() -> Self {
        Inner {
            seg_head: ptr::null_mut(),
            seg_tail: ptr::null_mut(),
            freelist: [ptr::null_mut(); VMEM_MAXORDER],
            hash: BusyHash::new(),
            spare: ptr::null_mut(),
            nspare: 0,
            size: 0,
            inuse: 0,
            cursor: ptr::null_mut(),
            rotor: 0,
            nspans: 0,
            nimported: 0,
            nfree_segs: 0,
            stats: Counters {
                allocs: 0,
                frees: 0,
                failures: 0,
                imports: 0,
                import_failures: 0,
                releases: 0,
                sleeps: 0,
                rehashes: 0,
                instantfit_fallbacks: 0,
            },
            generation: 0,
            sleepers: WaitQueue::new(),
        }
    }

    /// Whether `t` is a span type.
    pub(crate) fn is_span_type(t: u8) -> bool {
        t == BT_TYPE_SPAN || t == BT_TYPE_SPAN_STATIC
    }
}
