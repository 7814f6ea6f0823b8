//! `Global` under Rust's `GlobalAlloc` and `Allocator` contracts: every
//! alignment up to above a page, zero-size layouts, `realloc` both ways
//! (in place when the class allows), zeroed allocation, and the
//! `allocator_api2` collections.

use std::alloc::{GlobalAlloc, Layout};

use allocator_api2::alloc::Allocator;
use bsdalloc::Global;

const SIZES: [usize; 18] = [
    1, 7, 8, 9, 15, 16, 17, 33, 63, 64, 65, 100, 1000, 4095, 4096, 4097, 10_000, 70_000,
];

fn fill(p: *mut u8, len: usize, seed: u8) {
    for i in 0..len {
        // SAFETY: `len` bytes of ours.
        unsafe { p.add(i).write(seed.wrapping_add(i as u8)) };
    }
}

fn check(p: *const u8, len: usize, seed: u8) {
    for i in 0..len {
        // SAFETY: `len` initialised bytes of ours.
        let b = unsafe { p.add(i).read() };
        assert_eq!(b, seed.wrapping_add(i as u8), "byte {i} of {len}");
    }
}

#[test]
fn every_alignment_and_size_is_honoured_and_disjoint() {
    let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
    for shift in 0..=16 {
        let align = 1usize << shift;
        for (n, &size) in SIZES.iter().enumerate() {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a nonzero size.
            let p = unsafe { Global.alloc(l) };
            assert!(!p.is_null(), "{l:?}");
            assert_eq!(p.addr() % align, 0, "{l:?} at {p:p}");
            let seed = (shift * 31 + n) as u8;
            fill(p, size, seed);
            live.push((p, l, seed));
        }
    }
    // Writing each block did not touch another.
    for &(p, l, seed) in &live {
        check(p, l.size(), seed);
    }
    for (p, l, _) in live {
        // SAFETY: allocated above with `l`.
        unsafe { Global.dealloc(p, l) };
    }
}

#[test]
fn alloc_zeroed_is_zero_even_on_reused_memory() {
    for &size in &SIZES {
        for align in [8, 64, 4096, 1 << 15] {
            let l = Layout::from_size_align(size, align).unwrap();
            // Dirty a block, free it, and ask for a zeroed one of the same
            // layout: it likely reuses the same memory.
            // SAFETY: nonzero sizes; each block freed with its layout.
            unsafe {
                let p = Global.alloc(l);
                p.write_bytes(0xEE, size);
                Global.dealloc(p, l);
                let z = Global.alloc_zeroed(l);
                assert!(
                    std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0),
                    "{l:?}"
                );
                Global.dealloc(z, l);
            }
        }
    }
}

#[test]
fn realloc_keeps_the_contents_both_ways() {
    for align in [1, 8, 16, 64, 4096, 1 << 14] {
        let mut l = Layout::from_size_align(10, align).unwrap();
        // SAFETY: a nonzero size.
        let mut p = unsafe { Global.alloc(l) };
        fill(p, 10, 3);
        for new in [20, 200, 5000, 100_000, 3000, 64, 11, 10] {
            // SAFETY: `p` is live with `l`; `new` is nonzero.
            let q = unsafe { Global.realloc(p, l, new) };
            assert!(!q.is_null());
            assert_eq!(q.addr() % align, 0);
            check(q, 10, 3);
            fill(q, new, 3);
            p = q;
            l = Layout::from_size_align(new, align).unwrap();
        }
        // SAFETY: live with `l`.
        unsafe { Global.dealloc(p, l) };
    }
}

#[test]
fn realloc_stays_in_place_within_the_size_class() {
    // kmem's debug features (whichever crate turned them on) record the
    // size, and then nothing is resized in place: ask kmem.
    let k = bsdalloc::kernel().kmem();
    let probe = k.alloc(200, bsdalloc::kmem::KM_SLEEP).unwrap();
    // SAFETY: a live allocation of 200 bytes, freed with its size after.
    let recorded = unsafe {
        let r = !k.resize_in_place(probe, 200, 250);
        k.free(probe.as_ptr(), if r { 200 } else { 250 });
        r
    };
    let l = Layout::from_size_align(200, 8).unwrap();
    // SAFETY: nonzero sizes; the block is freed with its last layout.
    unsafe {
        let p = Global.alloc(l);
        let q = Global.realloc(p, l, 250); // both kmem-00256
        assert_eq!(q == p, !recorded);
        let r = Global.realloc(q, Layout::from_size_align(250, 8).unwrap(), 3 * 4096 + 1);
        let s = Global.realloc(
            r,
            Layout::from_size_align(3 * 4096 + 1, 8).unwrap(),
            4 * 4096,
        );
        assert_eq!(s == r, !recorded, "the same four pages");
        Global.dealloc(s, Layout::from_size_align(4 * 4096, 8).unwrap());
    }
}

#[test]
fn zero_size_allocations_are_dangling_and_free_nothing() {
    for align in [1, 8, 64, 4096, 1 << 16] {
        let l = Layout::from_size_align(0, align).unwrap();
        let b = Global.allocate(l).unwrap();
        assert_eq!(b.len(), 0);
        assert_eq!(b.cast::<u8>().as_ptr().addr(), align);
        let z = Global.allocate_zeroed(l).unwrap();
        assert_eq!(z.len(), 0);
        // Growing from nothing allocates; shrinking to nothing frees.
        let big = Layout::from_size_align(100, align).unwrap();
        // SAFETY: `b` is a block of `l` from Global; the grown one of `big`.
        unsafe {
            let g = Global.grow_zeroed(b.cast(), l, big).unwrap();
            assert_eq!(g.len(), 100);
            assert!(g.as_ref().iter().all(|&x| x == 0));
            let s = Global.shrink(g.cast(), big, l).unwrap();
            assert_eq!(s.len(), 0);
            Global.deallocate(s.cast(), l);
            Global.deallocate(z.cast(), l);
        }
    }
}

#[test]
fn grow_zeroed_clears_only_the_new_tail_and_alignment_can_change() {
    let a = Layout::from_size_align(100, 8).unwrap();
    let p = Global.allocate(a).unwrap().cast::<u8>();
    fill(p.as_ptr(), 100, 9);
    let b = Layout::from_size_align(5000, 8).unwrap();
    // SAFETY: blocks from Global with their layouts.
    unsafe {
        let g = Global.grow_zeroed(p, a, b).unwrap().cast::<u8>();
        check(g.as_ptr(), 100, 9);
        assert!(
            std::slice::from_raw_parts(g.as_ptr().add(100), 4900)
                .iter()
                .all(|&x| x == 0)
        );
        // A new alignment moves the block.
        let c = Layout::from_size_align(6000, 1 << 14).unwrap();
        let h = Global.grow(g, b, c).unwrap().cast::<u8>();
        assert_eq!(h.as_ptr().addr() % (1 << 14), 0);
        check(h.as_ptr(), 100, 9);
        let d = Layout::from_size_align(50, 1 << 14).unwrap();
        let s = Global.shrink(h, c, d).unwrap().cast::<u8>();
        check(s.as_ptr(), 50, 9);
        Global.deallocate(s, d);
    }
}

#[test]
fn allocator_api2_collections_run_on_global() {
    let mut v = allocator_api2::vec::Vec::new_in(Global);
    for i in 0..100_000u64 {
        v.push(i);
    }
    assert_eq!(v.iter().sum::<u64>(), 4_999_950_000);
    v.truncate(3);
    v.shrink_to_fit();
    assert_eq!(&v[..], &[0, 1, 2]);
    let b = allocator_api2::boxed::Box::new_in([7u128; 9], Global);
    assert_eq!(std::ptr::from_ref(&*b).addr() % align_of::<u128>(), 0);
    assert_eq!(b[8], 7);
}

#[cfg(feature = "kmem-size")]
#[test]
// The footer is looked for where the given size puts it: the "allocated
// size" it reports is whatever lies there, as in NetBSD.
#[should_panic(expected = ", 199) != allocated size")]
fn dealloc_with_another_size_is_caught_by_kmem_size() {
    let l = Layout::from_size_align(200, 8).unwrap();
    // SAFETY: deliberately wrong: the panic fires before anything changes.
    unsafe {
        let p = Global.alloc(l);
        Global.dealloc(p, Layout::from_size_align(199, 8).unwrap());
    }
}

#[cfg(not(any(feature = "kmem-size", feature = "guard")))]
#[test]
fn dealloc_with_another_class_is_caught_for_whole_pages() {
    // Without the size footer a wrong size is caught where the kernel map
    // can see it: whole pages.
    let l = Layout::from_size_align(3 * 4096, 8).unwrap();
    // SAFETY: a nonzero size.
    let p = unsafe { Global.alloc(l) };
    let r = std::panic::catch_unwind(|| {
        // SAFETY: deliberately wrong; the map refuses before any change.
        unsafe { Global.dealloc(p, Layout::from_size_align(5 * 4096, 8).unwrap()) };
    });
    let msg = r.unwrap_err();
    let msg = msg
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| msg.downcast_ref::<&str>().copied())
        .unwrap();
    assert!(msg.contains("uvm_km_kmem_free"), "{msg}");
    // Nothing changed: the right free still works.
    // SAFETY: allocated above with `l`.
    unsafe { Global.dealloc(p, l) };
}

#[test]
fn sizes_no_arena_can_hold_are_refused_with_null() {
    for align in [1, 8, 16, 64, 4096, 1 << 16] {
        for size in [isize::MAX as usize - align + 1, 1 << 62, 1 << 45] {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a nonzero size; nothing is returned to free.
            unsafe {
                assert!(Global.alloc(l).is_null(), "{l:?}");
                assert!(Global.alloc_zeroed(l).is_null(), "{l:?}");
            }
            assert!(Global.allocate(l).is_err());
        }
        // A block that cannot grow that far stays valid.
        let small = Layout::from_size_align(100, align).unwrap();
        let p = Global.allocate(small).unwrap().cast::<u8>();
        fill(p.as_ptr(), 100, 1);
        let huge = Layout::from_size_align(1 << 45, align).unwrap();
        // SAFETY: `p` is a live block of `small`.
        unsafe {
            assert!(Global.grow(p, small, huge).is_err());
            check(p.as_ptr(), 100, 1);
            Global.deallocate(p, small);
        }
    }
}
