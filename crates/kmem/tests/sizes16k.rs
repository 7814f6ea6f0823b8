//! A machine with 16 KiB pages and 128-byte cache lines (an instance of
//! its own over `LargePages`): the size classes are the 16 KiB table,
//! every size from 1 byte to 3 pages is served, aligned and kept apart,
//! and at teardown every page is back.

mod common;

use bsdalloc_kmem::{KM_NOSLEEP, Kmem, KmemConfig, SizeClasses};

static K: Kmem = Kmem::new();

#[test]
fn sixteen_k_pages_every_size_then_teardown() {
    K.bootstrap(
        KmemConfig::new()
            .page_size(16384)
            .coherency_unit(128)
            .va_size(1 << 30),
    )
    .unwrap();
    assert_eq!(K.page_size(), 16384);
    assert_eq!(K.map().page_size(), 16384);
    let want = SizeClasses::compute(16384, 128);
    let got: Vec<_> = K.size_classes().classes().iter().map(|c| c.name).collect();
    let exp: Vec<_> = want.classes().iter().map(|c| c.name).collect();
    assert_eq!(got, exp);
    assert!(got.contains(&"kmem-16384") && got.contains(&"kmem-08192"));
    // The kva quantum caches cover 16 pages (a kmem arena of 512 MiB).
    let qc = K.kva_quantum_caches();
    assert_eq!(qc.cache_for(16384).unwrap().name(), "kva-16384");
    assert!(qc.cache_for(16 * 16384).is_some());
    assert!(qc.cache_for(17 * 16384).is_none());

    common::every_size(&K, 3 * 16384);

    // A class of the big table and a large allocation, with KM_NOSLEEP.
    let p = K.alloc(8000, KM_NOSLEEP).unwrap();
    assert_eq!(p.as_ptr().addr() % 128, 0);
    let q = K.alloc(20 * 16384, KM_NOSLEEP).unwrap();
    assert_eq!(q.as_ptr().addr() % 16384, 0);
    // SAFETY: ours, with their sizes.
    unsafe {
        K.free(p.as_ptr(), 8000);
        K.free(q.as_ptr(), 20 * 16384);
    }
    let c = K.census();
    assert_eq!(c.outstanding(), 0, "{c:?}");
    // SAFETY: nothing is used any more.
    unsafe { K.destroy() };
    assert!(!K.is_ready());
}
