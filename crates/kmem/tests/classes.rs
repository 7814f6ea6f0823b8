//! The size-class tables of spec §4.2 for 4 KiB and 16 KiB pages and 64-
//! and 128-byte cache lines: which caches exist, their alignment and
//! flags, and which cache each allocation size maps to (K4, K10).

use bsdalloc_kmem::{SizeClass, SizeClasses};

/// `(size, align, notouch)` of every class, smallest first.
fn table(ps: usize, cu: usize) -> Vec<(usize, usize, bool)> {
    SizeClasses::compute(ps, cu)
        .classes()
        .iter()
        .map(|c: &SizeClass| (c.size, c.align, c.notouch))
        .collect()
}

fn names(ps: usize, cu: usize) -> Vec<&'static str> {
    SizeClasses::compute(ps, cu)
        .classes()
        .iter()
        .map(|c| c.name)
        .collect()
}

#[test]
fn amd64_4k_pages_64_byte_lines() {
    let l = 64;
    assert_eq!(
        table(4096, 64),
        vec![
            (8, 8, true),
            (16, 8, true),
            (32, 8, true),
            (64, l, false),
            (128, l, false),
            (192, l, false),
            (256, l, false),
            (320, l, false),
            (384, l, false),
            (448, l, false),
            (512, l, false),
            (768, l, false),
            (1024, l, false),
            (2048, l, false),
            (4096, 4096, false),
        ]
    );
    assert_eq!(
        names(4096, 64),
        [
            "kmem-00008",
            "kmem-00016",
            "kmem-00032",
            "kmem-00064",
            "kmem-00128",
            "kmem-00192",
            "kmem-00256",
            "kmem-00320",
            "kmem-00384",
            "kmem-00448",
            "kmem-00512",
            "kmem-00768",
            "kmem-01024",
            "kmem-02048",
            "kmem-04096",
        ]
    );
}

#[test]
fn four_k_pages_128_byte_lines() {
    let l = 128;
    assert_eq!(
        table(4096, 128),
        vec![
            (8, 8, true),
            (16, 8, true),
            (32, 8, true),
            (64, 8, true),
            (128, l, false),
            (256, l, false),
            (384, l, false),
            (512, l, false),
            (768, l, false),
            (1024, l, false),
            (2048, l, false),
            (4096, 4096, false),
        ]
    );
}

#[test]
fn sixteen_k_pages_64_byte_lines() {
    let t = table(16384, 64);
    // The small table does not depend on the page size.
    assert_eq!(t[..13], table(4096, 64)[..13]);
    assert_eq!(
        t[13..],
        [
            (2048, 64, false),
            (4096, 64, false),
            (8192, 64, false),
            (16384, 16384, false)
        ]
    );
    assert_eq!(names(16384, 64).last(), Some(&"kmem-16384"));
}

#[test]
fn sixteen_k_pages_128_byte_lines() {
    let t = table(16384, 128);
    assert_eq!(t[..10], table(4096, 128)[..10]);
    assert_eq!(
        t[10..],
        [
            (2048, 128, false),
            (4096, 128, false),
            (8192, 128, false),
            (16384, 16384, false)
        ]
    );
}

/// The lookup of spec §4.2's amd64 table, range by range.
#[test]
fn lookup_ranges_4k_64() {
    let c = SizeClasses::compute(4096, 64);
    let expect = [
        (1, 8, 8),
        (9, 16, 16),
        (17, 32, 32),
        (33, 64, 64),
        (65, 128, 128),
        (129, 192, 192),
        (193, 256, 256),
        (257, 320, 320),
        (321, 384, 384),
        (385, 448, 448),
        (449, 512, 512),
        (513, 768, 768),
        (769, 1024, 1024),
        (1025, 2048, 2048),
        (2049, 4096, 4096),
    ];
    for (lo, hi, size) in expect {
        for a in lo..=hi {
            assert_eq!(c.lookup(a).map(|k| k.size), Some(size), "allocsz {a}");
        }
    }
    assert_eq!(c.max_cached(), 4096);
    assert!(c.lookup(4097).is_none());
    assert!(c.lookup(usize::MAX).is_none());
}

#[test]
fn lookup_ranges_128_byte_lines_and_16k_pages() {
    let c = SizeClasses::compute(4096, 128);
    for (a, size) in [
        (33, 64),
        (64, 64),
        (65, 128),
        (129, 256),
        (257, 384),
        (385, 512),
    ] {
        assert_eq!(c.lookup(a).map(|k| k.size), Some(size), "allocsz {a}");
    }
    let c = SizeClasses::compute(16384, 64);
    for (a, size) in [(2049, 4096), (4097, 8192), (8192, 8192), (8193, 16384)] {
        assert_eq!(c.lookup(a).map(|k| k.size), Some(size), "allocsz {a}");
    }
    assert_eq!(c.max_cached(), 16384);
    assert!(c.lookup(16385).is_none());
}

#[test]
#[should_panic(expected = "COHERENCY_UNIT must be a power of two")]
fn a_cache_line_that_is_not_a_power_of_two_is_refused() {
    SizeClasses::compute(4096, 96);
}
