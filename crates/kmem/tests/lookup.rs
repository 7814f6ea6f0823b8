//! `Kmem::lookup_size`: an allocation's size from its address alone, in
//! constant time, for every size from 1 byte to 3 pages; freeing with it
//! gives everything back.

#![cfg(not(feature = "guard"))]

use bsdalloc_kmem::{KM_SLEEP, Kmem, KmemConfig};

static K: Kmem = Kmem::new();
static PLAIN: Kmem = Kmem::new();

#[test]
fn every_size_is_found_from_its_address_and_freed_with_it() {
    K.bootstrap(KmemConfig::new().size_lookup(true).va_size(1 << 30))
        .unwrap();
    let ps = K.page_size();
    let recorded = cfg!(any(feature = "kmem-size", feature = "redzone"));
    let mut live = Vec::new();
    for size in 1..=3 * ps {
        let p = K.alloc(size, KM_SLEEP).unwrap();
        let found = K.lookup_size(p.as_ptr()).expect("a live allocation");
        assert_eq!(Some(found), K.allocated_size(size), "size {size}");
        live.push((p, size, found));
    }
    for &(p, size, found) in &live {
        // Still the same answer with everything live.
        assert_eq!(K.lookup_size(p.as_ptr()), Some(found), "size {size}");
        if found > ps {
            // Inside a large allocation: not an allocation's address.
            assert_eq!(K.lookup_size(p.as_ptr().wrapping_add(ps)), None);
        }
    }
    for (p, size, found) in live {
        // SAFETY: live; the looked-up size selects the same cache or pages
        // (the debug footer wants the size asked for).
        unsafe { K.free(p.as_ptr(), if recorded { size } else { found }) };
        if found > ps {
            assert_eq!(K.lookup_size(p.as_ptr()), None, "a freed large allocation");
        }
    }
    // Not kmem's.
    let on_stack = 0u8;
    assert_eq!(K.lookup_size(&on_stack), None);
    assert_eq!(K.lookup_size(std::ptr::null()), None);
    assert_eq!(K.census().outstanding(), 0);
    // SAFETY: nothing is live.
    unsafe { K.destroy() };
}

#[test]
fn an_instance_without_size_lookup_answers_none() {
    PLAIN.bootstrap(KmemConfig::new().va_size(1 << 30)).unwrap();
    let p = PLAIN.alloc(100, KM_SLEEP).unwrap();
    assert_eq!(PLAIN.lookup_size(p.as_ptr()), None);
    // SAFETY: ours.
    unsafe {
        PLAIN.free(p.as_ptr(), 100);
        PLAIN.destroy();
    }
}

static SMALL: Kmem = Kmem::new();

#[test]
fn the_tags_are_outside_a_small_budget() {
    // 1 GiB of address space needs 1 MiB of tags (256 pages): a budget of
    // 64 pages would not hold them, and need not — they are the map's
    // bookkeeping, from its page source.
    SMALL
        .bootstrap(
            KmemConfig::new()
                .size_lookup(true)
                .va_size(1 << 30)
                .limit_pages(64),
        )
        .unwrap();
    let p = SMALL.alloc(3000, KM_SLEEP).unwrap();
    assert!(SMALL.lookup_size(p.as_ptr()).is_some());
    assert!(SMALL.map().stats().committed_pages <= 64);
    // SAFETY: ours.
    unsafe {
        SMALL.free(p.as_ptr(), 3000);
        SMALL.destroy();
    }
}
