//! realloc (M4): NULL is malloc, size 0 is free and NULL, it never
//! shrinks, it grows by copying the old usable bytes, and a failed
//! allocation leaves the old block valid and untouched.

use bsdalloc_kmalloc::*;

MALLOC_DEFINE!(M_RA, "realloc", "realloc rules");
MALLOC_DEFINE!(M_RB, "realloc2", "realloc growth");
MALLOC_DEFINE_LIMIT!(M_RLIM, "realloclim", "realloc at a limit", 4096);

fn fill(p: *mut u8, n: usize, seed: u8) {
    for i in 0..n {
        // SAFETY: the caller's block has `n` bytes.
        unsafe { p.add(i).write(seed.wrapping_add(i as u8)) };
    }
}

fn check(p: *const u8, n: usize, seed: u8) {
    for i in 0..n {
        // SAFETY: as in `fill`.
        let b = unsafe { p.add(i).read() };
        assert_eq!(b, seed.wrapping_add(i as u8), "byte {i} of {n}");
    }
}

#[test]
fn null_is_malloc_and_zero_is_free() {
    // SAFETY: null is allowed.
    let p = unsafe { realloc(std::ptr::null_mut(), 40, &M_RA, M_WAITOK) }.unwrap();
    let s = M_RA.stats();
    assert_eq!((s.inuse, s.calls), (1, 1));
    // SAFETY: ours, of M_RA.
    assert_eq!(unsafe { malloc_usable_size(p, &M_RA) }, 40);
    // SAFETY: ours; size 0 frees it.
    assert!(unsafe { realloc(p.as_ptr(), 0, &M_RA, M_WAITOK) }.is_none());
    let s = M_RA.stats();
    assert_eq!((s.inuse, s.memuse, s.calls), (0, 0, 1));
}

#[test]
fn never_shrinks_and_grows_by_copy() {
    let ps = backend().page_size();
    let mut p = malloc(100, &M_RB, M_WAITOK).unwrap();
    fill(p.as_ptr(), 100, 3);
    // Not larger than the usable size: the same block, untouched.
    for n in [1usize, 50, 99, 100] {
        // SAFETY: ours.
        let q = unsafe { realloc(p.as_ptr(), n, &M_RB, M_WAITOK) }.unwrap();
        assert_eq!(q, p, "realloc to {n} must not move");
        // SAFETY: ours.
        assert_eq!(unsafe { malloc_usable_size(q, &M_RB) }, 100);
    }
    check(p.as_ptr(), 100, 3);
    assert_eq!(M_RB.stats().calls, 1);
    // Growing moves (the block's usable size is exactly its request) and
    // copies every old byte, across the small / page-aligned boundary.
    let mut len = 100;
    for (n, flags) in [
        (101, M_WAITOK),
        (3000, M_NOWAIT),
        (ps, M_WAITOK),
        (5 * ps + 7, M_NOWAIT),
    ] {
        // SAFETY: ours.
        let q = unsafe { realloc(p.as_ptr(), n, &M_RB, flags) }.unwrap();
        assert_ne!(q, p);
        check(q.as_ptr(), len, 3);
        if n >= ps {
            assert_eq!(q.as_ptr().addr() % ps, 0);
        }
        fill(q.as_ptr(), n, 3);
        p = q;
        len = n;
        let s = M_RB.stats();
        assert_eq!(s.inuse, 1, "the old block was freed");
    }
    // Shrinking a large block keeps it too.
    // SAFETY: ours.
    let q = unsafe { realloc(p.as_ptr(), 10, &M_RB, M_WAITOK) }.unwrap();
    assert_eq!(q, p);
    check(q.as_ptr(), len, 3);
    assert_eq!(M_RB.stats().calls, 5);
    // With M_ZERO the bytes past the old ones are zero.
    // SAFETY: ours.
    let z = unsafe { realloc(q.as_ptr(), len + 5000, &M_RB, M_WAITOK | M_ZERO) }.unwrap();
    check(z.as_ptr(), len, 3);
    // SAFETY: `len + 5000` bytes.
    let tail = unsafe { std::slice::from_raw_parts(z.as_ptr().add(len), 5000) };
    assert!(tail.iter().all(|&b| b == 0));
    // SAFETY: ours.
    unsafe { free(z.as_ptr(), &M_RB) };
    let s = M_RB.stats();
    assert_eq!((s.inuse, s.memuse), (0, 0));
}

#[test]
fn failure_keeps_the_old_block() {
    // 1000 bytes + header: kmem's 1024 class, a quarter of the limit.
    let p = malloc(1000, &M_RLIM, M_NOWAIT).unwrap();
    fill(p.as_ptr(), 1000, 9);
    let q = malloc(3000, &M_RLIM, M_NOWAIT).unwrap(); // 4096 class: at the limit
    let before = M_RLIM.stats();
    assert!(before.memuse >= before.limit);
    // At the limit, M_NOWAIT growth fails; the old block is intact.
    // SAFETY: ours.
    assert!(unsafe { realloc(p.as_ptr(), 2000, &M_RLIM, M_NOWAIT) }.is_none());
    check(p.as_ptr(), 1000, 9);
    // A size that can never be allocated fails with M_NOWAIT and with
    // M_WAITOK | M_CANFAIL, and changes nothing.
    for (n, flags) in [
        (usize::MAX - 10, M_NOWAIT),
        (usize::MAX / 2, M_WAITOK | M_CANFAIL),
    ] {
        // SAFETY: ours.
        assert!(unsafe { realloc(p.as_ptr(), n, &M_RLIM, flags) }.is_none());
        check(p.as_ptr(), 1000, 9);
    }
    let after = M_RLIM.stats();
    assert_eq!(
        (after.inuse, after.memuse, after.calls),
        (before.inuse, before.memuse, before.calls)
    );
    // SAFETY: ours.
    unsafe { free(q.as_ptr(), &M_RLIM) };
    // Below the limit again: now it moves.
    // SAFETY: ours.
    let r = unsafe { realloc(p.as_ptr(), 2000, &M_RLIM, M_NOWAIT) }.unwrap();
    check(r.as_ptr(), 1000, 9);
    // SAFETY: ours.
    unsafe { free(r.as_ptr(), &M_RLIM) };
    assert_eq!(M_RLIM.stats().memuse, 0);
}
