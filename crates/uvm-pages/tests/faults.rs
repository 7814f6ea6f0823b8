//! Systematic fault injection at the page source: for N = 1, 2, … fail the
//! N-th page request of a sequence of operations until the sequence runs
//! with no fault. Every failure is clean (None / ENOMEM under NOWAIT), the
//! map stays consistent, nothing leaks, and after teardown the page source
//! has every page back.

use std::sync::Mutex;

use bsdalloc_platform::{OS_PAGES, PAGE_FAULTS, PageSource};
use bsdalloc_uvm_pages::{KernelMap, KmConfig, UvmFlags};
use bsdalloc_vmem::{SizeType, VmFlags};

/// The injection point is process-wide: one test at a time arms it.
static ARMED: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ARMED.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn fail_the_nth_page_request() {
    let _serial = serial();
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
    unsafe { KernelMap::destroy(core::ptr::NonNull::from(m)) };
    let end = OS_PAGES.stats();
    assert_eq!(end.committed_pages, base.committed_pages, "every page back");
    assert_eq!(
        end.reserved_bytes, base.reserved_bytes,
        "every reservation back"
    );
}

/// A caller that may sleep (no `NOWAIT`, no `CANFAIL`) must not see a
/// transient page-source failure: `uvm_km_alloc` used to return `None`
/// after one, where `uvm_km_kmem_alloc(VM_SLEEP)` already waited (a
/// pagedaemon pass, a pause, a retry). Both, and `enter`, now share the
/// waiting; with `NOWAIT` or `CANFAIL` the failure is still clean.
#[test]
fn a_transient_page_failure_is_waited_out_unless_the_caller_may_fail() {
    let _serial = serial();
    let m = KernelMap::bootstrap(KmConfig {
        size: 1 << 30,
        limit_pages: 0,
        free_target_pages: 0,
        pages: &OS_PAGES,
    })
    .unwrap();
    let ps = m.page_size();
    let failures = m.stats().failures;
    let inject_one = |what: &str, f: &mut dyn FnMut()| {
        let injected = PAGE_FAULTS.injected();
        PAGE_FAULTS.fail_nth(1);
        f();
        PAGE_FAULTS.off();
        assert_eq!(PAGE_FAULTS.injected(), injected + 1, "{what}: one fault");
    };
    for t in [UvmFlags::WIRED, UvmFlags::PAGEABLE] {
        let mut got = None;
        inject_one("uvm_km_alloc", &mut || {
            got = m.uvm_km_alloc(3 * ps, 0, t | UvmFlags::ZERO);
        });
        let p = got.unwrap_or_else(|| panic!("{t:?} without NOWAIT/CANFAIL waits for memory"));
        // SAFETY: 3 backed pages.
        let mem = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), 3 * ps) };
        assert!(mem.iter().all(|&b| b == 0));
        mem.fill(0x6B);
        m.uvm_km_free(p, 3 * ps, t);
    }
    let mut got = None;
    inject_one("uvm_km_kmem_alloc", &mut || {
        got = m
            .uvm_km_kmem_alloc(m.kmem_arena(), 2 * ps, VmFlags::SLEEP)
            .ok();
    });
    let k = got.expect("VM_SLEEP waits for memory");
    m.uvm_km_kmem_free(m.kmem_arena(), k, 2 * ps);
    let v = m.uvm_km_alloc(2 * ps, 0, UvmFlags::VAONLY).unwrap();
    let mut entered = None;
    inject_one("enter", &mut || {
        entered = m.enter(v, 2 * ps, UvmFlags::empty())
    });
    assert!(entered.is_some(), "enter without NOWAIT waits for memory");
    m.uvm_km_free(v, 2 * ps, UvmFlags::VAONLY);
    assert_eq!(
        m.stats().failures,
        failures,
        "a failure waited out is no failure"
    );

    for may_fail in [UvmFlags::NOWAIT, UvmFlags::CANFAIL] {
        let before = m.stats();
        let mut got = None;
        inject_one("uvm_km_alloc", &mut || {
            got = m.uvm_km_alloc(3 * ps, 0, UvmFlags::WIRED | may_fail);
        });
        assert!(
            got.is_none(),
            "{may_fail:?} fails on the page source's failure"
        );
        let st = m.stats();
        assert_eq!(
            (st.committed_pages, st.wired_pages, st.va_in_use),
            (before.committed_pages, before.wired_pages, before.va_in_use),
            "{may_fail:?}: undone"
        );
        assert_eq!(st.failures, before.failures + 1, "{may_fail:?}: counted");
    }
    let st = m.stats();
    assert_eq!(
        (st.wired_pages, st.pageable_pages, st.va_in_use),
        (0, 0, [0; 4])
    );
}
