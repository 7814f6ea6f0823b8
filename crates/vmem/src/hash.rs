//! The busy-tag hash: BUSY tags chained by start address, so that a free
//! finds its tag in constant expected time (NetBSD's `vm_hashlist`).

use core::ptr::{self, NonNull};

use crate::bt::BoundaryTag;
use crate::links::{bucket, link_push, link_unlink};

type Bt = BoundaryTag;

/// The busy-tag hash: chains of BUSY tags keyed by start address.
pub(crate) struct BusyHash {
    /// `size` bucket heads, or `None` while the embedded bucket is in use.
    pub(crate) table: Option<NonNull<*mut Bt>>,
    pub(crate) size: usize,
    pub(crate) embedded: *mut Bt,
    pub(crate) nbusy: usize,
    pub(crate) maxbusy: usize,
}

impl BusyHash {
    pub(crate) const fn new() -> Self {
        BusyHash {
            table: None,
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
        self.head_at(Self::bucket_index(addr, self.size))
    }

    /// Bucket `i` (< `size`).
    #[inline]
    fn head_at(&mut self, i: usize) -> *mut *mut Bt {
        debug_assert!(i < self.size);
        match self.table {
            None => &mut self.embedded,
            // SAFETY: the table has `size` entries and i < size.
            Some(t) => unsafe { bucket(t, i) }.as_ptr(),
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

    /// Move every tag to `table` of `size` buckets (a power of two;
    /// `None` and 1 for the embedded bucket). Returns the old table and
    /// size.
    ///
    /// # Safety
    /// `table` has `size` writable entries, or is `None` with `size == 1`.
    pub(crate) unsafe fn rehash(
        &mut self,
        table: Option<NonNull<*mut Bt>>,
        size: usize,
    ) -> (Option<NonNull<*mut Bt>>, usize) {
        let mut all: *mut Bt = ptr::null_mut();
        // Collect every tag into one chain.
        let old_size = self.size;
        for i in 0..old_size {
            let head = self.head_at(i);
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
        if let Some(t) = table {
            for i in 0..size {
                // SAFETY: caller's contract on `table`.
                unsafe { bucket(t, i).write(ptr::null_mut()) };
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
