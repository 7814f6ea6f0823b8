//! The safe handles: values and slices that free themselves with their
//! allocation size, any alignment up to the page, zero-sized types, drops
//! run exactly once, a panicking initialiser leaks nothing.

use std::sync::atomic::{AtomicUsize, Ordering};

use bsdalloc_kmem::*;

#[repr(align(16))]
struct A16(#[allow(dead_code)] u8);
#[repr(align(128))]
struct A128(#[allow(dead_code)] [u8; 3]);
#[repr(align(4096))]
struct APage(#[allow(dead_code)] [u8; 10]);

#[test]
fn boxes_are_aligned_for_their_type() {
    for _ in 0..50 {
        let a = KmemBox::new(A16(1));
        let b = KmemBox::new(A128([2; 3]));
        let c = KmemBox::new(APage([3; 10]));
        assert_eq!((&*a as *const A16).addr() % 16, 0);
        assert_eq!((&*b as *const A128).addr() % 128, 0);
        assert_eq!((&*c as *const APage).addr() % 4096, 0);
    }
    let s = KmemSlice::from_fn(33, |_| A128([0; 3]));
    assert_eq!(s.as_ptr().addr() % 128, 0);
}

static DROPS: AtomicUsize = AtomicUsize::new(0);

struct Counted(#[allow(dead_code)] u64);
impl Drop for Counted {
    fn drop(&mut self) {
        DROPS.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn drops_run_once_and_into_inner_moves_out() {
    DROPS.store(0, Ordering::Relaxed);
    let b = KmemBox::new(Counted(1));
    drop(b);
    assert_eq!(DROPS.load(Ordering::Relaxed), 1);
    let b = KmemBox::new(Counted(2));
    let v = b.into_inner();
    assert_eq!(DROPS.load(Ordering::Relaxed), 1);
    drop(v);
    assert_eq!(DROPS.load(Ordering::Relaxed), 2);
    let s = KmemSlice::from_fn(10, |i| Counted(i as u64));
    drop(s);
    assert_eq!(DROPS.load(Ordering::Relaxed), 12);
    // A panicking initialiser: the elements made so far are dropped.
    let r = std::panic::catch_unwind(|| {
        KmemSlice::from_fn(10, |i| {
            if i == 6 {
                panic!("stop");
            }
            Counted(0)
        })
    });
    assert!(r.is_err());
    assert_eq!(DROPS.load(Ordering::Relaxed), 18);
}

#[test]
fn zero_sized_and_empty() {
    let z = KmemBox::new(());
    assert_eq!(*z, ());
    let e: KmemSlice<u64> = KmemSlice::from_fn(0, |_| 0);
    assert!(e.is_empty());
    let zs = KmemSlice::from_fn(1000, |_| ());
    assert_eq!(zs.len(), 1000);
}

#[test]
fn slices_from_slices_and_zeroed() {
    let s = KmemSlice::from_slice(&[1u16, 2, 3]);
    assert_eq!(&*s, &[1, 2, 3]);
    let z = KmemSlice::zeroed_bytes(10_000);
    assert!(z.iter().all(|&b| b == 0));
    let mut m = KmemSlice::from_fn(5, |i| i);
    m[4] = 40;
    assert_eq!(m.iter().sum::<usize>(), 46);
}

#[test]
fn impossible_slices_are_refused_not_truncated() {
    assert!(KmemSlice::<u64>::from_fn_in(kmem(), usize::MAX / 4, KM_SLEEP, |_| 0).is_none());
    assert!(KmemSlice::<u8>::from_fn_in(kmem(), 1 << 60, KM_SLEEP, |_| 0).is_none());
    assert!(KmemSlice::<u8>::from_fn_in(kmem(), 1 << 60, KM_NOSLEEP, |_| 0).is_none());
}

#[test]
fn try_new_with_nosleep_gives_the_value_back_only_without_memory() {
    let b = KmemBox::try_new_in(kmem(), [5u8; 300], KM_NOSLEEP).unwrap();
    assert_eq!(b[299], 5);
}
