//! Boundary tags and the global tag supply.
//!
//! A tag describes a span or a segment. Tags are linked intrusively: every
//! tag is on the arena's segment list, and a FREE tag is also on one free
//! list, a BUSY tag on one hash chain, a spare tag on the arena's or the
//! global spare list.
//!
//! Tags come from, in order: the 200 static tags ([`STATIC_BT_COUNT`]), then
//! chunks of memory from the [`MetaSource`] (by default fresh OS pages). They
//! never come from the Rust global allocator. Tags donated with
//! `add_bts` are private to their arena and never return to the supply.

use core::fmt;
use core::ptr::{self, NonNull};

use bsdalloc_platform::sync::cell::UnsafeCell;
use bsdalloc_platform::{Ipl, LockRank, SpinMutex};

use crate::flags::{STATIC_BT_COUNT, VmFlags};
use crate::links::slots;

/// Tag types (NetBSD's values).
pub(crate) const BT_TYPE_SPAN: u8 = 1;
pub(crate) const BT_TYPE_SPAN_STATIC: u8 = 2;
pub(crate) const BT_TYPE_FREE: u8 = 3;
pub(crate) const BT_TYPE_BUSY: u8 = 4;
/// The next-fit cursor (FreeBSD's value; an extension).
pub(crate) const BT_TYPE_CURSOR: u8 = 5;

/// The tag is caller-donated (`vmem_add_bts`): never trimmed to the supply.
pub(crate) const BT_F_PRIVATE: u8 = 0x01;
/// A busy segment allocated by `vmem_xalloc` (not `vmem_alloc`): it must be
/// freed with `vmem_xfree`.
pub(crate) const BT_F_XALLOC: u8 = 0x02;

/// A boundary tag (`bt_t`). Public so that callers can donate storage for
/// them ([`Arena::add_bts`](crate::Arena::add_bts)); its fields are private.
#[repr(C)]
pub struct BoundaryTag {
    pub(crate) seg_next: *mut BoundaryTag,
    pub(crate) seg_prev: *mut BoundaryTag,
    /// Free list, hash chain or spare list link.
    pub(crate) link_next: *mut BoundaryTag,
    pub(crate) link_prev: *mut BoundaryTag,
    pub(crate) start: usize,
    pub(crate) size: usize,
    pub(crate) typ: u8,
    pub(crate) flags: u8,
}

// SAFETY: tags are plain data owned by one arena (under its lock) or by the
// global supply (under its lock).
unsafe impl Send for BoundaryTag {}

impl fmt::Debug for BoundaryTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundaryTag")
            .field("start", &format_args!("{:#x}", self.start))
            .field("size", &format_args!("{:#x}", self.size))
            .field("type", &type_name(self.typ))
            .finish()
    }
}

impl Default for BoundaryTag {
    fn default() -> Self {
        Self::new()
    }
}

impl BoundaryTag {
    /// An unused tag, for donation arrays.
    pub const fn new() -> BoundaryTag {
        BoundaryTag {
            seg_next: ptr::null_mut(),
            seg_prev: ptr::null_mut(),
            link_next: ptr::null_mut(),
            link_prev: ptr::null_mut(),
            start: 0,
            size: 0,
            typ: 0,
            flags: 0,
        }
    }

    /// Inclusive last address (`BT_END`).
    #[inline]
    pub(crate) fn end(&self) -> usize {
        self.start + (self.size - 1)
    }

    #[inline]
    pub(crate) fn is_span(&self) -> bool {
        self.typ == BT_TYPE_SPAN || self.typ == BT_TYPE_SPAN_STATIC
    }
}

/// NetBSD's names for tag types, as `vmem_dump` prints them.
pub(crate) fn type_name(t: u8) -> &'static str {
    match t {
        BT_TYPE_SPAN => "span",
        BT_TYPE_SPAN_STATIC => "static span",
        BT_TYPE_FREE => "free",
        BT_TYPE_BUSY => "busy",
        BT_TYPE_CURSOR => "cursor",
        _ => "???",
    }
}

/// Where vmem's own metadata (tags, hash tables, arena descriptors) comes
/// from once the static tags are used up.
///
/// # Safety
/// `alloc_meta` returns memory that is readable, writable, aligned to at
/// least 64 bytes, exclusively the caller's until `free_meta`, and never
/// obtained from the Rust global allocator on an allocation path.
pub unsafe trait MetaSource: Sync {
    /// `size` bytes (a multiple of 4096), or `None`.
    fn alloc_meta(&self, size: usize, flags: VmFlags) -> Option<NonNull<u8>>;
    /// Give back what `alloc_meta(size)` returned.
    ///
    /// # Safety
    /// `p` came from `alloc_meta(size)` and is no longer used.
    unsafe fn free_meta(&self, p: NonNull<u8>, size: usize);
}

/// The default meta source in user space: fresh pages from the OS page
/// source (which the platform's fault injection covers).
///
/// A request that is a multiple of [`HUGE_META_CHUNK`] (2 MiB: the large
/// tag chunks, busy-hash tables of 256k buckets and more) is aligned to it
/// and, on Linux, advised `MADV_HUGEPAGE`, so that a million tags sit in a
/// few dozen TLB entries instead of twenty thousand (best effort: where
/// transparent huge pages are off, the pages stay small).
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct OsMetaSource;

/// The huge-page size [`OsMetaSource`] aligns and advises large chunks to.
pub const HUGE_META_CHUNK: usize = 2 << 20;

#[cfg(feature = "std")]
// SAFETY: reserved and committed OS pages are fresh, page aligned and ours.
unsafe impl MetaSource for OsMetaSource {
    fn alloc_meta(&self, size: usize, _flags: VmFlags) -> Option<NonNull<u8>> {
        use bsdalloc_platform::{OS_PAGES, PageSource};
        let size = size.next_multiple_of(OS_PAGES.page_size());
        let huge = size.is_multiple_of(HUGE_META_CHUNK);
        let p = OS_PAGES
            .reserve(size, if huge { HUGE_META_CHUNK } else { 0 })
            .ok()?;
        // SAFETY: committing our own fresh reservation.
        match unsafe { OS_PAGES.commit(p, size, false) } {
            Ok(_) => {
                #[cfg(target_os = "linux")]
                if huge {
                    // SAFETY: advising our own committed, unused range; the
                    // advice changes page size only, never contents.
                    unsafe { libc::madvise(p.as_ptr().cast(), size, libc::MADV_HUGEPAGE) };
                }
                Some(p)
            }
            Err(_) => {
                // SAFETY: the reservation is unused.
                unsafe { OS_PAGES.release(p, size) };
                None
            }
        }
    }

    unsafe fn free_meta(&self, p: NonNull<u8>, size: usize) {
        use bsdalloc_platform::{OS_PAGES, PageSource};
        let size = size.next_multiple_of(OS_PAGES.page_size());
        // SAFETY: the caller returns a whole reservation made and
        // committed above, unused now: decommitted first, so that the page
        // source's count of committed pages falls too.
        unsafe {
            OS_PAGES.decommit(p, size);
            OS_PAGES.release(p, size);
        }
    }
}

/// The meta source in use.
pub(crate) fn meta_source() -> Option<&'static dyn MetaSource> {
    SUPPLY.lock().meta.or(DEFAULT_META)
}

#[cfg(feature = "std")]
const DEFAULT_META: Option<&'static dyn MetaSource> = Some(&OsMetaSource);
#[cfg(not(feature = "std"))]
const DEFAULT_META: Option<&'static dyn MetaSource> = None;

/// Bytes of tags allocated from the meta source at a time, at first.
const TAG_CHUNK: usize = 64 * 1024;
/// After [`TAG_CHUNKS_SMALL`] small chunks (about 18k tags), tags come in
/// huge-page chunks: a program with a few arenas keeps its 64 KiB steps,
/// one with a million segments gets tags that share TLB entries.
const TAG_CHUNK_LARGE: usize = HUGE_META_CHUNK;
const TAG_CHUNKS_SMALL: usize = 16;

pub(crate) struct Supply {
    free: *mut BoundaryTag,
    nfree: usize,
    static_linked: bool,
    pub(crate) meta: Option<&'static dyn MetaSource>,
    /// Tags ever obtained from the meta source.
    page_tags: usize,
    chunks: usize,
}

// SAFETY: the raw pointers are tags owned by the supply, used under its lock.
unsafe impl Send for Supply {}

struct StaticTags([UnsafeCell<BoundaryTag>; STATIC_BT_COUNT]);
// SAFETY: each static tag is handed out once, under the supply lock, and
// then owned by exactly one arena or the supply.
unsafe impl Sync for StaticTags {}

static STATIC_TAGS: StaticTags =
    StaticTags([const { UnsafeCell::new(BoundaryTag::new()) }; STATIC_BT_COUNT]);

/// The global supply, at `IPL_HIGH` because arenas of any level refill from
/// it while holding their own lock.
pub(crate) static SUPPLY: SpinMutex<Supply> = SpinMutex::ranked(
    Ipl::High,
    LockRank::Registry,
    Supply {
        free: ptr::null_mut(),
        nfree: 0,
        static_linked: false,
        meta: None,
        page_tags: 0,
        chunks: 0,
    },
);

impl Supply {
    fn link_static(&mut self) {
        if self.static_linked {
            return;
        }
        self.static_linked = true;
        for cell in STATIC_TAGS.0.iter() {
            // SAFETY: linked once (under the supply lock, `static_linked`):
            // nobody else holds a static tag yet.
            cell.with_mut(|bt| unsafe { self.push(bt) });
        }
    }

    /// Put `bt` on the global spare list.
    ///
    /// # Safety
    /// `bt` points at a tag that nobody else references (an arena's spare,
    /// given back, or fresh storage).
    pub(crate) unsafe fn push(&mut self, bt: *mut BoundaryTag) {
        // SAFETY: caller's contract.
        unsafe {
            (*bt).typ = 0;
            (*bt).flags = 0;
            (*bt).link_next = self.free;
        }
        self.free = bt;
        self.nfree += 1;
    }

    /// Take one tag, linking the static tags on first use.
    pub(crate) fn pop(&mut self) -> Option<*mut BoundaryTag> {
        self.link_static();
        let bt = self.free;
        if bt.is_null() {
            return None;
        }
        // SAFETY: `bt` is on our free list.
        self.free = unsafe { (*bt).link_next };
        self.nfree -= 1;
        Some(bt)
    }
}

/// Add a chunk of tags from the meta source. Called without any arena lock.
pub(crate) fn grow_supply(flags: VmFlags) -> bool {
    let (meta, bytes) = {
        let s = SUPPLY.lock();
        let Some(meta) = s.meta.or(DEFAULT_META) else {
            return false;
        };
        let bytes = if s.chunks < TAG_CHUNKS_SMALL {
            TAG_CHUNK
        } else {
            TAG_CHUNK_LARGE
        };
        (meta, bytes)
    };
    // A source that cannot give a huge chunk (a kernel's, short of
    // contiguous memory) may still give a small one.
    let (chunk, bytes) = match meta.alloc_meta(bytes, flags) {
        Some(c) => (c, bytes),
        None if bytes > TAG_CHUNK => match meta.alloc_meta(TAG_CHUNK, flags) {
            Some(c) => (c, TAG_CHUNK),
            None => return false,
        },
        None => return false,
    };
    let stride = core::mem::size_of::<BoundaryTag>();
    let n = bytes / stride;
    let mut s = SUPPLY.lock();
    // SAFETY: the chunk is ours, `bytes` long, aligned to at least 64 (the
    // MetaSource contract), and tags are packed at their own size.
    for bt in unsafe { slots::<BoundaryTag>(chunk, bytes, stride) } {
        // SAFETY: a slot of the fresh chunk, initialised before it is
        // linked, then referenced by the supply alone.
        unsafe {
            bt.write(BoundaryTag::new());
            s.push(bt.as_ptr());
        }
    }
    s.page_tags += n;
    s.chunks += 1;
    true
}

/// Counters of the global supply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TagSupplyStats {
    /// Tags on the global spare list.
    pub free: usize,
    /// Tags ever carved from meta-source chunks.
    pub from_pages: usize,
    /// Meta-source chunks taken for tags.
    pub chunks: usize,
}

/// A snapshot of the global tag supply.
pub fn tag_supply_stats() -> TagSupplyStats {
    let mut s = SUPPLY.lock();
    s.link_static();
    TagSupplyStats {
        free: s.nfree,
        from_pages: s.page_tags,
        chunks: s.chunks,
    }
}

/// `vmem_subsystem_init`: choose where metadata comes from once the static
/// tags run out (by default, with `std`, fresh OS pages). Call before the
/// first arena needs more than the static tags.
pub fn vmem_subsystem_init(meta: &'static dyn MetaSource) {
    SUPPLY.lock().meta = Some(meta);
}
