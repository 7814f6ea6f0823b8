//! Systematic fault injection at the page source under vmem's metadata:
//! when the tag supply must grow and the page source fails the N-th request
//! (N = 1, 2, …), a VM_NOSLEEP allocation fails cleanly with ENOMEM, the
//! arena stays sane, no page is leaked, and it works again afterwards.
//! One test: the injection point is process-wide.

use bsdalloc_platform::{OS_PAGES, PAGE_FAULTS, PageSource};
use bsdalloc_vmem::{Arena, SizeType, VmFlags, VmemError, tag_supply_stats};

#[test]
fn tag_supply_growth_failures_are_clean() {
    let a = Arena::create("faults", 0, 1 << 40, 1).unwrap();
    let f = VmFlags::NOSLEEP | VmFlags::INSTANTFIT;
    let mut live = Vec::new();
    for n in 1..=2u64 {
        // Use up the global supply, then fail the n-th page request of the
        // growth that must follow.
        while tag_supply_stats().free > 0 {
            live.push(a.alloc(1, f).unwrap());
        }
        let reserved = OS_PAGES.stats().reserved_bytes;
        let chunks = tag_supply_stats().chunks;
        PAGE_FAULTS.fail_nth(n);
        let mut failed = false;
        for _ in 0..100_000 {
            match a.alloc(1, f) {
                Ok(x) => live.push(x),
                Err(VmemError::NoMemory) => {
                    failed = true;
                    break;
                }
            }
            if tag_supply_stats().chunks > chunks {
                break;
            }
        }
        PAGE_FAULTS.off();
        assert!(failed, "n={n}: the injected failure must surface as ENOMEM");
        assert_eq!(
            tag_supply_stats().chunks,
            chunks,
            "n={n}: no chunk was added"
        );
        assert_eq!(
            OS_PAGES.stats().reserved_bytes,
            reserved,
            "n={n}: no page leaked"
        );
        a.assert_sane();
        assert_eq!(a.size(SizeType::ALLOC), live.len());
        // Disarmed, the same allocation succeeds.
        live.push(a.alloc(1, f).unwrap());
        a.assert_sane();
    }
    for x in live.drain(..) {
        a.free(x, 1);
    }
    a.assert_sane();
    assert_eq!(a.stats().nfree, 1);
    assert!(PAGE_FAULTS.injected() >= 2);
}
