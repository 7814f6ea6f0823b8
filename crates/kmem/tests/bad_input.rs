//! Bad input: size 0, flags, NULL, sizes that overflow or can never
//! fit, a wrong size on the large path, and the wrong context — each
//! fails with NetBSD's message or a clear one, and never hands out a
//! small block for an overflowed size.

use std::sync::Mutex;

use bsdalloc_kmem::*;
use bsdalloc_platform::{Ipl, curcpu, intr_establish, intr_trigger, splvm, splx};

#[test]
#[should_panic(expected = "kmem_alloc: size 0")]
fn alloc_of_size_zero_panics() {
    kmem_alloc(0, KM_SLEEP);
}

#[test]
#[should_panic(expected = "kmem_alloc: size 0")]
fn intr_zalloc_of_size_zero_panics() {
    kmem_intr_zalloc(0, KM_NOSLEEP);
}

#[test]
#[should_panic(expected = "kmem_free: size 0")]
fn free_of_size_zero_panics() {
    let p = kmem_alloc(8, KM_SLEEP).unwrap();
    // SAFETY: not safe, on purpose: the size is wrong; refused before use.
    unsafe { kmem_free(p.as_ptr(), 0) };
}

#[test]
#[should_panic(expected = "kmem_free(NULL, 16): freeing NULL is illegal")]
fn free_of_null_panics() {
    // SAFETY: refused before use.
    unsafe { kmem_free(std::ptr::null_mut(), 16) };
}

#[test]
#[should_panic(expected = "exactly one of KM_SLEEP and KM_NOSLEEP is required, not 0")]
fn no_sleep_flag_panics() {
    kmem_alloc(8, KmFlags::empty());
}

#[test]
#[should_panic(
    expected = "exactly one of KM_SLEEP and KM_NOSLEEP is required, not KM_SLEEP | KM_NOSLEEP"
)]
fn both_sleep_flags_panic() {
    kmem_alloc(8, KM_SLEEP | KM_NOSLEEP);
}

#[test]
#[should_panic(
    expected = "exactly one of KM_SLEEP and KM_NOSLEEP is required, not KM_SLEEP | 0x10"
)]
fn unknown_flags_panic() {
    kmem_alloc(8, KM_SLEEP | KmFlags::from_bits_retain(0x10));
}

#[test]
fn overflowing_sizes_never_get_a_small_block() {
    for size in [
        usize::MAX,
        usize::MAX - 6,
        usize::MAX - 8,
        usize::MAX / 2 + 1,
        1 << 60,
    ] {
        assert!(kmem_alloc(size, KM_NOSLEEP).is_none(), "size {size:#x}");
        assert!(
            kmem_intr_alloc(size, KM_NOSLEEP).is_none(),
            "size {size:#x}"
        );
        assert!(kmem_zalloc(size, KM_NOSLEEP).is_none(), "size {size:#x}");
        assert_eq!(kmem().alignment_of(size), None);
    }
}

#[test]
#[should_panic(expected = "can never be allocated")]
fn an_overflowing_km_sleep_size_panics_instead_of_sleeping_forever() {
    kmem_alloc(usize::MAX - 3, KM_SLEEP);
}

#[test]
#[should_panic(expected = "can never be allocated")]
fn a_km_sleep_size_beyond_the_arena_panics() {
    kmem_alloc(1 << 60, KM_SLEEP);
}

#[test]
#[cfg_attr(
    not(feature = "guard"),
    should_panic(expected = "no allocation of that size can exist")
)]
#[cfg_attr(
    feature = "guard",
    should_panic(expected = "!= allocated size 8; overwrote?")
)]
fn free_of_an_overflowing_size_panics() {
    let p = kmem_alloc(8, KM_SLEEP).unwrap();
    // SAFETY: refused before use.
    unsafe { kmem_free(p.as_ptr(), usize::MAX) };
}

#[cfg(not(feature = "guard"))]
#[test]
fn a_wrong_size_on_the_large_path_is_refused_and_changes_nothing() {
    let ps = kmem().page_size();
    let p = kmem_alloc(3 * ps, KM_SLEEP).unwrap();
    // SAFETY: ours.
    unsafe { p.as_ptr().write_bytes(5, 3 * ps) };
    for wrong in [2 * ps, 4 * ps, 40 * ps] {
        let r = std::panic::catch_unwind(|| {
            // SAFETY: not safe, on purpose: the wrong size is refused by the
            // page maps before anything changes.
            unsafe { kmem_free(p.as_ptr(), wrong) }
        });
        let msg = r.unwrap_err();
        let msg = msg
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or("");
        assert!(msg.starts_with("uvm_km_kmem_free:"), "{wrong}: {msg}");
    }
    // Still intact and freeable with the right size.
    // SAFETY: ours.
    let s = unsafe { std::slice::from_raw_parts(p.as_ptr(), 3 * ps) };
    assert!(s.iter().all(|&b| b == 5));
    // SAFETY: ours, right size.
    unsafe { kmem_free(p.as_ptr(), 3 * ps) };
}

#[cfg(not(feature = "guard"))]
#[test]
#[should_panic(expected = "uvm_km_kmem_free:")]
fn a_foreign_pointer_on_the_large_path_panics() {
    let mut local = [0u8; 64];
    // SAFETY: refused before use: not kmem memory.
    unsafe { kmem_free(local.as_mut_ptr(), 5 * kmem().page_size()) };
}

/// What a handler saw: the panic message of each call.
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn msg(r: std::thread::Result<()>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => e
            .downcast::<String>()
            .map(|s| *s)
            .or_else(|e| e.downcast::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    }
}

fn handler(_: &'static ()) {
    let mut v = Vec::new();
    v.push(msg(std::panic::catch_unwind(|| {
        kmem_alloc(64, KM_NOSLEEP);
    })));
    v.push(msg(std::panic::catch_unwind(|| {
        kmem_zalloc(64, KM_NOSLEEP);
    })));
    // The interrupt-safe variants work, small and large.
    let p = kmem_intr_alloc(64, KM_NOSLEEP).expect("memory in a handler");
    v.push(msg(std::panic::catch_unwind(|| {
        // SAFETY: refused before use (interrupt context).
        unsafe { kmem_free(p.as_ptr(), 64) }
    })));
    // SAFETY: ours.
    unsafe { kmem_intr_free(p.as_ptr(), 64) };
    let ps = kmem().page_size();
    let big = kmem_intr_zalloc(3 * ps, KM_NOSLEEP).expect("pages in a handler");
    // SAFETY: ours.
    unsafe { kmem_intr_free(big.as_ptr(), 3 * ps) };
    v.push("done".into());
    *SEEN.lock().unwrap() = v;
}

#[test]
fn plain_variants_panic_in_interrupt_context_intr_variants_work() {
    // Set up before the handler needs it (first use is thread context).
    let p = kmem_alloc(8, KM_SLEEP).unwrap();
    // SAFETY: ours.
    unsafe { kmem_free(p.as_ptr(), 8) };
    let src = intr_establish(Ipl::Vm, handler, &()).unwrap();
    let s = splvm();
    intr_trigger(curcpu(), src);
    splx(s);
    let m = "kmem(9) should not be used from the interrupt context";
    assert_eq!(*SEEN.lock().unwrap(), [m, m, m, "done"]);
}
