//! The arena stack of spec §4.4 / §6.3 (U5): `kva` imports from the map's
//! `kmem` arena and fronts large sizes with quantum caches of 16 pages;
//! `vmem-va` imports ×16 (`VM_LARGEIMPORT`) from `kmem`; `vmem-meta`
//! hands out backed memory imported from `vmem-va`.
#![cfg(not(feature = "guard"))]

use bsdalloc_kmem::*;
use bsdalloc_platform::Ipl;
use bsdalloc_vmem::{SizeType, VmFlags};

static K: Kmem = Kmem::new();

#[test]
fn the_arena_stack() {
    K.bootstrap(KmemConfig::new().va_size(1 << 30)).unwrap();
    let ps = K.page_size();
    let kmem_arena = K.map().kmem_arena();
    let (kva, va_meta, meta) = (K.kva_arena(), K.va_meta_arena(), K.meta_arena());
    assert_eq!(
        (kva.name(), va_meta.name(), meta.name()),
        ("kva", "vmem-va", "vmem-meta")
    );
    for a in [kva, va_meta, meta] {
        assert_eq!((a.quantum(), a.ipl()), (ps, Ipl::Vm));
    }
    // A 512 MiB kmem arena is not small: 16 pages of quantum caches.
    assert_eq!(kva.qcache_max(), 16 * ps);
    assert!(kva.has_quantum_cache());
    assert!(va_meta.flags().contains(VmFlags::LARGEIMPORT));

    // A large allocation: address space from kva (a quantum cache below
    // 16 pages), imported from the kmem arena.
    let before = kmem_arena.size(SizeType::ALLOC);
    let p = K.alloc(3 * ps, KM_SLEEP).unwrap();
    assert!(kmem_arena.size(SizeType::ALLOC) > before);
    let qc = K.kva_quantum_caches().cache_for(3 * ps).unwrap();
    assert_eq!(qc.name(), format!("kva-{}", 3 * ps));
    assert!(qc.stats().pool.nget >= 1);
    let big = K.alloc(40 * ps, KM_SLEEP).unwrap(); // above qcache_max: a busy segment
    assert_eq!(kva.busy_size(big.as_ptr().addr()), Some(40 * ps));

    // vmem-meta: backed memory; its import brought 16× into vmem-va.
    let m = meta
        .alloc(ps, VmFlags::SLEEP | VmFlags::INSTANTFIT)
        .unwrap();
    let mp = K.map().va_ptr(m).unwrap();
    // SAFETY: a backed page of the meta arena, ours until freed.
    unsafe { mp.as_ptr().write_bytes(0xA5, ps) };
    assert!(va_meta.size(SizeType::ALL) >= 16 * ps);
    meta.free(m, ps);

    // SAFETY: ours.
    unsafe {
        K.free(p.as_ptr(), 3 * ps);
        K.free(big.as_ptr(), 40 * ps);
    }
    assert_eq!(K.census().outstanding(), 0);
    // SAFETY: nothing is used any more.
    unsafe { K.destroy() };
}
