//! The C ABI called from Rust through the rlib. Linking it makes these
//! functions this test program's `malloc` and `free` as well: the test
//! harness, its threads and `std` allocate through them too.

use core::ffi::c_void;
use core::ptr;
use std::hint::black_box;

use bsdalloc_cmalloc::{
    Stats, aligned_alloc, calloc, free, malloc, malloc_usable_size, memalign, parse_size,
    posix_memalign, pvalloc, realloc, reallocarray, valloc,
};

fn errno() -> i32 {
    // SAFETY: this thread's errno.
    unsafe { *libc::__errno_location() }
}

fn clear_errno() {
    // SAFETY: this thread's errno.
    unsafe { *libc::__errno_location() = 0 };
}

#[test]
fn every_size_is_16_aligned_and_usable() {
    let mut n = 0;
    while n < 70_000 {
        // SAFETY: each block is used within its size and freed once.
        unsafe {
            let p = malloc(n).cast::<u8>();
            assert!(!p.is_null() && p.addr() % 16 == 0, "malloc({n}) = {p:p}");
            assert!(malloc_usable_size(p.cast()) >= n.max(1));
            p.write_bytes(0xa5, n);
            free(p.cast());
        }
        n += if n < 1100 { 1 } else { 97 };
    }
}

#[test]
fn sizes_that_cannot_be_are_null_with_enomem() {
    for n in [usize::MAX, usize::MAX - 15, usize::MAX / 2 + 1, 1 << 62] {
        clear_errno();
        // SAFETY: always safe.
        // (black_box: LLVM knows `malloc` by name, and folds the null
        // test of a result that is never used to false.)
        unsafe {
            assert!(black_box(malloc(black_box(n))).is_null());
            assert_eq!(errno(), libc::ENOMEM);
            clear_errno();
            assert!(black_box(calloc(1, black_box(n))).is_null());
            assert_eq!(errno(), libc::ENOMEM);
        }
    }
    clear_errno();
    // SAFETY: always safe.
    unsafe { assert!(black_box(calloc(black_box(usize::MAX / 2), 3)).is_null()) };
    assert_eq!(errno(), libc::ENOMEM);
}

#[test]
fn free_null_is_a_no_op_and_calloc_zeroes_reused_memory() {
    // SAFETY: the blocks are used within their sizes, freed once.
    unsafe {
        free(ptr::null_mut());
        for n in [1, 24, 100, 1000, 5000, 100_000] {
            let d = malloc(n).cast::<u8>();
            d.write_bytes(0xff, n);
            free(d.cast());
            let c = calloc(n, 1).cast::<u8>();
            assert!(std::slice::from_raw_parts(c, n).iter().all(|&b| b == 0));
            free(c.cast());
        }
    }
}

#[test]
fn blocks_of_a_page_or_more_are_coloured() {
    const PAGE: usize = 4096;
    for n in [
        3000,
        4200,
        4368,
        5000,
        9000,
        20_000,
        70_000,
        (1 << 20) + 100,
    ] {
        let blocks: Vec<(*mut u8, usize)> = (0..64)
            .map(|i| {
                // SAFETY: a plain allocation; every usable byte is
                // written with the block's own mark.
                unsafe {
                    let p = malloc(n).cast::<u8>();
                    assert!(!p.is_null() && p.addr() % 16 == 0, "malloc({n}) = {p:p}");
                    let u = malloc_usable_size(p.cast());
                    assert!(u >= n, "malloc({n}): usable {u}");
                    p.write_bytes(i as u8, u);
                    (p, u)
                }
            })
            .collect();
        let offset = blocks.iter().filter(|(p, _)| p.addr() % PAGE != 0).count();
        assert!(
            offset >= 32,
            "malloc({n}): only {offset} of 64 blocks off a page start"
        );
        for (i, &(p, u)) in blocks.iter().enumerate() {
            // SAFETY: live blocks of `u` bytes; no block overlaps another.
            unsafe {
                assert!(
                    std::slice::from_raw_parts(p, u)
                        .iter()
                        .all(|&b| b == i as u8)
                );
                free(p.cast());
            }
        }
    }
    // calloc of a coloured block whose memory was used before: zero to
    // its end (kmem_zalloc clears the size asked of it, from the block's
    // start, not from the colour).
    for n in [3000, 4200, 4368, 5000, 9000, 12_000, 20_000, 70_000] {
        for _ in 0..8 {
            // SAFETY: as above.
            unsafe {
                let d = malloc(n).cast::<u8>();
                d.write_bytes(0xff, malloc_usable_size(d.cast()));
                free(d.cast());
                let c = calloc(n, 1).cast::<u8>();
                assert!(
                    std::slice::from_raw_parts(c, n).iter().all(|&b| b == 0),
                    "calloc({n}) at {c:p} is not zero"
                );
                free(c.cast());
            }
        }
    }
    // SAFETY: as above.
    unsafe {
        // calloc'd coloured blocks are zero; realloc stays in place in
        // the block's pages, and copies beyond them.
        let c = calloc(1, 4368).cast::<u8>();
        assert!(std::slice::from_raw_parts(c, 4368).iter().all(|&b| b == 0));
        c.write_bytes(9, 4368);
        let u = malloc_usable_size(c.cast());
        let d = realloc(c.cast(), u).cast::<u8>();
        assert_eq!(d, c, "realloc within the usable size stays");
        let e = realloc(d.cast(), 100_000).cast::<u8>();
        assert!(!e.is_null() && std::slice::from_raw_parts(e, 4368).iter().all(|&b| b == 9));
        free(e.cast());
    }
}

#[test]
fn realloc_follows_glibc() {
    // SAFETY: the blocks are used within their sizes, freed once.
    unsafe {
        let p = realloc(ptr::null_mut(), 10).cast::<u8>();
        assert!(!p.is_null());
        p.write_bytes(7, 10);
        // In place in the same class.
        let q = realloc(p.cast(), 16).cast::<u8>();
        assert_eq!(q, p);
        let mut r = q;
        for n in [100, 5000, 70_000, 1 << 20, 3] {
            r = realloc(r.cast(), n).cast();
            assert!(!r.is_null() && r.addr() % 16 == 0);
            assert_eq!(*r, 7);
            assert_eq!(*r.add(2), 7);
        }
        clear_errno();
        assert!(realloc(r.cast(), usize::MAX).is_null());
        assert_eq!(errno(), libc::ENOMEM);
        assert!(reallocarray(r.cast(), usize::MAX, 2).is_null());
        assert_eq!(*r, 7, "a failed realloc keeps the block");
        assert!(realloc(r.cast(), 0).is_null(), "realloc(p, 0) frees");
    }
}

#[test]
fn aligned_families() {
    // SAFETY: the blocks are used within their sizes, freed once.
    unsafe {
        let mut m: *mut c_void = ptr::null_mut();
        for bad in [0, 1, 4, 3, 24, 4097, usize::MAX] {
            assert_eq!(posix_memalign(&mut m, bad, 8), libc::EINVAL, "{bad}");
            assert!(m.is_null());
        }
        for bad in [0, 3, 24] {
            clear_errno();
            assert!(aligned_alloc(bad, 8).is_null());
            assert_eq!(errno(), libc::EINVAL);
        }
        let mut a = 8;
        while a <= 8 << 20 {
            for n in [0, 1, a - 1, a + 1, 70_000] {
                assert_eq!(posix_memalign(&mut m, a, n), 0);
                assert_eq!(m.addr() % a, 0, "align {a} size {n}");
                assert!(malloc_usable_size(m) >= n);
                m.cast::<u8>().write_bytes(1, n);
                if n == 1 {
                    let g = realloc(m, n + 100_000).cast::<u8>();
                    assert_eq!(*g, 1);
                    free(g.cast());
                } else {
                    free(m);
                }
            }
            a *= 2;
        }
        let p = memalign(48, 10);
        assert_eq!(p.addr() % 64, 0);
        free(p);
        let ps = bsdalloc::platform::page_size();
        let v = valloc(1);
        assert_eq!(v.addr() % ps, 0);
        free(v);
        let pv = pvalloc(ps + 1);
        assert!(pv.addr().is_multiple_of(ps) && malloc_usable_size(pv) >= 2 * ps);
        free(pv);
        assert_eq!(malloc_usable_size(ptr::null_mut()), 0);
    }
}

#[test]
fn threads_allocate_through_std_and_free_each_others_blocks() {
    let (tx, rx) = std::sync::mpsc::channel::<usize>();
    let producers: Vec<_> = (0..16)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..2000usize {
                    let v: Vec<u8> = vec![t as u8; (i * 31) % 3000 + 1];
                    // SAFETY: always safe.
                    let p = unsafe { malloc(v.len()) }.cast::<u8>();
                    // SAFETY: `v.len()` bytes of a fresh block.
                    unsafe { ptr::copy_nonoverlapping(v.as_ptr(), p, v.len()) };
                    tx.send(p.addr()).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let consumer = std::thread::spawn(move || {
        let mut n = 0;
        for a in rx {
            // SAFETY: a live block sent by a producer, freed once here.
            unsafe { free(ptr::with_exposed_provenance_mut::<u8>(a).cast()) };
            n += 1;
        }
        n
    });
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(consumer.join().unwrap(), 32_000);
}

#[test]
fn the_report_names_the_kmem_caches_and_this_crate() {
    // SAFETY: always safe; freed below.
    let p = unsafe { malloc(100) };
    let s = Stats.to_string();
    assert!(s.contains("kmem-00128"), "{s}");
    assert!(s.contains("C allocator (bsdalloc-cmalloc)"), "{s}");
    // SAFETY: from malloc above.
    unsafe { free(p) };
}

#[test]
fn small_classes_have_large_groups() {
    // SAFETY: always safe; freed below (boots the kernel if no test has).
    unsafe { free(malloc(8)) };
    let k = bsdalloc::kmem::kmem();
    for (i, c) in k.size_classes().classes().iter().enumerate() {
        let per_group = k.cache(i).unwrap().group_size();
        assert_eq!(per_group, if c.size <= 64 { 63 } else { 15 }, "{}", c.name);
    }
}

#[test]
fn sizes_in_the_environment() {
    assert_eq!(parse_size(b"4096"), Some(4096));
    assert_eq!(parse_size(b"64K"), Some(64 << 10));
    assert_eq!(parse_size(b"64k"), Some(64 << 10));
    assert_eq!(parse_size(b"3M"), Some(3 << 20));
    assert_eq!(parse_size(b"2G"), Some(2 << 30));
    assert_eq!(parse_size(b"2GiB"), Some(2 << 30));
    assert_eq!(parse_size(b"2GB"), Some(2 << 30));
    assert_eq!(parse_size(b"100B"), Some(100));
    for bad in [
        &b""[..],
        b"K",
        b"12X",
        b"1.5G",
        b"-1",
        b"1 G",
        b"99999999999999999999G",
    ] {
        assert_eq!(parse_size(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}
