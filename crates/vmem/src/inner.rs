//! The arena state behind its lock: segment list, free lists, busy hash,
//! spare tags, and the pure algorithms on them (fit, carve, coalesce).
//!
//! Everything here runs with the arena lock held and never sleeps or calls
//! out; the code that must drop the lock (refill, import, release, sleep,
//! hash resize) is in `arena.rs`.

use core::ptr;

use bsdalloc_platform::WaitQueue;

use crate::bt::{
    BT_F_PRIVATE, BT_F_XALLOC, BT_TYPE_BUSY, BT_TYPE_CURSOR, BT_TYPE_FREE, BT_TYPE_SPAN,
    BT_TYPE_SPAN_STATIC, BoundaryTag,
};
use crate::constraints::Request;
use crate::flags::VMEM_MAXORDER;

type Bt = BoundaryTag;

/// Push `bt` at the head of the doubly linked `link_*` list at `*head`.
///
/// # Safety
/// `head` points at a valid list head; `bt` is a valid tag on no link list.
unsafe fn link_push(head: *mut *mut Bt, bt: *mut Bt) {
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
unsafe fn link_unlink(head: *mut *mut Bt, bt: *mut Bt) {
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

/// The busy-tag hash: chains of BUSY tags keyed by start address.
pub(crate) struct BusyHash {
    /// `size` bucket heads, or null while the embedded bucket is in use.
    pub(crate) table: *mut *mut Bt,
    pub(crate) size: usize,
    pub(crate) embedded: *mut Bt,
    pub(crate) nbusy: usize,
    pub(crate) maxbusy: usize,
}

impl BusyHash {
    pub(crate) const fn new() -> Self {
        BusyHash {
            table: ptr::null_mut(),
            size: 1,
            embedded: ptr::null_mut(),
            nbusy: 0,
            maxbusy: 0,
        }
    }

    #[inline]
    fn bucket_index(addr: usize, size: usize) -> usize {
        if size == 1 {
            return 0;
        }
        // Fibonacci hashing: the top bits of a multiplicative hash.
        let h = (addr as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> (64 - size.trailing_zeros())) as usize
    }

    #[inline]
    fn head(&mut self, addr: usize) -> *mut *mut Bt {
        if self.table.is_null() {
            &mut self.embedded
        } else {
            // SAFETY: the table has `size` entries and the index is < size.
            unsafe { self.table.add(Self::bucket_index(addr, self.size)) }
        }
    }

    /// Insert a BUSY tag.
    ///
    /// # Safety
    /// `bt` is a valid tag not on any link list.
    pub(crate) unsafe fn insert(&mut self, bt: *mut Bt) {
        // SAFETY: caller's contract; the head pointer is valid.
        unsafe { link_push(self.head((*bt).start), bt) };
        self.nbusy += 1;
        if self.nbusy > self.maxbusy {
            self.maxbusy = self.nbusy;
        }
    }

    /// Remove a BUSY tag.
    ///
    /// # Safety
    /// `bt` is on this hash.
    pub(crate) unsafe fn remove(&mut self, bt: *mut Bt) {
        // SAFETY: caller's contract: `bt` is on the chain of its bucket.
        unsafe { link_unlink(self.head((*bt).start), bt) };
        self.nbusy -= 1;
    }

    /// The BUSY tag starting at `addr`.
    pub(crate) fn lookup(&mut self, addr: usize) -> *mut Bt {
        let mut bt = {
            let head = self.head(addr);
            // SAFETY: head points at a bucket.
            unsafe { *head }
        };
        while !bt.is_null() {
            // SAFETY: chain members are valid tags.
            unsafe {
                if (*bt).start == addr {
                    return bt;
                }
                bt = (*bt).link_next;
            }
        }
        ptr::null_mut()
    }

    /// Move every tag to `table` of `size` buckets (a power of two; null
    /// and 1 for the embedded bucket). Returns the old table and size.
    ///
    /// # Safety
    /// `table` has `size` writable entries, or is null with `size == 1`.
    pub(crate) unsafe fn rehash(
        &mut self,
        table: *mut *mut Bt,
        size: usize,
    ) -> (*mut *mut Bt, usize) {
        let mut all: *mut Bt = ptr::null_mut();
        // Collect every tag into one chain.
        let old_size = self.size;
        for i in 0..old_size {
            let head = if self.table.is_null() {
                &mut self.embedded as *mut *mut Bt
            } else {
                // SAFETY: i < old size.
                unsafe { self.table.add(i) }
            };
            // SAFETY: valid chains of valid tags.
            unsafe {
                let mut bt = *head;
                *head = ptr::null_mut();
                while !bt.is_null() {
                    let next = (*bt).link_next;
                    (*bt).link_next = all;
                    all = bt;
                    bt = next;
                }
            }
        }
        let old = (self.table, self.size);
        self.table = table;
        self.size = size;
        self.embedded = ptr::null_mut();
        if !table.is_null() {
            for i in 0..size {
                // SAFETY: caller's contract on `table`.
                unsafe { *table.add(i) = ptr::null_mut() };
            }
        }
        let n = self.nbusy;
        let m = self.maxbusy;
        while !all.is_null() {
            // SAFETY: `all` chains valid tags we just unlinked.
            unsafe {
                let next = (*all).link_next;
                self.insert(all);
                all = next;
            }
        }
        self.nbusy = n;
        self.maxbusy = m;
        old
    }
}

/// The arena state protected by its lock.
pub(crate) struct Inner {
    pub(crate) seg_head: *mut Bt,
    pub(crate) seg_tail: *mut Bt,
    pub(crate) freelist: [*mut Bt; VMEM_MAXORDER],
    pub(crate) hash: BusyHash,
    pub(crate) spare: *mut Bt,
    pub(crate) nspare: usize,
    /// `vm_size`: bytes of all spans.
    pub(crate) size: usize,
    /// `vm_inuse`: bytes of busy segments.
    pub(crate) inuse: usize,
    pub(crate) cursor: *mut Bt,
    pub(crate) nspans: usize,
    pub(crate) nimported: usize,
    pub(crate) nfree_segs: usize,
    pub(crate) stats: Counters,
    /// Bumped by every change to the segment list or a free list (carve,
    /// coalesce, span add/remove, cursor moves, destroy), so that a walk
    /// that dropped the lock (`dump`) knows whether its place is still
    /// valid.
    pub(crate) generation: u64,
    /// `VM_SLEEP` allocations (and private-tag refills) waiting for room.
    pub(crate) sleepers: WaitQueue,
}

/// Event counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Successful allocations.
    pub allocs: u64,
    /// Frees.
    pub frees: u64,
    /// Allocations that failed with ENOMEM.
    pub failures: u64,
    /// Spans imported from the source.
    pub imports: u64,
    /// Imports the source refused.
    pub import_failures: u64,
    /// Spans released to the source.
    pub releases: u64,
    /// Times a VM_SLEEP caller slept.
    pub sleeps: u64,
    /// Busy-hash resizes.
    pub rehashes: u64,
    /// Times INSTANTFIT found nothing and fell back to BESTFIT.
    pub instantfit_fallbacks: u64,
}

// SAFETY: the raw pointers are tags owned by this arena, used only under
// its lock.
unsafe impl Send for Inner {}

impl Inner {
    pub(crate) const fn new() -> Self {
        Inner {
            seg_head: ptr::null_mut(),
            seg_tail: ptr::null_mut(),
            freelist: [ptr::null_mut(); VMEM_MAXORDER],
            hash: BusyHash::new(),
            spare: ptr::null_mut(),
            nspare: 0,
            size: 0,
            inuse: 0,
            cursor: ptr::null_mut(),
            nspans: 0,
            nimported: 0,
            nfree_segs: 0,
            stats: Counters {
                allocs: 0,
                frees: 0,
                failures: 0,
                imports: 0,
                import_failures: 0,
                releases: 0,
                sleeps: 0,
                rehashes: 0,
                instantfit_fallbacks: 0,
            },
            generation: 0,
            sleepers: WaitQueue::new(),
        }
    }

    // ---- spare tags ----

    pub(crate) fn spare_push(&mut self, bt: *mut Bt) {
        // SAFETY: `bt` is a tag this arena owns and no list references.
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
    pub(crate) fn seg_insert_before(&mut self, next: *mut Bt, bt: *mut Bt) {
        self.generation = self.generation.wrapping_add(1);
        // SAFETY: `next` is on the list (or null) and `bt` is not.
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
    pub(crate) fn seg_insert_after(&mut self, prev: *mut Bt, bt: *mut Bt) {
        let next = if prev.is_null() {
            self.seg_head
        } else {
            // SAFETY: `prev` is on the list.
            unsafe { (*prev).seg_next }
        };
        self.seg_insert_before(next, bt);
    }

    pub(crate) fn seg_remove(&mut self, bt: *mut Bt) {
        self.generation = self.generation.wrapping_add(1);
        // SAFETY: `bt` is on the list.
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

    pub(crate) fn fl_insert(&mut self, bt: *mut Bt, qshift: u32) {
        self.generation = self.generation.wrapping_add(1);
        // SAFETY: `bt` is a FREE tag on no free list; the head is ours.
        unsafe {
            let i = Self::list_floor((*bt).size >> qshift);
            link_push(&mut self.freelist[i], bt);
        }
        self.nfree_segs += 1;
    }

    pub(crate) fn fl_remove(&mut self, bt: *mut Bt, qshift: u32) {
        self.generation = self.generation.wrapping_add(1);
        // SAFETY: `bt` is on the free list of its size class.
        unsafe {
            let i = Self::list_floor((*bt).size >> qshift);
            link_unlink(&mut self.freelist[i], bt);
        }
        self.nfree_segs -= 1;
    }

    // ---- spans ----

    /// Append a span `[addr, addr+size)` and one FREE segment covering it.
    /// Needs two spare tags.
    pub(crate) fn add_span(&mut self, addr: usize, size: usize, typ: u8, qshift: u32) {
        let span = self.spare_pop();
        let free = self.spare_pop();
        // SAFETY: fresh tags from our spare list.
        unsafe {
            (*span).start = addr;
            (*span).size = size;
            (*span).typ = typ;
            (*free).start = addr;
            (*free).size = size;
            (*free).typ = BT_TYPE_FREE;
        }
        self.seg_insert_before(ptr::null_mut(), span);
        self.seg_insert_before(ptr::null_mut(), free);
        self.fl_insert(free, qshift);
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

    /// NEXTFIT: walk the segment list forward from the cursor, wrapping.
    pub(crate) fn find_nextfit(&self, req: &Request) -> Option<(*mut Bt, usize)> {
        let start = if self.cursor.is_null() {
            self.seg_head
        } else {
            self.cursor
        };
        if start.is_null() {
            return None;
        }
        let mut bt = start;
        loop {
            // SAFETY: segment-list members are valid tags.
            let t = unsafe { &*bt };
            if t.typ == BT_TYPE_FREE
                && t.size >= req.size()
                && let Some(a) = req.fit(t)
            {
                return Some((bt, a));
            }
            bt = if t.seg_next.is_null() {
                self.seg_head
            } else {
                t.seg_next
            };
            if bt == start {
                return None;
            }
        }
    }

    /// The spare tags `carve(bt, a, size, ..)` takes: one for a leading
    /// fragment, one for a trailing one.
    pub(crate) fn carve_tags(&self, bt: *mut Bt, a: usize, size: usize, quantum: usize) -> usize {
        // SAFETY: `bt` is a valid FREE tag containing [a, a+size).
        let (start, bsize) = unsafe { ((*bt).start, (*bt).size) };
        let lead = a - start;
        usize::from(lead > 0) + usize::from(bsize - lead - size >= quantum)
    }

    /// Carve `[a, a+size)` out of FREE segment `bt` (spec §1.5 step 6).
    /// Needs up to two spare tags. Returns the new BUSY tag.
    pub(crate) fn carve(
        &mut self,
        bt: *mut Bt,
        a: usize,
        size: usize,
        qshift: u32,
        quantum: usize,
        xalloc: bool,
    ) -> *mut Bt {
        self.fl_remove(bt, qshift);
        // SAFETY: `bt` is a valid FREE tag containing [a, a+size).
        unsafe {
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
        self.seg_remove(self.cursor);
        true
    }

    /// Put the cursor right after `bt` (null: at the head).
    pub(crate) fn cursor_place_after(&mut self, bt: *mut Bt) {
        debug_assert!(!self.cursor.is_null());
        // SAFETY: the cursor tag is ours.
        debug_assert_eq!(unsafe { (*self.cursor).typ }, BT_TYPE_CURSOR);
        self.seg_insert_after(bt, self.cursor);
    }

    /// Make BUSY tag `bt` free, coalesce it with free neighbours. Returns the
    /// resulting FREE tag, not yet on a free list, and whether it now fills
    /// an imported span exactly (`Some(span tag)`).
    pub(crate) fn free_coalesce(&mut self, bt: *mut Bt, qshift: u32) -> (*mut Bt, Option<*mut Bt>) {
        // SAFETY: `bt` is a BUSY tag just removed from the hash; neighbours
        // are valid tags on the segment list.
        unsafe {
            (*bt).typ = BT_TYPE_FREE;
            (*bt).flags &= !BT_F_XALLOC;
            self.inuse -= (*bt).size;
            let next = (*bt).seg_next;
            if !next.is_null() && (*next).typ == BT_TYPE_FREE {
                self.fl_remove(next, qshift);
                self.seg_remove(next);
                (*bt).size += (*next).size;
                self.spare_push(next);
            }
            let prev = (*bt).seg_prev;
            if !prev.is_null() && (*prev).typ == BT_TYPE_FREE {
                self.fl_remove(prev, qshift);
                self.seg_remove(prev);
                (*bt).start = (*prev).start;
                (*bt).size += (*prev).size;
                self.spare_push(prev);
            }
            let prev = (*bt).seg_prev;
            let whole_import = !prev.is_null()
                && (*prev).typ == BT_TYPE_SPAN
                && (*prev).size == (*bt).size
                && (*prev).start == (*bt).start;
            (bt, whole_import.then_some(prev))
        }
    }

    /// Remove an imported span whose single FREE segment is `seg`.
    pub(crate) fn remove_span(&mut self, span: *mut Bt, seg: *mut Bt) -> (usize, usize) {
        // SAFETY: both are valid tags on the segment list.
        let (start, size) = unsafe { ((*span).start, (*span).size) };
        self.seg_remove(seg);
        self.seg_remove(span);
        self.spare_push(seg);
        self.spare_push(span);
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

    /// Whether `t` is a span type.
    pub(crate) fn is_span_type(t: u8) -> bool {
        t == BT_TYPE_SPAN || t == BT_TYPE_SPAN_STATIC
    }
}

#[cfg(test)]
mod tests {
    //! Pure logic, no OS pages: runs under Miri (`cargo xtask ci --full`).
    use super::*;

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
            inner.fl_insert(t, 4);
        }
        assert_eq!(inner.nfree_segs, 4);
        inner.fl_remove(p[1], 4);
        inner.fl_remove(p[3], 4);
        assert_eq!(inner.nfree_segs, 2);
        for &t in &p[4..] {
            // SAFETY: valid tags on no list.
            unsafe { inner.hash.insert(t) };
        }
        // SAFETY: a 4-bucket table, then back to the embedded bucket.
        unsafe { inner.hash.rehash(table.as_mut_ptr(), 4) };
        assert_eq!(inner.hash.nbusy, 4);
        for &t in &p[4..] {
            // SAFETY: `t` is a valid tag.
            assert_eq!(inner.hash.lookup(unsafe { (*t).start }), t);
        }
        // SAFETY: p[5] is on the hash.
        unsafe { inner.hash.remove(p[5]) };
        assert!(inner.hash.lookup(5 * 16).is_null());
        // SAFETY: back to the embedded bucket.
        unsafe { inner.hash.rehash(ptr::null_mut(), 1) };
        assert_eq!(inner.hash.lookup(6 * 16), p[6]);
        assert_eq!(inner.hash.nbusy, 3);
    }
}
