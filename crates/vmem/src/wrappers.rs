//! Safe handles for the common uses: an ID allocator and RAII segments.

use core::fmt;
use core::ops::{Range, RangeInclusive};

use crate::arena::{Arena, ArenaConfig};
use crate::constraints::XallocConstraints;
use crate::flags::{VmFlags, VmemError};

/// A segment that frees itself when dropped (with `vmem_free` or
/// `vmem_xfree`, matching how it was allocated).
///
/// ```
/// use bsdalloc_vmem::{Arena, VmFlags};
///
/// let io = Arena::create("ioports", 0x1000, 0x1000, 8).unwrap();
/// {
///     let win = io.alloc_segment(0x20, VmFlags::NOSLEEP | VmFlags::BESTFIT).unwrap();
///     assert_eq!(win.size(), 0x20);
///     assert!(io.is_allocated(win.addr()));
/// } // freed here
/// assert_eq!(io.stats().inuse, 0);
/// ```
#[must_use = "dropping a Segment frees it at once"]
pub struct Segment<'a> {
    arena: &'a Arena,
    addr: usize,
    size: usize,
    constrained: bool,
}

impl fmt::Debug for Segment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("arena", &self.arena.name())
            .field("addr", &format_args!("{:#x}", self.addr))
            .field("size", &format_args!("{:#x}", self.size))
            .finish()
    }
}

impl<'a> Segment<'a> {
    /// Start address.
    pub fn addr(&self) -> usize {
        self.addr
    }

    /// Size, as asked (the arena rounds it to its quantum).
    pub fn size(&self) -> usize {
        self.size
    }

    /// The last address of the segment as asked, `addr + size - 1`.
    pub fn last(&self) -> usize {
        // Cannot overflow: the arena handed out at least `size` bytes from
        // `addr`, inside a span that does not wrap.
        self.addr + (self.size - 1)
    }

    /// The addresses `addr ..= last()`. Inclusive, because a segment may
    /// end at the very top of the address type, where `addr + size` does
    /// not exist.
    pub fn range(&self) -> RangeInclusive<usize> {
        self.addr..=self.last()
    }

    /// Keep the segment allocated and return `(addr, size)`; free it later
    /// with `free` (or `xfree` if it came from `xalloc_segment`).
    pub fn into_raw(self) -> (usize, usize) {
        let r = (self.addr, self.size);
        core::mem::forget(self);
        r
    }
}

impl Drop for Segment<'_> {
    fn drop(&mut self) {
        if self.constrained {
            self.arena.xfree(self.addr, self.size);
        } else {
            self.arena.free(self.addr, self.size);
        }
    }
}

impl Arena {
    /// [`Arena::alloc`] returning a [`Segment`].
    pub fn alloc_segment(&self, size: usize, flags: VmFlags) -> Result<Segment<'_>, VmemError> {
        let addr = self.alloc(size, flags)?;
        Ok(Segment {
            arena: self,
            addr,
            size,
            constrained: false,
        })
    }

    /// [`Arena::xalloc`] returning a [`Segment`] (freed with `vmem_xfree`).
    pub fn xalloc_segment(
        &self,
        c: XallocConstraints,
        flags: VmFlags,
    ) -> Result<Segment<'_>, VmemError> {
        let addr = self.xalloc(c, flags)?;
        Ok(Segment {
            arena: self,
            addr,
            size: c.size,
            constrained: true,
        })
    }
}

/// How an [`IdAllocator`] picks the next ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdPolicy {
    /// Lowest-cost choice (instant fit): freed IDs come back soon.
    Reuse,
    /// Next fit: IDs rotate through the range before any is reused (good
    /// for PIDs, file handles, anything a stale reference might name).
    Rotate,
}

/// Integer IDs from a range, backed by a quantum-1 arena.
///
/// Dropping the allocator frees every ID still allocated (those from
/// [`IdAllocator::alloc_raw`] too: IDs are numbers, not memory, so nothing
/// can still be using them once the allocator is gone) and gives the
/// arena's boundary tags back.
///
/// ```
/// use bsdalloc_vmem::{IdAllocator, IdPolicy};
///
/// let pids = IdAllocator::new("pids", 1..6, IdPolicy::Rotate).unwrap();
/// let a = pids.alloc().unwrap();
/// let b = pids.alloc().unwrap();
/// assert_eq!((a.get(), b.get()), (1, 2));
/// drop(a);
/// assert_eq!(pids.alloc().unwrap().get(), 3); // rotates; 1 is not reused yet
/// ```
pub struct IdAllocator {
    arena: Arena,
    policy: IdPolicy,
}

impl fmt::Debug for IdAllocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdAllocator")
            .field("name", &self.arena.name())
            .field("policy", &self.policy)
            .finish()
    }
}

impl IdAllocator {
    /// IDs in `range` (non-empty).
    ///
    /// # Panics
    /// If the range is empty.
    pub fn new(
        name: &'static str,
        range: Range<usize>,
        policy: IdPolicy,
    ) -> Result<Self, VmemError> {
        assert!(
            range.start < range.end,
            "IdAllocator::new: empty range {range:?}"
        );
        let arena = Arena::with_config(
            ArenaConfig::new(name, 1),
            range.start,
            range.end - range.start,
        )?;
        Ok(IdAllocator { arena, policy })
    }

    fn fit(&self) -> VmFlags {
        match self.policy {
            IdPolicy::Reuse => VmFlags::INSTANTFIT,
            IdPolicy::Rotate => VmFlags::NEXTFIT,
        }
    }

    /// An ID that frees itself on drop, or `None` if all are in use.
    pub fn alloc(&self) -> Option<Id<'_>> {
        self.alloc_raw().map(|id| Id { ids: self, id })
    }

    /// An ID to free later with [`IdAllocator::free_raw`].
    pub fn alloc_raw(&self) -> Option<usize> {
        self.arena.alloc(1, VmFlags::NOSLEEP | self.fit()).ok()
    }

    /// An ID, waiting until one is free.
    pub fn alloc_wait(&self) -> Id<'_> {
        let id = self
            .arena
            .alloc(1, VmFlags::SLEEP | self.fit())
            .expect("VM_SLEEP allocation cannot fail");
        Id { ids: self, id }
    }

    /// Free an ID from [`IdAllocator::alloc_raw`].
    ///
    /// # Panics
    /// If the ID is not allocated.
    pub fn free_raw(&self, id: usize) {
        self.arena.free(id, 1);
    }

    /// IDs in use.
    pub fn in_use(&self) -> usize {
        self.arena.size(crate::SizeType::ALLOC)
    }

    /// The underlying arena.
    pub fn arena(&self) -> &Arena {
        &self.arena
    }
}

impl Drop for IdAllocator {
    fn drop(&mut self) {
        // Then the arena's own drop returns everything, with no live
        // segment to refuse over. (Someone may have destroyed it through
        // `arena()` already; then there is nothing left to free.)
        if !self.arena.is_destroyed() {
            self.arena.xfreeall();
        }
    }
}

/// An allocated ID; freed on drop.
#[must_use = "dropping an Id frees it at once"]
pub struct Id<'a> {
    ids: &'a IdAllocator,
    id: usize,
}

impl fmt::Debug for Id<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.id)
    }
}

impl Id<'_> {
    /// The ID.
    pub fn get(&self) -> usize {
        self.id
    }

    /// Keep the ID allocated and return it.
    pub fn into_raw(self) -> usize {
        let id = self.id;
        core::mem::forget(self);
        id
    }
}

impl Drop for Id<'_> {
    fn drop(&mut self) {
        self.ids.free_raw(self.id);
    }
}
