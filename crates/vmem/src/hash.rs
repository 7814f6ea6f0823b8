//! The busy-tag hash: BUSY tags chained by start address, so that a free
//! finds its tag in constant expected time (NetBSD's `vm_hashlist`).
//!
//! Laid out for the memory hierarchy (see "Scaling" in the crate docs):
//! a bucket is one pointer, and the chains are *singly* linked through
//! `link_next`. An insert writes the bucket and the new tag only (a doubly
//! linked chain would also write the old first tag: one more cache miss
//! per allocation at a million live segments); a remove walks from the
//! bucket to the tag, which the lookup before it has just brought into the
//! cache. The table grows with the busy count (load at most 1 by default,
//! see `Arena::hash_max`), so a lookup reads the bucket and, on average,
//! fewer than 1.5 tags, the first of which it needs anyway.

use core::ptr::{self, NonNull};

use crate::bt::BoundaryTag;
use crate::links::{bucket, prefetch};

type Bt = BoundaryTag;

/// How long the busy hash's chains are ([`Arena::hash_chains`]).
///
/// [`Arena::hash_chains`]: crate::Arena::hash_chains
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HashChains {
    /// Buckets.
    pub buckets: usize,
    /// Buckets holding at least one busy tag.
    pub nonempty: usize,
    /// The longest chain.
    pub longest: usize,
    /// Tags a successful lookup looks at, averaged over every busy tag
    /// (1.0: every lookup finds its tag first).
    pub mean_probes: f64,
}

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

    /// Start fetching the bucket of `addr` (a hint; no effect on results).
    #[inline]
    pub(crate) fn prefetch_bucket(&mut self, addr: usize) {
        if self.size > 1 {
            prefetch(self.head(addr).cast_const());
        }
    }

    /// Insert a BUSY tag at the front of its chain.
    ///
    /// # Safety
    /// `bt` is a valid tag not on any link list.
    pub(crate) unsafe fn insert(&mut self, bt: *mut Bt) {
        // SAFETY: caller's contract; the head pointer is valid.
        unsafe {
            let head = self.head((*bt).start);
            (*bt).link_prev = ptr::null_mut();
            (*bt).link_next = *head;
            *head = bt;
        }
        self.nbusy += 1;
        if self.nbusy > self.maxbusy {
            self.maxbusy = self.nbusy;
        }
    }

    /// Remove a BUSY tag: walk its chain to it and unlink it.
    ///
    /// # Safety
    /// `bt` is on this hash.
    pub(crate) unsafe fn remove(&mut self, bt: *mut Bt) {
        // SAFETY: caller's contract: `bt` is on the chain of its bucket,
        // whose members are valid tags.
        unsafe {
            let mut link: *mut *mut Bt = self.head((*bt).start);
            while *link != bt {
                debug_assert!(!(*link).is_null(), "vmem: busy tag not on its chain");
                link = &raw mut (**link).link_next;
            }
            *link = (*bt).link_next;
            (*bt).link_next = ptr::null_mut();
        }
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

    /// Chain-length figures (a walk of every bucket: for reports, not for
    /// hot paths).
    pub(crate) fn chains(&mut self) -> HashChains {
        let mut longest = 0;
        let mut nonempty = 0;
        let mut probes = 0usize;
        for i in 0..self.size {
            // SAFETY: head_at(i) is a bucket of this table.
            let mut bt = unsafe { *self.head_at(i) };
            let mut k = 0;
            while !bt.is_null() {
                k += 1;
                // Finding the k-th tag of a chain looks at k tags.
                probes += k;
                // SAFETY: chain members are valid tags.
                bt = unsafe { (*bt).link_next };
            }
            nonempty += usize::from(k > 0);
            longest = longest.max(k);
        }
        HashChains {
            buckets: self.size,
            nonempty,
            longest,
            mean_probes: if self.nbusy == 0 {
                0.0
            } else {
                probes as f64 / self.nbusy as f64
            },
        }
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
        // One pass: each tag moves straight from its old chain to its new
        // one, so a rehash touches every busy tag once (in bucket order:
        // independent misses the CPU overlaps), not twice through a
        // collected list.
        let old = (self.table, self.size);
        let old_embedded = self.embedded;
        self.table = table;
        self.size = size;
        self.embedded = ptr::null_mut();
        if let Some(t) = table {
            for i in 0..size {
                // SAFETY: caller's contract on `table`.
                unsafe { bucket(t, i).write(ptr::null_mut()) };
            }
        }
        for i in 0..old.1 {
            let mut bt = match old.0 {
                None => old_embedded,
                // SAFETY: the old table has `old.1` buckets, still ours.
                Some(t) => unsafe { *bucket(t, i).as_ptr() },
            };
            while !bt.is_null() {
                // SAFETY: `bt` is a valid tag of an old chain; it moves to
                // the front of its new chain (the count is unchanged).
                unsafe {
                    let next = (*bt).link_next;
                    let head = self.head((*bt).start);
                    (*bt).link_next = *head;
                    *head = bt;
                    bt = next;
                }
            }
        }
        old
    }
}
