//! Guard mode (feature `guard`, K11): an allocation ends on an unmapped
//! guard page, so an overrun faults at once; a freed allocation stays
//! unmapped in a FIFO quarantine of `guard_depth` ranges, so a use after
//! free faults; the size header catches a wrong size at free. Faults are
//! observed in a child process (this test binary, re-run), which must die
//! of SIGSEGV.
#![cfg(feature = "guard")]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::sync::Mutex;

use bsdalloc_kmem::*;
use bsdalloc_platform::{Ipl, curcpu, intr_establish, intr_trigger, splvm, splx};

const CHILD: &str = "BSDALLOC_KMEM_GUARD_CHILD";

/// Run test `name` again in a child with `CHILD` set; it must die of
/// SIGSEGV (or, under AddressSanitizer, report the SEGV and fail).
fn child_must_fault(name: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--test-threads=1"])
        .env(CHILD, name)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let segv = out.status.signal() == Some(11)
        || (!out.status.success() && stderr.contains("SEGV on unknown address"));
    assert!(
        segv,
        "{name}: the access must fault: {:?}\n{stderr}",
        out.status
    );
}

fn in_child(name: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|v| v == name)
}

#[test]
fn an_overrun_faults_on_the_guard_page() {
    if in_child("an_overrun_faults_on_the_guard_page") {
        let p = kmem_alloc(64, KM_SLEEP).unwrap();
        // SAFETY: the last byte of the object.
        unsafe { p.as_ptr().add(63).write(1) };
        // SAFETY: not safe, on purpose: one byte past the object, on the
        // guard page; the child dies here.
        unsafe { std::ptr::write_volatile(p.as_ptr().add(64), 1) };
        std::process::exit(0);
    }
    // In the parent: the object's last byte is the page's last byte.
    let ps = kmem().page_size();
    let p = kmem_alloc(64, KM_SLEEP).unwrap();
    assert_eq!((p.as_ptr().addr() + 64) % ps, 0);
    // SAFETY: ours.
    unsafe { kmem_free(p.as_ptr(), 64) };
    child_must_fault("an_overrun_faults_on_the_guard_page");
}

#[test]
fn a_use_after_free_faults_while_quarantined() {
    if in_child("a_use_after_free_faults_while_quarantined") {
        let p = kmem_alloc(100, KM_SLEEP).unwrap();
        // SAFETY: ours.
        unsafe { kmem_free(p.as_ptr(), 100) };
        // SAFETY: not safe, on purpose: a read after free of an unmapped
        // range; the child dies here.
        unsafe { std::ptr::read_volatile(p.as_ptr()) };
        std::process::exit(0);
    }
    child_must_fault("a_use_after_free_faults_while_quarantined");
}

#[test]
fn a_wrong_size_is_caught_by_the_header() {
    let p = kmem_alloc(200, KM_SLEEP).unwrap();
    let a = p.as_ptr().expose_provenance();
    let e = std::panic::catch_unwind(move || {
        // SAFETY: not safe, on purpose: refused by the header check before
        // anything changes.
        unsafe { kmem_free(std::ptr::with_exposed_provenance_mut(a), 210) }
    })
    .unwrap_err();
    assert_eq!(
        e.downcast_ref::<String>().map(String::as_str),
        Some(format!("kmem_free({p:p}, 210) != allocated size 200; overwrote?").as_str())
    );
    // SAFETY: ours, intact, right size.
    unsafe {
        p.as_ptr().write_bytes(1, 200);
        kmem_free(p.as_ptr(), 200);
    }
}

static K: Kmem = Kmem::new();

#[test]
fn the_quarantine_holds_depth_ranges_and_everything_comes_back() {
    K.bootstrap(KmemConfig::new().va_size(256 << 20).guard_depth(4))
        .unwrap();
    let ps = K.page_size();
    // Every size up to two pages: aligned as the caches would align it.
    common::every_size(&K, 2 * ps);
    assert_eq!(K.guard_quarantined(), 4);
    let mut v = Vec::new();
    for size in [1, 4096, 3 * ps + 5] {
        let p = K.alloc(size, KM_NOSLEEP).unwrap();
        // SAFETY: ours.
        unsafe { p.as_ptr().write_bytes(2, size) };
        v.push((p, size));
    }
    assert_eq!(K.census().guarded_out, 3);
    for (p, size) in v {
        // SAFETY: ours.
        unsafe { K.free(p.as_ptr(), size) };
    }
    assert_eq!(K.census().outstanding(), 0);
    assert_eq!(K.guard_quarantined(), 4);
    // SAFETY: nothing is used any more.
    unsafe { K.destroy() };
}

static SEEN: Mutex<Option<bool>> = Mutex::new(None);

fn handler(_: &'static ()) {
    let p = kmem_intr_zalloc(300, KM_NOSLEEP);
    let ok = p.is_some_and(|p| {
        // SAFETY: 300 zeroed bytes of ours.
        let s = unsafe { std::slice::from_raw_parts(p.as_ptr(), 300) };
        let zero = s.iter().all(|&b| b == 0);
        // SAFETY: ours.
        unsafe { kmem_intr_free(p.as_ptr(), 300) };
        zero
    });
    *SEEN.lock().unwrap() = Some(ok);
}

#[test]
fn guard_mode_works_in_interrupt_handlers() {
    let p = kmem_alloc(8, KM_SLEEP).unwrap();
    // SAFETY: ours.
    unsafe { kmem_free(p.as_ptr(), 8) };
    let src = intr_establish(Ipl::Vm, handler, &()).unwrap();
    let s = splvm();
    intr_trigger(curcpu(), src);
    splx(s);
    assert_eq!(*SEEN.lock().unwrap(), Some(true));
}
