//! Raw pointers in one place: the intrusive tag links, with the arena lock
//! held (the doubly linked `link_*` lists of free lists and hash chains,
//! the spare-tag list, the segment list), the free-list size classes, and
//! the pointer arithmetic on vmem's own memory (tag chunks, bucket tables,
//! descriptor slots).
//!
//! A tag pointer is only as good as the list it was found on, which the
//! type cannot say: every function here that follows a pointer its caller
//! passes is `unsafe`, with the list membership it relies on as its
//! contract. Functions that only follow the arena's own list heads are
//! safe. Arithmetic derives every pointer from the allocation it lies in
//! (`NonNull::add`, `cast`), never from an integer, so that Miri's strict
//! provenance checks it.

use core::mem::{align_of, size_of};
use core::ptr::{self, NonNull};

use crate::bt::{BT_F_PRIVATE, BoundaryTag};
use crate::inner::Inner;

type Bt = BoundaryTag;

/// Push `bt` at the head of the doubly linked `link_*` list at `*head`.
///
/// # Safety
/// `head` points at a valid list head; `bt` is a valid tag on no link list.
pub(crate) unsafe fn link_push(head: *mut *mut Bt, bt: *mut Bt) {
    // SAFETY: caller's contract.
    unsafe {
        (*bt).link_prev = ptr::null_mut();
        (*bt).link_next = *head;
        if !(*head).is_null() {
            (**head).link_prev = bt;
        }
        *head = bt;
    }
}

/// Unlink `bt` from the doubly linked `link_*` list at `*head`.
///
/// # Safety
/// `bt` is on the list whose head `head` points at.
pub(crate) unsafe fn link_unlink(head: *mut *mut Bt, bt: *mut Bt) {
    // SAFETY: caller's contract.
    unsafe {
        let next = (*bt).link_next;
        let prev = (*bt).link_prev;
        if prev.is_null() {
            *head = next;
        } else {
            (*prev).link_next = next;
        }
        if !next.is_null() {
            (*next).link_prev = prev;
        }
        (*bt).link_next = ptr::null_mut();
        (*bt).link_prev = ptr::null_mut();
    }
}

pub(crate) use bsdalloc_platform::sync::prefetch;

// ---- pointer arithmetic ----

/// Cut `chunk`, `bytes` long, into slots of `stride` bytes for `T`s: the
/// slot pointers in address order, derived from `chunk` (its provenance).
///
/// # Safety
/// `chunk` points at `bytes` bytes of one allocation; `stride` is at least
/// the size of `T` and a multiple of its alignment, and `chunk` is aligned
/// for `T`.
pub(crate) unsafe fn slots<T>(
    chunk: NonNull<u8>,
    bytes: usize,
    stride: usize,
) -> impl Iterator<Item = NonNull<T>> {
    debug_assert!(stride >= size_of::<T>() && stride.is_multiple_of(align_of::<T>()));
    debug_assert!(chunk.cast::<T>().is_aligned());
    (0..bytes / stride).map(move |i| {
        // SAFETY: slot i ends at (i + 1) * stride <= bytes: inside the
        // chunk (caller's contract).
        unsafe { chunk.add(i * stride) }.cast::<T>()
    })
}

/// The `W` at byte `offset` of the memory at `p` (a descriptor slot's link
/// word).
///
/// # Safety
/// `p` points into one allocation with at least `offset + size_of::<W>()`
/// bytes from `p`, and `p + offset` is aligned for `W`.
pub(crate) unsafe fn word_at<W>(p: NonNull<u8>, offset: usize) -> NonNull<W> {
    // SAFETY: inside the allocation (caller's contract).
    let w = unsafe { p.add(offset) }.cast::<W>();
    debug_assert!(w.is_aligned());
    w
}

/// Bucket `i` of a busy-hash table.
///
/// # Safety
/// `table` points at a table of more than `i` bucket heads.
#[inline]
pub(crate) unsafe fn bucket(table: NonNull<*mut Bt>, i: usize) -> NonNull<*mut Bt> {
    // SAFETY: caller's contract.
    unsafe { table.add(i) }
}

impl Inner {
    // ---- spare tags ----

    /// Reset `bt` (keeping its private flag) and put it on the spare list.
    ///
    /// # Safety
    /// `bt` points at a tag this arena owns that no list references.
    pub(crate) unsafe fn spare_push(&mut self, bt: *mut Bt) {
        // SAFETY: caller's contract.
        unsafe {
            let private = (*bt).flags & BT_F_PRIVATE;
            *bt = BoundaryTag::new();
            (*bt).flags = private;
            (*bt).link_next = self.spare;
        }
        self.spare = bt;
        self.nspare += 1;
    }

    /// Pop a spare tag. The caller reserved enough before.
    pub(crate) fn spare_pop(&mut self) -> *mut Bt {
        let bt = self.spare;
        assert!(!bt.is_null(), "vmem: boundary-tag reserve exhausted");
        // SAFETY: `bt` is on our spare list.
        self.spare = unsafe { (*bt).link_next };
        self.nspare -= 1;
        bt
    }

    /// Take a non-private spare (for trimming back to the supply).
    pub(crate) fn spare_pop_shared(&mut self) -> Option<*mut Bt> {
        let mut prev: *mut Bt = ptr::null_mut();
        let mut bt = self.spare;
        while !bt.is_null() {
            // SAFETY: walking our own spare list.
            unsafe {
                if (*bt).flags & BT_F_PRIVATE == 0 {
                    if prev.is_null() {
                        self.spare = (*bt).link_next;
                    } else {
                        (*prev).link_next = (*bt).link_next;
                    }
                    self.nspare -= 1;
                    return Some(bt);
                }
                prev = bt;
                bt = (*bt).link_next;
            }
        }
        None
    }

    // ---- segment list ----

    /// Insert `bt` before `next` (null: at the tail).
    ///
    /// # Safety
    /// `next` is null or on this arena's segment list; `bt` points at a tag
    /// this arena owns that is not on it.
    pub(crate) unsafe fn seg_insert_before(&mut self, next: *mut Bt, bt: *mut Bt) {
        self.generation = self.generation.wrapping_add(1);
        // SAFETY: caller's contract.
        unsafe {
            let prev = if next.is_null() {
                self.seg_tail
            } else {
                (*next).seg_prev
            };
            (*bt).seg_prev = prev;
            (*bt).seg_next = next;
            if prev.is_null() {
                self.seg_head = bt;
            } else {
                (*prev).seg_next = bt;
            }
            if next.is_null() {
                self.seg_tail = bt;
            } else {
                (*next).seg_prev = bt;
            }
        }
    }

    /// Insert `bt` after `prev` (null: at the head).
    ///
    /// # Safety
    /// As [`Inner::seg_insert_before`], with `prev` for `next`.
    pub(crate) unsafe fn seg_insert_after(&mut self, prev: *mut Bt, bt: *mut Bt) {
        let next = if prev.is_null() {
            self.seg_head
        } else {
            // SAFETY: `prev` is on the list (caller's contract).
            unsafe { (*prev).seg_next }
        };
        // SAFETY: `next` follows `prev` on the list, or is null; `bt` is
        // the caller's.
        unsafe { self.seg_insert_before(next, bt) };
    }

    /// Take `bt` off the segment list.
    ///
    /// # Safety
    /// `bt` is on this arena's segment list.
    pub(crate) unsafe fn seg_remove(&mut self, bt: *mut Bt) {
        self.generation = self.generation.wrapping_add(1);
        // SAFETY: caller's contract.
        unsafe {
            let prev = (*bt).seg_prev;
            let next = (*bt).seg_next;
            if prev.is_null() {
                self.seg_head = next;
            } else {
                (*prev).seg_next = next;
            }
            if next.is_null() {
                self.seg_tail = prev;
            } else {
                (*next).seg_prev = prev;
            }
            (*bt).seg_next = ptr::null_mut();
            (*bt).seg_prev = ptr::null_mut();
        }
    }

    // ---- free lists ----

    /// `freelist[floor(log2 q)]` for a segment of `q` quanta.
    #[inline]
    pub(crate) fn list_floor(quanta: usize) -> usize {
        (usize::BITS - 1 - quanta.leading_zeros()) as usize
    }

    /// An upper bound of the largest free segment, in bytes: the top of the
    /// highest non-empty free list's class (0 if none).
    pub(crate) fn largest_free_bound(&self, qshift: u32) -> usize {
        match self.freelist.iter().rposition(|h| !h.is_null()) {
            None => 0,
            Some(i) => {
                let quanta = if i + 1 >= usize::BITS as usize {
                    usize::MAX
                } else {
                    (1usize << (i + 1)) - 1
                };
                quanta
                    .checked_shl(qshift)
                    .filter(|b| b >> qshift == quanta)
                    .unwrap_or(usize::MAX)
            }
        }
    }

    /// The first list whose every member has at least `q` quanta.
    #[inline]
    pub(crate) fn list_ceil(quanta: usize) -> usize {
        let f = Self::list_floor(quanta);
        if quanta.is_power_of_two() { f } else { f + 1 }
    }

    /// Put FREE tag `bt` on the free list of its size class.
    ///
    /// # Safety
    /// `bt` points at a FREE tag of this arena that is on no link list.
    pub(crate) unsafe fn fl_insert(&mut self, bt: *mut Bt, qshift: u32) {
        self.generation = self.generation.wrapping_add(1);
        // SAFETY: caller's contract; the head is ours.
        unsafe {
            let i = Self::list_floor((*bt).size >> qshift);
            link_push(&mut self.freelist[i], bt);
        }
        self.nfree_segs += 1;
    }

    /// Take FREE tag `bt` off its free list.
    ///
    /// # Safety
    /// `bt` is on this arena's free list of its size class (its size not
    /// changed since it was put there).
    pub(crate) unsafe fn fl_remove(&mut self, bt: *mut Bt, qshift: u32) {
        self.generation = self.generation.wrapping_add(1);
        // SAFETY: caller's contract.
        unsafe {
            let i = Self::list_floor((*bt).size >> qshift);
            link_unlink(&mut self.freelist[i], bt);
        }
        self.nfree_segs -= 1;
    }
}

#[cfg(test)]
mod tests {
    //! Pure logic, no OS pages: runs under Miri (`cargo xtask ci --full`).
    use core::ptr::{self, NonNull};

    use super::{slots, word_at};
    use crate::bt::{BT_TYPE_FREE, BoundaryTag};
    use crate::flags::VMEM_MAXORDER;
    use crate::inner::Inner;

    fn free_tag(start: usize, size: usize) -> BoundaryTag {
        let mut t = BoundaryTag::new();
        t.start = start;
        t.size = size;
        t.typ = BT_TYPE_FREE;
        t
    }

    #[test]
    fn free_list_classes() {
        assert_eq!(Inner::list_floor(1), 0);
        assert_eq!(Inner::list_floor(3), 1);
        assert_eq!(Inner::list_floor(4), 2);
        assert_eq!(
            Inner::list_ceil(3),
            2,
            "every member of list 2 has at least 4 >= 3 quanta"
        );
        assert_eq!(Inner::list_ceil(4), 2);
        assert_eq!(Inner::list_ceil(5), 3);
        assert_eq!(Inner::list_floor(usize::MAX), VMEM_MAXORDER - 1);
    }

    #[test]
    fn hash_and_free_lists_link_and_unlink() {
        let mut tags: [BoundaryTag; 8] = core::array::from_fn(|i| free_tag(i * 16, 16));
        let mut inner = Inner::new();
        let mut table = [ptr::null_mut::<BoundaryTag>(); 4];
        let p: [*mut BoundaryTag; 8] = core::array::from_fn(|i| &mut tags[i] as *mut BoundaryTag);
        for &t in &p[..4] {
            // SAFETY: FREE tags on no list.
            unsafe { inner.fl_insert(t, 4) };
        }
        assert_eq!(inner.nfree_segs, 4);
        // SAFETY: both on the free list of their class.
        unsafe {
            inner.fl_remove(p[1], 4);
            inner.fl_remove(p[3], 4);
        }
        assert_eq!(inner.nfree_segs, 2);
        for &t in &p[4..] {
            // SAFETY: valid tags on no list.
            unsafe { inner.hash.insert(t) };
        }
        // SAFETY: a 4-bucket table, then back to the embedded bucket.
        unsafe { inner.hash.rehash(NonNull::new(table.as_mut_ptr()), 4) };
        assert_eq!(inner.hash.nbusy, 4);
        for &t in &p[4..] {
            // SAFETY: `t` is a valid tag.
            assert_eq!(inner.hash.lookup(unsafe { (*t).start }), t);
        }
        // SAFETY: p[5] is on the hash.
        unsafe { inner.hash.remove(p[5]) };
        assert!(inner.hash.lookup(5 * 16).is_null());
        // SAFETY: back to the embedded bucket.
        unsafe { inner.hash.rehash(None, 1) };
        assert_eq!(inner.hash.lookup(6 * 16), p[6]);
        assert_eq!(inner.hash.nbusy, 3);
    }

    #[test]
    fn slots_and_words_stay_inside_their_chunk() {
        let mut chunk = [0u64; 16];
        let p = NonNull::new(chunk.as_mut_ptr().cast::<u8>()).unwrap();
        let all: [NonNull<u64>; 4] = {
            // SAFETY: 128 bytes of one array, aligned for u64.
            let mut it = unsafe { slots::<u64>(p, 128, 32) };
            core::array::from_fn(|_| it.next().unwrap())
        };
        for (i, s) in all.iter().enumerate() {
            // SAFETY: each slot is 32 bytes of the array; its last word too.
            unsafe {
                s.write(i as u64);
                word_at::<u64>(s.cast(), 24).write(100 + i as u64);
            }
        }
        assert_eq!(chunk[0], 0);
        assert_eq!(chunk[3], 100);
        assert_eq!(chunk[12], 3);
        assert_eq!(chunk[15], 103);
    }
}
