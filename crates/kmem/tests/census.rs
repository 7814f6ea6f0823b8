//! An instance of its own over a counting page source: everything it
//! allocates — classes, whole pages, handles — comes back, destroy refuses
//! while something is out, and after destroy every page and every byte of
//! address space is back with the page source. The storage then boots
//! again with another configuration.

use std::ptr::NonNull;

use bsdalloc_kmem::*;
use bsdalloc_platform::{CountingPages, OS_PAGES, OsPages};

/// OS pages, counted: after teardown nothing may be left.
static PAGES: CountingPages<OsPages> = CountingPages::new(&OS_PAGES);
static K: Kmem = Kmem::new();

fn workload(k: &'static Kmem) {
    let ps = k.page_size();
    let mut live: Vec<(NonNull<u8>, usize)> = Vec::new();
    for i in 0..2000usize {
        let size = match i % 5 {
            0 => 1 + i % 64,
            1 => 100 + i % 900,
            2 => 1025 + i % 3000,
            3 => ps + 1 + (i * 97) % (20 * ps),
            _ => 8,
        };
        let flags = if i % 2 == 0 { KM_SLEEP } else { KM_NOSLEEP };
        let p = if i % 3 == 0 {
            k.zalloc(size, flags)
        } else {
            k.alloc(size, flags)
        }
        .unwrap();
        // SAFETY: ours.
        unsafe { p.as_ptr().write_bytes(i as u8, size) };
        live.push((p, size));
        if i % 4 == 0 {
            let (p, s) = live.swap_remove(i % live.len());
            // SAFETY: ours.
            unsafe { k.free(p.as_ptr(), s) };
        }
    }
    let b = KmemBox::try_new_in(k, [7u128; 40], KM_SLEEP).unwrap();
    let s = KmemSlice::from_fn_in(k, 3000, KM_NOSLEEP, |i| i as u32).unwrap();
    assert_eq!((b[39], s[2999]), (7, 2999));
    drop((b, s));
    for (p, s) in live {
        // SAFETY: ours.
        unsafe { k.free(p.as_ptr(), s) };
    }
}

#[test]
fn census_then_destroy_gives_every_page_back_and_the_storage_boots_again() {
    K.bootstrap(KmemConfig::new().pages(&PAGES).va_size(256 << 20))
        .unwrap();
    assert_eq!(
        K.bootstrap(KmemConfig::new()),
        Err(KmemError::AlreadyInitialised)
    );
    workload(&K);
    if !cfg!(feature = "guard") {
        assert!(K.stats().large.allocs > 0);
    }
    let p = K.alloc(500, KM_SLEEP).unwrap();
    assert_eq!(K.census().outstanding(), 1);
    let e = std::panic::catch_unwind(|| {
        // SAFETY: refused: something is outstanding.
        unsafe { K.destroy() }
    })
    .unwrap_err();
    let want = if cfg!(feature = "guard") {
        "kmem: destroy with 1 allocations outstanding (0 cached objects, 0 large, 1 guarded)"
    } else {
        "kmem: destroy with 1 allocations outstanding (1 cached objects, 0 large, 0 guarded)"
    };
    assert_eq!(e.downcast_ref::<String>().map(String::as_str), Some(want));
    assert!(K.is_ready());
    // SAFETY: ours.
    unsafe { K.free(p.as_ptr(), 500) };
    let c = K.census();
    assert_eq!(c, KmemCensus::default());
    assert_eq!(
        K.kva_arena().size(bsdalloc_vmem::SizeType::ALLOC) % K.page_size(),
        0
    );
    // SAFETY: nothing is used any more.
    unsafe { K.destroy() };
    assert_eq!(PAGES.committed_bytes(), 0, "pages committed");
    assert_eq!(PAGES.reserved_bytes(), 0, "address space reserved");

    // Again, on the same storage, with 128-byte lines and a small map
    // (guard mode needs more address space: every allocation has its own
    // pages, and a KM_SLEEP one waits for address space).
    let va = if cfg!(feature = "guard") {
        1 << 30
    } else {
        64 << 20
    };
    K.bootstrap(
        KmemConfig::new()
            .pages(&PAGES)
            .va_size(va)
            .coherency_unit(128),
    )
    .unwrap();
    assert_eq!(K.size_classes().coherency_unit(), 128);
    if !cfg!(feature = "guard") {
        // A 32 MiB kmem arena is "small": kva's quantum caches cover 4 pages.
        assert_eq!(K.kva_arena().qcache_max(), 4 * K.page_size());
    }
    workload(&K);
    assert_eq!(K.census().outstanding(), 0);
    // SAFETY: nothing is used any more.
    unsafe { K.destroy() };
    assert_eq!(PAGES.committed_bytes(), 0);
    assert_eq!(PAGES.reserved_bytes(), 0);
}
