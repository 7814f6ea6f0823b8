//! The kmem(9) API on the default instance: both paths, zeroing, flags,
//! alignment (K1–K3, K5, K10), statistics.

use std::ptr::NonNull;

use bsdalloc_kmem::*;

fn fill_check(p: NonNull<u8>, len: usize, b: u8) {
    // SAFETY: `len` bytes of an allocation of ours.
    let s = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), len) };
    s.fill(b);
    assert!(s.iter().all(|&x| x == b));
}

#[test]
fn small_and_large_allocations_round_trip() {
    let ps = kmem().page_size();
    for size in [
        1,
        7,
        8,
        9,
        63,
        64,
        100,
        1000,
        2000,
        4000,
        ps,
        ps + 1,
        5 * ps,
        17 * ps,
    ] {
        for flags in [KM_SLEEP, KM_NOSLEEP] {
            let p = kmem_alloc(size, flags).expect("memory");
            fill_check(p, size, size as u8);
            // SAFETY: allocated above with `size`.
            unsafe { kmem_free(p.as_ptr(), size) };
        }
    }
}

#[test]
fn zalloc_zeroes_exactly_the_size_even_when_reused() {
    for size in [24, 200, 3000, 9000] {
        let p = kmem_alloc(size, KM_SLEEP).unwrap();
        fill_check(p, size, 0xAB);
        // SAFETY: ours.
        unsafe { kmem_free(p.as_ptr(), size) };
        let z = kmem_zalloc(size, KM_SLEEP).unwrap();
        // SAFETY: `size` bytes of ours.
        let s = unsafe { std::slice::from_raw_parts(z.as_ptr(), size) };
        assert!(s.iter().all(|&b| b == 0), "size {size}");
        // SAFETY: ours.
        unsafe { kmem_free(z.as_ptr(), size) };
    }
}

#[test]
fn resize_in_place_stays_within_the_class_or_the_pages() {
    let k = kmem();
    let recorded = cfg!(any(
        feature = "kmem-size",
        feature = "redzone",
        feature = "guard"
    ));
    let ps = k.page_size();
    // (old, new, same cache or same whole pages)
    let cases = [
        (200, 256, true),
        (256, 193, true),
        (200, 300, false),
        (40, 24, false),
        (3 * ps, 3 * ps - 100, true),
        (3 * ps - 100, 2 * ps + 1, true),
        (3 * ps, 3 * ps + 1, false),
        (ps - 8, ps + 8, false),
    ];
    for (old, new, same) in cases {
        let p = kmem_alloc(old, KM_SLEEP).unwrap();
        fill_check(p, old.min(new), 0x5C);
        // SAFETY: a live allocation of `old` bytes.
        let moved = !unsafe { k.resize_in_place(p, old, new) };
        assert_eq!(moved, recorded || !same, "{old} -> {new}");
        let size = if moved { old } else { new };
        if !moved {
            // SAFETY: the allocation now has `new` bytes.
            unsafe { p.as_ptr().write_bytes(0x5D, new) };
        }
        // SAFETY: ours, with its current size.
        unsafe { kmem_free(p.as_ptr(), size) };
    }
}

#[test]
fn alignment_follows_the_class() {
    let k = kmem();
    let ps = k.page_size();
    for size in 1..=2 * ps + 8 {
        let a = k.alignment_of(size).unwrap();
        assert!(a >= KMEM_ALIGN);
        if size > ps {
            assert_eq!(a, ps);
        }
    }
    // K10 on 64-byte lines without debug features: 8 below 64, the line
    // from the 64 class to 2048, the page from 4096.
    if SIZE_SIZE == 0 && !cfg!(feature = "redzone") && !cfg!(feature = "guard") && ps == 4096 {
        assert_eq!(k.alignment_of(24), Some(8));
        assert_eq!(k.alignment_of(33), Some(64));
        assert_eq!(k.alignment_of(2048), Some(64));
        assert_eq!(k.alignment_of(2049), Some(4096));
    }
    for size in [8, 40, 64, 200, 1500, 3000, ps, 3 * ps] {
        let p = kmem_alloc(size, KM_SLEEP).unwrap();
        assert_eq!(
            p.as_ptr().addr() % k.alignment_of(size).unwrap(),
            0,
            "size {size}"
        );
        // SAFETY: ours.
        unsafe { kmem_free(p.as_ptr(), size) };
    }
}

#[test]
fn roundup_size() {
    assert_eq!(kmem_roundup_size(1), 8);
    assert_eq!(kmem_roundup_size(8), 8);
    assert_eq!(kmem_roundup_size(9), 16);
    assert_eq!(kmem_roundup_size(0), 0);
}

#[test]
fn many_live_objects_do_not_overlap() {
    let mut live = Vec::new();
    for i in 0..3000usize {
        let size = 1 + (i * 37) % 700;
        let p = kmem_alloc(size, KM_SLEEP).unwrap();
        // SAFETY: ours.
        unsafe { p.as_ptr().write_bytes(i as u8, size) };
        live.push((p, size, i as u8));
    }
    for (p, size, b) in live {
        // SAFETY: ours.
        let s = unsafe { std::slice::from_raw_parts(p.as_ptr(), size) };
        assert!(s.iter().all(|&x| x == b), "overwritten");
        // SAFETY: ours.
        unsafe { kmem_free(p.as_ptr(), size) };
    }
}

#[cfg(not(feature = "guard"))]
#[test]
fn statistics_show_the_kmem_caches_in_vmstat_form() {
    let p = kmem_alloc(300, KM_SLEEP).unwrap();
    let big = kmem_alloc(5 * kmem().page_size(), KM_SLEEP).unwrap();
    let s = kmem().stats();
    let c = s.cache("kmem-00320").expect("the 320 class");
    assert!(c.pool.nget >= 1);
    assert!(s.large.live >= 1 && s.large.allocs >= 1);
    let text = s.to_string();
    assert!(text.contains("Memory resource pool statistics"), "{text}");
    assert!(text.contains("Pool cache statistics."), "{text}");
    assert!(text.lines().any(|l| l.starts_with("kmem-00320")), "{text}");
    assert!(text.contains("kmem large:"), "{text}");
    // The pools also show in the system-wide tables.
    let m = bsdalloc_pool::pool_vmstat_m(Default::default()).to_string();
    assert!(m.lines().any(|l| l.starts_with("kmem-00320")));
    // SAFETY: ours.
    unsafe {
        kmem_free(p.as_ptr(), 300);
        kmem_free(big.as_ptr(), 5 * kmem().page_size());
    }
}

#[test]
fn kmem_init_after_first_use_is_refused() {
    let p = kmem_alloc(8, KM_SLEEP).unwrap();
    // SAFETY: ours.
    unsafe { kmem_free(p.as_ptr(), 8) };
    assert_eq!(
        kmem_init(KmemConfig::new()).unwrap_err(),
        KmemError::AlreadyInitialised
    );
}
