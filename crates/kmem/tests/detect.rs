//! One test per detection class of the debug features (run with
//! `--features debug-all`): a wrong size at free, a double free and an
//! overrun into the footer (`kmem-size`), an overrun into the redzone
//! (`redzone`), a write after free (`poison`). Each panics with NetBSD's
//! message before the object goes back.
#![cfg(all(
    any(feature = "kmem-size", feature = "redzone", feature = "poison"),
    not(feature = "guard")
))]

use bsdalloc_kmem::*;

/// The panic of `kmem_free(a, size)` for an object that must be refused.
fn free_refused(a: usize, size: usize) -> String {
    panic_of(move || {
        // SAFETY: not safe, on purpose: the free is wrong, and the debug
        // check refuses it before the object goes anywhere.
        unsafe { kmem_free(std::ptr::with_exposed_provenance_mut(a), size) }
    })
}

fn panic_of(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let e = std::panic::catch_unwind(f).expect_err("the check must fire");
    e.downcast::<String>()
        .map(|s| *s)
        .unwrap_or_else(|_| String::from("<non-string panic>"))
}

#[cfg(feature = "kmem-size")]
#[test]
fn wrong_size_free_panics_and_changes_nothing() {
    let p = kmem_alloc(100, KM_SLEEP).unwrap();
    let a = p.as_ptr().expose_provenance();
    // 104 selects the same class as 100: only the footer can tell. As in
    // NetBSD the footer is looked for where the wrong size puts it, so the
    // "allocated size" printed is whatever lies there.
    let m = free_refused(a, 104);
    assert!(
        m.starts_with(&format!("kmem_free({p:p}, 104) != allocated size ")),
        "{m}"
    );
    assert!(m.ends_with("; overwrote?"), "{m}");
    // A smaller wrong size of the same class finds the caller's bytes.
    // SAFETY: ours.
    unsafe { p.as_ptr().write_bytes(0x11, 100) };
    let m = free_refused(a, 90);
    assert_eq!(
        m,
        format!("kmem_free({p:p}, 90) != allocated size 1229782938247303441; overwrote?")
    );
    // SAFETY: still ours; the right size this time.
    unsafe { kmem_free(p.as_ptr(), 100) };
}

#[cfg(feature = "kmem-size")]
#[test]
fn double_free_panics() {
    let p = kmem_alloc(40, KM_SLEEP).unwrap();
    let a = p.as_ptr().expose_provenance();
    // SAFETY: ours.
    unsafe { kmem_free(p.as_ptr(), 40) };
    let m = free_refused(a, 40);
    assert!(
        m.starts_with(&format!("kmem_free({p:p}, 40) != allocated size ")),
        "{m}"
    );
    assert!(m.ends_with("; overwrote?"), "{m}");
}

#[cfg(feature = "kmem-size")]
#[test]
fn an_overrun_into_the_footer_is_caught_at_free() {
    let p = kmem_alloc(20, KM_SLEEP).unwrap();
    // SAFETY: not safe, on purpose: one byte past the 20 requested (inside
    // the object: its class holds the footer there).
    unsafe { p.as_ptr().add(20).write(0x41) };
    let a = p.as_ptr().expose_provenance();
    let m = free_refused(a, 20);
    assert!(
        m.starts_with(&format!("kmem_free({p:p}, 20) != allocated size ")),
        "{m}"
    );
}

#[cfg(feature = "redzone")]
#[test]
fn an_overrun_into_the_redzone_is_caught_at_free() {
    for size in [5usize, 8, 30, 100, 1000] {
        let p = kmem_alloc(size, KM_SLEEP).unwrap();
        // The redzone starts after the caller's bytes and the footer.
        // SAFETY: not safe, on purpose: a write past the requested bytes,
        // inside the object (the redzone is part of its allocation).
        let z = unsafe { p.as_ptr().add(size + SIZE_SIZE) };
        // SAFETY: as above.
        unsafe { z.write(z.read() ^ 0x5a) };
        let a = p.as_ptr().expose_provenance();
        let m = free_refused(a, size);
        assert!(
            m.starts_with(&format!("kmem_redzone_check: {z:p}: 0x")),
            "size {size}: {m}"
        );
    }
}

#[cfg(feature = "poison")]
#[test]
fn a_write_after_free_is_caught_when_the_object_is_handed_out_again() {
    // The calling CPU's current group is a LIFO: the next allocation of
    // the class is the object just freed.
    let p = kmem_alloc(48, KM_SLEEP).unwrap();
    // SAFETY: ours.
    unsafe { kmem_free(p.as_ptr(), 48) };
    // SAFETY: not safe, on purpose: a write after free, into memory the
    // cache still owns (mapped).
    unsafe { p.as_ptr().add(5).write(0) };
    let m = panic_of(|| {
        let q = kmem_alloc(48, KM_SLEEP).unwrap();
        panic!("handed out {q:p} without noticing (freed {p:p})");
    });
    let bad = p.as_ptr().wrapping_add(5);
    assert!(
        m.starts_with(&format!("kmem_poison_check: {bad:p}: 0x00 != 0x")),
        "{m}"
    );
}

#[cfg(feature = "poison")]
#[test]
fn fresh_and_reused_objects_pass_the_poison_check() {
    // Objects from the pool are poisoned by the constructor, objects from
    // the groups at free: every size class hands out clean objects.
    let mut live = Vec::new();
    for round in 0..3 {
        for size in (1..=4096).step_by(37) {
            live.push((kmem_alloc(size, KM_SLEEP).unwrap(), size));
        }
        for (p, size) in live.drain(..) {
            // SAFETY: ours.
            unsafe {
                p.as_ptr().write_bytes(round, size);
                kmem_free(p.as_ptr(), size);
            }
        }
    }
}
