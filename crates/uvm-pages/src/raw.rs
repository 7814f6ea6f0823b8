//! Raw pointers in one place: the page bitmaps (atomics in the map's meta
//! area, reached through a pointer and an index) and the map's addresses
//! as pointers.
//!
//! Both are built once, in `KernelMap::bootstrap`, under an `unsafe`
//! contract (the memory lives as long as the map); from then on their API
//! is safe, bounds-checked, and derives every pointer from the allocation
//! it lies in (`NonNull::add`, `with_addr`), never from an integer, so that
//! Miri's strict provenance can check it.

use core::num::NonZero;
use core::ptr::NonNull;

use bsdalloc_platform::sync::atomic::{AtomicU64, Ordering};

/// One page bitmap: a bit per page of the map, in `AtomicU64` words.
pub(crate) struct Bitmap {
    words: NonNull<AtomicU64>,
    nwords: usize,
}

// SAFETY: a bitmap is shared atomics; the pointer is only read through.
unsafe impl Sync for Bitmap {}
// SAFETY: as above.
unsafe impl Send for Bitmap {}

impl Bitmap {
    /// `N` bitmaps of `nwords` words each, one after another from byte
    /// `offset` of `area`.
    ///
    /// # Safety
    /// `area + offset` is aligned for `AtomicU64` and followed by
    /// `N * nwords * 8` bytes of the same allocation that read as zero (a
    /// valid `AtomicU64`), are used for nothing else, and outlive every use
    /// of the bitmaps.
    pub(crate) unsafe fn carve<const N: usize>(
        area: NonNull<u8>,
        offset: usize,
        nwords: usize,
    ) -> [Bitmap; N] {
        // SAFETY: inside the allocation (caller's contract).
        let first = unsafe { area.add(offset) }.cast::<AtomicU64>();
        debug_assert!(first.is_aligned());
        core::array::from_fn(|i| Bitmap {
            // SAFETY: bitmap i starts i * nwords words into the area, inside
            // it (caller's contract).
            words: unsafe { first.add(i * nwords) },
            nwords,
        })
    }

    /// Word `w`.
    ///
    /// # Panics
    /// If `w` is past the bitmap (a bug in the map's page arithmetic).
    #[inline]
    pub(crate) fn word(&self, w: usize) -> &AtomicU64 {
        assert!(w < self.nwords, "uvm_km: page bitmap word {w} out of range");
        // SAFETY: w < nwords, and the words live as long as the map, which
        // outlives `&self` (the contract of `carve`).
        unsafe { self.words.add(w).as_ref() }
    }

    /// Bit `i`.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> bool {
        self.word(i / 64).load(Ordering::Acquire) & (1 << (i % 64)) != 0
    }

    /// Set (or clear) bits `[first, first+n)`.
    pub(crate) fn set(&self, first: usize, n: usize, on: bool) {
        let mut i = first;
        let end = first + n;
        while i < end {
            let w = i / 64;
            let lo = i % 64;
            let hi = (end - w * 64).min(64);
            let mask = if hi - lo == 64 {
                u64::MAX
            } else {
                ((1u64 << (hi - lo)) - 1) << lo
            };
            if on {
                self.word(w).fetch_or(mask, Ordering::AcqRel);
            } else {
                self.word(w).fetch_and(!mask, Ordering::AcqRel);
            }
            i = w * 64 + hi;
        }
    }

    /// How many of bits `[first, first+n)` are set.
    pub(crate) fn count(&self, first: usize, n: usize) -> usize {
        (first..first + n).filter(|&i| self.get(i)).count()
    }

    /// Call `f(first, len, set)` for each maximal run of equal bits of
    /// `[first, first+n)`.
    pub(crate) fn runs(&self, first: usize, n: usize, mut f: impl FnMut(usize, usize, bool)) {
        let mut i = first;
        let end = first + n;
        while i < end {
            let v = self.get(i);
            let mut j = i + 1;
            while j < end && self.get(j) == v {
                j += 1;
            }
            f(i, j - i, v);
            i = j;
        }
    }
}

/// The map's reserved address range, as the page source returned it: map
/// addresses (integers, as vmem hands them out) become pointers with the
/// reservation's provenance.
#[derive(Clone, Copy)]
pub(crate) struct Reservation {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: an address range; the memory behind it is managed by the map.
unsafe impl Sync for Reservation {}
// SAFETY: as above.
unsafe impl Send for Reservation {}

impl Reservation {
    /// The range `[ptr, ptr+len)` of one reservation.
    pub(crate) fn new(ptr: NonNull<u8>, len: usize) -> Reservation {
        Reservation { ptr, len }
    }

    /// The start, as the pointer the page source returned.
    pub(crate) fn start(&self) -> NonNull<u8> {
        self.ptr
    }

    /// The start address.
    pub(crate) fn base(&self) -> usize {
        self.ptr.addr().get()
    }

    /// Address `addr` as a pointer into the reservation, or `None` if it
    /// lies outside.
    pub(crate) fn ptr(&self, addr: usize) -> Option<NonNull<u8>> {
        let off = addr.checked_sub(self.base())?;
        // `with_addr`, not a cast: the pointer keeps the reservation's
        // provenance. The address is nonzero: the base is.
        (off < self.len).then(|| self.ptr.with_addr(NonZero::new(addr).expect("inside")))
    }
}

#[cfg(test)]
mod tests {
    //! No OS pages: runs under Miri with strict provenance.
    use super::*;

    #[test]
    fn bitmaps_set_count_and_run_inside_their_words() {
        let area = [const { AtomicU64::new(0) }; 6];
        let p = NonNull::from(&area).cast::<u8>();
        // SAFETY: 6 zeroed words, alive for the whole test.
        let [a, b]: [Bitmap; 2] = unsafe { Bitmap::carve(p, 0, 3) };
        a.set(60, 10, true);
        assert!(a.get(60) && a.get(69) && !a.get(70) && !a.get(59));
        assert_eq!(a.count(0, 192), 10);
        assert_eq!(b.count(0, 192), 0, "the second bitmap is untouched");
        b.set(0, 192, true);
        assert_eq!(area[3].load(Ordering::Relaxed), u64::MAX);
        let mut runs = [(0, 0, false); 3];
        let mut k = 0;
        a.runs(50, 30, |f, l, s| {
            runs[k] = (f, l, s);
            k += 1;
        });
        assert_eq!(runs, [(50, 10, false), (60, 10, true), (70, 10, false)]);
        a.set(62, 2, false);
        assert_eq!(a.count(60, 10), 8);
    }

    #[test]
    #[should_panic(expected = "page bitmap word 3 out of range")]
    fn a_word_past_the_bitmap_panics() {
        let area = [const { AtomicU64::new(0) }; 3];
        // SAFETY: 3 zeroed words.
        let [a]: [Bitmap; 1] = unsafe { Bitmap::carve(NonNull::from(&area).cast(), 0, 3) };
        a.get(192);
    }

    #[test]
    fn reservation_pointers_keep_their_provenance() {
        let mut mem = [0u8; 64];
        let r = Reservation::new(NonNull::from(&mut mem).cast(), 64);
        let p = r.ptr(r.base() + 10).unwrap();
        // SAFETY: inside `mem`, derived from it.
        unsafe { p.write(7) };
        assert_eq!(mem[10], 7);
        assert!(r.ptr(r.base() + 64).is_none());
        assert!(r.ptr(r.base() - 1).is_none());
    }
}
