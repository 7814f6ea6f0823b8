//! Shared by the test files.
#![allow(dead_code)]

use std::ptr::NonNull;

use bsdalloc_kmem::{KM_SLEEP, KMEM_ALIGN, Kmem, SIZE_SIZE};

/// The alignment K10 promises for `size` on an instance: the class's
/// alignment for the `allocsz` kmem computes (footer and redzone
/// included), the page for whole pages — computed here from the table,
/// not asked from the allocator.
pub(crate) fn promised_align(k: &Kmem, size: usize) -> usize {
    let r = size.next_multiple_of(KMEM_ALIGN);
    let extra = if cfg!(feature = "redzone") && r - size < 2 {
        8
    } else {
        0
    };
    let allocsz = r + SIZE_SIZE + extra;
    match k.size_classes().lookup(allocsz) {
        Some(c) => c.align,
        None => k.page_size(),
    }
}

/// Every size from 1 to `max`: allocate (`KM_SLEEP`), check the
/// alignment, fill with a size-derived byte, keep the last 8 live, check
/// each fill before freeing it.
pub(crate) fn every_size(k: &'static Kmem, max: usize) {
    let mut reference = vec![0u8; max];
    let mut ring: Vec<(NonNull<u8>, usize)> = Vec::new();
    let check = |p: NonNull<u8>, size: usize, reference: &mut Vec<u8>| {
        let b = (size % 251) as u8;
        reference[..size].fill(b);
        // SAFETY: `size` bytes of a live allocation.
        let s = unsafe { std::slice::from_raw_parts(p.as_ptr(), size) };
        assert!(s == &reference[..size], "allocation of {size} overwritten");
        // SAFETY: allocated with `size`.
        unsafe { k.free(p.as_ptr(), size) };
    };
    for size in 1..=max {
        let p = k.alloc(size, KM_SLEEP).unwrap();
        let a = promised_align(k, size);
        assert_eq!(p.as_ptr().addr() % a, 0, "size {size}: alignment {a}");
        // SAFETY: `size` fresh bytes.
        unsafe { p.as_ptr().write_bytes((size % 251) as u8, size) };
        ring.push((p, size));
        if ring.len() > 8 {
            let (p, s) = ring.remove(0);
            check(p, s, &mut reference);
        }
    }
    for (p, s) in ring {
        check(p, s, &mut reference);
    }
}
