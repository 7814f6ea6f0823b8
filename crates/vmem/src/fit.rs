//! The search for a free segment (instant, best and next fit) and what an
//! allocation or a free does to the segments: add a span, carve a busy
//! segment out of a free one, coalesce a freed one, remove a whole
//! imported span. Pure algorithms on `Inner`, with the arena lock held.

use core::ptr;

use crate::bt::{
    BT_F_XALLOC, BT_TYPE_BUSY, BT_TYPE_CURSOR, BT_TYPE_FREE, BT_TYPE_SPAN, BoundaryTag,
};
use crate::constraints::Request;
use crate::flags::VMEM_MAXORDER;
use crate::inner::Inner;
use crate::links::prefetch;

type Bt = BoundaryTag;

impl Inner {
    // ---- spans ----

    /// Append a span `[addr, addr+size)` and one FREE segment covering it.
    /// Needs two spare tags.
    pub(crate) fn add_span(&mut self, addr: usize, size: usize, typ: u8, qshift: u32) {
        let span = self.spare_pop();
        let free = self.spare_pop();
        // SAFETY: fresh tags from our spare list, on no other list; once
        // filled in, `free` is a FREE tag.
        unsafe {
            (*span).start = addr;
            (*span).size = size;
            (*span).typ = typ;
            (*free).start = addr;
            (*free).size = size;
            (*free).typ = BT_TYPE_FREE;
            self.seg_insert_before(ptr::null_mut(), span);
            self.seg_insert_before(ptr::null_mut(), free);
            self.fl_insert(free, qshift);
        }
        self.size += size;
        self.nspans += 1;
        if typ == BT_TYPE_SPAN {
            self.nimported += 1;
        }
    }

    // ---- search ----

    /// INSTANTFIT: probe only the head of each list from the ceiling class.
    pub(crate) fn find_instantfit(&self, req: &Request, qshift: u32) -> Option<(*mut Bt, usize)> {
        let first = Self::list_ceil(req.size() >> qshift);
        for i in first..VMEM_MAXORDER {
            let bt = self.freelist[i];
            if !bt.is_null() {
                // SAFETY: list heads are valid FREE tags.
                if let Some(a) = req.fit(unsafe { &*bt }) {
                    return Some((bt, a));
                }
            }
        }
        None
    }

    /// BESTFIT: scan each list from the floor class, first fit.
    pub(crate) fn find_bestfit(&self, req: &Request, qshift: u32) -> Option<(*mut Bt, usize)> {
        let first = Self::list_floor(req.size() >> qshift);
        for i in first..VMEM_MAXORDER {
            let mut bt = self.freelist[i];
            while !bt.is_null() {
                // SAFETY: list members are valid FREE tags.
                let t = unsafe { &*bt };
                if t.size >= req.size()
                    && let Some(a) = req.fit(t)
                {
                    return Some((bt, a));
                }
                bt = t.link_next;
            }
        }
        None
    }

    /// NEXTFIT: walk the segment list forward from the cursor, wrapping,
    /// and take the first fit at or after the rotor; addresses before it
    /// come last. A free segment that holds the rotor (frees coalesce across
    /// the cursor) is tried from the rotor on first, and below it at the
    /// very end, so that IDs rotate through the whole range before one is
    /// used again.
    pub(crate) fn find_nextfit(&self, req: &Request) -> Option<(*mut Bt, usize)> {
        let start = if self.cursor.is_null() {
            self.seg_head
        } else {
            self.cursor
        };
        if start.is_null() {
            return None;
        }
        let rotor = self.rotor;
        let mut split: Option<*mut Bt> = None;
        let mut bt = start;
        loop {
            // SAFETY: segment-list members are valid tags.
            let t = unsafe { &*bt };
            if t.typ == BT_TYPE_FREE && t.size >= req.size() {
                let holds_rotor = !self.cursor.is_null() && t.start < rotor && rotor <= t.end();
                let r = if holds_rotor {
                    split = Some(bt);
                    req.at_or_above(rotor)
                } else {
                    *req
                };
                if let Some(a) = r.fit(t) {
                    return Some((bt, a));
                }
            }
            bt = if t.seg_next.is_null() {
                self.seg_head
            } else {
                t.seg_next
            };
            if bt == start {
                break;
            }
        }
        // Last, the segment that holds the rotor, from its start: a block
        // before the rotor, or one reaching across it.
        let bt = split?;
        // SAFETY: a segment-list member seen above, unchanged since.
        let t = unsafe { &*bt };
        req.fit(t).map(|a| (bt, a))
    }

    /// The spare tags `carve(bt, a, size, ..)` takes: one for a leading
    /// fragment, one for a trailing one.
    ///
    /// # Safety
    /// `bt` is a FREE tag of this arena containing `[a, a+size)` (as a
    /// search returned it, the lock held since).
    pub(crate) unsafe fn carve_tags(
        &self,
        bt: *mut Bt,
        a: usize,
        size: usize,
        quantum: usize,
    ) -> usize {
        // SAFETY: caller's contract.
        let (start, bsize) = unsafe { ((*bt).start, (*bt).size) };
        let lead = a - start;
        usize::from(lead > 0) + usize::from(bsize - lead - size >= quantum)
    }

    /// Carve `[a, a+size)` out of FREE segment `bt` (spec §1.5 step 6).
    /// Needs up to two spare tags. Returns the new BUSY tag.
    ///
    /// # Safety
    /// As [`Inner::carve_tags`]; and as many spare tags as it counts.
    pub(crate) unsafe fn carve(
        &mut self,
        bt: *mut Bt,
        a: usize,
        size: usize,
        qshift: u32,
        quantum: usize,
        xalloc: bool,
    ) -> *mut Bt {
        // SAFETY: `bt` is a FREE tag on its free list, containing
        // [a, a+size) (caller's contract); the fragments cut off it are
        // fresh spares, linked next to it and onto free lists as FREE tags.
        unsafe {
            // The lines this carve writes besides `bt` and the spares:
            // `bt`'s free-list successor (unlinking it), its segment-list
            // predecessor (linking the busy tag before it), the busy
            // hash's bucket, and the head of the list the tail goes to.
            // Fetched together, their misses overlap.
            prefetch((*bt).link_next);
            prefetch((*bt).seg_prev);
            self.hash.prefetch_bucket(a);
            let tail = (*bt).size - (a - (*bt).start) - size;
            if tail >= quantum {
                prefetch(self.freelist[Self::list_floor(tail >> qshift)]);
            }
            self.fl_remove(bt, qshift);
            if a > (*bt).start {
                let lead = self.spare_pop();
                (*lead).typ = BT_TYPE_FREE;
                (*lead).start = (*bt).start;
                (*lead).size = a - (*bt).start;
                (*bt).start = a;
                (*bt).size -= (*lead).size;
                self.seg_insert_before(bt, lead);
                self.fl_insert(lead, qshift);
            }
            debug_assert!((*bt).start == a && (*bt).size >= size);
            let busy = if (*bt).size - size >= quantum {
                let busy = self.spare_pop();
                (*busy).typ = BT_TYPE_BUSY;
                (*busy).start = a;
                (*busy).size = size;
                (*bt).start += size;
                (*bt).size -= size;
                self.seg_insert_before(bt, busy);
                self.fl_insert(bt, qshift);
                busy
            } else {
                (*bt).typ = BT_TYPE_BUSY;
                bt
            };
            if xalloc {
                (*busy).flags |= BT_F_XALLOC;
            }
            self.hash.insert(busy);
            self.inuse += size;
            busy
        }
    }

    /// Take the cursor out of the segment list (next fit), if present.
    pub(crate) fn cursor_unlink(&mut self) -> bool {
        if self.cursor.is_null() {
            return false;
        }
        // SAFETY: a non-null cursor is on the segment list (it leaves it
        // only here, and goes back with `cursor_place_after`).
        unsafe { self.seg_remove(self.cursor) };
        true
    }

    /// Put the cursor right after `bt` (null: at the head).
    ///
    /// # Safety
    /// `bt` is null or on this arena's segment list; the cursor exists and
    /// was taken off the list with `cursor_unlink`.
    pub(crate) unsafe fn cursor_place_after(&mut self, bt: *mut Bt) {
        debug_assert!(!self.cursor.is_null());
        // SAFETY: the cursor tag is ours.
        debug_assert_eq!(unsafe { (*self.cursor).typ }, BT_TYPE_CURSOR);
        // SAFETY: caller's contract: `bt` is on the list, the cursor not.
        unsafe { self.seg_insert_after(bt, self.cursor) };
    }

    /// Make BUSY tag `bt` free, coalesce it with free neighbours. Returns the
    /// resulting FREE tag, not yet on a free list, and whether it now fills
    /// an imported span exactly (`Some(span tag)`).
    ///
    /// # Safety
    /// `bt` is a BUSY tag of this arena, on its segment list, just taken
    /// off the busy hash (and the cursor is off the list).
    pub(crate) unsafe fn free_coalesce(
        &mut self,
        bt: *mut Bt,
        qshift: u32,
    ) -> (*mut Bt, Option<*mut Bt>) {
        // SAFETY: caller's contract; its neighbours are tags on the same
        // segment list, FREE ones on their free lists.
        unsafe {
            (*bt).typ = BT_TYPE_FREE;
            (*bt).flags &= !BT_F_XALLOC;
            self.inuse -= (*bt).size;
            let next = (*bt).seg_next;
            let prev = (*bt).seg_prev;
            let next_free = !next.is_null() && (*next).typ == BT_TYPE_FREE;
            let prev_free = !prev.is_null() && (*prev).typ == BT_TYPE_FREE;
            // Both neighbours are read now (the free path prefetched them
            // together); the tags that absorbing them writes — their
            // free-list neighbours and the segments beyond them — are
            // fetched all at once here, instead of one miss after another.
            if next_free {
                prefetch((*next).link_next);
                prefetch((*next).link_prev);
                prefetch((*next).seg_next);
            }
            if prev_free {
                prefetch((*prev).link_next);
                prefetch((*prev).link_prev);
                prefetch((*prev).seg_prev);
            }
            // Absorbing `next` changes neither `bt.seg_prev` nor `prev`:
            // the same merges, in the same order, as NetBSD's.
            if next_free {
                self.fl_remove(next, qshift);
                self.seg_remove(next);
                (*bt).size += (*next).size;
                self.spare_push(next);
            }
            if prev_free {
                self.fl_remove(prev, qshift);
                self.seg_remove(prev);
                (*bt).start = (*prev).start;
                (*bt).size += (*prev).size;
                self.spare_push(prev);
            }
            let mut prev = (*bt).seg_prev;
            if !prev.is_null() && (*prev).typ == BT_TYPE_CURSOR {
                // The next-fit cursor may sit between a span tag and its
                // first segment; the span is whole all the same.
                prev = (*prev).seg_prev;
            }
            let whole_import = !prev.is_null()
                && (*prev).typ == BT_TYPE_SPAN
                && (*prev).size == (*bt).size
                && (*prev).start == (*bt).start;
            (bt, whole_import.then_some(prev))
        }
    }

    /// Remove an imported span whose single FREE segment is `seg`.
    ///
    /// # Safety
    /// `span` is the span tag of an imported span of this arena and `seg`,
    /// on no free list, its only segment (as `free_coalesce` found them).
    pub(crate) unsafe fn remove_span(&mut self, span: *mut Bt, seg: *mut Bt) -> (usize, usize) {
        // SAFETY: caller's contract: both on the segment list, neither on
        // any other list once taken off it.
        let (start, size) = unsafe {
            let r = ((*span).start, (*span).size);
            self.seg_remove(seg);
            self.seg_remove(span);
            self.spare_push(seg);
            self.spare_push(span);
            r
        };
        self.size -= size;
        self.nspans -= 1;
        self.nimported -= 1;
        (start, size)
    }

    /// The first BUSY tag on the segment list (for `xfreeall`).
    pub(crate) fn first_busy(&self) -> *mut Bt {
        let mut bt = self.seg_head;
        while !bt.is_null() {
            // SAFETY: valid list members.
            unsafe {
                if (*bt).typ == BT_TYPE_BUSY {
                    return bt;
                }
                bt = (*bt).seg_next;
            }
        }
        ptr::null_mut()
    }
}

#[cfg(test)]
mod tests {
    //! Carve and coalesce over tags on the stack, no OS pages: runs under
    //! Miri with strict provenance.
    use super::*;
    use crate::constraints::XallocConstraints;

    const QSHIFT: u32 = 4;
    const Q: usize = 1 << QSHIFT;

    #[test]
    fn carve_then_free_gives_the_imported_span_back_whole() {
        let mut tags: [BoundaryTag; 8] = core::array::from_fn(|_| BoundaryTag::new());
        let mut g = Inner::new();
        for t in tags.iter_mut() {
            // SAFETY: a fresh tag on no list, outliving `g`.
            unsafe { g.spare_push(t) };
        }
        g.add_span(0x1000, 0x1000, BT_TYPE_SPAN, QSHIFT);
        let req = XallocConstraints::new(0x100)
            .min(0x1400)
            .check("t", Q)
            .unwrap();
        let (bt, a) = g.find_bestfit(&req, QSHIFT).unwrap();
        assert_eq!(a, 0x1400);
        // SAFETY: just found, lock-free test state.
        assert_eq!(unsafe { g.carve_tags(bt, a, 0x100, Q) }, 2, "lead and tail");
        // SAFETY: as above, with 6 spares left.
        let busy = unsafe { g.carve(bt, a, 0x100, QSHIFT, Q, true) };
        assert_eq!(g.hash.lookup(0x1400), busy);
        assert_eq!((g.nfree_segs, g.inuse, g.nspare), (2, 0x100, 4));
        // SAFETY: `busy` is on the hash and the segment list.
        let (seg, span) = unsafe {
            g.hash.remove(busy);
            g.free_coalesce(busy, QSHIFT)
        };
        let span = span.expect("the free segment fills the imported span");
        // SAFETY: as free_coalesce found them.
        let (start, size) = unsafe { g.remove_span(span, seg) };
        assert_eq!((start, size), (0x1000, 0x1000));
        assert!(g.seg_head.is_null() && g.seg_tail.is_null());
        assert_eq!((g.size, g.inuse, g.nspans, g.nimported), (0, 0, 0, 0));
        assert_eq!((g.nspare, g.nfree_segs), (8, 0), "every tag is spare again");
    }
}
