//! A meta source that cannot give the 2 MiB tag chunks the supply asks
//! for once it has taken 16 small ones (a kernel's, short of contiguous
//! memory): the supply falls back to 64 KiB chunks, and an arena grows
//! past a hundred thousand segments all the same. One test: the meta
//! source is process-wide.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use bsdalloc_vmem::{
    Arena, MetaSource, OsMetaSource, VmFlags, tag_supply_stats, vmem_subsystem_init,
};

/// Refuses anything above 64 KiB; the rest from the default source.
struct SmallOnly {
    refused: AtomicUsize,
}

// SAFETY: delegates to `OsMetaSource`, which keeps the contract.
unsafe impl MetaSource for SmallOnly {
    fn alloc_meta(&self, size: usize, flags: VmFlags) -> Option<NonNull<u8>> {
        if size > 64 * 1024 {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        OsMetaSource.alloc_meta(size, flags)
    }

    unsafe fn free_meta(&self, p: NonNull<u8>, size: usize) {
        // SAFETY: the caller's contract, passed on.
        unsafe { OsMetaSource.free_meta(p, size) }
    }
}

static SMALL: SmallOnly = SmallOnly {
    refused: AtomicUsize::new(0),
};

#[test]
fn tags_come_in_small_chunks_when_huge_ones_are_refused() {
    vmem_subsystem_init(&SMALL);
    let a = Arena::create("small-meta", 0, 1 << 40, 1).unwrap();
    let f = VmFlags::NOSLEEP | VmFlags::INSTANTFIT;
    let live: Vec<usize> = (0..120_000).map(|_| a.alloc(1, f).unwrap()).collect();
    let s = tag_supply_stats();
    assert!(s.chunks > 16, "{s:?}");
    assert!(
        SMALL.refused.load(Ordering::Relaxed) > 0,
        "no huge chunk was asked for"
    );
    for x in live {
        a.free(x, 1);
    }
    assert_eq!(a.stats().inuse, 0);
    a.destroy();
}
