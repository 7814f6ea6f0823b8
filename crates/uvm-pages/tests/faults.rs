//! Systematic fault injection at the page source: for N = 1, 2, … fail the
//! N-th page request of a sequence of operations until the sequence runs
//! with no fault. Every failure is clean (None / ENOMEM under NOWAIT), the
//! map stays consistent, nothing leaks, and after teardown the page source
//! has every page back.

use bsdalloc_platform::{OS_PAGES, PAGE_FAULTS, PageSource};
use bsdalloc_uvm_pages::{KernelMap, KmConfig, UvmFlags};
use bsdalloc_vmem::{SizeType, VmFlags};

#[test]
fn fail_the_nth_page_request() {
    let base = OS_PAGES.stats();
    let m = KernelMap::bootstrap(KmConfig {
        size: 1 << 30,
        limit_pages: 0,
        free_target_pages: 4,
        pages: &OS_PAGES,
    })
    .unwrap();
    let ps = m.page_size();
    let nw = UvmFlags::NOWAIT;
    let mut n = 1;
    loop {
        let injected = PAGE_FAULTS.injected();
        PAGE_FAULTS.fail_nth(n);
        let a = m.uvm_km_alloc(3 * ps, 0, UvmFlags::WIRED | nw);
        let b = m.uvm_km_alloc(8 * ps, 0, UvmFlags::PAGEABLE | nw);
        let c = m
            .uvm_km_kmem_alloc(m.kmem_arena(), 2 * ps, VmFlags::NOSLEEP)
            .ok();
        let v = m.uvm_km_alloc(4 * ps, 0, UvmFlags::VAONLY | nw);
        let e = v.and_then(|v| m.enter(v, 2 * ps, nw));
        let d = m.uvm_km_alloc(5 * ps, 0, UvmFlags::WIRED | UvmFlags::ZERO | nw);
        PAGE_FAULTS.off();
        let faulted = PAGE_FAULTS.injected() != injected;
        if let Some(d) = d {
            // SAFETY: 5 wired pages.
            let mem = unsafe { std::slice::from_raw_parts(d.as_ptr(), 5 * ps) };
            assert!(mem.iter().all(|&x| x == 0));
        }
        let got = [
            a.is_some(),
            b.is_some(),
            c.is_some(),
            e.is_some(),
            d.is_some(),
        ];
        assert!(
            faulted || got.iter().all(|&g| g),
            "n={n}: a failure without an injected fault: {got:?}"
        );
        assert!(
            !faulted || !got.iter().all(|&g| g),
            "n={n}: an injected fault that nobody reported"
        );
        if let Some(a) = a {
            m.uvm_km_free(a, 3 * ps, UvmFlags::WIRED);
        }
        if let Some(b) = b {
            m.uvm_km_free(b, 8 * ps, UvmFlags::PAGEABLE);
        }
        if let Some(c) = c {
            m.uvm_km_kmem_free(m.kmem_arena(), c, 2 * ps);
        }
        if let Some(v) = v {
            m.uvm_km_free(v, 4 * ps, UvmFlags::VAONLY);
        }
        if let Some(d) = d {
            m.uvm_km_free(d, 5 * ps, UvmFlags::WIRED);
        }
        let st = m.stats();
        assert_eq!(
            (st.wired_pages, st.pageable_pages, st.va_in_use),
            (0, 0, [0; 4]),
            "n={n}: leak"
        );
        assert_eq!(
            st.committed_pages, st.cached_pages,
            "n={n}: only cached pages stay committed"
        );
        assert!(st.cached_pages <= 4, "n={n}: within the free target");
        assert_eq!(m.kmem_arena().size(SizeType::ALLOC), 0);
        if !faulted {
            break;
        }
        n += 1;
    }
    assert!(
        n >= 5,
        "four page requests (wired, pageable, kmem, enter) each failed once: {n}"
    );
    // SAFETY: nothing is allocated and the map is not used again.
    unsafe { m.destroy() };
    let end = OS_PAGES.stats();
    assert_eq!(end.committed_pages, base.committed_pages, "every page back");
    assert_eq!(
        end.reserved_bytes, base.reserved_bytes,
        "every reservation back"
    );
}
