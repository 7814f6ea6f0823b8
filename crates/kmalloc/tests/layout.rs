//! The header layout of spec §5.2 (M1–M3): `mh_size` and the type right
//! before the block; small requests header-first in one kmem block of
//! `header + size`, requests of a page or more page aligned with the
//! header ending the first page; `M_ZERO` zeroes; each block is counted
//! at the size kmem reserved for it.

use std::ptr::NonNull;

use bsdalloc_kmalloc::*;

MALLOC_DEFINE!(M_LAYOUT, "layout", "header layout test");
MALLOC_DEFINE!(M_ZEROED, "zeroed", "M_ZERO test");
MALLOC_DEFINE!(M_OTHER, "other", "the tests that do not check statistics");

fn header_of(p: NonNull<u8>) -> MallocHeader {
    // SAFETY: a live malloc block has its header right before it.
    unsafe { p.cast::<MallocHeader>().sub(1).read() }
}

#[test]
fn small_and_large_layouts() {
    let k = backend();
    let ps = k.page_size();
    let sizes = [
        0,
        1,
        7,
        8,
        100,
        1000,
        ps - MALLOC_HEADER_SIZE - 1,
        ps - MALLOC_HEADER_SIZE,
        ps - MALLOC_HEADER_SIZE + 1,
        ps - 1,
        ps,
        ps + 1,
        3 * ps,
        20 * ps + 5,
    ];
    let mut live = Vec::new();
    let mut reserved_total = 0;
    for (i, &size) in sizes.iter().enumerate() {
        let p = malloc(size, &M_LAYOUT, M_WAITOK).unwrap();
        let h = header_of(p);
        assert_eq!(h.mh_size, MALLOC_HEADER_SIZE + size, "size {size}");
        assert!(std::ptr::eq(h.mh_type, &M_LAYOUT), "size {size}");
        // SAFETY: a live block of M_LAYOUT.
        assert_eq!(unsafe { malloc_usable_size(p, &M_LAYOUT) }, size);
        let allocsize = if size < ps {
            assert_eq!(p.as_ptr().addr() % MALLOC_ALIGN, 0, "size {size}");
            MALLOC_HEADER_SIZE + size
        } else {
            assert_eq!(p.as_ptr().addr() % ps, 0, "size {size}: page aligned");
            ps + size
        };
        let reserved = k.allocated_size(allocsize).unwrap();
        reserved_total += reserved;
        assert_eq!(M_LAYOUT.stats().memuse, reserved_total, "size {size}");
        let bit = 1u64 << reserved.next_power_of_two().trailing_zeros();
        assert_ne!(M_LAYOUT.stats().size & bit, 0, "size {size}");
        // SAFETY: `size` usable bytes.
        unsafe { p.as_ptr().write_bytes(i as u8 + 1, size) };
        live.push((p, size, i as u8 + 1));
    }
    let s = M_LAYOUT.stats();
    assert_eq!(s.inuse, sizes.len());
    assert_eq!(s.calls, sizes.len() as u64);
    assert_eq!(s.maxused, reserved_total);
    // Every block kept its bytes (no header of a neighbour overwrote them)
    // and its header.
    for &(p, size, fill) in &live {
        // SAFETY: live, `size` bytes.
        let b = unsafe { std::slice::from_raw_parts(p.as_ptr(), size) };
        assert!(b.iter().all(|&x| x == fill), "size {size}");
        assert_eq!(header_of(p).mh_size, MALLOC_HEADER_SIZE + size);
    }
    for (p, _, _) in live {
        // SAFETY: ours, of M_LAYOUT.
        unsafe { free(p.as_ptr(), &M_LAYOUT) };
    }
    let s = M_LAYOUT.stats();
    assert_eq!((s.inuse, s.memuse), (0, 0));
    assert_eq!(s.maxused, reserved_total, "the high-water mark stays");
}

#[test]
fn large_header_ends_the_first_page() {
    let ps = backend().page_size();
    let p = malloc(2 * ps, &M_OTHER, M_WAITOK).unwrap();
    // The header's bytes are the last MALLOC_HEADER_SIZE bytes of the
    // page before the block: writing the whole page before them (the
    // rest of the kmem block's first page) leaves the header intact.
    // SAFETY: the kmem block starts one page before `p`; its first page
    // is ours, the header in its last bytes.
    unsafe {
        let first = p.as_ptr().sub(ps);
        first.write_bytes(0xee, ps - MALLOC_HEADER_SIZE);
    }
    assert_eq!(header_of(p).mh_size, MALLOC_HEADER_SIZE + 2 * ps);
    // SAFETY: ours.
    unsafe { free(p.as_ptr(), &M_OTHER) };
}

#[test]
fn m_zero_zeroes_every_size() {
    let ps = backend().page_size();
    for size in [1usize, 24, 200, 1500, ps - 1, ps, 4 * ps + 3] {
        // Dirty memory of the same class first, so zero is not luck.
        let d = malloc(size, &M_ZEROED, M_WAITOK).unwrap();
        // SAFETY: `size` bytes.
        unsafe { d.as_ptr().write_bytes(0xa5, size) };
        // SAFETY: ours.
        unsafe { free(d.as_ptr(), &M_ZEROED) };
        for flags in [M_WAITOK | M_ZERO, M_NOWAIT | M_ZERO] {
            let p = malloc(size, &M_ZEROED, flags).unwrap();
            // SAFETY: `size` bytes.
            let b = unsafe { std::slice::from_raw_parts(p.as_ptr(), size) };
            assert!(b.iter().all(|&x| x == 0), "size {size} {flags:?}");
            // SAFETY: `size` bytes.
            unsafe { p.as_ptr().write_bytes(0x5a, size) };
            // SAFETY: ours.
            unsafe { free(p.as_ptr(), &M_ZEROED) };
        }
    }
}

#[test]
fn size_zero_is_a_distinct_block() {
    // NetBSD: allocsize = header + 0, a valid kmem request.
    let a = malloc(0, &M_OTHER, M_WAITOK).unwrap();
    let b = malloc(0, &M_OTHER, M_NOWAIT).unwrap();
    assert_ne!(a, b);
    assert_eq!(header_of(a).mh_size, MALLOC_HEADER_SIZE);
    // SAFETY: ours.
    unsafe {
        assert_eq!(malloc_usable_size(a, &M_OTHER), 0);
        free(a.as_ptr(), &M_OTHER);
        free(b.as_ptr(), &M_OTHER);
    }
}

#[test]
fn builtin_types_work() {
    assert_eq!(BUILTIN_TYPES.len(), 10);
    let names: Vec<_> = BUILTIN_TYPES.iter().map(|t| t.shortdesc()).collect();
    for n in ["devbuf", "DMA map", "free", "temp", "routetbl", "UFS mount"] {
        assert!(names.contains(&n), "{n}");
    }
    for t in BUILTIN_TYPES {
        let p = malloc(32, t, M_WAITOK).unwrap();
        assert!(t.is_attached());
        assert!(malloc_types().any(|x| std::ptr::eq(x, t)));
        // SAFETY: ours, of type `t`.
        unsafe { free(p.as_ptr(), t) };
    }
}
