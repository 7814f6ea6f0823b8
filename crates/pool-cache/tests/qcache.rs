//! vmem quantum caches (V19, spec §1.7): sizes up to `qcache_max` are
//! served by pool caches named "<arena>-<size>"; classes with equal items
//! per page share a cache; cache pages are the smallest power of two above
//! `3 × qcache_max`, taken from the arena itself; reclaim gives cached
//! segments back; destroy leaves the arena empty.

use std::collections::HashSet;

use bsdalloc_pool::PrFlags;
use bsdalloc_pool_cache::*;
use bsdalloc_vmem::{ArenaConfig, SizeType, VmFlags, vmem_xcreate};

const Q: usize = 4096;

/// The count of caches is global: the tests that create caches run one at
/// a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn kva_worked_example() {
    let _s = serial();
    // kmem_va_arena's shape: quantum 4 KiB, qcache_max 64 KiB.
    let a = vmem_xcreate(
        ArenaConfig::new("qc-kva", Q).qcache_max(16 * Q),
        0x1000_0000,
        1 << 32,
    )
    .unwrap();
    let before = pool_cache_count();
    let qc = vmem_qcache_init(a);
    assert!(a.has_quantum_cache());
    assert_eq!(qc.page_size(), 256 << 10);
    // 64,32,21,16,12,10,9,8,7,6,5,5,4,4,4,4 items per page: 12 caches.
    let owners: Vec<usize> = (1..=16)
        .map(|k| qc.cache_for(k * Q).unwrap().pool().stats().size / Q)
        .collect();
    assert_eq!(
        owners,
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 12, 16, 16, 16, 16]
    );
    assert_eq!(qc.caches().count(), 12);
    assert_eq!(pool_cache_count(), before + 12);
    for pc in qc.caches() {
        let s = pc.pool().stats();
        assert_eq!(pc.name(), format!("qc-kva-{}", s.size));
        assert_eq!(s.pagesize, 256 << 10);
        assert_eq!(s.itemsperpage, (256 << 10) / s.size);
        assert!(
            s.flags
                .contains(PrFlags::NOALIGN | PrFlags::NOTOUCH | PrFlags::RECURSIVE)
        );
    }
    assert_eq!(qc.cache_for(11 * Q).unwrap().name(), "qc-kva-49152");
    assert_eq!(qc.cache_for(13 * Q).unwrap().name(), "qc-kva-65536");
    // Sub-quantum sizes round up to the first class.
    assert_eq!(qc.cache_for(1).unwrap().name(), "qc-kva-4096");
    assert!(qc.cache_for(16 * Q + 1).is_none());

    // Allocation through the arena: the cache serves, the arena sees its
    // pages (256 KiB segments) busy.
    let mut live = Vec::new();
    let mut seen = HashSet::new();
    for i in 0..200usize {
        let size = (i % 16 + 1) * Q - (i % 3);
        let addr = a.alloc(size, VmFlags::SLEEP | VmFlags::INSTANTFIT).unwrap();
        assert_eq!(addr % Q, 0, "quantum aligned");
        assert!((0x1000_0000..0x1000_0000 + (1 << 32)).contains(&addr));
        assert!(seen.insert(addr), "address handed out twice");
        live.push((addr, size));
    }
    let busy = a.size(SizeType::ALLOC);
    assert_eq!(busy % (256 << 10), 0, "the arena sees whole cache pages");
    let gets: u64 = qc.caches().map(|pc| pc.pool().stats().nget).sum();
    assert_eq!(gets, 200, "every allocation came through a cache");
    // No overlap between live segments.
    let mut sorted: Vec<_> = live.iter().map(|&(a, s)| (a, a + a_round(s))).collect();
    sorted.sort();
    for w in sorted.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlap {:x?}", w);
    }
    for &(addr, size) in &live {
        a.free(addr, size);
    }
    // Freed segments sit in the caches; the arena still has the pages.
    assert_eq!(a.size(SizeType::ALLOC), busy);
    // Reclaim: every cache is invalidated, its objects go back to its pool.
    a.reclaim();
    for pc in qc.caches() {
        assert_eq!(pc.pool().stats().nout, 0);
    }
    // NOWAIT allocations work too.
    let x = a
        .alloc(3 * Q, VmFlags::NOSLEEP | VmFlags::INSTANTFIT)
        .unwrap();
    a.free(x, 3 * Q);
    a.destroy();
    assert_eq!(pool_cache_count(), before, "destroy destroyed every cache");
}

fn a_round(s: usize) -> usize {
    s.div_ceil(Q) * Q
}

#[test]
fn an_arena_starting_at_zero() {
    let _s = serial();
    // Quantum 1, qcache_max 16: pages of 64; the segment at 0 is kept out.
    let a = vmem_xcreate(ArenaConfig::new("qc-ids", 1).qcache_max(16), 0, 1 << 16).unwrap();
    let qc = vmem_qcache_init(a);
    assert_eq!(qc.page_size(), 64);
    let mut ids = Vec::new();
    for i in 0..500usize {
        let n = i % 16 + 1;
        let id = a.alloc(n, VmFlags::NOSLEEP | VmFlags::INSTANTFIT).unwrap();
        assert_ne!(id, 0);
        ids.push((id, n));
    }
    for (id, n) in ids {
        a.free(id, n);
    }
    a.destroy();
}

#[test]
#[should_panic(expected = "has no qcache_max")]
fn an_arena_without_qcache_max_is_refused() {
    let a = vmem_xcreate(ArenaConfig::new("qc-none", 1), 1, 100).unwrap();
    vmem_qcache_init(a);
}
